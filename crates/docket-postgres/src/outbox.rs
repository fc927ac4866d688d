//! The PostgreSQL side of the transactional outbox: appending events inside a transaction and
//! reading the log back without ever skipping an event that commits late.
//!
//! # Why a horizon
//! `seq` is an identity column: a position is allocated when a transaction inserts its row,
//! but transactions commit in any order, so position 7 can become visible after position 8.
//! A reader that read 8 and moved on would never see 7. Reads therefore stop at a *settled
//! horizon*: a position `L` such that every transaction that may hold a position ≤ `L` has
//! ended (committed or rolled back).
//!
//! We find one without touching the write path: read the sequence's last allocated value `L`,
//! then the snapshot's `xmax` `X` (the next transaction id to be assigned), and wait until
//! `pg_snapshot_xmin` (the oldest transaction still running) reaches `X`. Every position ≤ `L`
//! was allocated before `X` was read, by a transaction that already had an id, so an id below
//! `X`, and all of those have ended. The waiting is short (task transactions last
//! milliseconds) and bounded ([`SETTLE_WAIT`]); when it times out — a long transaction is
//! open somewhere in the cluster — the last horizon that did settle is used, so the reader
//! lags rather than skips. The alternative, a per-topic counter row updated in each write
//! transaction, assigns positions in commit order but makes every task write of every
//! replica queue on one row lock through its commit (one fsync each): no group commit.
//!
//! Invariant this relies on: a transaction appends to the outbox only after its first write
//! (so it has a transaction id before it allocates a position). Every store write does its
//! row change first; [`append_outbox`] documents the rule for later writers.
//!
//! # Pruning
//! [`prune`] deletes, per topic, the oldest rows every consumer group has passed, a batch per
//! transaction, and records how far it went in `outbox_pruned` (the log's tail; it also keeps
//! the head in place when a whole log is pruned). It never deletes above the settled horizon:
//! a group's committed position is at most what it read, so rows below every group's position
//! are settled anyway, and rows no group reads are held to the horizon so a reader tailing the
//! log (the real-time hub) is never overtaken by a delete of a row it has yet to read.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use docket_core::Timestamp;
use docket_events::{CloudEvent, OutboxEvent, sequence_string, topics};
use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Row};

use super::codec::PgInstant;
use super::{BACKEND, unavailable};
use docket_ports::StoreError;

/// How long a read waits for the transactions in flight to end before it falls back to the
/// last settled horizon.
pub const SETTLE_WAIT: Duration = Duration::from_millis(250);

/// One outbox row, and the notification on `crate::bus::OUTBOX_CHANNEL`
/// (payload: the topic; delivered at commit, dropped on rollback), in one statement (one
/// round trip): the CTE runs because the insert reads from it. PostgreSQL folds equal
/// notifications of a transaction.
const APPEND: &str = "WITH n AS (SELECT pg_notify('docket_outbox', $1)) \
     INSERT INTO outbox (topic, partition_key, event_id, event_type, payload, created_at) \
     SELECT $1, $2, $3, $4, $5, $6 FROM n";

/// Appends `events` to the outbox inside the caller's transaction `conn`. Call it after the
/// transaction's first write (see the module docs): the events commit, or roll back, with it.
pub async fn append_outbox(
    conn: &mut PgConnection,
    events: &[OutboxEvent],
    now: Timestamp,
) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(APPEND)
            .bind(e.topic)
            .bind(e.event.partitionkey.as_deref().unwrap_or_default())
            .bind(e.event.id.as_str())
            .bind(e.event.ty.as_str())
            .bind(e.event.to_json())
            .bind(PgInstant::new(now))
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// The highest settled position: see the module docs. `settled` remembers the last one
/// (shared by the clones of a store) and only grows.
pub(super) async fn horizon(pool: &PgPool, settled: &Arc<AtomicI64>) -> Result<i64, StoreError> {
    let last: i64 = sqlx::query_scalar(
        "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')::regclass), 0)",
    )
    .fetch_one(pool)
    .await
    .map_err(unavailable)?;
    let known = settled.load(Ordering::Acquire);
    if last <= known {
        return Ok(known);
    }
    // Read after `last`, in a later statement: see the module docs for why the order matters.
    let xmax: String = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await
        .map_err(unavailable)?;
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut pause = Duration::from_micros(200);
    loop {
        let ended: bool =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8")
                .bind(xmax.as_str())
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
        if ended {
            settled.fetch_max(last, Ordering::AcqRel);
            return Ok(settled.load(Ordering::Acquire));
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(
                outbox.last = last,
                outbox.settled = known,
                "outbox horizon not settled; using the last one"
            );
            return Ok(known);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The events of `topic`'s log after `after` up to the settled horizon, at most `limit`.
pub(super) async fn read(
    pool: &PgPool,
    settled: &Arc<AtomicI64>,
    after: i64,
    topic: &str,
    limit: usize,
) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    let upto = horizon(pool, settled).await?;
    if upto <= after {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT seq, payload FROM outbox WHERE topic IN ($1, $5) AND seq > $2 AND seq <= $3 \
         ORDER BY seq LIMIT $4",
    )
    .bind(topics::log_topics(topic)[0])
    .bind(after)
    .bind(upto)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(topics::log_topics(topic)[1])
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    decode_rows(&rows)
}

/// The events of `topic`'s log with partition key `key` in `(after, until]`, in order. The
/// caller read `until` as settled, so no horizon is consulted.
pub(super) async fn read_for(
    pool: &PgPool,
    topic: &str,
    key: &str,
    after: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    if until <= after {
        return Ok(Vec::new());
    }
    // One index range per outbox topic, each stopping at `limit`, merged here: with
    // `topic IN (a, b)` the database would read and sort the key's whole range first.
    let [a, b] = topics::log_topics(topic);
    let mut out = Vec::new();
    for t in if a == b { vec![a] } else { vec![a, b] } {
        let rows = sqlx::query(
            "SELECT seq, payload FROM outbox \
             WHERE partition_key = $1 AND topic = $2 AND seq > $3 AND seq <= $4 \
             ORDER BY seq LIMIT $5",
        )
        .bind(key)
        .bind(t)
        .bind(after)
        .bind(until)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
        out.extend(decode_rows(&rows)?);
    }
    out.sort_by_key(|(seq, _)| *seq);
    out.truncate(limit);
    Ok(out)
}

/// `(seq, payload)` rows as positioned events.
fn decode_rows(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq").map_err(unavailable)?;
            let payload: &str = row.try_get("payload").map_err(unavailable)?;
            let mut event = CloudEvent::parse(payload.as_bytes()).map_err(|e| {
                StoreError::unavailable(
                    BACKEND,
                    format!("outbox row {seq} is not a valid event: {e}"),
                )
            })?;
            event.sequence = Some(sequence_string(seq));
            Ok((seq, event))
        })
        .collect()
}

/// The highest settled position of `topic`'s log, 0 when there is none; pruned positions
/// count (they were settled when pruned), so pruning never moves the head back.
pub(super) async fn head(
    pool: &PgPool,
    settled: &Arc<AtomicI64>,
    topic: &str,
) -> Result<i64, StoreError> {
    let upto = horizon(pool, settled).await?;
    sqlx::query_scalar(
        "SELECT greatest(            (SELECT coalesce(max(seq), 0) FROM outbox WHERE topic IN ($1, $3) AND seq <= $2),            (SELECT coalesce(max(through), 0) FROM outbox_pruned WHERE topic IN ($1, $3)))",
    )
    .bind(topics::log_topics(topic)[0])
    .bind(upto)
    .bind(topics::log_topics(topic)[1])
    .fetch_one(pool)
    .await
    .map_err(unavailable)
}

/// The highest position pruning has deleted from `topic`'s log, 0 while none.
pub(super) async fn tail(pool: &PgPool, topic: &str) -> Result<i64, StoreError> {
    let [a, b] = topics::log_topics(topic);
    sqlx::query_scalar(
        "SELECT coalesce(max(through), 0) FROM outbox_pruned WHERE topic IN ($1, $2)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(pool)
    .await
    .map_err(unavailable)
}

/// Deletes at most `limit` rows appended before `older_than`, at or below the settled
/// horizon, that every consumer group has passed, each topic's oldest first (the rules are in
/// `Store::prune_outbox` and `crate::bus`), in one transaction; returns how many.
pub(super) async fn prune(
    pool: &PgPool,
    settled: &Arc<AtomicI64>,
    older_than: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    let upto = horizon(pool, settled).await?;
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query(docket_ports::bus::FORGET_PASSED_ATTEMPTS)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let readers: Vec<(String, i64)> = sqlx::query_as(docket_ports::bus::PRUNE_READERS)
        .bind(PgInstant::new(older_than))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
    let names: Vec<String> = sqlx::query_scalar(docket_ports::bus::OUTBOX_TOPICS)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
    let mut budget = i64::from(limit);
    let mut pruned = 0u64;
    for topic in names {
        if budget <= 0 {
            break;
        }
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT seq, created_at < $2 FROM outbox WHERE topic = $1 AND seq <= $3 \
             ORDER BY seq LIMIT $4",
        )
        .bind(topic.as_str())
        .bind(PgInstant::new(older_than))
        .bind(upto)
        .bind(budget)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(cut) =
            docket_ports::bus::prune_cut(&rows, docket_ports::bus::prune_bound(&readers, &topic))
        else {
            continue;
        };
        let n = sqlx::query("DELETE FROM outbox WHERE topic = $1 AND seq <= $2")
            .bind(topic.as_str())
            .bind(cut)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        sqlx::query(
            "INSERT INTO outbox_pruned (topic, through) VALUES ($1, $2) \
             ON CONFLICT (topic) DO UPDATE \
             SET through = greatest(outbox_pruned.through, excluded.through)",
        )
        .bind(topic.as_str())
        .bind(cut)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        budget -= i64::try_from(n).unwrap_or(i64::MAX);
        pruned += n;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(pruned)
}
