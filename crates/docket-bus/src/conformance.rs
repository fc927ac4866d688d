//! The conformance suite of the [`EventBus`] contract: one `check_bus_*` function per rule,
//! run against every adapter through [`bus_conformance!`].
//!
//! A check takes a [`BusFixture`]: the bus, a way to append events inside a transaction the
//! check commits or rolls back (the store's write path for the embedded bus; a producer
//! transaction for a broker), and a way to restart the bus on the same backing. Each check
//! uses its own topics and groups, waits with generous `timeout`s (seconds) and never asserts
//! latency; "nothing is delivered" is checked over a short window, which can only make a
//! broken adapter pass by luck, never a correct one fail.
//!
//! ```text
//! mod sqlite {
//!     docket_bus::bus_conformance!(crate::fresh_sqlite().await);
//! }
//! ```
//!
//! where the expression evaluates to `Option<impl BusFixture>` (`None` = skipped, after
//! printing why).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use serde_json::json;

use crate::{EventBus, Message, Nacked, SubscribeOptions, Subscription, dlq};

/// How long a check waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long a check watches for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// Events appended in a transaction that is still open.
#[async_trait]
pub trait OpenAppend: Send {
    async fn commit(self: Box<Self>);
    async fn roll_back(self: Box<Self>);
}

/// What a stamped test holds: the bus and its backing.
#[async_trait]
pub trait BusFixture: Send + Sync {
    fn bus(&self) -> Arc<dyn EventBus>;

    /// Appends `events` to `topic` in a transaction and returns with it still open.
    async fn begin_append(&self, topic: &str, events: Vec<CloudEvent>) -> Box<dyn OpenAppend>;

    /// A new bus on the same backing, as after a process restart.
    async fn restart(&self) -> Arc<dyn EventBus>;

    /// Runs after a check passed.
    async fn teardown(self)
    where
        Self: Sized,
    {
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! bus_conformance {
    ($make:expr) => {
        $crate::bus_conformance!(@checks $make;
            check_bus_delivers_published_events,
            check_bus_no_delivery_before_commit,
            check_bus_nothing_for_rolled_back_transaction,
            check_bus_wakes_waiting_subscriber,
            check_bus_redelivers_after_nack,
            check_bus_redelivers_after_crash,
            check_bus_groups_independent,
            check_bus_one_subscriber_per_group,
            check_bus_per_key_order,
            check_bus_dead_letter_after_max_attempts,
            check_bus_dead_letter_poison_at_once,
            check_bus_attempts_survive_restart,
        );
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $make else { return };
                $crate::conformance::$check(&fixture).await;
                $crate::conformance::BusFixture::teardown(fixture).await;
            }
        )*
    };
}

/// A unique name for this check's topic or group.
fn unique(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::now_v7().simple())
}

/// A test event with partition key `key` and payload `{"n": n}`.
pub fn event(key: &str, n: u32) -> CloudEvent {
    CloudEvent {
        specversion: docket_events::SPEC_VERSION.to_owned(),
        id: uuid::Uuid::now_v7().to_string(),
        source: "/docket/test".to_owned(),
        ty: "com.todo.test.happened".to_owned(),
        subject: None,
        time: Some(Timestamp::now()),
        datacontenttype: Some(docket_events::JSON_CONTENT_TYPE.to_owned()),
        partitionkey: Some(key.to_owned()),
        sequence: None,
        traceparent: None,
        extensions: Default::default(),
        data: Some(json!({ "n": n })),
    }
}

fn n_of(d: &Message) -> u64 {
    d.event.data.as_ref().and_then(|v| v["n"].as_u64()).unwrap_or(u64::MAX)
}

fn opts(max_attempts: u32) -> SubscribeOptions {
    SubscribeOptions { max_attempts, ..SubscribeOptions::default() }
}

#[track_caller]
fn expect_ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn subscribe(
    bus: &dyn EventBus,
    group: &str,
    topic: &str,
    o: SubscribeOptions,
) -> Box<dyn Subscription> {
    expect_ok(bus.subscribe(group, topic, o).await, "subscribe")
}

async fn next(sub: &mut Box<dyn Subscription>, what: &str) -> Message {
    match tokio::time::timeout(PATIENCE, sub.next()).await {
        Ok(r) => expect_ok(r, what),
        Err(_) => panic!("{what}: nothing delivered within {PATIENCE:?}"),
    }
}

async fn nothing(sub: &mut Box<dyn Subscription>, what: &str) {
    if let Ok(r) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("{what}: expected no delivery, got {r:?}");
    }
}

async fn publish(bus: &dyn EventBus, topic: &str, events: Vec<CloudEvent>) {
    expect_ok(bus.publish(topic, events).await, "publish");
}

async fn ack(sub: &mut Box<dyn Subscription>, d: &Message) {
    expect_ok(sub.ack(d).await, "ack");
}

/// Published events reach a subscriber in order, once each, attempt 1, with their ids.
pub async fn check_bus_delivers_published_events(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("deliver");
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let events: Vec<_> = (0..3).map(|n| event("k", n)).collect();
    publish(&*bus, &topic, events.clone()).await;
    for e in &events {
        let d = next(&mut sub, "published event").await;
        assert_eq!(d.event.id, e.id, "events arrive in publish order");
        assert_eq!(d.event.data, e.data, "the payload arrives unchanged");
        assert_eq!(d.attempt, 1, "a first delivery is attempt 1");
        ack(&mut sub, &d).await;
    }
    nothing(&mut sub, "each event is delivered once").await;
    // Another topic's events are not this topic's.
    publish(&*bus, &unique("other"), vec![event("k", 9)]).await;
    nothing(&mut sub, "events of another topic").await;
}

/// An event appended in an open transaction is delivered only once it commits.
pub async fn check_bus_no_delivery_before_commit(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("commit");
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let e = event("k", 1);
    let open = f.begin_append(&topic, vec![e.clone()]).await;
    nothing(&mut sub, "an uncommitted event").await;
    open.commit().await;
    let d = next(&mut sub, "the event once committed").await;
    assert_eq!(d.event.id, e.id);
    ack(&mut sub, &d).await;
}

/// Nothing is delivered for a transaction that rolled back; later events still are.
pub async fn check_bus_nothing_for_rolled_back_transaction(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("rollback");
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let open = f.begin_append(&topic, vec![event("k", 1), event("k", 2)]).await;
    open.roll_back().await;
    nothing(&mut sub, "events of a rolled-back transaction").await;
    let later = event("k", 3);
    publish(&*bus, &topic, vec![later.clone()]).await;
    let d = next(&mut sub, "an event published after the rollback").await;
    assert_eq!(d.event.id, later.id, "the rolled-back events never appear");
    ack(&mut sub, &d).await;
}

/// A subscriber already waiting is woken by a publish (bounded generously; the fixtures set
/// the fallback poll far beyond the bound, so this passes only through the wake-up).
pub async fn check_bus_wakes_waiting_subscriber(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("wake");
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    nothing(&mut sub, "an empty topic").await;
    let waiter = tokio::spawn(async move {
        let d = tokio::time::timeout(PATIENCE, sub.next()).await;
        (d, sub)
    });
    let e = event("k", 1);
    publish(&*bus, &topic, vec![e.clone()]).await;
    let (d, mut sub) = expect_ok(waiter.await, "the waiting task");
    let d = expect_ok(d.unwrap_or_else(|_| panic!("no wake-up within {PATIENCE:?}")), "next");
    assert_eq!(d.event.id, e.id);
    ack(&mut sub, &d).await;
}

/// A nacked event comes back to the same group with the next attempt number, before any later
/// event of its key.
pub async fn check_bus_redelivers_after_nack(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("nack");
    let mut sub = subscribe(&*bus, "g", &topic, opts(5)).await;
    let (a, b) = (event("k", 1), event("k", 2));
    publish(&*bus, &topic, vec![a.clone(), b.clone()]).await;
    let d = next(&mut sub, "first delivery").await;
    assert_eq!((d.event.id.as_str(), d.attempt), (a.id.as_str(), 1));
    let nacked = expect_ok(sub.nack(&d, Duration::from_millis(20), "try later").await, "nack");
    assert_eq!(nacked, Nacked::Retrying);
    let again = next(&mut sub, "redelivery after nack").await;
    assert_eq!((again.event.id.as_str(), again.attempt), (a.id.as_str(), 2));
    ack(&mut sub, &again).await;
    let d = next(&mut sub, "the next event").await;
    assert_eq!((d.event.id.as_str(), d.attempt), (b.id.as_str(), 1));
    ack(&mut sub, &d).await;
}

/// A subscriber dropped without settling its delivery (a crash) leaves the event to be
/// delivered again to its group; what was acknowledged and committed is not.
pub async fn check_bus_redelivers_after_crash(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("crash");
    let (a, b, c) = (event("k", 1), event("k", 2), event("k", 3));
    let mut sub = subscribe(&*bus, "g", &topic, opts(5)).await;
    publish(&*bus, &topic, vec![a.clone()]).await;
    let d = next(&mut sub, "first event").await;
    ack(&mut sub, &d).await;
    // Closed gracefully: the acknowledgement of `a` is committed.
    expect_ok(sub.close().await, "close");

    let mut sub = subscribe(&*bus, "g", &topic, opts(5)).await;
    publish(&*bus, &topic, vec![b.clone(), c.clone()]).await;
    let d = next(&mut sub, "second event").await;
    assert_eq!(d.event.id, b.id, "an acknowledged, committed event is not redelivered");
    drop(sub); // crash: `b` unsettled

    let bus = f.restart().await;
    let mut sub = subscribe(&*bus, "g", &topic, opts(5)).await;
    let d = next(&mut sub, "redelivery after a crash").await;
    assert_eq!(d.event.id, b.id, "the unsettled event comes back first");
    ack(&mut sub, &d).await;
    let d = next(&mut sub, "the event after it").await;
    assert_eq!(d.event.id, c.id);
    ack(&mut sub, &d).await;
}

/// Two groups each get every event; one group's acks, nacks and dead letters do not move the
/// other.
pub async fn check_bus_groups_independent(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("groups");
    let mut audit = subscribe(&*bus, "audit", &topic, opts(1)).await;
    let mut realtime = subscribe(&*bus, "realtime", &topic, opts(3)).await;
    let events: Vec<_> = (0..3).map(|n| event("k", n)).collect();
    publish(&*bus, &topic, events.clone()).await;
    for e in &events {
        let d = next(&mut audit, "audit group").await;
        assert_eq!(d.event.id, e.id);
        ack(&mut audit, &d).await;
    }
    nothing(&mut audit, "audit group is done").await;
    let d = next(&mut realtime, "realtime group still has the first event").await;
    assert_eq!(d.event.id, events[0].id, "the other group's acks did not move this one");
    expect_ok(realtime.dead_letter(&d, "poison for realtime only").await, "dead_letter");
    for e in &events[1..] {
        let d = next(&mut realtime, "realtime group").await;
        assert_eq!(d.event.id, e.id);
        ack(&mut realtime, &d).await;
    }
    // A third group, new now, still gets every event.
    let mut late = subscribe(&*bus, "late", &topic, opts(3)).await;
    for e in &events {
        let d = next(&mut late, "a group joining later").await;
        assert_eq!(d.event.id, e.id);
        ack(&mut late, &d).await;
    }
}

/// Two subscribers of one group never both get an event: the second waits, and takes over
/// (from the unsettled event) when the first goes.
pub async fn check_bus_one_subscriber_per_group(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("standby");
    let mut first = subscribe(&*bus, "g", &topic, opts(3)).await;
    let mut second = subscribe(&*bus, "g", &topic, opts(3)).await;
    let (a, b) = (event("k", 1), event("k", 2));
    publish(&*bus, &topic, vec![a.clone(), b.clone()]).await;
    let d = next(&mut first, "the first subscriber").await;
    assert_eq!(d.event.id, a.id);
    nothing(&mut second, "a second subscriber of the same group").await;
    drop(first); // gone with `a` unsettled
    let d = next(&mut second, "the standby takes over").await;
    assert_eq!(d.event.id, a.id, "the unsettled event is delivered to the standby");
    ack(&mut second, &d).await;
    let d = next(&mut second, "and goes on").await;
    assert_eq!(d.event.id, b.id);
    ack(&mut second, &d).await;
}

/// Under interleaved keys each key's events arrive in publish order, and a nacked event is
/// retried before any later event of its key.
pub async fn check_bus_per_key_order(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("order");
    let mut sub =
        subscribe(&*bus, "g", &topic, SubscribeOptions { max_attempts: 5, batch: 3 }).await;
    let keys = ["alice", "bob", "carol"];
    let events: Vec<_> = (0..30u32).map(|n| event(keys[n as usize % 3], n)).collect();
    for chunk in events.chunks(4) {
        publish(&*bus, &topic, chunk.to_vec()).await;
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut nacked_once = false;
    let mut acked = 0;
    while acked < events.len() {
        let d = next(&mut sub, "interleaved events").await;
        let key = d.event.partitionkey.clone().unwrap_or_default();
        if n_of(&d) == 10 && !nacked_once {
            nacked_once = true;
            expect_ok(sub.nack(&d, Duration::from_millis(20), "once").await, "nack");
            continue;
        }
        seen.entry(key).or_default().push(n_of(&d));
        ack(&mut sub, &d).await;
        acked += 1;
    }
    for (key, ns) in &seen {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, &sorted, "events of key '{key}' arrive in publish order");
        assert_eq!(ns.len(), 10, "every event of key '{key}' arrives once");
    }
}

/// After `max_attempts` deliveries a nack publishes the event to `{topic}.dlq` with the error
/// recorded, and the group moves on to the next event.
pub async fn check_bus_dead_letter_after_max_attempts(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("dlq");
    let mut dead = subscribe(&*bus, "inspector", &format!("{topic}.dlq"), opts(3)).await;
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let (poison, fine) = (event("k", 1), event("k", 2));
    publish(&*bus, &topic, vec![poison.clone(), fine.clone()]).await;
    for attempt in 1..=3 {
        let d = next(&mut sub, "the failing event").await;
        assert_eq!((d.event.id.as_str(), d.attempt), (poison.id.as_str(), attempt));
        let error = format!("boom {attempt}");
        let r = expect_ok(sub.nack(&d, Duration::from_millis(10), &error).await, "nack");
        let want = if attempt == 3 { Nacked::DeadLettered } else { Nacked::Retrying };
        assert_eq!(r, want, "attempt {attempt} of 3");
    }
    let d = next(&mut sub, "the consumer moves on").await;
    assert_eq!((d.event.id.as_str(), d.attempt), (fine.id.as_str(), 1));
    ack(&mut sub, &d).await;
    nothing(&mut sub, "the dead-lettered event does not come back").await;

    let letter = next(&mut dead, "the dead letter").await;
    let ext = |k: &str| letter.event.extensions.get(k).cloned();
    assert_eq!(ext(dlq::ERROR), Some(json!("boom 3")), "the last error is recorded");
    assert_eq!(ext(dlq::GROUP), Some(json!("g")));
    assert_eq!(ext(dlq::ATTEMPTS), Some(json!(3)));
    assert_eq!(ext(dlq::ORIGINAL_ID), Some(json!(poison.id)));
    assert_eq!(letter.event.data, poison.data, "the dead letter carries the event");
    assert_ne!(letter.event.id, poison.id, "a dead letter is a new event");
    ack(&mut dead, &letter).await;
}

/// `dead_letter` sends a poison event to the DLQ at its first attempt.
pub async fn check_bus_dead_letter_poison_at_once(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("poison");
    let mut dead = subscribe(&*bus, "inspector", &format!("{topic}.dlq"), opts(3)).await;
    let mut sub = subscribe(&*bus, "g", &topic, opts(5)).await;
    let (poison, fine) = (event("k", 1), event("k", 2));
    publish(&*bus, &topic, vec![poison.clone(), fine.clone()]).await;
    let d = next(&mut sub, "the poison event").await;
    expect_ok(sub.dead_letter(&d, "payload 'x' is not a task").await, "dead_letter");
    let d = next(&mut sub, "the consumer moves on").await;
    assert_eq!(d.event.id, fine.id);
    ack(&mut sub, &d).await;
    let letter = next(&mut dead, "the dead letter").await;
    assert_eq!(letter.event.extensions.get(dlq::ERROR), Some(&json!("payload 'x' is not a task")));
    assert_eq!(letter.event.extensions.get(dlq::ATTEMPTS), Some(&json!(1)));
    ack(&mut dead, &letter).await;
}

/// Failed attempts are remembered across a restart: the count resumes, and `max_attempts`
/// still ends in the DLQ.
pub async fn check_bus_attempts_survive_restart(f: &impl BusFixture) {
    let bus = f.bus();
    let topic = unique("attempts");
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let e = event("k", 1);
    publish(&*bus, &topic, vec![e.clone()]).await;
    for attempt in 1..=2 {
        let d = next(&mut sub, "the failing event").await;
        assert_eq!(d.attempt, attempt);
        expect_ok(sub.nack(&d, Duration::from_millis(10), "down").await, "nack");
    }
    drop(sub);
    let bus = f.restart().await;
    let mut sub = subscribe(&*bus, "g", &topic, opts(3)).await;
    let d = next(&mut sub, "after the restart").await;
    assert_eq!((d.event.id.as_str(), d.attempt), (e.id.as_str(), 3), "the count resumes");
    let r = expect_ok(sub.nack(&d, Duration::from_millis(10), "down").await, "nack");
    assert_eq!(r, Nacked::DeadLettered);
    nothing(&mut sub, "the dead-lettered event").await;
}
