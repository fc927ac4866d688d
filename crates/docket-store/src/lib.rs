//! Docket's persistence port: the [`Store`] contract and its adapters.
//!
//! * [`sqlite::SqliteStore`] — the embedded default (rusqlite, WAL, `synchronous=FULL`), one
//!   writer thread doing group commit and a pool of reader threads.
//! * [`postgres::PostgresStore`] — sqlx on PostgreSQL.
//!
//! [`state::StateStore`] is the key-value state contract (§4), implemented by both stores.
//! [`audit`] holds the audit log (§2.5), appended by the audit consumer.
//! [`notifications`] holds in-app notifications, appended by the notifier consumer.
//! [`reminders`] holds the reminder rows, the rules task writes apply to them, and the
//! scheduler's claim.
//! [`webhooks`] holds users' webhooks and the deliveries owed to email and webhook channels.
//! [`consume`] is the consumer port: a consumer's effects, its `processed:` key and its
//! position committed in one transaction.
//! [`bus`] holds the tables the embedded event bus keeps beside the outbox (consumer
//! positions and attempts).
//!
//! Both pass the same conformance suite ([`conformance`], behind the `conformance` feature).
//! The store knows nothing of HTTP or JSON; it takes and returns `docket-core` values.

pub mod audit;
pub mod bus;
pub mod consume;
pub mod error;
mod facts;
pub mod notifications;
pub mod postgres;
pub mod reminders;
pub mod series;
pub mod sqlite;
pub mod state;
mod store;
pub mod webhooks;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use audit::{AuditEntry, AuditPage};
pub use error::StoreError;
pub use state::{StateEntry, StateError, StateKey, StateStore};
pub use store::{Store, TagCount, TokenInfo, UserRecord};
