//! The hub over a real SQLite store: slow subscribers catch up from the log without gaps,
//! subscribers too far behind are told to resync, keys are isolated, close ends everything.

use std::sync::Arc;
use std::time::Duration;

use docket_core::{NewTask, Timestamp, Title, User};
use docket_ports::Store;
use docket_sqlite::SqliteStore;
use tokio::sync::watch;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    hub: Hub,
    stop: watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
}

impl Fixture {
    /// Stops the hub and waits until it ended.
    async fn shut_down(&mut self) {
        let _ = self.stop.send(true);
        (&mut self.runner).await.expect("hub stops");
    }
}

async fn fixture(config: HubConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("docket.db");
    let store = Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    let hub = Hub::new(dyn_store, config).await.expect("hub");
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(hub.clone().run(Some(store.outbox_appended()), stopped));
    Fixture { _dir: dir, store, hub, stop, runner }
}

async fn user(store: &SqliteStore, name: &str) -> User {
    crate::testing::user(store, name, Timestamp::now()).await
}

async fn create(store: &SqliteStore, user: &User, title: &str) {
    let task = NewTask::new(Title::parse(title).expect("title"));
    store.create_task(user.id, task, Timestamp::now()).await.expect("create_task");
}

/// Waits until the hub has fanned out everything in the log.
async fn settle(f: &Fixture) {
    let head = f.store.outbox_head(TOPIC).await.expect("head");
    for _ in 0..3000 {
        if f.hub.position() >= head {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the hub did not reach position {head}");
}

/// The positions of `user`'s events in the log.
async fn positions_of(store: &SqliteStore, user: &User) -> Vec<i64> {
    let key = user.id.to_string();
    let all = store.read_outbox(0, TOPIC, 10_000).await.expect("read");
    all.iter()
        .filter(|(_, e)| e.partitionkey.as_deref() == Some(key.as_str()))
        .map(|(s, _)| *s)
        .collect()
}

async fn next(sub: &mut Subscription) -> Item {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("an item within 30 s")
        .expect("the subscription is open")
}

/// The positions of the next `n` items of `sub`, each an event.
async fn next_seqs(sub: &mut Subscription, n: usize) -> Vec<i64> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(event_seq(&next(sub).await));
    }
    got
}

fn event_seq(item: &Item) -> i64 {
    match item {
        Item::Event(m) => m.seq,
        Item::Resync { .. } => panic!("expected an event, got {item:?}"),
    }
}

#[tokio::test]
async fn a_slow_subscriber_catches_up_from_the_log_without_gaps() {
    let config = HubConfig { buffer: 2, page: 3, ..HubConfig::default() };
    let mut f = fixture(config).await;
    let a = user(&f.store, "slow").await;
    let b = user(&f.store, "other").await;
    let mut sub = f.hub.subscribe(&a.id.to_string(), None).expect("subscribe");
    for i in 0..20 {
        create(&f.store, &a, &format!("a{i}")).await;
        if i % 4 == 0 {
            create(&f.store, &b, &format!("b{i}")).await;
        }
    }
    // The hub has run past a buffer of 2: this subscriber was dropped and must replay.
    settle(&f).await;
    let want = positions_of(&f.store, &a).await;
    assert_eq!(want.len(), 20);
    let got = next_seqs(&mut sub, 20).await;
    assert_eq!(got, want, "every event of the key, in order, once");
    // And live again afterwards.
    create(&f.store, &a, "live").await;
    let live = event_seq(&next(&mut sub).await);
    assert_eq!(Some(&live), positions_of(&f.store, &a).await.last());
    f.shut_down().await;
}

#[tokio::test]
async fn a_subscriber_too_far_behind_is_told_to_resync() {
    let config = HubConfig { buffer: 2, page: 2, replay_limit: 5, ..HubConfig::default() };
    let mut f = fixture(config).await;
    let a = user(&f.store, "laggard").await;
    let mut sub = f.hub.subscribe(&a.id.to_string(), None).expect("subscribe");
    for i in 0..20 {
        create(&f.store, &a, &format!("a{i}")).await;
    }
    settle(&f).await;
    let want = positions_of(&f.store, &a).await;
    // The first two sat in the buffer; the catch-up replays five more, then gives up.
    let mut got = Vec::new();
    let resync = loop {
        match next(&mut sub).await {
            Item::Event(m) => got.push(m.seq),
            Item::Resync { sequence, reason } => break (sequence, reason),
        }
    };
    assert_eq!(resync.1, ResyncReason::Lagged);
    assert_eq!(got.len(), 7, "buffer (2) + replay limit (5): {got:?}");
    assert_eq!(got, want[..7]);
    assert_eq!(resync.0, *want.last().expect("events"), "resync names the head");
    create(&f.store, &a, "after the resync").await;
    let live = event_seq(&next(&mut sub).await);
    assert!(live > resync.0);
    f.shut_down().await;
}

#[tokio::test]
async fn resuming_replays_only_the_key_then_goes_live() {
    let mut f = fixture(HubConfig::default()).await;
    let a = user(&f.store, "resumer").await;
    let b = user(&f.store, "bystander").await;
    for i in 0..6 {
        create(&f.store, &a, &format!("a{i}")).await;
        create(&f.store, &b, &format!("b{i}")).await;
    }
    settle(&f).await;
    let want = positions_of(&f.store, &a).await;
    let mut sub = f.hub.subscribe(&a.id.to_string(), Some(want[1])).expect("subscribe");
    let got = next_seqs(&mut sub, 4).await;
    assert_eq!(got, want[2..]);
    create(&f.store, &b, "not a's").await;
    create(&f.store, &a, "a live").await;
    let live = event_seq(&next(&mut sub).await);
    assert_eq!(Some(&live), positions_of(&f.store, &a).await.last());

    // A position past the head is answered with a resync at the head.
    let head = f.hub.position();
    let mut ahead = f.hub.subscribe(&a.id.to_string(), Some(head + 100)).expect("subscribe");
    match next(&mut ahead).await {
        Item::Resync { sequence, reason } => {
            assert_eq!(reason, ResyncReason::UnknownPosition);
            assert_eq!(sequence, head);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    f.shut_down().await;
}

#[tokio::test]
async fn shutdown_ends_subscriptions_and_refuses_new_ones() {
    let mut f = fixture(HubConfig::default()).await;
    let a = user(&f.store, "leaver").await;
    let mut sub = f.hub.subscribe(&a.id.to_string(), None).expect("subscribe");
    f.shut_down().await;
    let end = tokio::time::timeout(Duration::from_secs(30), sub.next()).await.expect("ends");
    assert!(end.is_none(), "the subscription ended");
    assert!(f.hub.subscribe(&a.id.to_string(), None).is_err());
}

/// Creates a task of `user` stamped `at` (its event's outbox age).
async fn create_at(store: &SqliteStore, user: &User, title: &str, at: Timestamp) {
    let task = NewTask::new(Title::parse(title).expect("title"));
    store.create_task(user.id, task, at).await.expect("create_task");
}

fn days_ago(n: i64) -> Timestamp {
    Timestamp::now() - jiff::SignedDuration::from_hours(24 * n)
}

#[track_caller]
fn expect_pruned_resync(item: &Item, at: i64) {
    match item {
        Item::Resync { sequence, reason } => {
            assert_eq!(*reason, ResyncReason::Pruned);
            assert_eq!(*sequence, at, "the stream goes on after the hub's position");
        }
        Item::Event(m) => panic!("expected a resync, got the event at {} (a silent gap)", m.seq),
    }
}

#[tokio::test]
async fn resuming_from_before_pruned_events_resyncs_instead_of_skipping_them() {
    let mut f = fixture(HubConfig::default()).await;
    let a = user(&f.store, "returner").await;
    for i in 0..3 {
        create_at(&f.store, &a, &format!("old {i}"), days_ago(10)).await;
    }
    for i in 0..3 {
        create_at(&f.store, &a, &format!("new {i}"), days_ago(0)).await;
    }
    settle(&f).await;
    let want = positions_of(&f.store, &a).await;
    let pruned = f.store.prune_outbox(days_ago(1), 1000).await.expect("prune_outbox");
    assert_eq!(pruned, 3, "the three old events are pruned");
    let head = f.hub.position();

    // From before the pruned ones: they cannot be replayed, so a resync, then live events.
    let mut behind = f.hub.subscribe(&a.id.to_string(), Some(want[1])).expect("subscribe");
    expect_pruned_resync(&next(&mut behind).await, head);

    // From the last pruned one on, everything it missed is still there.
    let mut resumed = f.hub.subscribe(&a.id.to_string(), Some(want[2])).expect("subscribe");
    let got = next_seqs(&mut resumed, 3).await;
    assert_eq!(got, want[3..]);

    create(&f.store, &a, "live").await;
    let live = *positions_of(&f.store, &a).await.last().expect("events");
    assert_eq!(event_seq(&next(&mut behind).await), live);
    assert_eq!(event_seq(&next(&mut resumed).await), live);
    f.shut_down().await;
}

#[tokio::test]
async fn a_dropped_subscriber_whose_missed_events_were_pruned_resyncs() {
    let config = HubConfig { buffer: 2, page: 3, ..HubConfig::default() };
    let mut f = fixture(config).await;
    let a = user(&f.store, "sleeper").await;
    let mut sub = f.hub.subscribe(&a.id.to_string(), None).expect("subscribe");
    for i in 0..10 {
        create_at(&f.store, &a, &format!("a{i}"), days_ago(10)).await;
    }
    // The hub has run past a buffer of 2 and dropped this subscriber; what it would replay
    // is pruned before it catches up.
    settle(&f).await;
    let want = positions_of(&f.store, &a).await;
    assert_eq!(f.store.prune_outbox(days_ago(1), 1000).await.expect("prune_outbox"), 10);
    assert_eq!(event_seq(&next(&mut sub).await), want[0], "the buffered events still come");
    assert_eq!(event_seq(&next(&mut sub).await), want[1]);
    expect_pruned_resync(&next(&mut sub).await, f.hub.position());

    create(&f.store, &a, "live").await;
    let live = *positions_of(&f.store, &a).await.last().expect("events");
    assert_eq!(event_seq(&next(&mut sub).await), live);
    f.shut_down().await;
}
