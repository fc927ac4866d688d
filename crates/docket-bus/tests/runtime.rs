//! The consumer runtime end to end on the embedded bus over SQLite (and PostgreSQL when
//! `DOCKET_TEST_POSTGRES_URL` is set): transient failures retried to success, a poison event
//! dead-lettered with its error while the next one is handled, duplicate deliveries changing
//! nothing, and a restart redelivering only what was not acknowledged.
//!
//! The handler's effect is an event published to `test-effects` per handling of event `n`
//! (partition key `effect-{n}`, a fresh id each time, so every application adds a row),
//! committed with the `processed:` key; invocations, including failed ones, are counted in
//! memory. Waiting is bounded by `timeout`, never by sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docket_bus::conformance::event;
use docket_bus::embedded::EmbeddedBus;
use docket_bus::runtime::{
    Backoff, ConsumerConfig, Handler, HandlerError, Processed, Processor, StoreProcessor,
    run_consumer,
};
use docket_bus::{EventBus, Message, SubscribeOptions, dlq};
use docket_events::CloudEvent;
use docket_ports::consume::{ConsumerStore, Effect};
use docket_sqlite::SqliteStore;
use tokio::sync::{mpsc, watch};

const PATIENCE: Duration = Duration::from_secs(10);

fn n_of(e: &CloudEvent) -> u64 {
    e.data.as_ref().and_then(|v| v["n"].as_u64()).unwrap_or(u64::MAX)
}

/// What the test handler does with event `n`.
#[derive(Clone, Copy)]
enum Script {
    Succeed,
    /// Fails transiently this many times, then succeeds.
    FailTimes(u32),
    Poison,
}

/// Invocations per event number (failed ones included), and a channel told of each event
/// whose handling committed ([`Reporting`]).
struct Probe {
    calls: Mutex<HashMap<u64, u32>>,
    done: mpsc::UnboundedSender<u64>,
}

/// The topic the test handler's effect publishes to.
const EFFECTS: &str = "test-effects";

/// The test handler's effect for event `n`: one more row in [`EFFECTS`].
fn effect(n: u64) -> Effect {
    let n32 = u32::try_from(n).expect("small event numbers");
    Effect::Publish { topic: EFFECTS.to_owned(), event: event(&format!("effect-{n}"), n32) }
}

/// The processor under test, telling the probe of each event it committed (after the commit).
struct Reporting {
    inner: StoreProcessor,
    done: mpsc::UnboundedSender<u64>,
}

impl Reporting {
    fn new(store: Arc<dyn ConsumerStore>, handler: Arc<Handler>, probe: &Probe) -> Reporting {
        Reporting { inner: StoreProcessor::new(store, handler), done: probe.done.clone() }
    }
}

#[async_trait::async_trait]
impl Processor for Reporting {
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Message,
        position: bool,
    ) -> Result<Processed, HandlerError> {
        let r = self.inner.process(consumer, topic, delivery, position).await;
        if r == Ok(Processed::Handled) {
            let _ = self.done.send(n_of(&delivery.event));
        }
        r
    }
}

fn handler(scripts: HashMap<u64, Script>, probe: Arc<Probe>) -> Arc<Handler> {
    Arc::new(move |event| {
        let n = n_of(event);
        let call = {
            let mut calls = probe.calls.lock().expect("calls lock");
            let c = calls.entry(n).or_default();
            *c += 1;
            *c
        };
        match scripts.get(&n).copied().unwrap_or(Script::Succeed) {
            Script::Poison => return Err(HandlerError::Permanent(format!("event {n} is poison"))),
            Script::FailTimes(k) if call <= k => {
                return Err(HandlerError::Transient(format!("dependency down (call {call})")));
            }
            _ => {}
        }
        Ok(vec![effect(n)])
    })
}

/// How many times event `n`'s side effect was applied (committed).
async fn effects(store: &SqliteStore, n: u64) -> u32 {
    store
        .raw_read(move |c| {
            let count: u32 = c
                .query_row(
                    "SELECT count(*) FROM outbox WHERE topic = ?1 AND partition_key = ?2",
                    (EFFECTS, format!("effect-{n}")),
                    |row| row.get(0),
                )
                .map_err(|e| docket_ports::StoreError::Conflict(e.to_string()))?;
            Ok(count)
        })
        .await
        .expect("read effects")
}

/// Waits for the processor to report `n` committed events.
async fn committed(rx: &mut mpsc::UnboundedReceiver<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(v)) => got.push(v),
            _ => panic!("only {} of {n} events handled within {PATIENCE:?}: {got:?}", got.len()),
        }
    }
    got
}

struct Rig {
    store: Arc<SqliteStore>,
    bus: Arc<dyn EventBus>,
    dir: tempfile::TempDir,
}

async fn open_at(dir: tempfile::TempDir) -> Rig {
    let path = dir.path().join("docket.db");
    let store = Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::new(store.clone()));
    Rig { store, bus, dir }
}

async fn rig() -> Rig {
    open_at(tempfile::tempdir().expect("tempdir")).await
}

fn config(topic: &str, position_in_transaction: bool) -> ConsumerConfig {
    ConsumerConfig {
        max_attempts: 4,
        backoff: Backoff { base: Duration::from_millis(5), max: Duration::from_millis(50) },
        position_in_transaction,
        ..ConsumerConfig::new("audit", topic)
    }
}

/// A running consumer: its probe, success channel, stop switch and task.
type Running = (
    Arc<Probe>,
    mpsc::UnboundedReceiver<u64>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), docket_bus::BusError>>,
);

fn start(rig: &Rig, scripts: HashMap<u64, Script>, cfg: ConsumerConfig) -> Running {
    let (done, rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe { calls: Mutex::default(), done });
    let processor: Arc<dyn Processor> =
        Arc::new(Reporting::new(rig.store.clone(), handler(scripts, Arc::clone(&probe)), &probe));
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_consumer(Arc::clone(&rig.bus), processor, cfg, shutdown));
    (probe, rx, stop, task)
}

async fn stop(
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), docket_bus::BusError>>,
) {
    stop.send_replace(true);
    let r = tokio::time::timeout(PATIENCE, task).await.expect("the consumer stops").expect("join");
    r.expect("the consumer ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_run_in_the_trace_of_their_event() {
    use docket_events::trace::TraceContext;
    let rig = rig().await;
    let (done, mut rx) = mpsc::unbounded_channel();
    let probe = Probe { calls: Mutex::default(), done };
    let seen: Arc<Mutex<HashMap<u64, Option<TraceContext>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let handler: Arc<Handler> = Arc::new(move |event| {
        record.lock().expect("lock").insert(n_of(event), docket_trace::current());
        Ok(Vec::new())
    });
    let processor: Arc<dyn Processor> =
        Arc::new(Reporting::new(rig.store.clone(), handler, &probe));
    let (halt, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_consumer(
        Arc::clone(&rig.bus),
        processor,
        config("t-trace", false),
        shutdown,
    ));
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut traced = event("u1", 1);
    traced.traceparent = Some(parent.to_owned());
    rig.bus.publish("t-trace", vec![traced, event("u1", 2)]).await.expect("publish");
    committed(&mut rx, 2).await;
    let seen = seen.lock().expect("lock").clone();
    let first = seen[&1].expect("a context while handling a traced event");
    assert_eq!(first.trace_id(), "0af7651916cd43dd8448eb211c80319c", "same trace");
    assert_ne!(first.to_string(), parent, "a child span, not the event's own");
    let second = seen[&2].expect("a fresh context for an untraced event");
    assert_ne!(second.trace_id(), first.trace_id());
    stop(halt, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_retried_then_succeeds() {
    let rig = rig().await;
    let scripts = HashMap::from([(1, Script::FailTimes(2))]);
    let (probe, mut rx, halt, task) = start(&rig, scripts, config("t-transient", false));
    rig.bus.publish("t-transient", vec![event("u1", 1), event("u1", 2)]).await.expect("publish");
    let order = committed(&mut rx, 2).await;
    assert_eq!(order, vec![1, 2], "the retried event is handled before the next of its key");
    assert_eq!(probe.calls.lock().expect("lock").get(&1), Some(&3), "two failures, one success");
    assert_eq!(effects(&rig.store, 1).await, 1, "the side effect applied once");
    assert_eq!(effects(&rig.store, 2).await, 1);
    stop(halt, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_dead_lettered_and_the_next_is_handled() {
    let rig = rig().await;
    let mut letters = rig
        .bus
        .subscribe("inspector", "t-poison.dlq", SubscribeOptions::default())
        .await
        .expect("subscribe to the dlq");
    let scripts = HashMap::from([(1, Script::Poison), (2, Script::FailTimes(10))]);
    let (probe, mut rx, halt, task) = start(&rig, scripts, config("t-poison", false));
    let events = vec![event("u1", 1), event("u1", 2), event("u1", 3)];
    rig.bus.publish("t-poison", events.clone()).await.expect("publish");
    assert_eq!(committed(&mut rx, 1).await, vec![3], "the consumer moves on");
    assert_eq!(effects(&rig.store, 1).await, 0, "a poison event changes nothing");
    assert_eq!(effects(&rig.store, 2).await, 0, "nor does one that failed every attempt");
    let calls = probe.calls.lock().expect("lock").clone();
    assert_eq!(calls.get(&1), Some(&1), "a permanent error is not retried");
    assert_eq!(calls.get(&2), Some(&4), "a transient error is retried up to max_attempts");

    let mut dead = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(PATIENCE, letters.next())
            .await
            .expect("a dead letter")
            .expect("next");
        letters.ack(&d).await.expect("ack");
        dead.push(d);
    }
    let ext = |d: &Message, k: &str| d.event.extensions.get(k).cloned();
    assert_eq!(ext(&dead[0], dlq::ORIGINAL_ID), Some(events[0].id.clone().into()));
    assert_eq!(ext(&dead[0], dlq::ERROR), Some("event 1 is poison".into()));
    assert_eq!(ext(&dead[0], dlq::ATTEMPTS), Some(1.into()));
    assert_eq!(ext(&dead[1], dlq::ORIGINAL_ID), Some(events[1].id.clone().into()));
    assert_eq!(ext(&dead[1], dlq::ERROR), Some("dependency down (call 4)".into()));
    assert_eq!(ext(&dead[1], dlq::GROUP), Some("audit".into()));
    stop(halt, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_changes_nothing() {
    let rig = rig().await;
    let (done, mut rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe { calls: Mutex::default(), done });
    let processor =
        Reporting::new(rig.store.clone(), handler(HashMap::new(), Arc::clone(&probe)), &probe);
    let d = Message { event: event("u1", 7), seq: 1, attempt: 1 };
    let first = processor.process("audit", "t-dup", &d, false).await.expect("first delivery");
    assert_eq!(first, Processed::Handled);
    // The same event id again, as a redelivery after a crash would bring it.
    let again = Message { attempt: 2, ..d.clone() };
    let second = processor.process("audit", "t-dup", &again, false).await.expect("duplicate");
    assert_eq!(second, Processed::Duplicate);
    assert_eq!(effects(&rig.store, 7).await, 1, "the second delivery changed nothing");
    assert_eq!(probe.calls.lock().expect("lock").get(&7), Some(&1), "the handler ran once");
    assert_eq!(rx.try_recv().ok(), Some(7));
    // Another consumer has its own key: it handles the event.
    let other = processor.process("realtime", "t-dup", &d, false).await.expect("other consumer");
    assert_eq!(other, Processed::Handled);
}

async fn restart_redelivers_only_unacknowledged(graceful: bool) {
    let topic = "t-restart";
    let rig = rig().await;
    let cfg = config(topic, !graceful);
    let (probe, mut rx, halt, task) = start(&rig, HashMap::new(), cfg.clone());
    rig.bus.publish(topic, (1..=3).map(|n| event("u1", n)).collect()).await.expect("publish");
    committed(&mut rx, 3).await;
    if graceful {
        stop(halt, task).await;
    } else {
        // kill -9 as far as the consumer is concerned: no close, no flush.
        task.abort();
        let _ = task.await;
        drop(halt);
    }
    let first_calls = probe.calls.lock().expect("lock").clone();
    // Drop the bus and the store, reopen the same file.
    let Rig { store, bus, dir } = rig;
    drop(bus);
    drop(store);
    let rig = open_at(dir).await;
    rig.bus.publish(topic, (4..=5).map(|n| event("u1", n)).collect()).await.expect("publish");
    let (probe, mut rx, halt, task) = start(&rig, HashMap::new(), cfg);
    let order = committed(&mut rx, 2).await;
    assert_eq!(order, vec![4, 5], "only the events not acknowledged before the restart");
    stop(halt, task).await;
    let calls = probe.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2, "the handler saw nothing acknowledged again: {calls:?}");
    assert_eq!(first_calls.len(), 3);
    for n in 1..=5 {
        assert_eq!(effects(&rig.store, n).await, 1, "event {n} applied once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_graceful_stop_redelivers_only_unacknowledged() {
    restart_redelivers_only_unacknowledged(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_crash_redelivers_only_unacknowledged() {
    restart_redelivers_only_unacknowledged(false).await;
}

#[test]
fn backoff_doubles_and_is_capped() {
    let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
    let got: Vec<_> = (1..=6).map(|a| b.delay(a, 0.0).as_millis()).collect();
    assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
}

/// The same behaviours through the processor over [`PostgresStore`], when `DOCKET_TEST_POSTGRES_URL` is set.
mod postgres {
    use super::*;
    use docket_postgres::PostgresStore;

    async fn fresh() -> Option<PostgresStore> {
        let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "DOCKET_TEST_POSTGRES_URL must be set when CI is set"
            );
            println!("skipped: DOCKET_TEST_POSTGRES_URL not set");
            return None;
        };
        Some(
            PostgresStore::connect_isolated(&url)
                .await
                .expect("connect to DOCKET_TEST_POSTGRES_URL"),
        )
    }

    /// Fails event 1 transiently twice, rejects event 2, applies the others once each
    /// (one more `test-effects` row in the handler's transaction).
    fn handler(probe: Arc<Probe>) -> Arc<Handler> {
        Arc::new(move |event| {
            let n = n_of(event);
            let call = {
                let mut calls = probe.calls.lock().expect("calls lock");
                let c = calls.entry(n).or_default();
                *c += 1;
                *c
            };
            if n == 1 && call <= 2 {
                return Err(HandlerError::Transient(format!("dependency down (call {call})")));
            }
            if n == 2 {
                return Err(HandlerError::Permanent("event 2 is poison".to_owned()));
            }
            Ok(vec![effect(n)])
        })
    }

    async fn effects(store: &PostgresStore, n: u64) -> u32 {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE topic = $1 AND partition_key = $2",
        )
        .bind(EFFECTS)
        .bind(format!("effect-{n}"))
        .fetch_one(store.raw_pool())
        .await
        .expect("read effects");
        u32::try_from(count).expect("a small count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_dead_letters_and_deduplicates() {
        let Some(store) = fresh().await else { return };
        let bus: Arc<dyn EventBus> =
            Arc::new(EmbeddedBus::new(Arc::new(store.event_log().await.expect("bus"))));
        let topic = "t-pg";
        let mut letters = bus
            .subscribe("inspector", "t-pg.dlq", SubscribeOptions::default())
            .await
            .expect("subscribe to the dlq");
        let (done, mut rx) = mpsc::unbounded_channel();
        let probe = Arc::new(Probe { calls: Mutex::default(), done });
        let processor =
            Arc::new(Reporting::new(Arc::new(store.clone()), handler(Arc::clone(&probe)), &probe));
        let (halt, shutdown) = watch::channel(false);
        let cfg = config(topic, true);
        let task = tokio::spawn(run_consumer(
            Arc::clone(&bus),
            Arc::clone(&processor) as Arc<dyn Processor>,
            cfg,
            shutdown,
        ));
        let events: Vec<_> = (1..=3).map(|n| event("u1", n)).collect();
        bus.publish(topic, events.clone()).await.expect("publish");
        let mut got = Vec::new();
        while got.len() < 2 {
            match tokio::time::timeout(PATIENCE, rx.recv()).await {
                Ok(Some(n)) => got.push(n),
                _ => panic!("only {got:?} handled within {PATIENCE:?}"),
            }
        }
        assert_eq!(got, vec![1, 3], "retried to success, poison skipped, next handled");
        stop(halt, task).await;
        assert_eq!((effects(&store, 1).await, effects(&store, 2).await), (1, 0));
        assert_eq!(effects(&store, 3).await, 1);
        assert_eq!(probe.calls.lock().expect("lock").get(&1), Some(&3));

        let d = tokio::time::timeout(PATIENCE, letters.next()).await.expect("dlq").expect("next");
        assert_eq!(d.event.extensions.get(dlq::ERROR), Some(&"event 2 is poison".into()));
        assert_eq!(d.event.extensions.get(dlq::ORIGINAL_ID), Some(&events[1].id.clone().into()));
        letters.ack(&d).await.expect("ack");

        // A duplicate delivery of event 3 changes nothing.
        let dup = Message { event: events[2].clone(), seq: 3, attempt: 1 };
        let r = processor.process("audit", topic, &dup, false).await.expect("duplicate");
        assert_eq!(r, Processed::Duplicate);
        assert_eq!(effects(&store, 3).await, 1, "the duplicate changed nothing");
        drop((bus, letters, processor));
        store.drop_schema().await.expect("drop the test schema");
    }
}

/// A bus that is unavailable for its first `failures` subscribe calls.
struct DownAtStart {
    inner: Arc<dyn EventBus>,
    failures: Mutex<u32>,
}

#[async_trait::async_trait]
impl EventBus for DownAtStart {
    fn backend(&self) -> &'static str {
        "down-at-start"
    }

    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
    ) -> Result<(), docket_bus::BusError> {
        self.inner.publish(topic, events).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn docket_bus::Subscription>, docket_bus::BusError> {
        {
            let mut left = self.failures.lock().expect("lock");
            if *left > 0 {
                *left -= 1;
                return Err(docket_bus::BusError::Unavailable {
                    backend: "down-at-start",
                    message: "database restarting".to_owned(),
                });
            }
        }
        self.inner.subscribe(group, topic, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_down_at_start_is_waited_for() {
    let rig = rig().await;
    let flaky: Arc<dyn EventBus> =
        Arc::new(DownAtStart { inner: Arc::clone(&rig.bus), failures: Mutex::new(2) });
    let (done, mut rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe { calls: Mutex::default(), done });
    let processor: Arc<dyn Processor> = Arc::new(Reporting::new(
        rig.store.clone(),
        handler(HashMap::new(), Arc::clone(&probe)),
        &probe,
    ));
    let (halt, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_consumer(flaky, processor, config("t-late", false), shutdown));
    rig.bus.publish("t-late", vec![event("u1", 1)]).await.expect("publish");
    assert_eq!(committed(&mut rx, 1).await, vec![1]);
    stop(halt, task).await;

    // A subscription the bus refuses outright is an error, not a retry loop.
    let processor: Arc<dyn Processor> = Arc::new(Reporting::new(
        rig.store.clone(),
        handler(HashMap::new(), Arc::clone(&probe)),
        &probe,
    ));
    let (_halt, shutdown) = watch::channel(false);
    let refused = tokio::time::timeout(
        PATIENCE,
        run_consumer(Arc::clone(&rig.bus), processor, ConsumerConfig::new("", "t-late"), shutdown),
    )
    .await
    .expect("returns at once");
    assert!(matches!(refused, Err(docket_bus::BusError::Invalid(_))), "{refused:?}");
}
