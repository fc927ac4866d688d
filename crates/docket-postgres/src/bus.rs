//! The embedded bus's tables on PostgreSQL, and the bus's [`EventLog`] port over this
//! store's outbox ([`PgEventLog`]); every function takes a `&mut PgConnection`, a pooled
//! connection or an open transaction (`&mut *tx`).
//!
//! A transaction that appends with [`append_event`] must already hold a transaction id (see
//! `postgres/outbox.rs`): call [`hold_xid`] first when the append is its first write.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_ports::bus::{Claim, EventLog};
use docket_ports::{Store, StoreError};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgListener};
use tokio::sync::watch;

use crate::PostgresStore;

/// The `LISTEN`/`NOTIFY` channel every outbox append notifies (payload: the topic),
/// delivered when its transaction commits and dropped when it rolls back.
pub const OUTBOX_CHANNEL: &str = "docket_outbox";

fn db(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("postgres", e)
}

/// Instants cross the wire as Unix microseconds, converted in SQL.
macro_rules! at {
    ($n:literal) => {
        concat!("(timestamptz 'epoch' + $", $n, " * interval '1 microsecond')")
    };
}

/// Gives the caller's transaction its id now, before it allocates an outbox position.
pub async fn hold_xid(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

/// The outbox insert of [`append_event`] and [`append_once`], notifying the outbox channel
/// (delivered at commit); `$3` is the row's unique key.
macro_rules! append_sql {
    ($($tail:literal)?) => {
        concat!(
            "WITH n AS (SELECT pg_notify('docket_outbox', $1)) \
             INSERT INTO outbox (topic, partition_key, event_id, event_type, payload, created_at) \
             SELECT $1, $2, $3, $4, $5, ",
            at!(6),
            " FROM n" $(, $tail)?
        )
    };
}

/// Runs an outbox insert of `event` under `topic` with unique key `key`.
async fn insert(
    conn: &mut PgConnection,
    sql: &'static str,
    topic: &str,
    event: &CloudEvent,
    key: &str,
    now: Timestamp,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sql)
        .bind(topic)
        .bind(event.partitionkey.as_deref().unwrap_or_default())
        .bind(key)
        .bind(event.ty.as_str())
        .bind(event.to_json())
        .bind(now.as_microsecond())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Appends `event` to the outbox under `topic` and notifies the outbox channel (delivered at
/// commit).
pub async fn append_event(
    conn: &mut PgConnection,
    topic: &str,
    event: &CloudEvent,
    now: Timestamp,
) -> Result<(), StoreError> {
    insert(conn, append_sql!(), topic, event, &event.id, now).await.map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("event id '{}' is already in the outbox", event.id))
        }
        _ => db(e),
    })?;
    Ok(())
}

/// Appends `event` to the outbox under `topic` unless a row with unique key `key` is already
/// there (see `sqlite::append_once`), notifying the outbox channel (even when it appends
/// nothing). Returns whether it appended. Call [`hold_xid`] first when this is the
/// transaction's first write.
pub async fn append_once(
    conn: &mut PgConnection,
    topic: &str,
    event: &CloudEvent,
    key: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let sql = append_sql!(" ON CONFLICT (event_id) DO NOTHING");
    Ok(insert(conn, sql, topic, event, key, now).await.map_err(db)? > 0)
}

/// The committed position of `group` in `topic`, 0 when it has none.
pub async fn position(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
) -> Result<i64, StoreError> {
    let p: Option<i64> = sqlx::query_scalar(
        "SELECT position FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    Ok(p.unwrap_or(0))
}

/// Commits `position` for `group` in `topic` (never moving it back), and forgets the
/// attempts recorded for the events at or below it.
pub async fn save_position(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    position: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO consumer_offsets (consumer_group, topic, position, updated_at) \
         VALUES ($1, $2, $3, ",
        at!(4),
        ") ON CONFLICT (consumer_group, topic) DO UPDATE \
         SET position = greatest(consumer_offsets.position, excluded.position), \
             updated_at = excluded.updated_at"
    ))
    .bind(group)
    .bind(topic)
    .bind(position)
    .bind(now.as_microsecond())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "DELETE FROM consumer_attempts WHERE consumer_group = $1 AND topic = $2 AND seq <= $3",
    )
    .bind(group)
    .bind(topic)
    .bind(position)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Records that attempt number `attempts` of the event at `seq` failed with `error`.
pub async fn record_attempt(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    seq: i64,
    attempts: u32,
    error: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO consumer_attempts \
         (consumer_group, topic, seq, attempts, last_error, updated_at) \
         VALUES ($1, $2, $3, $4, $5, ",
        at!(6),
        ") ON CONFLICT (consumer_group, topic, seq) DO UPDATE \
         SET attempts = greatest(consumer_attempts.attempts, excluded.attempts), \
             last_error = excluded.last_error, updated_at = excluded.updated_at"
    ))
    .bind(group)
    .bind(topic)
    .bind(seq)
    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
    .bind(error)
    .bind(now.as_microsecond())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The failed attempts recorded for `group`'s events of `topic` after `after`, by position.
pub async fn attempts_after(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    after: i64,
) -> Result<Vec<(i64, u32)>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, attempts FROM consumer_attempts \
         WHERE consumer_group = $1 AND topic = $2 AND seq > $3 ORDER BY seq",
    )
    .bind(group)
    .bind(topic)
    .bind(after)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.try_get(0).map_err(db)?;
            let n: i32 = r.try_get(1).map_err(db)?;
            Ok((seq, u32::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// The session holding a claim's advisory lock; closing it releases the lock.
struct SessionClaim(#[allow(dead_code)] PgConnection);

impl Claim for SessionClaim {}

/// Stops the `LISTEN` task when the last handle on the log goes.
struct ListenerGuard(tokio::task::JoinHandle<()>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The embedded bus's [`EventLog`] over a [`PostgresStore`]'s outbox, woken by one
/// `LISTEN docket_outbox` connection (every outbox append notifies at commit, from any
/// process). Cheap to clone; the listener stops with the last clone.
#[derive(Clone)]
pub struct PgEventLog {
    store: PostgresStore,
    wake: watch::Receiver<u64>,
    _listener: Arc<ListenerGuard>,
}

impl PostgresStore {
    /// This store's outbox as the embedded bus's log; opens its `LISTEN` connection.
    pub async fn event_log(&self) -> Result<PgEventLog, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await.map_err(db)?;
        listener.listen(OUTBOX_CHANNEL).await.map_err(db)?;
        let (tx, wake) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(e) => {
                        // The listener reconnects on its next `recv`; what was notified in
                        // between is found by the bus's fallback poll.
                        tracing::warn!(error = %e, "outbox listener failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        });
        Ok(PgEventLog { store: self.clone(), wake, _listener: Arc::new(ListenerGuard(task)) })
    }
}

#[async_trait]
impl EventLog for PgEventLog {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    async fn append(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        hold_xid(&mut tx).await?;
        for e in &events {
            append_event(&mut tx, topic, e, now).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn append_once(
        &self,
        topic: &str,
        event: CloudEvent,
        key: String,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        hold_xid(&mut tx).await?;
        let appended = append_once(&mut tx, topic, &event, &key, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(appended)
    }

    async fn claim(&self, group: &str, topic: &str) -> Result<Option<Box<dyn Claim>>, StoreError> {
        let mut conn = self.store.pool().acquire().await.map_err(db)?.detach();
        let got: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('docket_bus:' || current_schema()), \
             hashtext($1 || '/' || $2))",
        )
        .bind(group)
        .bind(topic)
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
        Ok(got.then(|| Box::new(SessionClaim(conn)) as Box<dyn Claim>))
    }

    async fn position(&self, group: &str, topic: &str) -> Result<i64, StoreError> {
        let mut conn = self.store.pool().acquire().await.map_err(db)?;
        position(&mut conn, group, topic).await
    }

    async fn attempts_after(
        &self,
        group: &str,
        topic: &str,
        after: i64,
    ) -> Result<Vec<(i64, u32)>, StoreError> {
        let mut conn = self.store.pool().acquire().await.map_err(db)?;
        attempts_after(&mut conn, group, topic, after).await
    }

    async fn save_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        save_position(&mut tx, group, topic, position, now).await?;
        tx.commit().await.map_err(db)
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
        let mut conn = self.store.pool().acquire().await.map_err(db)?;
        record_attempt(&mut conn, group, topic, seq, attempts, error, now).await
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
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        save_position(&mut tx, group, topic, seq, now).await?;
        append_event(&mut tx, dlq_topic, &letter, now).await?;
        tx.commit().await.map_err(db)
    }
}
