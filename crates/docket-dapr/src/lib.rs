//! Docket over a Dapr sidecar (§7): the HTTP client of the sidecar's building blocks
//! ([`DaprClient`]), the state store contract over Dapr state ([`DaprStateStore`]), secrets
//! with an environment fallback ([`Secrets`]), and, behind the `test-sidecar` feature, an
//! in-process sidecar that follows the Dapr HTTP documentation ([`testing::TestSidecar`]);
//! the outbox relay of Dapr mode ([`relay`]); the event bus contract over Dapr Pub/Sub
//! ([`bus::DaprBus`]); the job registrar of `--scheduler dapr` ([`jobs`]), which keeps one
//! Dapr job per coming deadline; and the app side of Dapr, all of it ([`callbacks`]: the
//! Pub/Sub subscriptions and deliveries, the job and cron binding triggers), which the binary
//! merges into docket-http's router.
//!
//! Plain HTTP through `reqwest`, not the `dapr` crate (alpha, gRPC only). This crate does not
//! decide when to use Dapr: the server wires it in.

pub mod bus;
pub mod callbacks;
mod client;
pub mod jobs;
pub mod relay;
mod secrets;
mod state;
#[cfg(feature = "test-sidecar")]
pub mod testing;

pub use client::{
    API_TOKEN_HEADER, BulkFailure, CLOUDEVENTS_CONTENT_TYPE, Concurrency, DEFAULT_HTTP_PORT,
    DaprClient, DaprError, Job, SaveState, StateItem,
};
pub use secrets::{DATABASE_URL, DEFAULT_SECRET, JWT_SECRET, SECRET_KEY, SMTP_PASSWORD, Secrets};
pub use state::DaprStateStore;
