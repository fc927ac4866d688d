//! The outbox relay against the test sidecar over a real SQLite store: a batch is published
//! in order with one bulk call and its position committed; nothing is published twice by a
//! later round; a partial bulk failure commits only the prefix before the first refused
//! event, and the rest is tried again.

use docket_core::{DisplayName, Email, NewTask, NewUser, TaskPatch, Title};
use docket_dapr::relay::{GROUP, RelayError, relay_once};
use docket_dapr::testing::TestSidecar;
use docket_events::topics;
use docket_store::Store;
use docket_store::sqlite::SqliteStore;

const PUBSUB: &str = "docket-pubsub";

async fn store_with_events(dir: &tempfile::TempDir) -> SqliteStore {
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open");
    let now = jiff::Timestamp::now();
    let user = store
        .create_user(
            NewUser {
                email: Some(Email::parse("relay@example.com").expect("email")),
                name: DisplayName::parse("Relay").expect("name"),
                timezone: None,
                password_hash: None,
                external_subject: None,
            },
            now,
        )
        .await
        .expect("user");
    let first = store
        .create_task(user.id, NewTask::new(Title::parse("One").expect("title")), now)
        .await
        .expect("task");
    let patch = TaskPatch {
        title: Some(Title::parse("One, renamed").expect("title")),
        ..TaskPatch::default()
    };
    store.update_task(user.id, first.id, patch, None, now).await.expect("update");
    store
        .create_task(user.id, NewTask::new(Title::parse("Two").expect("title")), now)
        .await
        .expect("task");
    store
}

fn ids(published: &[docket_dapr::testing::Published]) -> Vec<String> {
    published.iter().map(|p| p.event["id"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn a_batch_is_published_in_order_once_and_its_position_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_events(&dir).await;
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    let client = sidecar.client();
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read");
    assert_eq!(rows.len(), 3);

    let n = relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100).await.expect("relay");
    assert_eq!(n, 3);
    let expected: Vec<String> = rows.iter().map(|(_, e)| e.id.clone()).collect();
    assert_eq!(ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)), expected, "in log order");
    assert_eq!(
        store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
        rows[2].0
    );
    assert_eq!(
        relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100).await.expect("again"),
        0
    );
    assert_eq!(sidecar.published(PUBSUB, topics::TASK_EVENTS).len(), 3, "nothing twice");

    // The task-updates log carries the same task events to its own topic.
    let n = relay_once(&store, &client, PUBSUB, topics::TASK_UPDATES, 100).await.expect("relay");
    assert_eq!(n, 3);
    assert_eq!(ids(&sidecar.published(PUBSUB, topics::TASK_UPDATES)), expected);

    // One at a time works too (a batch of one is a plain publish).
    let other = tempfile::tempdir().expect("temp dir");
    let store = store_with_events(&other).await;
    let single = TestSidecar::builder().start().await.expect("sidecar");
    let expected: Vec<String> = store
        .read_outbox(0, topics::TASK_EVENTS, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    for _ in 0..3 {
        assert_eq!(
            relay_once(&store, &single.client(), PUBSUB, topics::TASK_EVENTS, 1)
                .await
                .expect("one"),
            1
        );
    }
    assert_eq!(ids(&single.published(PUBSUB, topics::TASK_EVENTS)), expected);
}

#[tokio::test]
async fn a_refused_event_holds_the_position_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_events(&dir).await;
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    sidecar.reject_type("com.todo.task.updated");
    let client = sidecar.client();
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read");

    let err =
        relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100).await.expect_err("refused");
    assert!(
        matches!(&err, RelayError::Refused { event_id, .. } if *event_id == rows[1].1.id),
        "{err}"
    );
    assert_eq!(
        store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
        rows[0].0,
        "committed up to the event before the refused one"
    );
    // Tried again from the refused event on: still refused, the position stays.
    relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100).await.expect_err("refused");
    assert_eq!(
        store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
        rows[0].0
    );
}

/// Two relays (two worker replicas) on one database: with leases, each event is published
/// once; the lease passes to the other when its holder stops renewing.
#[tokio::test]
async fn replicas_share_the_work_through_a_lease() {
    use std::sync::Arc;
    use std::time::Duration;

    use docket_dapr::relay::{Lease, RelayConfig, run_relay};

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(store_with_events(&dir).await);
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    let expected: Vec<String> = store
        .read_outbox(0, topics::TASK_EVENTS, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    let mut config = RelayConfig::new(PUBSUB);
    config.topics = vec![topics::TASK_EVENTS.to_owned()];
    config.poll = Duration::from_millis(20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state: Arc<dyn docket_store::StateStore> = store.clone();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(run_relay(
                store.clone(),
                sidecar.client(),
                config.clone(),
                None,
                Some(Arc::clone(&state)),
                stopped.clone(),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sidecar.published(PUBSUB, topics::TASK_EVENTS).len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "published in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give the other replica every chance to publish again: it must not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)), expected, "each once");
    let _ = stop.send(true);
    for r in relays {
        r.await.expect("relay stops");
    }

    // A lease is exclusive while held and passes on once its holder stops renewing.
    let short = Duration::from_millis(200);
    let mut a = Lease::new(Arc::clone(&state), "lease-test", "a", short);
    let mut b = Lease::new(Arc::clone(&state), "lease-test", "b", short);
    assert!(a.hold().await, "a takes the free lease");
    assert!(!b.hold().await, "b waits while a holds it");
    assert!(a.hold().await, "a keeps it");
    tokio::time::sleep(short + Duration::from_millis(50)).await;
    assert!(b.hold().await, "b takes it once a let it run out");
    assert!(!a.hold().await, "a lost it: its renewal conflicts");
}

/// Switching a database from embedded to Dapr mode: the relay starts after what the embedded
/// consumers of the topic already handled (the lowest of their positions), once.
#[tokio::test]
async fn the_relay_takes_over_where_the_embedded_consumers_stopped() {
    use docket_dapr::relay::hand_over;

    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_events(&dir).await;
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read");
    let now = jiff::Timestamp::now();
    store.save_consumer_position("audit", topics::TASK_EVENTS, rows[2].0, now).await.expect("save");
    store
        .save_consumer_position("recurrence", topics::TASK_EVENTS, rows[0].0, now)
        .await
        .expect("save");
    let groups = ["audit", "recurrence", "webhooks"];
    let start = hand_over(&store, topics::TASK_EVENTS, &groups).await.expect("hand over");
    assert_eq!(start, rows[0].0, "after the slowest consumer; one that never ran is ignored");
    // Once the relay has a position of its own, it keeps it.
    store
        .save_consumer_position("recurrence", topics::TASK_EVENTS, rows[2].0, now)
        .await
        .expect("save");
    assert_eq!(hand_over(&store, topics::TASK_EVENTS, &groups).await.expect("again"), rows[0].0);

    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    relay_once(&store, &sidecar.client(), PUBSUB, topics::TASK_EVENTS, 100).await.expect("relay");
    let expected: Vec<String> = rows[1..].iter().map(|(_, e)| e.id.clone()).collect();
    assert_eq!(ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)), expected, "nothing twice");

    // A topic no consumer ever read starts from the beginning.
    assert_eq!(hand_over(&store, topics::REMINDERS, &["notifier"]).await.expect("fresh"), 0);
}
