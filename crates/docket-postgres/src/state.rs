//! The state store on PostgreSQL: the `state` table.
//!
//! The free functions take a `&mut PgConnection`, which a pooled connection or an open
//! `sqlx::Transaction` (`&mut *tx`) both give, so a consumer can write its `processed:` key
//! in the transaction of its side effect. Every operation is one statement, so each
//! check-and-write is atomic without explicit locks: ETag checks are `WHERE etag = $e` on
//! the row, and a conflict is "no row matched". Instants cross the wire as Unix microseconds
//! (`bigint`) and are converted in SQL, exactly.

use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use crate::PostgresStore;
use docket_ports::StoreError;
use docket_ports::state::{
    StateEntry, StateError, StateKey, StateStore, expiry, missing_with_etag, new_etag, stale_etag,
};

fn db(e: sqlx::Error) -> StateError {
    StateError::Store(StoreError::unavailable("postgres", e))
}

/// `$n` (Unix microseconds) as a `timestamptz`.
macro_rules! at {
    ($n:literal) => {
        concat!("(timestamptz 'epoch' + $", $n, " * interval '1 microsecond')")
    };
}

/// The live entry of `key` at `now`.
pub async fn get(
    conn: &mut PgConnection,
    key: &StateKey,
    now: Timestamp,
) -> Result<Option<StateEntry>, StateError> {
    let row = sqlx::query(concat!(
        "SELECT value, etag, (extract(epoch FROM expires_at) * 1000000)::bigint AS expires_at \
         FROM state WHERE key = $1 AND (expires_at IS NULL OR expires_at > ",
        at!(2),
        ")"
    ))
    .bind(key.as_str())
    .bind(now.as_microsecond())
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: Option<i64> = row.try_get("expires_at").map_err(db)?;
    Ok(Some(StateEntry {
        value: row.try_get("value").map_err(db)?,
        etag: row.try_get("etag").map_err(db)?,
        expires_at: expires_at
            .map(Timestamp::from_microsecond)
            .transpose()
            .map_err(|e| StateError::Store(StoreError::unavailable("postgres", e)))?,
    }))
}

/// Whether `key` has a live entry at `now` (to tell a stale ETag from a missing key).
async fn exists(
    conn: &mut PgConnection,
    key: &StateKey,
    now: Timestamp,
) -> Result<bool, StateError> {
    Ok(get(conn, key, now).await?.is_some())
}

/// Sets `key` (in the caller's transaction, if `conn` is one); returns the new ETag.
pub async fn set(
    conn: &mut PgConnection,
    key: &StateKey,
    value: &[u8],
    etag: Option<&str>,
    ttl: Option<Duration>,
    now: Timestamp,
) -> Result<String, StateError> {
    let expires_at = expiry(now, ttl)?.map(|t| t.as_microsecond());
    let new = new_etag();
    match etag {
        None => {
            sqlx::query(concat!(
                "INSERT INTO state (key, value, etag, expires_at, updated_at) \
                 VALUES ($1, $2, $3, ",
                at!(4),
                ", ",
                at!(5),
                ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at"
            ))
            .bind(key.as_str())
            .bind(value)
            .bind(new.as_str())
            .bind(expires_at)
            .bind(now.as_microsecond())
            .execute(conn)
            .await
            .map_err(db)?;
        }
        Some(etag) => {
            let done = sqlx::query(concat!(
                "UPDATE state SET value = $2, etag = $3, expires_at = ",
                at!(4),
                ", updated_at = ",
                at!(5),
                " WHERE key = $1 AND etag = $6 AND (expires_at IS NULL OR expires_at > ",
                at!(5),
                ")"
            ))
            .bind(key.as_str())
            .bind(value)
            .bind(new.as_str())
            .bind(expires_at)
            .bind(now.as_microsecond())
            .bind(etag)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(if exists(conn, key, now).await? {
                    stale_etag(key, etag)
                } else {
                    missing_with_etag(key, etag)
                });
            }
        }
    }
    Ok(new)
}

/// Deletes `key` (in the caller's transaction, if `conn` is one).
pub async fn delete(
    conn: &mut PgConnection,
    key: &StateKey,
    etag: Option<&str>,
    now: Timestamp,
) -> Result<(), StateError> {
    match etag {
        None => {
            sqlx::query("DELETE FROM state WHERE key = $1")
                .bind(key.as_str())
                .execute(conn)
                .await
                .map_err(db)?;
        }
        Some(etag) => {
            let done = sqlx::query(concat!(
                "DELETE FROM state WHERE key = $1 AND etag = $2 \
                 AND (expires_at IS NULL OR expires_at > ",
                at!(3),
                ")"
            ))
            .bind(key.as_str())
            .bind(etag)
            .bind(now.as_microsecond())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(if exists(conn, key, now).await? {
                    stale_etag(key, etag)
                } else {
                    missing_with_etag(key, etag)
                });
            }
        }
    }
    Ok(())
}

/// Removes the entries expired at `now`; returns how many.
pub async fn purge_expired(conn: &mut PgConnection, now: Timestamp) -> Result<u64, StateError> {
    let done = sqlx::query(concat!("DELETE FROM state WHERE expires_at <= ", at!(1)))
        .bind(now.as_microsecond())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(done.rows_affected())
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<StateEntry>, StateError> {
        let key = StateKey::parse(key)?;
        let mut conn = self.pool().acquire().await.map_err(db)?;
        get(&mut conn, &key, now).await
    }

    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        etag: Option<&str>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<String, StateError> {
        let key = StateKey::parse(key)?;
        let mut conn = self.pool().acquire().await.map_err(db)?;
        set(&mut conn, &key, &value, etag, ttl, now).await
    }

    async fn delete(
        &self,
        key: &str,
        etag: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let key = StateKey::parse(key)?;
        let mut conn = self.pool().acquire().await.map_err(db)?;
        delete(&mut conn, &key, etag, now).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<String>, StateError> {
        let key = StateKey::parse(key)?;
        let expires_at = expiry(now, ttl)?.map(|t| t.as_microsecond());
        let new = new_etag();
        let mut conn = self.pool().acquire().await.map_err(db)?;
        // One statement: the conflicting row is locked, and replaced only when expired.
        let row: Option<String> = sqlx::query_scalar(concat!(
            "INSERT INTO state (key, value, etag, expires_at, updated_at) VALUES ($1, $2, $3, ",
            at!(4),
            ", ",
            at!(5),
            ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at \
             WHERE state.expires_at IS NOT NULL AND state.expires_at <= ",
            at!(5),
            " RETURNING etag"
        ))
        .bind(key.as_str())
        .bind(value)
        .bind(new.as_str())
        .bind(expires_at)
        .bind(now.as_microsecond())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        Ok(row)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StateError> {
        let mut conn = self.pool().acquire().await.map_err(db)?;
        purge_expired(&mut conn, now).await
    }
}
