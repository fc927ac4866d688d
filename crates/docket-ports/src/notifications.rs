//! In-app notifications (§2.5): appended by the notifier consumer inside its transaction,
//! together with their `notification.created` event on `task-updates` (the real-time
//! stream); read and marked read by their owner through the `Store`.
//!
//! Appending is idempotent on the causing event's id (`source_event`, unique): a redelivered
//! event adds neither a second notification nor a second event. Reads are scoped by owner,
//! newest first.

// The PostgreSQL side lives in `crate::postgres::notifications` (it needs that adapter's codec).

/// Most notifications one list returns.
pub const MAX_LIST: usize = 200;
