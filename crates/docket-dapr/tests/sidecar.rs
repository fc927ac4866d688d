//! The test sidecar driving a tiny axum app the way daprd does: subscriptions read from
//! `GET /dapr/subscribe`, deliveries honouring SUCCESS, RETRY and DROP, dead letters after
//! the last attempt, and jobs triggered at their due time on the sidecar's clock (a deleted
//! job never fires).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use docket_dapr::testing::{Answer, ManualClock, RetryPolicy, SidecarClock, TestSidecar};
use docket_dapr::{DaprClient, Job};
use docket_events::CloudEvent;
use jiff::Timestamp;
use serde_json::{Value, json};

/// What the app saw: events per route, job triggers, and attempts per event id.
#[derive(Default)]
struct Seen {
    events: Vec<(String, CloudEvent)>,
    jobs: Vec<(String, Value)>,
    attempts: HashMap<String, u32>,
}

type Shared = Arc<Mutex<Seen>>;

/// The app's answer depends on the event's `subject`.
async fn on_event(State(seen): State<Shared>, body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let event = match CloudEvent::parse(&body) {
        Ok(e) => e,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut seen = seen.lock().expect("lock");
    let attempt = {
        let n = seen.attempts.entry(event.id.clone()).or_default();
        *n += 1;
        *n
    };
    let subject = event.subject.clone().unwrap_or_default();
    seen.events.push(("/events".into(), event));
    let status = match (subject.as_str(), attempt) {
        ("retry-once", 1) | ("always-retry", _) => "RETRY",
        ("drop", _) => "DROP",
        ("fail-500", _) => return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => "SUCCESS",
    };
    Json(json!({ "status": status })).into_response()
}

async fn on_dead_letter(State(seen): State<Shared>, body: axum::body::Bytes) -> Json<Value> {
    let event = CloudEvent::parse(&body).expect("a dead letter is a CloudEvent");
    seen.lock().expect("lock").events.push(("/dead".into(), event));
    Json(json!({ "status": "SUCCESS" }))
}

async fn on_job(
    State(seen): State<Shared>,
    Path(name): Path<String>,
    Json(data): Json<Value>,
) -> axum::http::StatusCode {
    seen.lock().expect("lock").jobs.push((name, data));
    axum::http::StatusCode::OK
}

async fn subscriptions() -> Json<Value> {
    Json(json!([
        { "pubsubname": "pubsub", "topic": "task-events", "route": "/events",
          "deadLetterTopic": "task-events.dlq", "metadata": {} },
        { "pubsubname": "pubsub", "topic": "task-events.dlq", "routes": { "default": "/dead" } },
    ]))
}

/// The app on 127.0.0.1:0 and what it saw.
async fn app() -> (String, Shared) {
    let seen = Shared::default();
    let router = Router::new()
        .route("/dapr/subscribe", get(subscriptions))
        .route("/events", post(on_event))
        .route("/dead", post(on_dead_letter))
        .route("/job/{name}", post(on_job))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    (url, seen)
}

fn event(subject: &str) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7().to_string(),
        source: "/docket/api".into(),
        ty: "com.todo.task.created".into(),
        subject: Some(subject.into()),
        time: None,
        datacontenttype: Some("application/json".into()),
        partitionkey: Some("user-1".into()),
        sequence: None,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        extensions: BTreeMap::new(),
        data: Some(json!({"n": 1})),
    }
}

fn answers(sidecar: &TestSidecar, id: &str) -> Vec<Answer> {
    sidecar.deliveries().into_iter().filter(|d| d.event_id == id).map(|d| d.answer).collect()
}

#[tokio::test]
async fn deliveries_honour_success_retry_drop_and_dead_letter() {
    let policy = RetryPolicy { max_attempts: 3, delay: Duration::from_millis(1) };
    let sidecar = TestSidecar::builder().retry(policy).start().await.expect("start");
    let (app_url, seen) = app().await;
    let subs = sidecar.attach_app(&app_url).await.expect("attach");
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].dead_letter_topic.as_deref(), Some("task-events.dlq"));
    assert_eq!(subs[1].route, "/dead");

    let client = sidecar.client();
    let [ok, once, drop, poison, failing] =
        ["ok", "retry-once", "drop", "always-retry", "fail-500"].map(event);
    for e in [&ok, &once, &drop] {
        client.publish("pubsub", "task-events", e).await.expect("publish");
    }
    client
        .bulk_publish("pubsub", "task-events", &[poison.clone(), failing.clone()])
        .await
        .expect("bulk");
    client.publish("other-pubsub", "task-events", &event("ok")).await.expect("publish");
    sidecar.idle().await;

    assert_eq!(answers(&sidecar, &ok.id), [Answer::Success]);
    assert_eq!(answers(&sidecar, &once.id), [Answer::Retry, Answer::Success], "redelivered");
    assert_eq!(answers(&sidecar, &drop.id), [Answer::Drop], "dropped, not retried");
    assert_eq!(answers(&sidecar, &poison.id)[..3], [Answer::Retry, Answer::Retry, Answer::Retry]);
    assert_eq!(
        answers(&sidecar, &failing.id)[..3],
        [Answer::Status(500), Answer::Status(500), Answer::Status(500)]
    );

    // Exhausted retries went to the dead-letter topic, and from there to its subscriber.
    let dead: Vec<String> = sidecar
        .published("pubsub", "task-events.dlq")
        .into_iter()
        .map(|p| p.event["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(dead.len(), 2);
    assert!(dead.contains(&poison.id) && dead.contains(&failing.id), "{dead:?}");
    let seen = seen.lock().expect("lock");
    let mut dead_seen: Vec<&str> =
        seen.events.iter().filter(|(r, _)| r == "/dead").map(|(_, e)| e.id.as_str()).collect();
    dead_seen.sort();
    let mut expect = vec![poison.id.as_str(), failing.id.as_str()];
    expect.sort();
    assert_eq!(dead_seen, expect);
    assert!(!seen.events.iter().any(|(_, e)| e.id == drop.id && e.topic() == "task-events.dlq"));

    // The app got our envelope plus the attributes Dapr adds; the trace context is kept.
    let (_, delivered) = seen.events.iter().find(|(_, e)| e.id == ok.id).expect("delivered");
    assert_eq!(delivered.extensions.get("pubsubname"), Some(&json!("pubsub")));
    assert_eq!(delivered.extensions.get("topic"), Some(&json!("task-events")));
    assert_eq!(delivered.traceparent, ok.traceparent);
    assert_eq!(
        delivered.extensions.get("traceid"),
        ok.traceparent.as_ref().map(|t| json!(t)).as_ref()
    );
    let mut stripped = delivered.clone();
    for attr in ["pubsubname", "topic", "traceid", "tracestate"] {
        stripped.extensions.remove(attr);
    }
    assert_eq!(stripped, ok, "nothing else changed");
    assert_eq!(
        seen.events.iter().filter(|(r, _)| r == "/events").count(),
        1 + 2 + 1 + 3 + 3,
        "every attempt reached the route"
    );
}

trait Topic {
    fn topic(&self) -> String;
}

impl Topic for CloudEvent {
    fn topic(&self) -> String {
        self.extensions.get("topic").and_then(Value::as_str).unwrap_or_default().to_owned()
    }
}

async fn with_clock() -> (TestSidecar, ManualClock, DaprClient, Shared) {
    let clock = ManualClock::new("2026-11-18T09:00:00Z".parse().expect("time"));
    let sidecar = TestSidecar::builder()
        .clock(SidecarClock::Manual(clock.clone()))
        .start()
        .await
        .expect("start");
    let (app_url, seen) = app().await;
    sidecar.attach_app(&app_url).await.expect("attach");
    let client = sidecar.client();
    (sidecar, clock, client, seen)
}

#[tokio::test]
async fn a_job_fires_once_at_its_due_time() {
    let (sidecar, clock, client, seen) = with_clock().await;
    // Due 10:01+01:00 = 09:01Z: a minute after the clock's start.
    let due: Timestamp = "2026-11-18T10:01:00+01:00".parse().expect("time");
    let data = json!({"reminder_id": "r1"});
    client
        .schedule_job("reminder-r1", &Job { due_time: due, data: data.clone(), overwrite: false })
        .await
        .expect("schedule");

    clock.advance(Duration::from_secs(59));
    sidecar.run_due_jobs().await;
    assert!(sidecar.job_firings().is_empty(), "never before its due time");
    assert!(seen.lock().expect("lock").jobs.is_empty());

    clock.advance(Duration::from_secs(1));
    sidecar.run_due_jobs().await;
    let firings = sidecar.job_firings();
    assert_eq!(firings.len(), 1);
    assert_eq!((firings[0].fired_at, firings[0].status), (due, Some(200)));
    assert_eq!(seen.lock().expect("lock").jobs, [("reminder-r1".to_owned(), data)]);

    clock.advance(Duration::from_secs(3600));
    sidecar.run_due_jobs().await;
    assert_eq!(sidecar.job_firings().len(), 1, "a one-shot job fires once");
    assert!(sidecar.jobs().is_empty());
}

#[tokio::test]
async fn a_deleted_job_does_not_fire_and_overwrite_moves_one() {
    let (sidecar, clock, client, seen) = with_clock().await;
    let start = clock.now();
    let job = |mins: i64, overwrite| Job {
        due_time: start + jiff::SignedDuration::from_mins(mins),
        data: json!({"mins": mins}),
        overwrite,
    };
    client.schedule_job("cancelled", &job(1, false)).await.expect("schedule");
    client.schedule_job("moved", &job(1, false)).await.expect("schedule");
    client.schedule_job("kept", &job(2, false)).await.expect("schedule");
    client.delete_job("cancelled").await.expect("delete");
    client.schedule_job("moved", &job(5, true)).await.expect("overwrite");

    clock.advance(Duration::from_secs(180));
    sidecar.run_due_jobs().await;
    let names = |seen: &Shared| -> Vec<String> {
        seen.lock().expect("lock").jobs.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(names(&seen), ["kept"]);

    clock.advance(Duration::from_secs(180));
    sidecar.run_due_jobs().await;
    assert_eq!(names(&seen), ["kept", "moved"], "the overwritten job fired at its new time");
    assert!(!names(&seen).contains(&"cancelled".to_owned()));
}
