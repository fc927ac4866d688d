//! The black-box API test binary: every test spawns the real `docket serve` on port 0 with a
//! fresh database and talks to it over HTTP.

mod audit;
mod auth;
mod cli;
mod dapr;
mod durability;
mod email;
mod invoke;
mod lists;
mod ops;
mod recurrence;
mod reminders;
mod roles;
mod series;
mod stream;
mod support;
mod tasks;
mod webhooks;
