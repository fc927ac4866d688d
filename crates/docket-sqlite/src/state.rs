//! The state store on SQLite: the `state` table, written by the store's single writer.
//!
//! The free functions take the connection or transaction they run in, so a consumer can set
//! its `processed:` key inside the same [`SqliteStore::write`] closure (one savepoint, one
//! group commit) as its side effect: both commit or neither does. Reads go through the
//! reader pool. Each check-then-write is atomic because the writer thread is alone.

use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use crate::SqliteStore;
use docket_ports::StoreError;
use docket_ports::state::{
    StateEntry, StateError, StateKey, StateStore, expiry, missing_with_etag, new_etag, stale_etag,
};

fn db(e: rusqlite::Error) -> StateError {
    StateError::Store(StoreError::unavailable("sqlite", e))
}

fn instant(micros: i64) -> Result<Timestamp, StateError> {
    Timestamp::from_microsecond(micros)
        .map_err(|e| StateError::Store(StoreError::unavailable("sqlite", e)))
}

/// The live entry of `key` at `now`.
pub fn get(
    conn: &Connection,
    key: &StateKey,
    now: Timestamp,
) -> Result<Option<StateEntry>, StateError> {
    let row = conn
        .prepare_cached(
            "SELECT value, etag, expires_at FROM state
             WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .map_err(db)?
        .query_row(params![key.as_str(), now.as_microsecond()], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?))
        })
        .optional()
        .map_err(db)?;
    let Some((value, etag, expires_at)) = row else { return Ok(None) };
    Ok(Some(StateEntry { value, etag, expires_at: expires_at.map(instant).transpose()? }))
}

/// Checks `etag` against the live entry of `key` (see the `StateStore` contract).
fn check_etag(
    tx: &Transaction<'_>,
    key: &StateKey,
    etag: Option<&str>,
    now: Timestamp,
) -> Result<(), StateError> {
    let Some(etag) = etag else { return Ok(()) };
    let current: Option<String> = tx
        .prepare_cached(
            "SELECT etag FROM state WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .map_err(db)?
        .query_row(params![key.as_str(), now.as_microsecond()], |r| r.get(0))
        .optional()
        .map_err(db)?;
    match current {
        None => Err(missing_with_etag(key, etag)),
        Some(c) if c != etag => Err(stale_etag(key, etag)),
        Some(_) => Ok(()),
    }
}

/// Sets `key` inside the caller's write transaction; returns the new ETag.
pub fn set(
    tx: &Transaction<'_>,
    key: &StateKey,
    value: &[u8],
    etag: Option<&str>,
    ttl: Option<Duration>,
    now: Timestamp,
) -> Result<String, StateError> {
    let expires_at = expiry(now, ttl)?;
    check_etag(tx, key, etag, now)?;
    let new = new_etag();
    tx.prepare_cached(
        "INSERT INTO state (key, value, etag, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )
    .map_err(db)?
    .execute(params![
        key.as_str(),
        value,
        new,
        expires_at.map(|t| t.as_microsecond()),
        now.as_microsecond()
    ])
    .map_err(db)?;
    Ok(new)
}

/// Deletes `key` inside the caller's write transaction.
pub fn delete(
    tx: &Transaction<'_>,
    key: &StateKey,
    etag: Option<&str>,
    now: Timestamp,
) -> Result<(), StateError> {
    check_etag(tx, key, etag, now)?;
    tx.prepare_cached("DELETE FROM state WHERE key = ?1")
        .map_err(db)?
        .execute([key.as_str()])
        .map_err(db)?;
    Ok(())
}

/// Removes the entries expired at `now`; returns how many.
pub fn purge_expired(tx: &Transaction<'_>, now: Timestamp) -> Result<u64, StateError> {
    let n = tx
        .prepare_cached("DELETE FROM state WHERE expires_at <= ?1")
        .map_err(db)?
        .execute([now.as_microsecond()])
        .map_err(db)?;
    Ok(n as u64)
}

/// Runs a state write on the writer: backend failures fail the request (its savepoint rolls
/// back), while conflicts come back as values (they happen before anything is written).
async fn write<R: Send + 'static>(
    store: &SqliteStore,
    f: impl FnOnce(&Transaction<'_>) -> Result<R, StateError> + Send + 'static,
) -> Result<R, StateError> {
    store
        .write(move |tx| match f(tx) {
            Err(StateError::Store(e)) => Err(e),
            other => Ok(other),
        })
        .await?
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<StateEntry>, StateError> {
        let key = StateKey::parse(key)?;
        let outcome = self.read(move |conn| match get(conn, &key, now) {
            Err(StateError::Store(e)) => Err(e),
            other => Ok(other),
        });
        outcome.await?
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
        let etag = etag.map(str::to_owned);
        write(self, move |tx| set(tx, &key, &value, etag.as_deref(), ttl, now)).await
    }

    async fn delete(
        &self,
        key: &str,
        etag: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let key = StateKey::parse(key)?;
        let etag = etag.map(str::to_owned);
        write(self, move |tx| delete(tx, &key, etag.as_deref(), now)).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<String>, StateError> {
        let key = StateKey::parse(key)?;
        // The one writer runs this whole closure in its transaction: check and write are one.
        write(self, move |tx| match get(tx, &key, now)? {
            Some(_) => Ok(None),
            None => set(tx, &key, &value, None, ttl, now).map(Some),
        })
        .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StateError> {
        write(self, move |tx| purge_expired(tx, now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state write inside a `SqliteStore::write` closure commits or rolls back with the
    /// closure: the consumer pattern (side effect + `processed:` key in one request).
    #[tokio::test]
    async fn state_writes_join_the_callers_request() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("docket.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open");
        let now = Timestamp::from_second(1_800_000_000).expect("valid instant");
        let key = StateKey::parse("processed:audit:e1").expect("valid key");

        let k = key.clone();
        let failed = store
            .write(move |tx| {
                set(tx, &k, b"1", None, Some(Duration::from_secs(60)), now)?;
                Err::<(), _>(StoreError::Conflict("the side effect failed".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(StateStore::get(&store, key.as_str(), now).await.expect("get"), None);

        let k = key.clone();
        store
            .write(move |tx| Ok(set(tx, &k, b"1", None, None, now)?))
            .await
            .expect("a state write in a caller's request");
        let got = StateStore::get(&store, key.as_str(), now).await.expect("get");
        assert_eq!(got.map(|e| e.value), Some(b"1".to_vec()));
    }
}
