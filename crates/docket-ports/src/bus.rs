//! What the embedded event bus (`docket-bus`) stores beside the outbox, for both dialects:
//! appending an event to any topic (publishing, dead letters), each consumer group's committed
//! position (`consumer_offsets`) and the failed attempts of the event it is retrying
//! (`consumer_attempts`).
//!
//! The functions run inside a caller's transaction, like the state store's, so a consumer can
//! commit its position with its own writes. They hold no policy (retries, dead-lettering,
//! order): that is the bus's. Positions only grow: saving a lower one keeps the higher.
//!
//! Pruning the outbox (`Store::prune_outbox`) reads these tables: a row goes only once every
//! group that reads it has passed it, where a group whose position (or attempt) was last saved
//! before the cut-off no longer counts; [`PRUNE_READERS`], [`prune_bound`] and [`prune_cut`]
//! are that rule, shared by both dialects.
//!
//! [`EventLog`] is the port the embedded bus runs on: the outbox of one database read as a
//! log, the two bus tables, and a wake-up signal after appends commit. Each store adapter
//! implements it; the bus holds the policy.

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use tokio::sync::watch;

use crate::{Store, StoreError};

/// A subscriber's exclusive hold on its `(group, topic)`, released when dropped.
pub trait Claim: Send + Sync {}

/// The outbox of one database as the embedded bus's log, with the bus tables beside it.
///
/// Rules every adapter keeps (checked by the bus conformance suite through the embedded bus):
/// * Appends are durable when they return and become visible to [`Store::read_outbox`] in
///   position order; after they commit, [`EventLog::wakeups`] changes (from any process on
///   PostgreSQL; a missed change is caught by the bus's fallback poll).
/// * [`EventLog::append_once`] appends unless an event with the same unique `key` was appended
///   before, and says whether it did.
/// * [`EventLog::claim`] grants one holder per `(group, topic)` at a time (in the process on
///   SQLite; across processes on PostgreSQL), until the returned [`Claim`] is dropped.
/// * A saved position never moves back; [`EventLog::dead_letter`] appends the letter and moves
///   the group past `seq` in one transaction.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The store whose outbox is the log (reads, heads).
    fn store(&self) -> &dyn Store;

    /// A counter that changes after appends commit.
    fn wakeups(&self) -> watch::Receiver<u64>;

    /// Appends `events` to `topic` in one transaction.
    async fn append(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Appends `event` to `topic` unless `key` was appended before; whether it appended.
    async fn append_once(
        &self,
        topic: &str,
        event: CloudEvent,
        key: String,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Claims `(group, topic)` for one subscriber, or `None` while another holds it.
    async fn claim(&self, group: &str, topic: &str) -> Result<Option<Box<dyn Claim>>, StoreError>;

    /// The group's committed position in `topic` (0 when none).
    async fn position(&self, group: &str, topic: &str) -> Result<i64, StoreError>;

    /// The recorded failed attempts `(seq, attempts)` of events above `after`.
    async fn attempts_after(
        &self,
        group: &str,
        topic: &str,
        after: i64,
    ) -> Result<Vec<(i64, u32)>, StoreError>;

    /// Commits the group's position (kept when lower than the saved one).
    async fn save_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Records that the event at `seq` failed `attempts` times, the last with `error`.
    #[allow(clippy::too_many_arguments)]
    async fn record_attempt(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        attempts: u32,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Appends `letter` to `dlq_topic` and moves the group past `seq`, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        dlq_topic: &str,
        letter: CloudEvent,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}

/// How far pruning may go in `topic`'s rows given `readers`, each `(topic X, position)`: a
/// group's committed position in `X`, or one below the lowest attempt recorded in `X`. A
/// reader of `X` holds `topic`'s rows when `X`'s log holds them
/// (`docket_events::topics::log_topics`); with no reader the bound is `i64::MAX` (age alone).
pub fn prune_bound(readers: &[(String, i64)], topic: &str) -> i64 {
    readers
        .iter()
        .filter(|(x, _)| docket_events::topics::log_topics(x).contains(&topic))
        .map(|(_, p)| *p)
        .min()
        .unwrap_or(i64::MAX)
}

/// The last position of the prefix of `rows` (`(position, appended before the cut-off)`, in
/// position order, oldest first) that pruning may delete: old enough and at or below
/// `bound`. `None` when the first row must stay.
pub fn prune_cut(rows: &[(i64, bool)], bound: i64) -> Option<i64> {
    rows.iter().take_while(|(seq, old)| *old && *seq <= bound).last().map(|(seq, _)| *seq)
}

/// Lists the topics present in the outbox, one index probe per topic (a skip-scan of
/// `outbox_by_topic`, which both dialects run) rather than a scan of every row.
pub const OUTBOX_TOPICS: &str = "WITH RECURSIVE t(topic) AS ( \
       SELECT min(topic) FROM outbox \
       UNION ALL \
       SELECT (SELECT min(o.topic) FROM outbox o WHERE o.topic > t.topic) FROM t \
       WHERE t.topic IS NOT NULL) \
     SELECT topic FROM t WHERE topic IS NOT NULL";

/// Each reader of a topic that still holds its log, and how far it has passed: every group's
/// committed position, and one below the lowest attempt a group records (it is retrying that
/// event). `$1` is the cut-off (`older_than`, an instant in the dialect's encoding): an entry
/// saved before it is left out, so a group that stopped longer ago than the retention (a
/// database switched to Dapr mode, a consumer no longer deployed) no longer holds the log.
/// `$1` is written the same in both dialects (SQLite numbers it 1 too).
pub const PRUNE_READERS: &str = "SELECT topic, position FROM consumer_offsets \
     WHERE updated_at >= $1 \
     UNION ALL SELECT topic, min(seq) - 1 FROM consumer_attempts \
     WHERE updated_at >= $1 GROUP BY topic";

/// Forgets the attempts of events their group has passed (normally gone with the commit
/// that passed them; this catches any left behind), and the attempts of events no longer
/// stored: only pruning deletes outbox rows, and a pruned event is never delivered again,
/// so such an attempt (a stopped group's, left out by [`PRUNE_READERS`]) could never be used.
pub const FORGET_PASSED_ATTEMPTS: &str = "DELETE FROM consumer_attempts WHERE EXISTS ( \
       SELECT 1 FROM consumer_offsets o \
       WHERE o.consumer_group = consumer_attempts.consumer_group \
         AND o.topic = consumer_attempts.topic AND o.position >= consumer_attempts.seq) \
     OR NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.seq = consumer_attempts.seq)";

#[cfg(test)]
mod tests {
    use super::*;

    fn readers(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
    }

    #[test]
    fn a_task_updates_reader_holds_task_events_rows() {
        let r = readers(&[("task-events", 40), ("task-updates", 25), ("reminders", 7)]);
        assert_eq!(prune_bound(&r, "task-events"), 25);
        assert_eq!(prune_bound(&r, "task-updates"), 25);
        assert_eq!(prune_bound(&r, "reminders"), 7);
        assert_eq!(prune_bound(&r, "task-events.dlq"), i64::MAX, "no reader: age alone");
    }

    #[test]
    fn the_cut_stops_at_the_first_row_to_keep() {
        let rows = [(1, true), (3, true), (4, false), (5, true)];
        assert_eq!(prune_cut(&rows, i64::MAX), Some(3), "a young row stops it");
        assert_eq!(prune_cut(&rows, 2), Some(1), "the bound stops it");
        assert_eq!(prune_cut(&rows, 0), None);
        assert_eq!(prune_cut(&[], 9), None);
    }
}
