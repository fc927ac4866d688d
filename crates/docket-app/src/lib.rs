//! Docket's use cases over the [`Store`] port: accounts and tokens, authentication, tasks,
//! tags and categories; the audit consumer's handler ([`audit`]); the real-time fan-out
//! ([`realtime`]).
//!
//! [`App`] holds what the use cases need (the store, the clock, the auth keys) and is shared
//! by every edge (HTTP, later MCP and the CLI) as `Arc<App>`. Use cases take parsed domain
//! values and the authenticated [`User`](docket_core::User) and return domain values or an
//! [`AppError`]; nothing here knows HTTP or JSON. Every task and category operation is scoped
//! by the caller's id, which the store enforces.

mod accounts;
pub mod audit;
pub mod auth;
mod categories;
pub mod clock;
pub mod error;
pub mod housekeeping;
pub mod notifier;
pub mod realtime;
mod recurrence;
pub mod recurring;
mod reminders;
pub mod scheduler;
mod series;
mod tasks;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod webhook;

use std::sync::Arc;

use docket_store::Store;

pub use accounts::{CreatedToken, NewToken, Session, Signup};
pub use auth::{AuthConfig, PAT_PREFIX};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::AppError;
pub use tasks::{Completion, InstantInput, TaskChanges, TaskInput};

/// The application: every use case is a method.
pub struct App {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    auth: auth::Auth,
    hub: Option<realtime::Hub>,
    /// Told when a reminder's fire time may have moved earlier; the scheduler waits on it.
    scheduler_wake: Arc<tokio::sync::Notify>,
}

impl App {
    pub fn new(store: Arc<dyn Store>, auth: AuthConfig) -> App {
        App {
            store,
            clock: Arc::new(SystemClock),
            auth: auth::Auth::new(auth),
            hub: None,
            scheduler_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Replaces the system clock (tests pin time with [`FixedClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> App {
        self.clock = clock;
        self
    }

    /// Serves real-time subscriptions from `hub` (run by the caller with [`realtime::Hub::run`]).
    pub fn with_hub(mut self, hub: realtime::Hub) -> App {
        self.hub = Some(hub);
        self
    }

    /// A live feed of `user`'s task events, after `last_event_id` when the client resumes.
    pub fn subscribe(
        &self,
        user: &docket_core::User,
        last_event_id: Option<i64>,
    ) -> Result<realtime::Subscription, AppError> {
        let hub = self
            .hub
            .as_ref()
            .ok_or_else(|| AppError::Unavailable("real-time streams are not enabled".to_owned()))?;
        hub.subscribe(&user.id.to_string(), last_event_id)
            .map_err(|e| AppError::Unavailable(e.to_string()))
    }

    /// What wakes the scheduler ([`scheduler::run_scheduler`]) early.
    pub fn scheduler_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.scheduler_wake)
    }

    /// The clock the use cases read.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The store, for edges that report on it (`/readyz`).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<(), AppError> {
        Ok(self.store.ping().await?)
    }

    pub fn now(&self) -> docket_core::Timestamp {
        self.clock.now()
    }
}
