//! The embedded bus's tables on SQLite; the writing functions run inside a
//! [`SqliteStore::write`] closure, the reading ones on any connection.

use docket_core::Timestamp;
use docket_events::CloudEvent;
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use crate::SqliteStore;
use docket_ports::StoreError;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("sqlite", e)
}

/// Appends `event` to the outbox under `topic` (any topic, e.g. `task-events.dlq`); it
/// commits with the closure's batch, which then wakes the embedded bus.
pub fn append_event(
    tx: &Transaction<'_>,
    topic: &str,
    event: &CloudEvent,
    now: Timestamp,
) -> Result<(), StoreError> {
    SqliteStore::note_outbox_append();
    tx.prepare_cached(
        "INSERT INTO outbox (topic, partition_key, event_id, event_type, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(db)?
    .execute(params![
        topic,
        event.partitionkey.as_deref().unwrap_or_default(),
        event.id,
        event.ty,
        event.to_json(),
        now.as_microsecond(),
    ])
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("event id '{}' is already in the outbox", event.id))
        }
        _ => db(e),
    })?;
    Ok(())
}

/// Appends `event` to the outbox under `topic` unless a row with unique key `key` is already
/// there (its `event_id` column holds `key`; the row's payload keeps the event's own id).
/// Returns whether it appended. For logs fed from outside, where the same event arrives more
/// than once and its own id may already name a row of another topic (the Dapr inbox).
pub fn append_once(
    tx: &Transaction<'_>,
    topic: &str,
    event: &CloudEvent,
    key: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let appended = tx
        .prepare_cached(
            "INSERT INTO outbox (topic, partition_key, event_id, event_type, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
        )
        .map_err(db)?
        .execute(params![
            topic,
            event.partitionkey.as_deref().unwrap_or_default(),
            key,
            event.ty,
            event.to_json(),
            now.as_microsecond(),
        ])
        .map_err(db)?;
    if appended > 0 {
        SqliteStore::note_outbox_append();
    }
    Ok(appended > 0)
}

/// The committed position of `group` in `topic`, 0 when it has none.
pub fn position(conn: &Connection, group: &str, topic: &str) -> Result<i64, StoreError> {
    let p: Option<i64> = conn
        .prepare_cached(
            "SELECT position FROM consumer_offsets WHERE consumer_group = ?1 AND topic = ?2",
        )
        .map_err(db)?
        .query_row(params![group, topic], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(p.unwrap_or(0))
}

/// Commits `position` for `group` in `topic` (never moving it back), and forgets the
/// attempts recorded for the events at or below it.
pub fn save_position(
    tx: &Transaction<'_>,
    group: &str,
    topic: &str,
    position: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO consumer_offsets (consumer_group, topic, position, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (consumer_group, topic) DO UPDATE
         SET position = max(position, excluded.position), updated_at = excluded.updated_at",
    )
    .map_err(db)?
    .execute(params![group, topic, position, now.as_microsecond()])
    .map_err(db)?;
    tx.prepare_cached(
        "DELETE FROM consumer_attempts WHERE consumer_group = ?1 AND topic = ?2 AND seq <= ?3",
    )
    .map_err(db)?
    .execute(params![group, topic, position])
    .map_err(db)?;
    Ok(())
}

/// Records that attempt number `attempts` of the event at `seq` failed with `error`.
pub fn record_attempt(
    tx: &Transaction<'_>,
    group: &str,
    topic: &str,
    seq: i64,
    attempts: u32,
    error: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO consumer_attempts (consumer_group, topic, seq, attempts, last_error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (consumer_group, topic, seq) DO UPDATE
         SET attempts = max(attempts, excluded.attempts), last_error = excluded.last_error,
             updated_at = excluded.updated_at",
    )
    .map_err(db)?
    .execute(params![group, topic, seq, attempts, error, now.as_microsecond()])
    .map_err(db)?;
    Ok(())
}

/// The failed attempts recorded for `group`'s events of `topic` after `after`, by position.
pub fn attempts_after(
    conn: &Connection,
    group: &str,
    topic: &str,
    after: i64,
) -> Result<Vec<(i64, u32)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, attempts FROM consumer_attempts
             WHERE consumer_group = ?1 AND topic = ?2 AND seq > ?3 ORDER BY seq",
        )
        .map_err(db)?;
    let rows =
        st.query_map(params![group, topic, after], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}
