//! Docket's event wire format: the CloudEvents 1.0 envelope ([`CloudEvent`], structured JSON
//! mode), the topic and type names (§5), the versioned payloads (`TaskV1`, …) and the pure
//! function that turns a task change into the events the outbox stores ([`task_events`]).
//!
//! This crate does no IO and knows no database or broker: the stores append what
//! [`task_events`] returns inside their write transactions, and the bus (next) reads it back.
//! It reads no clock and draws no random number either: an event's id, time, source and trace
//! come in its [`Origin`], a new trace's ids in `trace::TraceContext::root`.
//! Payload types are separate from the domain types on purpose: events outlive deploys, so
//! their JSON is versioned (`V1`) and changes only by adding a new version.

mod envelope;
mod payload;
mod reminder;
mod task;
pub mod topics;
pub mod trace;
pub mod types;

#[cfg(test)]
mod tests;

pub use envelope::{
    CloudEvent, EnvelopeError, JSON_CONTENT_TYPE, Origin, SPEC_VERSION, sequence_string,
};
pub use payload::{CategoryV1, FieldChange, TaskDeletedV1, TaskEventDataV1, TaskV1};
pub use reminder::{
    NotificationV1, ReminderTriggeredV1, ReminderV1, notification_created, reminder_triggered,
    trigger_json,
};
pub use task::{OutboxEvent, TaskChange, source, task_events};
