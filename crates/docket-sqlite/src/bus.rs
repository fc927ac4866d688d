//! The embedded bus's tables on SQLite, and the bus's [`EventLog`] port over this store's
//! outbox: the writing functions run inside a [`SqliteStore::write`] closure, the reading ones
//! on any connection.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use docket_ports::bus::{Claim, EventLog};
use docket_ports::{Store, StoreError};
use tokio::sync::watch;

use crate::SqliteStore;

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

/// The `(database file, group, topic)` claims of subscriptions in this process: one
/// subscriber per group, the file being this process's alone to consume.
static CLAIMS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// A claim on one key of [`CLAIMS`], released on drop.
struct LocalClaim(String);

impl Claim for LocalClaim {}

impl Drop for LocalClaim {
    fn drop(&mut self) {
        if let Ok(mut claims) = CLAIMS.lock() {
            claims.remove(&self.0);
        }
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    fn store(&self) -> &dyn Store {
        self
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.outbox_appended()
    }

    async fn append(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let topic = topic.to_owned();
        self.write(move |tx| events.iter().try_for_each(|e| append_event(tx, &topic, e, now))).await
    }

    async fn append_once(
        &self,
        topic: &str,
        event: CloudEvent,
        key: String,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let topic = topic.to_owned();
        self.write(move |tx| append_once(tx, &topic, &event, &key, now)).await
    }

    async fn claim(&self, group: &str, topic: &str) -> Result<Option<Box<dyn Claim>>, StoreError> {
        let key = format!("{}\0{group}\0{topic}", self.path().display());
        let mut claims = CLAIMS
            .lock()
            .map_err(|_| StoreError::unavailable("sqlite", "the claims lock is poisoned"))?;
        // The claim is made only once the key is ours: one made and dropped here would
        // release the holder's key (and lock `CLAIMS` again, which this guard holds).
        Ok(claims.insert(key.clone()).then(|| Box::new(LocalClaim(key)) as Box<dyn Claim>))
    }

    async fn position(&self, group: &str, topic: &str) -> Result<i64, StoreError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        self.read(move |c| position(c, &g, &t)).await
    }

    async fn attempts_after(
        &self,
        group: &str,
        topic: &str,
        after: i64,
    ) -> Result<Vec<(i64, u32)>, StoreError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        self.read(move |c| attempts_after(c, &g, &t, after)).await
    }

    async fn save_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        self.write(move |tx| save_position(tx, &g, &t, position, now)).await
    }

    async fn record_attempt(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        attempts: u32,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (g, t, e) = (group.to_owned(), topic.to_owned(), error.to_owned());
        self.write(move |tx| record_attempt(tx, &g, &t, seq, attempts, &e, now)).await
    }

    async fn dead_letter(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        dlq_topic: &str,
        letter: CloudEvent,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (g, t, dlq) = (group.to_owned(), topic.to_owned(), dlq_topic.to_owned());
        self.write(move |tx| {
            append_event(tx, &dlq, &letter, now)?;
            save_position(tx, &g, &t, seq, now)
        })
        .await
    }
}
