//! Dapr mode end to end. No daprd exists on the build machines, so the server runs against
//! `docket_dapr::testing::TestSidecar`, a fixture following the published Dapr HTTP contract
//! (its module doc cites the pages): the relay publishes the outbox to it, it reads the app's
//! `GET /dapr/subscribe` and delivers to the listed routes as daprd does, honouring SUCCESS,
//! RETRY and DROP, and it fires jobs at `POST /job/{name}`.
//!
//! Flows, with either way of taking deliveries (`--dapr-delivery direct|inbox`): create →
//! audit, complete a recurring task → next instance, a redelivered event changes nothing,
//! poison is dropped and counted (direct) or kept and dead-lettered by its consumer (inbox);
//! and (with `--scheduler dapr`) a reminder becomes a job whose trigger makes the
//! notification, once.

use std::time::Duration;

use docket_app::secret_key::SecretKey;
use docket_dapr::testing::{Answer, TestSidecar};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Db, TestServer, all_activity, on_each_database};

const PUBSUB: &str = "docket-pubsub";

/// How the worker takes deliveries (`--dapr-delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Direct,
    Inbox,
}

async fn start(sidecar: &TestSidecar, db: Db, scheduler: &str) -> TestServer {
    start_with(sidecar, db, scheduler, Delivery::Direct).await
}

async fn start_with(
    sidecar: &TestSidecar,
    db: Db,
    scheduler: &str,
    delivery: Delivery,
) -> TestServer {
    let delivery = match delivery {
        Delivery::Direct => "direct",
        Delivery::Inbox => "inbox",
    };
    let env = vec![
        ("DAPR_HTTP_PORT".to_owned(), sidecar.port().to_string()),
        ("DOCKET_BUS".to_owned(), "dapr".to_owned()),
        ("DOCKET_SCHEDULER".to_owned(), scheduler.to_owned()),
        ("DOCKET_DAPR_DELIVERY".to_owned(), delivery.to_owned()),
    ];
    let s = TestServer::start_on(db, env).await;
    let subscriptions = sidecar.attach_app(&s.url).await.expect("the app serves its subscriptions");
    let mut seen: Vec<(String, String, String, Option<String>)> = subscriptions
        .into_iter()
        .map(|x| (x.pubsubname, x.topic, x.route, x.dead_letter_topic))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                PUBSUB.to_owned(),
                "reminders".to_owned(),
                "/dapr/events/reminders".to_owned(),
                Some("reminders.dlq".to_owned())
            ),
            (
                PUBSUB.to_owned(),
                "task-events".to_owned(),
                "/dapr/events/task-events".to_owned(),
                Some("task-events.dlq".to_owned())
            ),
        ],
        "one subscription per consumed topic"
    );
    s
}

/// Polls `f` until it returns `Some` (at most 30 s).
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_through_the_sidecar(db: Db, delivery: Delivery) {
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    let s = start_with(&sidecar, db, "embedded", delivery).await;
    let (token, _) = s.signup("dapr-bus@example.com").await;

    // create → published to Dapr → delivered → audited.
    let task = s.create("/api/tasks", &token, json!({"title": "Through the sidecar"})).await;
    let entries = until("the audit entry", async || {
        let all = all_activity(&s, &token).await;
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["event_type"], "com.todo.task.created");
    let event_id = entries[0]["event_id"].as_str().expect("event id").to_owned();
    let published = sidecar.published(PUBSUB, "task-events");
    let created = published
        .iter()
        .find(|p| p.event["id"] == event_id.as_str())
        .expect("the relay published the event");
    assert_eq!(created.content_type, "application/cloudevents+json");
    assert_eq!(created.event["data"]["task"]["id"], task.as_str());
    // Each topic has its own relay loop: task-updates may trail task-events a little.
    until("the event on task-updates", async || {
        let all = sidecar.published(PUBSUB, "task-updates");
        all.iter().any(|p| p.event["id"] == event_id.as_str()).then_some(())
    })
    .await;
    // The sidecar records the app's answer once it has read it, just after the audit commit.
    until("the delivery answered SUCCESS", async || {
        let delivered = sidecar.deliveries();
        delivered
            .iter()
            .any(|d| {
                d.event_id == event_id && d.answer == Answer::Success && d.topic == "task-events"
            })
            .then_some(())
    })
    .await;

    // The same event delivered again (Dapr is at least once): nothing changes.
    let client = sidecar.client();
    let again = docket_events::CloudEvent::parse(created.event.to_string().as_bytes())
        .expect("our envelope");
    client.publish(PUBSUB, "task-events", &again).await.expect("publish again");
    sidecar.idle().await;
    let twice = sidecar.deliveries().iter().filter(|d| d.event_id == event_id).count();
    assert!(twice >= 2, "delivered twice");
    assert_eq!(all_activity(&s, &token).await.len(), 1, "one audit entry per event");

    // Completing a recurring instance: the recurrence consumer, fed by Dapr, makes the next.
    let r = s.post("/api/tasks", &token, json!({"title": "Stretch", "recurrence": "daily"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first = r.id();
    let series = r.body["series_id"].as_str().expect("a series").to_owned();
    let r = s.post(&format!("/api/tasks/{first}/complete"), &token, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let instances = until("the next instance", async || {
        let r = s.get(&format!("/api/tasks?series_id={series}&status=all"), &token).await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await;
    assert!(instances.iter().any(|t| t["status"] == "pending" && t["id"] != first.as_str()));

    // Poison: data no consumer can read is dropped (not retried) and counted.
    let poison = docket_events::CloudEvent::parse(
        json!({
            "specversion": "1.0", "id": "poison-1", "source": "/elsewhere",
            "type": "com.todo.reminder.triggered", "datacontenttype": "application/json",
            "data": {"not": "a reminder"},
        })
        .to_string()
        .as_bytes(),
    )
    .expect("a CloudEvent");
    client.publish(PUBSUB, "reminders", &poison).await.expect("publish poison");
    sidecar.idle().await;
    let answers: Vec<Answer> = sidecar
        .deliveries()
        .into_iter()
        .filter(|d| d.event_id == "poison-1")
        .map(|d| d.answer)
        .collect();
    let metric = |name: &'static str, label: &'static str| {
        let s = &s;
        async move {
            let metrics = s.request(reqwest::Method::GET, "/metrics", None, None).await.text;
            metrics.lines().any(|l| l.starts_with(name) && l.contains(label) && !l.ends_with(" 0"))
        }
    };
    match delivery {
        Delivery::Direct => {
            assert_eq!(answers, vec![Answer::Drop], "dropped at once");
            assert!(
                metric("docket_dapr_deliveries_total{", "status=\"DROP\"").await,
                "the drop is counted"
            );
        }
        Delivery::Inbox => {
            assert_eq!(answers, vec![Answer::Success], "kept, then the consumer's business");
            until("the notifier dead-letters it", async || {
                metric("docket_consumer_dead_lettered_total{", "consumer=\"notifier\"")
                    .await
                    .then_some(())
            })
            .await;
            assert!(
                metric("docket_dapr_deliveries_total{", "status=\"SUCCESS\"").await,
                "deliveries are counted"
            );
        }
    }
    assert!(sidecar.published(PUBSUB, "reminders.dlq").is_empty(), "Dapr dead-lettered nothing");
}

on_each_database!(
    #[tokio::test]
    events_go_through_the_sidecar_sqlite,
    events_go_through_the_sidecar_postgres => events_through_the_sidecar, Delivery::Direct
);

on_each_database!(
    #[tokio::test]
    events_go_through_the_sidecar_into_the_inbox_sqlite,
    events_go_through_the_sidecar_into_the_inbox_postgres => events_through_the_sidecar, Delivery::Inbox
);

#[tokio::test]
async fn a_reminder_becomes_a_dapr_job_whose_trigger_notifies_once() {
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    let s = start(&sidecar, Db::Sqlite, "dapr").await;
    let (token, _) = s.signup("dapr-jobs@example.com").await;
    let r = s.post("/api/tasks", &token, json!({"title": "Take the pills"})).await;
    let task = r.id();
    let r = s.remind_in(&token, &task, 1500, &[]).await;
    let reminder = r.id();
    let fire_at: jiff::Timestamp = r.body["fire_at"].as_str().expect("fire_at").parse().expect("t");

    // The scheduler registers a job due at the fire time.
    let name = format!("reminder-{reminder}");
    let job = until("the job", async || sidecar.jobs().into_iter().find(|j| j.name == name)).await;
    assert_eq!(job.due_time, fire_at);

    // The sidecar triggers it at its due time: the reminder fires, the notifier (fed through
    // Dapr) makes one notification.
    let notes = until("the notification", async || {
        let r = s.get("/api/notifications", &token).await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["title"], "Take the pills");
    let firings = sidecar.job_firings();
    let fired: Vec<_> = firings.iter().filter(|f| f.name == name).collect();
    assert!(!fired.is_empty(), "{firings:?}");
    assert!(fired.iter().all(|f| f.fired_at >= fire_at), "never early: {fired:?}");
    assert_eq!(fired.last().and_then(|f| f.status), Some(200));

    // A repeated trigger (a job fired again) fires nothing twice.
    let r = s.request(reqwest::Method::POST, &format!("/job/{name}"), None, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["reminders"], 0);
    // A marker: a second reminder, on another task, through the same job, relay and notifier.
    // The relay publishes `reminders` in log order, so once the marker's event is published,
    // any event the repeated trigger had made would have been published before it; once the
    // sidecar is idle after the marker's notification, every published event was delivered.
    let r = s.post("/api/tasks", &token, json!({"title": "Marker"})).await;
    let marker_task = r.id();
    let marker = s.remind_in(&token, &marker_task, 300, &[]).await.id();
    until("the marker's notification", async || {
        let r = s.get("/api/notifications", &token).await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        list.iter().any(|n| n["title"] == "Marker").then_some(())
    })
    .await;
    sidecar.idle().await;
    let triggered: Vec<String> = sidecar
        .published(PUBSUB, "reminders")
        .iter()
        .map(|p| p.event["data"]["reminder"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(triggered, [reminder.clone(), marker], "one event per reminder");
    let r = s.get("/api/notifications", &token).await;
    let notes = r.body.as_array().cloned().unwrap_or_default();
    let of_first = notes.iter().filter(|n| n["title"] == "Take the pills").count();
    assert_eq!(of_first, 1, "{}", r.text);
    let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
    assert_eq!(r.body[0]["status"], "fired");
    let _: &Value = &r.body;
}

/// `--secrets dapr`: the database URL and the JWT secret come from the keys of the secret
/// `docket` in the sidecar's secret store, winning over the flags; the server signs with that
/// secret and opens that database.
#[tokio::test]
async fn secrets_come_from_the_sidecars_secret_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("from-the-secret-store.db");
    let jwt = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let key = "qUcQkBUC0Y3xRlkGt3Q0Z1m5m8zHc3dVr8Q8cKX3e7s=";
    let sidecar = TestSidecar::builder()
        .secret_keys(
            "docket-secrets",
            "docket",
            &[
                ("DOCKET_JWT_SECRET", jwt),
                ("DOCKET_SECRET_KEY", key),
                ("DOCKET_DATABASE_URL", &format!("sqlite://{}", database.display())),
            ],
        )
        .start()
        .await
        .expect("sidecar");
    let env = vec![
        ("DAPR_HTTP_PORT".to_owned(), sidecar.port().to_string()),
        ("DOCKET_SECRETS".to_owned(), "dapr".to_owned()),
    ];
    let s = TestServer::start_on(Db::Sqlite, env).await;
    let (token, user) = s.signup("dapr-secrets@example.com").await;
    assert!(database.exists(), "the database named by the secret store was opened");

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(jwt.as_bytes()),
        &validation,
    )
    .expect("the session is signed with the secret from the store");
    assert_eq!(claims.claims["sub"], user.as_str());
    assert!(
        jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"some other secret of enough length!!"),
            &validation,
        )
        .is_err(),
        "and not with another"
    );

    // Webhook secrets are sealed with the key from the store, not one derived from the JWT.
    let body = json!({"url": "https://93.184.216.34/hook", "events": ["com.todo.task.created"]});
    let r = s.post("/api/webhooks", &token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hook: uuid::Uuid = r.body["id"].as_str().expect("id").parse().expect("uuid");
    let conn = rusqlite::Connection::open(&database).expect("open the database");
    let stored: String = conn
        .query_row("SELECT secret FROM webhooks WHERE id = ?1", [hook.as_bytes()], |r| r.get(0))
        .expect("the webhook's row");
    let from_store = SecretKey::parse(key).expect("the key parses");
    let id = docket_core::WebhookId(hook);
    assert_eq!(from_store.open(id, &stored).ok().as_deref(), r.body["secret"].as_str());
    assert!(SecretKey::derive(jwt.as_bytes()).open(id, &stored).is_err(), "{stored}");

    // A misnamed store stops the server at boot rather than falling back.
    let env = vec![
        ("DAPR_HTTP_PORT".to_owned(), sidecar.port().to_string()),
        ("DOCKET_SECRETS".to_owned(), "dapr".to_owned()),
        ("DOCKET_DAPR_SECRET_STORE".to_owned(), "no-such-store".to_owned()),
    ];
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_docket"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .envs(env)
        .output()
        .await
        .expect("run docket serve");
    assert!(!out.status.success(), "a misnamed secret store is fatal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DOCKET_DATABASE_URL"), "names what it could not read: {stderr}");
}

/// In Dapr mode the process is ready only while its sidecar's outbound side is healthy.
#[tokio::test]
async fn readiness_waits_for_the_sidecar() {
    let sidecar = TestSidecar::builder().start().await.expect("sidecar");
    let s = start(&sidecar, Db::Sqlite, "embedded").await;
    let r = s.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // A sidecar that does not answer: not ready (the same fresh database is fine, so the
    // sidecar is why; the reason goes to the log, the answer stays generic).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let env = vec![
        ("DAPR_HTTP_PORT".to_owned(), port.to_string()),
        ("DOCKET_BUS".to_owned(), "dapr".to_owned()),
    ];
    let lonely = TestServer::start_on(Db::Sqlite, env).await;
    let r = lonely.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let r = lonely.request(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "alive all the same");
}
