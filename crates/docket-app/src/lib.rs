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
pub mod delivery;
pub mod error;
pub mod housekeeping;
pub mod next_instance;
pub mod notifier;
pub mod realtime;
mod reminders;
pub mod scheduler;
pub mod secret_key;
mod series;
mod tasks;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod webhooks;

use std::sync::Arc;

use docket_ports::Store;

pub use accounts::{CreatedToken, NewToken, Session, Signup};
pub use auth::{AuthConfig, PAT_PREFIX};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::AppError;
pub use tasks::{Completion, InstantInput, NEXT_INSTANCE_WAIT, TaskChanges, TaskInput};

/// The configuration of one of this crate's consumers: group `group` on `topic`, its position
/// committed in the transaction of the handler's effects (the embedded bus on the same
/// database), so each event's effects and its position commit together.
fn consumer_config(group: &str, topic: &str) -> docket_bus::runtime::ConsumerConfig {
    let mut config = docket_bus::runtime::ConsumerConfig::new(group, topic);
    config.position_in_transaction = true;
    config
}

/// The application: every use case is a method.
pub struct App {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    auth: auth::Auth,
    hub: Option<realtime::Hub>,
    /// Told when a reminder's fire time may have moved earlier; the scheduler waits on it.
    scheduler_wake: Arc<tokio::sync::Notify>,
    /// How long completing a series instance waits for the recurrence consumer's next
    /// instance; `None` when no recurrence consumer runs on this database.
    next_instance_wait: Option<std::time::Duration>,
    /// Whether webhooks may target loopback, private and link-local addresses.
    webhooks_allow_private: bool,
    /// Whether an SMTP relay is configured, so reminders may ask for email.
    email_enabled: bool,
    /// Another dependency readiness waits for (`with_dependency`).
    dependency: Option<Dependency>,
    /// Seals webhook secrets at rest (`secret_key`).
    secret_key: secret_key::SecretKey,
}

/// A readiness probe of a dependency: `Err` says why it is not ready.
pub type Probe =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

struct Dependency {
    name: &'static str,
    probe: Probe,
}

impl App {
    /// The webhook secret key is derived from the JWT secret until `with_secret_key`.
    pub fn new(store: Arc<dyn Store>, auth: AuthConfig) -> App {
        use secrecy::ExposeSecret as _;
        let secret_key = secret_key::SecretKey::derive(auth.jwt_secret.expose_secret().as_bytes());
        App {
            store,
            clock: Arc::new(SystemClock),
            auth: auth::Auth::new(auth),
            hub: None,
            scheduler_wake: Arc::new(tokio::sync::Notify::new()),
            next_instance_wait: Some(tasks::NEXT_INSTANCE_WAIT),
            webhooks_allow_private: false,
            email_enabled: false,
            dependency: None,
            secret_key,
        }
    }

    /// Seals webhook secrets with `key` (`--secret-key`) instead of the one derived from the
    /// JWT secret; the delivery worker must open them with the same key.
    pub fn with_secret_key(mut self, key: secret_key::SecretKey) -> App {
        self.secret_key = key;
        self
    }

    /// Says an SMTP relay is configured (reminders may then ask for the `email` channel).
    pub fn with_email(mut self, enabled: bool) -> App {
        self.email_enabled = enabled;
        self
    }

    /// Whether reminders may ask for the `email` channel.
    pub fn email_enabled(&self) -> bool {
        self.email_enabled
    }

    /// Lets webhooks target loopback, private and link-local addresses (an operator's choice
    /// for a closed network; off by default).
    pub fn with_private_webhooks(mut self, allow: bool) -> App {
        self.webhooks_allow_private = allow;
        self
    }

    /// How long completing a series instance waits for its next instance to be reported
    /// (the recurrence consumer makes it, usually within milliseconds); `None` says no
    /// recurrence consumer runs on this database, so a completion answers `next: null` at
    /// once. Default [`NEXT_INSTANCE_WAIT`].
    pub fn with_next_instance_wait(mut self, wait: Option<std::time::Duration>) -> App {
        self.next_instance_wait = wait;
        self
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
        self.store.ping().await?;
        if let Some(check) = &self.dependency {
            (check.probe)()
                .await
                .map_err(|e| AppError::Unavailable(format!("{} is not ready: {e}", check.name)))?;
        }
        Ok(())
    }

    /// Makes readiness also require `probe` (named `name` in the answer), e.g. the Dapr
    /// sidecar's outbound health when building blocks go through it.
    pub fn with_dependency(mut self, name: &'static str, probe: Probe) -> App {
        self.dependency = Some(Dependency { name, probe });
        self
    }

    pub fn now(&self) -> docket_core::Timestamp {
        self.clock.now()
    }
}
