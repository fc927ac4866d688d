//! Dapr's app callbacks (`docket_dapr::callbacks`) as the server serves them: merged into
//! docket-http's router over a real SQLite store, driven with `oneshot`. Subscriptions as Dapr
//! reads them; deliveries answered SUCCESS, RETRY or DROP from what the consumers (scripted
//! here) did, or kept in an inbox; the triggers sweeping what is due once; the sidecar's token.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use docket_app::{App, AuthConfig, FixedClock};
use docket_bus::embedded::EmbeddedBus;
use docket_bus::runtime::{HandlerError, Processed, Processor};
use docket_bus::{EventBus as _, Message};
use docket_dapr::bus::DaprBus;
use docket_dapr::callbacks::{AppCallbacks, DaprTopic};
use docket_dapr::testing::TestSidecar;
use docket_http::HttpConfig;
use docket_sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// An app over a fresh SQLite store on `clock`, the store, and the directory holding it.
async fn new_app(clock: Arc<FixedClock>) -> (Arc<App>, Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open the store");
    let store = Arc::new(store);
    let app = App::new(store.clone(), AuthConfig::new("callbacks-test-secret-callbacks-test"))
        .with_clock(clock);
    (Arc::new(app), store, dir)
}

fn clock(at: &str) -> Arc<FixedClock> {
    Arc::new(FixedClock::new(at.parse().expect("an instant")))
}

/// The API router of `app` with `callbacks` mounted, as `docket serve` builds it.
fn serve(app: Arc<App>, callbacks: AppCallbacks) -> Router {
    let config = HttpConfig { callbacks: Some(callbacks.router()), ..HttpConfig::default() };
    docket_http::router(app, config)
}

/// An answer: status, content type, body as JSON (`Null` when it is not) and as text.
struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    body: Value,
    text: String,
}

impl Reply {
    #[track_caller]
    fn problem(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.content_type.as_deref(), Some("application/problem+json"), "{}", self.text);
        assert_eq!(self.body["status"], status.as_u16(), "{}", self.text);
        assert!(["type", "title", "detail"].iter().all(|k| self.body[k].is_string()));
    }
}

/// Sends `method path` with `headers` and, when given, `body` as `content_type`.
async fn send(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some((content_type, body)) => req.header(header::CONTENT_TYPE, content_type).body(body),
        None => req.body(String::new()),
    };
    let resp = router.clone().oneshot(req.expect("a request").map(Body::from)).await;
    let resp = resp.expect("the router is infallible");
    let status = resp.status();
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("the body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

/// What a consumer was given: consumer, topic, event id, the trace it ran in.
type Seen = (String, String, String, Option<String>);

/// The consumers of each topic.
type Topics<'a> = Vec<(&'a str, Vec<(&'a str, Arc<Scripted>)>)>;

/// A consumer that records what it was given and answers as scripted.
struct Scripted {
    answer: fn() -> Result<Processed, HandlerError>,
    seen: Mutex<Vec<Seen>>,
}

impl Scripted {
    fn new(answer: fn() -> Result<Processed, HandlerError>) -> Arc<Scripted> {
        Arc::new(Scripted { answer, seen: Mutex::new(Vec::new()) })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Processor for Scripted {
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Message,
        position: bool,
    ) -> Result<Processed, HandlerError> {
        assert!(!position, "no position is committed in Dapr mode");
        let trace = docket_trace::current().map(|t| t.to_string());
        let event = delivery.event.id.clone();
        self.seen.lock().unwrap().push((consumer.to_owned(), topic.to_owned(), event, trace));
        (self.answer)()
    }
}

fn ok() -> Result<Processed, HandlerError> {
    Ok(Processed::Handled)
}
fn transient() -> Result<Processed, HandlerError> {
    Err(HandlerError::Transient("the database is down".into()))
}
fn permanent() -> Result<Processed, HandlerError> {
    Err(HandlerError::Permanent("data does not parse".into()))
}

/// Callbacks running `topics`' consumers, served over a fresh app (kept in `_dir`).
struct Rig {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn rig(topics: Topics<'_>) -> Rig {
    let topics = topics
        .into_iter()
        .map(|(topic, consumers)| DaprTopic {
            topic: topic.to_owned(),
            consumers: consumers
                .into_iter()
                .map(|(n, p)| (n.to_owned(), p as Arc<dyn Processor>))
                .collect(),
        })
        .collect();
    let (app, _, dir) = new_app(clock("2030-01-01T08:00:00Z")).await;
    let callbacks = AppCallbacks::new(None).run_consumers("docket-pubsub", topics);
    Rig { router: serve(app, callbacks), _dir: dir }
}

/// A task event as the sidecar delivers it: our envelope plus Dapr's attributes.
fn delivered(id: &str) -> String {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/docket/api",
        "type": "com.todo.task.created",
        "time": "2026-11-22T10:00:00Z",
        "datacontenttype": "application/json",
        "partitionkey": "01a20542-0000-7000-8000-000000000001",
        "sequence": "42",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "",
        "traceid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "pubsubname": "docket-pubsub",
        "topic": "task-events",
        "data": {"task": {"id": "x"}},
    })
    .to_string()
}

async fn deliver(router: &Router, topic: &str, body: &str) -> Reply {
    let body = Some(("application/cloudevents+json", body.to_owned()));
    send(router, Method::POST, &format!("/dapr/events/{topic}"), &[], body).await
}

#[tokio::test]
async fn with_an_inbox_a_delivery_is_kept_not_run() {
    let (app, store, _dir) = new_app(clock("2030-01-01T08:00:00Z")).await;
    let sidecar = TestSidecar::builder().start().await.expect("start the sidecar");
    let bus = DaprBus::new(sidecar.client(), "docket-pubsub", EmbeddedBus::new(store.clone()));
    bus.declare_topic("task-events").expect("a valid topic");
    let router = serve(app, AppCallbacks::new(None).keep_in(bus.clone()));
    let mut kept = bus
        .subscribe("audit", "task-events", docket_bus::SubscribeOptions::default())
        .await
        .expect("subscribe to the inbox");

    let r = deliver(&router, "task-events", &delivered("e9")).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({ "status": "SUCCESS" })));
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), kept.next()).await;
    let next = next.expect("the kept event in time").expect("read the inbox");
    assert_eq!(next.event.id, "e9", "kept for the consumers to read later");
    let r = deliver(&router, "task-events", "{\"not\": \"an event\"}").await;
    assert_eq!(r.body, json!({"status": "DROP"}));
    deliver(&router, "reminders", &delivered("e8")).await.problem(StatusCode::NOT_FOUND);

    // The inbox cannot keep it (the database refuses the append): Dapr retries.
    let refuse =
        "CREATE TRIGGER down BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'down'); END";
    let refused = store.raw_write(move |tx| {
        tx.execute_batch(refuse).map_err(|e| docket_ports::StoreError::unavailable("sqlite", e))
    });
    refused.await.expect("install the refusing trigger");
    let r = deliver(&router, "task-events", &delivered("e7")).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({ "status": "RETRY" })));
}

#[tokio::test]
async fn subscriptions_list_each_topic_once_with_its_dead_letter_topic() {
    let (audit, recurrence, notifier) = (Scripted::new(ok), Scripted::new(ok), Scripted::new(ok));
    let rig = rig(vec![
        ("task-events", vec![("audit", audit), ("recurrence", recurrence)]),
        ("reminders", vec![("notifier", notifier)]),
    ])
    .await;
    let r = send(&rig.router, Method::GET, "/dapr/subscribe", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!([
            {"pubsubname": "docket-pubsub", "topic": "task-events",
             "route": "/dapr/events/task-events", "deadLetterTopic": "task-events.dlq",
             "metadata": {}},
            {"pubsubname": "docket-pubsub", "topic": "reminders",
             "route": "/dapr/events/reminders", "deadLetterTopic": "reminders.dlq",
             "metadata": {}},
        ])
    );
    // Callbacks that subscribe to nothing list nothing, and take no delivery.
    let (app, _, _dir) = new_app(clock("2030-01-01T08:00:00Z")).await;
    let plain = serve(app, AppCallbacks::new(None));
    let r = send(&plain, Method::GET, "/dapr/subscribe", &[], None).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!([])));
    deliver(&plain, "task-events", &delivered("e0")).await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_delivery_runs_every_consumer_of_its_topic_in_the_events_trace() {
    let (audit, recurrence) = (Scripted::new(ok), Scripted::new(ok));
    let rig = rig(vec![(
        "task-events",
        vec![("audit", audit.clone()), ("recurrence", recurrence.clone())],
    )])
    .await;
    let r = deliver(&rig.router, "task-events", &delivered("e1")).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"status": "SUCCESS"})));
    for (name, c) in [("audit", &audit), ("recurrence", &recurrence)] {
        let seen = c.seen();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(
            (seen[0].0.as_str(), seen[0].1.as_str(), seen[0].2.as_str()),
            (name, "task-events", "e1")
        );
        let trace = seen[0].3.clone().expect("a trace context");
        assert!(trace.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "the event's trace: {trace}");
    }
    // A topic this process does not consume is not served.
    deliver(&rig.router, "reminders", &delivered("e2")).await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn transient_failures_ask_for_a_retry_and_poison_is_dropped() {
    let (good, flaky) = (Scripted::new(ok), Scripted::new(transient));
    let rig1 = rig(vec![("task-events", vec![("audit", good), ("recurrence", flaky)])]).await;
    let r = deliver(&rig1.router, "task-events", &delivered("e3")).await;
    assert_eq!(r.body, json!({"status": "RETRY"}));

    let (good, poisoned) = (Scripted::new(ok), Scripted::new(permanent));
    let rig2 = rig(vec![("task-events", vec![("audit", good), ("webhooks", poisoned)])]).await;
    let r = deliver(&rig2.router, "task-events", &delivered("e4")).await;
    assert_eq!(r.body, json!({"status": "DROP"}));

    // Transient wins over poison: Dapr retries, then dead-letters.
    let (flaky, poisoned) = (Scripted::new(transient), Scripted::new(permanent));
    let rig3 = rig(vec![("task-events", vec![("a", flaky), ("b", poisoned)])]).await;
    let r = deliver(&rig3.router, "task-events", &delivered("e5")).await;
    assert_eq!(r.body, json!({"status": "RETRY"}));

    // A body that is not our CloudEvent is poison: dropped before any consumer sees it.
    let audit = Scripted::new(ok);
    let rig4 = rig(vec![("task-events", vec![("audit", audit.clone())])]).await;
    for bad in ["not json", "{}", r#"{"specversion":"0.3","id":"x","source":"s","type":"t"}"#] {
        let r = deliver(&rig4.router, "task-events", bad).await;
        assert_eq!((r.status, &r.body), (StatusCode::OK, &json!({"status": "DROP"})), "{bad}");
    }
    assert!(audit.seen().is_empty());
    let metrics = send(&rig4.router, Method::GET, "/metrics", &[], None).await.text;
    assert!(
        metrics.lines().any(|l| l.starts_with("docket_dapr_deliveries_total")
            && l.contains("status=\"DROP\"")
            && l.contains("topic=\"task-events\"")),
        "drops are counted: {metrics}"
    );
}

/// A job trigger and the cron binding sweep what is due, once; the binding answers its
/// probe; with an app token, a caller without it is refused.
#[tokio::test]
async fn triggers_sweep_what_is_due_once_and_need_the_sidecars_token() {
    let clock = clock("2030-01-01T08:00:00Z");
    let (app, _, _dir) = new_app(clock.clone()).await;
    let callbacks = AppCallbacks::new(Some("sidecar-secret".to_owned()))
        .sweep_on_triggers(app.clone(), "docket-sweep");
    let router = serve(app, callbacks);
    let json_body = |v: Value| Some(("application/json", v.to_string()));
    let signup = json!({"email": "dapr-jobs@example.com", "password": "correct horse"});
    let r = send(&router, Method::POST, "/api/auth/signup", &[], json_body(signup)).await;
    let bearer = format!("Bearer {}", r.body["token"].as_str().expect("a token"));
    let user = [("authorization", bearer.as_str())];
    let task = json!({"title": "Pay rent"});
    let r = send(&router, Method::POST, "/api/tasks", &user, json_body(task)).await;
    let id = r.body["id"].as_str().expect("a task id").to_owned();
    let reminders = format!("/api/tasks/{id}/reminders");
    for at in ["2030-01-01T09:00:00Z", "2030-01-01T09:30:00Z"] {
        let reminder = json!({"trigger": {"at": at}});
        let r = send(&router, Method::POST, &reminders, &user, json_body(reminder)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let sidecar = [("dapr-api-token", "sidecar-secret")];
    let trigger = async |method: Method, path: &str, headers: &[(&str, &str)]| {
        send(&router, method, path, headers, None).await
    };

    // Without the token (or with a wrong one): refused, nothing fires.
    trigger(Method::POST, "/job/reminder-1", &[]).await.problem(StatusCode::UNAUTHORIZED);
    let guess = [("dapr-api-token", "guess")];
    trigger(Method::POST, "/docket-sweep", &guess).await.problem(StatusCode::UNAUTHORIZED);
    trigger(Method::GET, "/dapr/subscribe", &[]).await.problem(StatusCode::UNAUTHORIZED);

    // Before the first is due: nothing.
    let r = trigger(Method::POST, "/job/reminder-1", &sidecar).await;
    assert_eq!(r.body, json!({"instances": 0, "reminders": 0}), "{}", r.text);
    clock.set("2030-01-01T09:00:00Z".parse().unwrap());
    let r = trigger(Method::POST, "/job/reminder-1", &sidecar).await;
    assert_eq!(r.body, json!({"instances": 0, "reminders": 1}), "{}", r.text);
    // The same trigger again (Dapr delivers at least once): nothing more.
    let r = trigger(Method::POST, "/job/reminder-1", &sidecar).await;
    assert_eq!(r.body["reminders"], 0);

    // The cron binding: probed, then fires what came due since.
    let probe = trigger(Method::OPTIONS, "/docket-sweep", &sidecar).await;
    assert_eq!(probe.status, StatusCode::OK);
    trigger(Method::OPTIONS, "/other-binding", &sidecar).await.problem(StatusCode::NOT_FOUND);
    trigger(Method::POST, "/other-binding", &sidecar).await.problem(StatusCode::NOT_FOUND);
    clock.set("2030-01-01T10:00:00Z".parse().unwrap());
    let r = trigger(Method::POST, "/docket-sweep", &sidecar).await;
    assert_eq!(r.body, json!({"instances": 0, "reminders": 1}), "{}", r.text);
    let r = trigger(Method::POST, "/docket-sweep", &sidecar).await;
    assert_eq!(r.body["reminders"], 0);
    let list = send(&router, Method::GET, &reminders, &user, None).await;
    let all_fired = list.body.as_array().expect("a list").iter().all(|r| r["status"] == "fired");
    assert!(all_fired, "{}", list.text);

    // Other methods on a one-segment path are simply not routes (404, not 405).
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let r = trigger(method.clone(), "/favicon.ico", &[]).await;
        r.problem(StatusCode::NOT_FOUND);
        assert_eq!(r.body["type"], "urn:docket:problem:no-route", "{method}");
    }

    // Callbacks without triggers serve none.
    let (app, _, _dir) = new_app(clock.clone()).await;
    let plain = serve(app, AppCallbacks::new(None));
    send(&plain, Method::POST, "/job/x", &[], None).await.problem(StatusCode::NOT_FOUND);
    send(&plain, Method::OPTIONS, "/docket-sweep", &[], None).await.problem(StatusCode::NOT_FOUND);
}
