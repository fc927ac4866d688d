//! The embedded bus over a pruned outbox: housekeeping deletes the old rows every group
//! holding the log has passed (`Store::prune_outbox`), and a group goes on from its committed
//! position, receiving the row it had not passed and every event published after, none twice.
//! A live group (one that saved its position or an attempt at or after the cut-off) holds the
//! rows it has not passed, also a group retrying its first event (an attempt recorded, no
//! position committed yet); a group that saved nothing since before the cut-off has stopped
//! and no longer holds rows, and when it comes back it reads on past the pruned ones.
//!
//! The bus stamps appends and saves with the wall clock, so the test appends every row, takes
//! the cut-off, and only then lets the live groups read and save: every row is old enough to
//! prune, and what stays is what the groups hold.
//!
//! SQLite always runs; PostgreSQL when `DOCKET_TEST_POSTGRES_URL` is set (a failure under
//! `CI` when it is not), each in a fresh schema.

use std::sync::Arc;
use std::time::Duration;

use docket_bus::conformance::event;
use docket_bus::embedded::EmbeddedBus;
use docket_bus::{EventBus, Message, SubscribeOptions, Subscription};
use docket_core::Timestamp;
use docket_ports::Store;

const TOPIC: &str = "prune-check";

async fn next(sub: &mut Box<dyn Subscription>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the bus delivers")
}

fn n_of(d: &Message) -> u64 {
    d.event.data.as_ref().and_then(|v| v["n"].as_u64()).expect("a test event")
}

async fn publish(bus: &dyn EventBus, n: u32) {
    bus.publish(TOPIC, vec![event("k", n)]).await.expect("publish");
}

/// An instant strictly after everything stored so far and strictly before anything stored
/// after it returns (the stores keep microseconds).
async fn cut_off() -> Timestamp {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    at
}

async fn delivers_after_a_prune(store: &dyn Store, bus: Arc<dyn EventBus>) {
    // Every row is appended before the cut-off: all are old enough to prune.
    let retried = "prune-retried";
    bus.publish(retried, vec![event("k", 99)]).await.expect("publish");
    for n in 0..4 {
        publish(&*bus, n).await;
    }
    // A group that read the first event and then stopped: its last save is before the cut-off.
    let mut gone = bus.subscribe("s", TOPIC, SubscribeOptions::default()).await.expect("subscribe");
    let d = next(&mut gone).await;
    assert_eq!(n_of(&d), 0);
    gone.ack(&d).await.expect("ack");
    gone.close().await.expect("close commits the ack");

    let older_than = cut_off().await;

    // Live groups save after the cut-off. One fails its first event and has committed no
    // position yet; the other passes three events and has not passed the fourth.
    let mut failing =
        bus.subscribe("r", retried, SubscribeOptions::default()).await.expect("subscribe");
    let d = next(&mut failing).await;
    failing.nack(&d, Duration::from_secs(3600), "failing on purpose").await.expect("nack");
    failing.close().await.expect("close");
    let mut sub = bus.subscribe("g", TOPIC, SubscribeOptions::default()).await.expect("subscribe");
    for n in 0..3 {
        let d = next(&mut sub).await;
        assert_eq!(n_of(&d), n);
        sub.ack(&d).await.expect("ack");
    }
    sub.close().await.expect("close commits the acks");

    let mut pruned = 0;
    for _ in 0..100 {
        // On PostgreSQL a row is pruned only once its append has settled; retry a moment.
        pruned += store.prune_outbox(older_than, 100).await.expect("prune_outbox");
        if pruned >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pruned, 3,
        "the three events g passed are pruned (the stopped group holds nothing), \
         not the one g has not passed nor the one r is retrying"
    );
    assert_eq!(store.prune_outbox(older_than, 100).await.expect("prune_outbox"), 0);
    let kept = store.read_outbox(0, retried, 10).await.expect("read_outbox");
    assert_eq!(kept.len(), 1, "the event a group is retrying stays");
    let kept = store.read_outbox(0, TOPIC, 10).await.expect("read_outbox");
    let kept: Vec<u64> = kept
        .iter()
        .map(|(_, e)| e.data.as_ref().and_then(|v| v["n"].as_u64()).expect("n"))
        .collect();
    assert_eq!(kept, [3], "the event a live group has not passed stays");

    let mut sub =
        bus.subscribe("g", TOPIC, SubscribeOptions::default()).await.expect("subscribe again");
    let d = next(&mut sub).await;
    assert_eq!(n_of(&d), 3, "the kept event, not a pruned one again");
    sub.ack(&d).await.expect("ack");
    publish(&*bus, 4).await;
    let d = next(&mut sub).await;
    assert_eq!(n_of(&d), 4, "new events are delivered after the prune");
    sub.ack(&d).await.expect("ack");
    sub.close().await.expect("close");

    // The stopped group comes back and reads on from its position past the pruned rows.
    let mut gone =
        bus.subscribe("s", TOPIC, SubscribeOptions::default()).await.expect("subscribe again");
    for n in 3..5 {
        let d = next(&mut gone).await;
        assert_eq!(n_of(&d), n, "the events 1 and 2 are gone: it goes on with what is kept");
        gone.ack(&d).await.expect("ack");
    }
    gone.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bus_delivers_after_a_prune() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docket.db");
    let store = docket_sqlite::SqliteStore::open(path.to_str().expect("utf-8"))
        .await
        .expect("open a fresh sqlite store");
    let store = Arc::new(store);
    let bus = Arc::new(EmbeddedBus::new(store.clone()));
    delivers_after_a_prune(store.as_ref(), bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bus_delivers_after_a_prune() {
    let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DOCKET_TEST_POSTGRES_URL must be set when CI is set"
        );
        println!("skipped: DOCKET_TEST_POSTGRES_URL not set");
        return;
    };
    let store = docket_postgres::PostgresStore::connect_isolated(&url)
        .await
        .expect("DOCKET_TEST_POSTGRES_URL is set but the store cannot connect");
    let bus = EmbeddedBus::new(Arc::new(store.event_log().await.expect("start the bus")));
    delivers_after_a_prune(&store, Arc::new(bus)).await;
    store.drop_schema().await.expect("drop the test schema");
}
