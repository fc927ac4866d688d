//! Housekeeping (§6), run beside the scheduler: purges expired state-store entries — chiefly
//! the consumers' `processed:{consumer}:{event_id}` idempotency keys, which live 7 days — so
//! the state table does not grow without bound. Reads already ignore expired entries; this
//! only reclaims their space.

use std::sync::Arc;
use std::time::Duration;

use docket_store::StateStore;
use tokio::sync::watch;

use crate::clock::Clock;

/// Counter: state entries purged because their TTL ran out.
pub const PURGED_METRIC: &str = "docket_state_purged_total";

/// How often housekeeping runs by default.
pub const EVERY: Duration = Duration::from_secs(600);

/// Purges expired state entries now, every `every` after, until `shutdown` turns true.
pub async fn run_housekeeping(
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let purged = metrics::counter!(PURGED_METRIC);
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        match state.purge_expired(clock.now()).await {
            Ok(n) => {
                purged.increment(n);
                if n > 0 {
                    tracing::info!(purged = n, "expired state entries purged");
                }
            }
            Err(e) => tracing::warn!(error = %e, "housekeeping cannot purge expired state"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use docket_store::StateStore as _;
    use docket_store::sqlite::SqliteStore;
    use tokio::sync::watch;

    use super::*;
    use crate::clock::FixedClock;

    fn ts(s: &str) -> docket_core::Timestamp {
        s.parse().expect("instant")
    }

    async fn rows(store: &SqliteStore) -> i64 {
        store
            .read(|c| {
                c.query_row("SELECT count(*) FROM state", [], |r| r.get(0))
                    .map_err(|e| docket_store::StoreError::unavailable("sqlite", e))
            })
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn expired_entries_are_purged_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docket.db");
        let store = Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
        let t0 = ts("2026-06-01T00:00:00Z");
        let short = Some(Duration::from_secs(60));
        let long = Some(Duration::from_secs(7 * 24 * 3600));
        store.set("processed:audit:e1", b"1".to_vec(), None, short, t0).await.expect("set");
        store.set("processed:audit:e2", b"1".to_vec(), None, long, t0).await.expect("set");
        store.set("scheduler:cursor", b"x".to_vec(), None, None, t0).await.expect("set");
        assert_eq!(rows(&store).await, 3);

        let clock = Arc::new(FixedClock::new(ts("2026-06-01T01:00:00Z")));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_housekeeping(
            Arc::clone(&store) as Arc<dyn docket_store::StateStore>,
            clock,
            Duration::from_secs(3600),
            stopped,
        ));
        for _ in 0..2000 {
            if rows(&store).await == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rows(&store).await, 2, "the expired key is gone, the others stay");
        let now = ts("2026-06-01T01:00:00Z");
        assert!(store.get("processed:audit:e2", now).await.expect("get").is_some());
        assert!(store.get("scheduler:cursor", now).await.expect("get").is_some());
        let _ = stop.send(true);
        task.await.expect("housekeeping stops");
    }
}
