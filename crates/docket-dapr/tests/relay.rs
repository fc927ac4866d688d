//! The outbox relay against the test sidecar over a real SQLite store: a batch is published
//! in log order and its position committed; nothing is published twice by a later round; a
//! refused event commits only the prefix before it, and the rest is tried again. With a
//! sidecar that reverses the entries of each bulk request (as Dapr, which keeps no order
//! within one, may), each partition key's events still arrive in log order, in bulk requests
//! holding no key twice.

use std::collections::{BTreeMap, HashSet};

use docket_core::{NewTask, TaskId, TaskPatch, Title, UserId};
use docket_dapr::relay::{GROUP, RelayError, relay_once};
use docket_dapr::testing::{Published, TestSidecar};
use docket_events::topics;
use docket_ports::Store;
use docket_sqlite::SqliteStore;

const PUBSUB: &str = "docket-pubsub";

async fn store_with_events(dir: &tempfile::TempDir) -> SqliteStore {
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open");
    let now = jiff::Timestamp::now();
    let user = docket_app::testing::user(&store, "Relay", now).await;
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

/// The ids of the events in `store`'s `task-events` log, in log order.
async fn outbox_ids(store: &SqliteStore) -> Vec<String> {
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read");
    rows.into_iter().map(|(_, e)| e.id).collect()
}

fn ids(published: &[docket_dapr::testing::Published]) -> Vec<String> {
    published.iter().map(|p| p.event["id"].as_str().unwrap_or_default().to_owned()).collect()
}

/// A store holding a user per name (email `{name}@example.com`).
async fn store_with_users(dir: &tempfile::TempDir, names: &[&str]) -> (SqliteStore, Vec<UserId>) {
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open");
    let mut users = Vec::new();
    for name in names {
        let user = docket_app::testing::user(&store, name, jiff::Timestamp::now()).await;
        users.push(user.id);
    }
    (store, users)
}

async fn create(store: &SqliteStore, user: UserId, title: &str) -> TaskId {
    let title = Title::parse(title).expect("title");
    store.create_task(user, NewTask::new(title), jiff::Timestamp::now()).await.expect("task").id
}

async fn rename(store: &SqliteStore, user: UserId, task: TaskId, title: &str) {
    let patch =
        TaskPatch { title: Some(Title::parse(title).expect("title")), ..TaskPatch::default() };
    store.update_task(user, task, patch, None, jiff::Timestamp::now()).await.expect("update");
}

/// Event ids per partition key, in the order given, each id once (its first occurrence:
/// consumers dedupe a republished event).
fn per_key<'a>(
    events: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
) -> BTreeMap<String, Vec<String>> {
    let mut seen = HashSet::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, id) in events {
        if seen.insert(id.to_owned()) {
            keys.entry(key.unwrap_or_default().to_owned()).or_default().push(id.to_owned());
        }
    }
    keys
}

fn published_per_key(published: &[Published]) -> BTreeMap<String, Vec<String>> {
    per_key(
        published
            .iter()
            .map(|p| (p.partition_key.as_deref(), p.event["id"].as_str().unwrap_or_default())),
    )
}

fn log_per_key(rows: &[(i64, docket_events::CloudEvent)]) -> BTreeMap<String, Vec<String>> {
    per_key(rows.iter().map(|(_, e)| (e.partitionkey.as_deref(), e.id.as_str())))
}

/// No bulk request holds a partition key twice.
fn assert_one_event_per_key(requests: &[Vec<Published>]) {
    for request in requests {
        let mut keys = HashSet::new();
        for entry in request {
            let key = entry.partition_key.as_deref().expect("every event has a key");
            assert!(keys.insert(key), "key {key} twice in one bulk request");
        }
    }
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
    let expected = outbox_ids(&store).await;
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
    let expected = outbox_ids(&store).await;
    let mut config = RelayConfig::new(PUBSUB);
    config.topics = vec![topics::TASK_EVENTS.to_owned()];
    config.poll = Duration::from_millis(20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state: Arc<dyn docket_ports::StateStore> = store.clone();
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
    let published_in_time = async |id: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)).iter().any(|p| p == id) {
            assert!(tokio::time::Instant::now() < deadline, "{id} published in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    published_in_time(expected.last().expect("three events")).await;
    // A marker appended after those: a round that publishes it reads from the committed
    // position, so by then anything published again would be there too. Stopping the relays
    // then lets every round in flight (the other replica's included) finish before the check.
    let user = store.user_by_email("relay@example.com").await.expect("read").expect("the user");
    let marker = create(&store, user.user.id, "Marker").await;
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read");
    let (_, last) = rows.last().expect("the marker's event");
    assert_eq!(last.data.as_ref().map(|d| d["task"]["id"] == marker.to_string()), Some(true));
    let mut expected = expected;
    expected.push(last.id.clone());
    published_in_time(&last.id).await;
    let _ = stop.send(true);
    for r in relays {
        r.await.expect("relay stops");
    }
    assert_eq!(ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)), expected, "each once");

    // A lease is exclusive while held and passes on once its holder stops renewing.
    let short = Duration::from_millis(200);
    let mut a = Lease::new(Arc::clone(&state), "lease-test", "a", short);
    let mut b = Lease::new(Arc::clone(&state), "lease-test", "b", short);
    assert!(a.hold().await, "a takes the free lease");
    assert!(!b.hold().await, "b waits while a holds it");
    assert!(a.hold().await, "a keeps it");
    // b polls until a's entry expires: it takes it then, and not before (above).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.hold().await {
        assert!(tokio::time::Instant::now() < deadline, "b takes it once a let it run out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// Dapr may publish the entries of one bulk request in any order; the sidecar here reverses
/// them. 30 events over 3 users, interleaved, then 3 back-to-back of one user: each user's
/// events still reach the broker in log order, and bulk publish still carries several
/// events per request. (The relay used to send the whole batch as one request: this test
/// then saw every user's events reversed.)
#[tokio::test]
async fn each_keys_order_survives_a_sidecar_that_reorders_bulk_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, users) = store_with_users(&dir, &["ann", "bob", "cat"]).await;
    let mut last = None;
    for round in 0..10 {
        for user in &users {
            last = Some(create(&store, *user, &format!("Task {round}")).await);
        }
    }
    let (cat, cats_task) = (users[2], last.expect("a task"));
    for n in 0..3 {
        rename(&store, cat, cats_task, &format!("Renamed {n}")).await;
    }
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 100).await.expect("read");
    assert_eq!(rows.len(), 33);

    let sidecar = TestSidecar::builder().unordered_bulk().start().await.expect("sidecar");
    let n = relay_once(&store, &sidecar.client(), PUBSUB, topics::TASK_EVENTS, 100)
        .await
        .expect("relay");
    assert_eq!(n, 33);
    let published = sidecar.published(PUBSUB, topics::TASK_EVENTS);
    assert_eq!(published_per_key(&published), log_per_key(&rows), "each key in log order");
    assert_eq!(published.len(), 33, "each event once");
    assert_eq!(
        store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
        rows[32].0
    );

    // Bulk publish, cut only where a key repeats: ten requests of the three users, then one
    // per back-to-back event of the same user; sent in log order.
    let requests = sidecar.bulk_requests(PUBSUB, topics::TASK_EVENTS);
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    assert_eq!(sizes, [vec![3; 10], vec![1; 3]].concat());
    assert_one_event_per_key(&requests);
    let sent: Vec<String> = requests.iter().flat_map(|r| ids(r)).collect();
    let expected: Vec<String> = rows.iter().map(|(_, e)| e.id.clone()).collect();
    assert_eq!(sent, expected, "requests sent one after the other, in log order");
}

/// A refused entry stops the relay at its request: what the request took is published (and
/// published again later: at least once), the requests after it are not sent, the position
/// stays before the refused event; once Dapr takes it, the rest follows, each user's events
/// in log order.
#[tokio::test]
async fn a_refused_bulk_entry_stops_the_relay_and_the_rest_follows_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, users) = store_with_users(&dir, &["ann", "bob", "cat"]).await;
    let (ann, bob, cat) = (users[0], users[1], users[2]);
    create(&store, ann, "Ann 1").await;
    let bobs = create(&store, bob, "Bob 1").await;
    create(&store, cat, "Cat 1").await;
    rename(&store, bob, bobs, "Bob 1, renamed").await; // refused below
    let anns = create(&store, ann, "Ann 2").await;
    create(&store, cat, "Cat 2").await;
    rename(&store, ann, anns, "Ann 2, renamed").await;
    create(&store, cat, "Cat 3").await;
    let rows = store.read_outbox(0, topics::TASK_EVENTS, 100).await.expect("read");
    assert_eq!(rows.len(), 8);
    let id = |i: usize| rows[i].1.id.clone();

    let sidecar = TestSidecar::builder().unordered_bulk().start().await.expect("sidecar");
    sidecar.reject_type("com.todo.task.updated");
    let client = sidecar.client();
    for _ in 0..2 {
        let err = relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, RelayError::Refused { event_id, .. } if *event_id == id(3)),
            "{err}"
        );
        assert_eq!(
            store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
            rows[2].0,
            "committed up to the event before the refused one"
        );
    }
    let requests = sidecar.bulk_requests(PUBSUB, topics::TASK_EVENTS);
    // [Ann 1, Bob 1, Cat 1], then [Bob renamed, Ann 2, Cat 2] (refused) twice; the request
    // after it ([Ann renamed, Cat 3]) was never sent.
    let sent: Vec<Vec<String>> = requests.iter().map(|r| ids(r)).collect();
    assert_eq!(
        sent,
        vec![vec![id(0), id(1), id(2)], vec![id(3), id(4), id(5)], vec![id(3), id(4), id(5)]]
    );
    let published: HashSet<String> =
        ids(&sidecar.published(PUBSUB, topics::TASK_EVENTS)).into_iter().collect();
    assert_eq!(published, [0, 1, 2, 4, 5].map(id).into_iter().collect(), "nothing after");

    sidecar.allow_type("com.todo.task.updated");
    let n = relay_once(&store, &client, PUBSUB, topics::TASK_EVENTS, 100).await.expect("relay");
    assert_eq!(n, 5, "from the refused event on");
    assert_eq!(
        store.consumer_position(GROUP, topics::TASK_EVENTS).await.expect("position"),
        rows[7].0
    );
    let published = sidecar.published(PUBSUB, topics::TASK_EVENTS);
    assert_eq!(published_per_key(&published), log_per_key(&rows), "each key in log order");
    assert_one_event_per_key(&sidecar.bulk_requests(PUBSUB, topics::TASK_EVENTS));
}
