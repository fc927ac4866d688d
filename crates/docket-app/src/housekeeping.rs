//! Housekeeping (§6), run beside the scheduler, so the tables that only grow do not grow
//! without bound:
//! * purges expired state-store entries — chiefly the consumers'
//!   `processed:{consumer}:{event_id}` idempotency keys (the dedup keys), which live 7 days.
//!   Reads already ignore expired entries; this only reclaims their space.
//! * prunes the outbox: events older than the retention (default 7 days) that every consumer
//!   group has passed (`Store::prune_outbox`; a group that saved no position for the whole
//!   retention no longer holds them back), in batches so neither the SQLite writer nor a
//!   PostgreSQL lock is held for long. A real-time client resuming from before what is kept
//!   is told to resync (`realtime.rs`).

use std::sync::Arc;
use std::time::Duration;

use docket_core::Timestamp;
use docket_ports::{StateStore, Store};
use tokio::sync::watch;

use crate::clock::Clock;

/// Counter: state entries purged because their TTL ran out.
pub const PURGED_METRIC: &str = "docket_state_purged_total";
/// Counter: outbox events pruned.
pub const OUTBOX_PRUNED_METRIC: &str = "docket_outbox_pruned_total";

/// How often housekeeping runs by default.
pub const EVERY: Duration = Duration::from_secs(600);
/// How long outbox events are kept by default once every consumer has passed them.
pub const OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Outbox rows pruned per store call (one short write each).
pub const PRUNE_BATCH: u32 = 1000;

/// Purges expired state entries and prunes outbox events older than `outbox_retention` now,
/// every `every` after, until `shutdown` turns true.
pub async fn run_housekeeping(
    store: Arc<dyn Store>,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    every: Duration,
    outbox_retention: Duration,
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
        prune_outbox(store.as_ref(), clock.now(), outbox_retention, PRUNE_BATCH, &shutdown).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Prunes the outbox up to `now - retention`, `batch` rows at a time, until a batch comes
/// back short (nothing more to prune), the store fails, or shutdown begins; returns how many.
async fn prune_outbox(
    store: &dyn Store,
    now: Timestamp,
    retention: Duration,
    batch: u32,
    shutdown: &watch::Receiver<bool>,
) -> u64 {
    let Ok(older_than) = now.checked_sub(retention) else {
        tracing::warn!(
            retention_s = retention.as_secs(),
            "outbox retention reaches before year -9999; not pruning"
        );
        return 0;
    };
    let counter = metrics::counter!(OUTBOX_PRUNED_METRIC);
    let mut total = 0u64;
    loop {
        match store.prune_outbox(older_than, batch).await {
            Ok(n) => {
                counter.increment(n);
                total += n;
                if n < u64::from(batch) || *shutdown.borrow() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping cannot prune the outbox");
                break;
            }
        }
        // Let the writes queued behind this batch go first.
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(pruned = total, "outbox events pruned");
    }
    total
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use docket_ports::StateStore as _;
    use docket_sqlite::SqliteStore;
    use tokio::sync::watch;

    use super::*;
    use crate::clock::FixedClock;

    fn ts(s: &str) -> docket_core::Timestamp {
        s.parse().expect("instant")
    }

    async fn rows(store: &SqliteStore) -> i64 {
        store
            .raw_read(|c| {
                c.query_row("SELECT count(*) FROM state", [], |r| r.get(0))
                    .map_err(|e| docket_ports::StoreError::unavailable("sqlite", e))
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

        let (stop, task) = start(&store, "2026-06-01T01:00:00Z");
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

    /// Runs housekeeping over `store` hourly with the clock standing at `now`; send `true` to
    /// stop it.
    fn start(
        store: &Arc<SqliteStore>,
        now: &str,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let clock = Arc::new(FixedClock::new(ts(now)));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_housekeeping(
            Arc::clone(store) as Arc<dyn Store>,
            Arc::clone(store) as Arc<dyn docket_ports::StateStore>,
            clock,
            Duration::from_secs(3600),
            OUTBOX_RETENTION,
            stopped,
        ));
        (stop, task)
    }

    async fn user(store: &dyn Store) -> docket_core::User {
        crate::testing::user(store, "keeper", ts("2026-01-01T00:00:00Z")).await
    }

    async fn create(store: &dyn Store, user: &docket_core::User, at: &str) {
        let task = docket_core::NewTask::new(docket_core::Title::parse("t").expect("title"));
        store.create_task(user.id, task, ts(at)).await.expect("create_task");
    }

    async fn kept(store: &dyn Store) -> Vec<i64> {
        let rows = store.read_outbox(0, docket_events::topics::TASK_EVENTS, 100).await;
        rows.expect("read").into_iter().map(|(seq, _)| seq).collect()
    }

    #[tokio::test]
    async fn outbox_events_past_the_retention_and_every_consumer_are_pruned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docket.db");
        let store = Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
        let u = user(store.as_ref()).await;
        create(store.as_ref(), &u, "2026-06-01T00:00:00Z").await; // 1: old, passed
        create(store.as_ref(), &u, "2026-06-02T00:00:00Z").await; // 2: old, not passed
        create(store.as_ref(), &u, "2026-06-09T00:00:00Z").await; // 3: within the retention
        let all = kept(store.as_ref()).await;
        assert_eq!(all.len(), 3);
        let topic = docket_events::topics::TASK_EVENTS;
        // Live groups: both saved their positions within the retention (after the cut-off,
        // 2026-06-02T12:00), so both hold the rows they have not passed.
        let at = ts("2026-06-09T00:00:00Z");
        store.save_consumer_position("audit", topic, all[2], at).await.expect("save");
        store.save_consumer_position("recurrence", topic, all[0], at).await.expect("save");

        // Eight days after the first write: the first two are past the 7-day retention.
        let (stop, task) = start(&store, "2026-06-09T12:00:00Z");
        for _ in 0..2000 {
            if kept(store.as_ref()).await.len() < 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(kept(store.as_ref()).await, all[1..], "only the old event all groups passed");
        assert_eq!(store.outbox_tail(topic).await.expect("tail"), all[0]);
        let _ = stop.send(true);
        task.await.expect("housekeeping stops");
    }

    /// A group that saved its position before the cut-off (stopped) holds nothing; one that
    /// saved after it holds what it has not passed. The in-memory fake follows the same rule
    /// as the SQLite store.
    async fn stopped_group_holds_nothing(store: &dyn Store) {
        let u = user(store).await;
        for at in ["2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z"] {
            create(store, &u, at).await;
        }
        let all = kept(store).await;
        assert_eq!(all.len(), 3);
        let topic = docket_events::topics::TASK_EVENTS;
        let now = ts("2026-06-20T00:00:00Z"); // cut-off 2026-06-13: every row is old
        let (_stop, stopped) = watch::channel(false);
        let save = async |group, position, at| {
            let at = ts(at);
            store.save_consumer_position(group, topic, position, at).await.expect("save");
        };
        save("gone", 0, "2026-06-04T00:00:00Z").await;
        save("live", all[0], "2026-06-19T00:00:00Z").await;
        assert_eq!(prune_outbox(store, now, OUTBOX_RETENTION, 100, &stopped).await, 1);
        assert_eq!(kept(store).await, all[1..], "only the live group holds rows");
        // The stopped group saves again (it came back): it holds again, from its position.
        save("gone", 0, "2026-06-19T12:00:00Z").await;
        save("live", all[2], "2026-06-19T12:00:00Z").await;
        assert_eq!(prune_outbox(store, now, OUTBOX_RETENTION, 100, &stopped).await, 0);
        assert_eq!(kept(store).await, all[1..]);
        assert_eq!(store.consumer_position("gone", topic).await.expect("read"), 0);
        // Neither saves again for the whole retention: nothing holds the old rows.
        let later = ts("2026-06-27T00:00:00Z");
        assert_eq!(prune_outbox(store, later, OUTBOX_RETENTION, 100, &stopped).await, 2);
        assert!(kept(store).await.is_empty());
    }

    #[tokio::test]
    async fn a_group_that_saved_nothing_for_the_retention_holds_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docket.db");
        let sqlite = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open");
        stopped_group_holds_nothing(&sqlite).await;
    }

    #[tokio::test]
    async fn pruning_goes_on_batch_after_batch_until_a_short_one() {
        let store = crate::testing::sqlite().await;
        let u = user(&store).await;
        for _ in 0..5 {
            create(&store, &u, "2026-06-01T00:00:00Z").await;
        }
        let now = ts("2026-06-20T00:00:00Z");
        let (_stop, stopped) = watch::channel(false);
        let n = prune_outbox(&store, now, OUTBOX_RETENTION, 2, &stopped).await;
        assert_eq!(n, 5, "three batches: 2, 2, 1");
        assert!(kept(&store).await.is_empty());
        // Nothing younger than the retention goes.
        create(&store, &u, "2026-06-19T00:00:00Z").await;
        assert_eq!(prune_outbox(&store, now, OUTBOX_RETENTION, 2, &stopped).await, 0);
        assert_eq!(kept(&store).await.len(), 1);
    }
}
