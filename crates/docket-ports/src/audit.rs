//! The audit log (§2.5): one [`AuditEntry`] per event, appended by the audit consumer inside
//! its transaction and read back by the `Store` methods `task_history` and `activity`.
//!
//! Appending is idempotent: `event_id` is unique and a second append of the same event keeps
//! the first entry (`INSERT … ON CONFLICT (event_id) DO NOTHING`). Entries list oldest first,
//! by `seq` (the event's outbox position, unique), and page by keyset on it: the cursor is the
//! `seq` of the last entry of a page, so entries appended later land on later pages and
//! paging never skips one. Reads are scoped by the owner (`user_id`): another user's entries
//! are never returned.

use docket_core::{Timestamp, UserId};

/// The entity type of task entries.
pub const ENTITY_TASK: &str = "task";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// A fresh UUIDv7.
    pub id: uuid::Uuid,
    /// The id of the event it records (unique).
    pub event_id: String,
    pub event_type: String,
    /// `task`.
    pub entity_type: String,
    pub entity_id: uuid::Uuid,
    /// The owner of the entity, for scoping.
    pub user_id: UserId,
    /// Who did it (the event's actor, else its source).
    pub actor: String,
    /// When it happened (microsecond precision).
    pub at: Timestamp,
    /// The after-image and, for updates, `changes`.
    pub data: serde_json::Value,
    /// The event's outbox position: the order and the cursor.
    pub seq: i64,
}

/// A page of entries, oldest first; `next_cursor` is set exactly when more entries follow.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<i64>,
}

impl AuditPage {
    /// Builds a page from up to `limit + 1` rows read in order.
    pub fn from_rows(mut items: Vec<AuditEntry>, limit: usize) -> AuditPage {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| e.seq)
        } else {
            None
        };
        AuditPage { items, next_cursor }
    }
}
