//! The ports of Docket: the contracts the use cases (`docket-app`), the consumers and the
//! embedded bus reach the outside through, written as traits with their rules, so that none
//! of them depends on a database driver, HTTP client, mail or broker library and each adapter
//! can be swapped or tested alone.
//!
//! * Persistence: [`Store`] (the task-service store, with its written contract), the state
//!   store ([`state::StateStore`], §4), the consumer port ([`consume`]: a consumer's effects,
//!   its `processed:` key and its position committed in one transaction), and the record types
//!   they take and return ([`audit`], [`notifications`], [`reminders`], [`series`],
//!   [`webhooks`], [`bus`]). [`StoreError`] is what every one of them fails with.
//!   Adapters: `docket-sqlite` (the embedded default) and `docket-postgres`; both pass the
//!   same conformance suite ([`conformance`], behind the `conformance` feature).
//! * Outbound: [`outbound`] (webhook POST, mail, JWKS); adapters in `docket-outbound`.
//!
//! Shared by both store adapters and deciding nothing: the few conversions between domain
//! values and their stored form (`series::spec_json`, `reminders::trigger_columns`, …) and
//! `facts`, which turns a plan's task changes into outbox events once. `ids` makes the fresh
//! ids (clock and randomness) the pure crates take as arguments.

pub mod audit;
pub mod bus;
pub mod consume;
pub mod error;
pub mod facts;
pub mod ids;
pub mod notifications;
pub mod outbound;
pub mod reminders;
pub mod series;
pub mod state;
mod store;
pub mod webhooks;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use audit::{AuditEntry, AuditPage};
pub use error::StoreError;
pub use outbound::{
    JwksSource, MailTransport, OutboundMail, PostError, WebhookPost, WebhookTransport,
};
pub use state::{StateEntry, StateError, StateKey, StateStore};
pub use store::{Store, TagCount, TokenInfo, UserRecord};
