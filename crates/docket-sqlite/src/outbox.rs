//! The SQLite side of the transactional outbox: appending events inside a write closure and
//! reading the log back.
//!
//! Appends run on the writer thread, inside the request's savepoint, so a request that fails
//! takes its events with it and a batch's events become visible with its one commit. The one
//! writer commits batches in order and `seq` is AUTOINCREMENT, so a reader never sees a
//! position appear below one it has already read: no horizon is needed here (unlike
//! PostgreSQL). Each event is serialized once, here. An append marks its batch so the writer
//! wakes the embedded bus after the commit (`writer.rs`).
//!
//! Pruning ([`prune`], run by housekeeping through the writer) deletes, per topic, the oldest
//! rows every consumer group has passed, at most a batch per call so the writer is never held
//! long, and records how far it went in `outbox_pruned`: that is the log's tail, and it keeps
//! the head in place when a whole log is pruned.

use docket_core::Timestamp;
use docket_events::{CloudEvent, OutboxEvent, sequence_string, topics};
use rusqlite::{Connection, Transaction, params};

use super::codec::{BACKEND, DbResult as _, micros};
use docket_ports::StoreError;

/// Appends `events` to the outbox in the transaction of a [`super::SqliteStore::write`]
/// closure; they commit, or roll back, with the rest of the closure's work.
pub fn append_outbox(
    tx: &Transaction<'_>,
    events: &[OutboxEvent],
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO outbox (topic, partition_key, event_id, event_type, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?;
    if !events.is_empty() {
        super::writer::note_outbox_append();
    }
    for e in events {
        st.execute(params![
            e.topic,
            e.event.partitionkey.as_deref().unwrap_or_default(),
            e.event.id,
            e.event.ty,
            e.event.to_json(),
            micros(now),
        ])
        .db()?;
    }
    Ok(())
}

/// The events of `topic`'s log after `after`, in order, at most `limit`.
pub(super) fn read(
    conn: &Connection,
    after: i64,
    topic: &str,
    limit: usize,
) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, payload FROM outbox WHERE topic IN (?1, ?4) AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .db()?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let [a, b] = topics::log_topics(topic);
    let rows = st.query(params![a, after, limit, b]).db()?;
    decode_rows(rows)
}

/// `(seq, payload)` rows as positioned events.
fn decode_rows(mut rows: rusqlite::Rows<'_>) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        let seq: i64 = row.get(0).db()?;
        let payload: String = row.get(1).db()?;
        out.push((seq, decode(seq, &payload)?));
    }
    Ok(out)
}

/// The events of `topic`'s log with partition key `key` in `(after, until]`, in order.
pub(super) fn read_for(
    conn: &Connection,
    topic: &str,
    key: &str,
    after: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    // One index range per outbox topic, each stopping at `limit`, merged here: with
    // `topic IN (a, b)` the database would read and sort the key's whole range first.
    let mut st = conn
        .prepare_cached(
            "SELECT seq, payload FROM outbox
             WHERE partition_key = ?1 AND topic = ?2 AND seq > ?3 AND seq <= ?4
             ORDER BY seq LIMIT ?5",
        )
        .db()?;
    let n = i64::try_from(limit).unwrap_or(i64::MAX);
    let [a, b] = topics::log_topics(topic);
    let mut out = decode_rows(st.query(params![key, a, after, until, n]).db()?)?;
    if b != a {
        out.extend(decode_rows(st.query(params![key, b, after, until, n]).db()?)?);
        out.sort_by_key(|(seq, _)| *seq);
        out.truncate(limit);
    }
    Ok(out)
}

/// The highest position of `topic`'s log, 0 when it is empty; pruned positions count, so
/// pruning never moves the head back.
pub(super) fn head(conn: &Connection, topic: &str) -> Result<i64, StoreError> {
    let stored: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM outbox WHERE topic IN (?1, ?2)")
        .db()?
        .query_row(topics::log_topics(topic), |r| r.get(0))
        .db()?;
    Ok(stored.max(tail(conn, topic)?))
}

/// The highest position pruning has deleted from `topic`'s log, 0 while none.
pub(super) fn tail(conn: &Connection, topic: &str) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "SELECT coalesce(max(through), 0) FROM outbox_pruned WHERE topic IN (?1, ?2)",
    )
    .db()?
    .query_row(topics::log_topics(topic), |r| r.get(0))
    .db()
}

/// Deletes at most `limit` rows appended before `older_than` that every consumer group has
/// passed, each topic's oldest first (the rules are in `Store::prune_outbox` and
/// `crate::bus`); returns how many. Runs in a [`super::SqliteStore::write`] closure.
pub(super) fn prune(
    tx: &Transaction<'_>,
    older_than: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    tx.prepare_cached(docket_ports::bus::FORGET_PASSED_ATTEMPTS).db()?.execute([]).db()?;
    let readers = tx
        .prepare_cached(docket_ports::bus::PRUNE_READERS)
        .db()?
        .query_map([micros(older_than)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let names = tx
        .prepare_cached(docket_ports::bus::OUTBOX_TOPICS)
        .db()?
        .query_map([], |r| r.get::<_, String>(0))
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let mut rows_of = tx
        .prepare_cached(
            "SELECT seq, created_at < ?2 FROM outbox WHERE topic = ?1 ORDER BY seq LIMIT ?3",
        )
        .db()?;
    let mut budget = i64::from(limit);
    let mut pruned = 0u64;
    for topic in names {
        if budget <= 0 {
            break;
        }
        let rows = rows_of
            .query_map(params![topic, micros(older_than), budget], |r| Ok((r.get(0)?, r.get(1)?)))
            .db()?
            .collect::<Result<Vec<(i64, bool)>, _>>()
            .db()?;
        let Some(cut) =
            docket_ports::bus::prune_cut(&rows, docket_ports::bus::prune_bound(&readers, &topic))
        else {
            continue;
        };
        let n = tx
            .prepare_cached("DELETE FROM outbox WHERE topic = ?1 AND seq <= ?2")
            .db()?
            .execute(params![topic, cut])
            .db()?;
        tx.prepare_cached(
            "INSERT INTO outbox_pruned (topic, through) VALUES (?1, ?2)
             ON CONFLICT (topic) DO UPDATE SET through = max(through, excluded.through)",
        )
        .db()?
        .execute(params![topic, cut])
        .db()?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        budget -= n;
        pruned += n.unsigned_abs();
    }
    Ok(pruned)
}

/// A stored payload as the event it is, `sequence` set to its position.
pub(crate) fn decode(seq: i64, payload: &str) -> Result<CloudEvent, StoreError> {
    let mut event = CloudEvent::parse(payload.as_bytes()).map_err(|e| {
        StoreError::unavailable(BACKEND, format!("outbox row {seq} is not a valid event: {e}"))
    })?;
    event.sequence = Some(sequence_string(seq));
    Ok(event)
}
