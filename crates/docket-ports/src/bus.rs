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
