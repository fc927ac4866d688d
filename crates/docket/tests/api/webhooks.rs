//! Webhooks end to end against a real receiver on 127.0.0.1: signed task-event deliveries
//! (the signature checked here with our own HMAC, independent of the server's code), a retry
//! after a 500 with the same delivery id, a reminder's `webhook` channel, giving up after the
//! last attempt (the reminder marked failed, the delivery retried on request), targets on
//! private addresses refused at creation unless the operator allows them, and secrets stored
//! sealed (read from the database itself), a plain one from before sealing sealed at start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{Db, Reply, TestServer, docket, on_each_database, stderr};

/// Registers a webhook to `url` for `events`, asserting `201 Created`; the reply carries its
/// `id` and, this once, its `secret`.
async fn add_webhook(s: &TestServer, token: &str, url: &str, events: &[&str]) -> Reply {
    let r = s.post("/api/webhooks", token, json!({"url": url, "events": events})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver: records every POST to `/hook` and answers with the scripted statuses
/// in order (then 200).
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(script: Vec<u16>) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let record = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (record, script) = (Arc::clone(&record), Arc::clone(&script));
                async move {
                    record.lock().expect("lock").push(Seen { headers, body });
                    let code = script.lock().expect("lock").next().unwrap_or(200);
                    AxumStatus::from_u16(code).expect("status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url: format!("http://{addr}/hook"), seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (at most 30 s) until `n` requests arrived.
    async fn until(&self, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} arrived", seen.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn header<'a>(s: &'a Seen, name: &str) -> &'a str {
    s.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Checks `X-Docket-Signature` the way a receiver would.
fn signed_by(s: &Seen, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(s.body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    header(s, "x-docket-signature") == expected
}

fn env(allow_private: bool) -> Vec<(String, String)> {
    vec![
        ("DOCKET_WEBHOOKS_ALLOW_PRIVATE".to_owned(), allow_private.to_string()),
        ("DOCKET_DELIVERY_BACKOFF".to_owned(), "200ms".to_owned()),
        ("DOCKET_DELIVERY_MAX_ATTEMPTS".to_owned(), "3".to_owned()),
    ]
}

fn field_codes(r: &Reply) -> Vec<(String, String)> {
    r.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the webhook's deliveries until `done` holds (at most 30 s).
async fn deliveries_until(
    s: &TestServer,
    token: &str,
    hook: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get(&format!("/api/webhooks/{hook}/deliveries"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let list = r.body.as_array().cloned().unwrap_or_default();
        if done(&list) {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signed_deliveries_with_a_retry_after_500(db: Db) {
    let receiver = Receiver::start(vec![500]).await;
    let s = TestServer::start_on(db, env(true)).await;
    let (token, user) = s.signup("hooks@example.com").await;
    let (other, _) = s.signup("hooks-other@example.com").await;

    let r = add_webhook(
        &s,
        &token,
        &receiver.url,
        &["com.todo.task.created", "com.todo.task.completed"],
    )
    .await;
    let hook = r.id();
    let secret = r.body["secret"].as_str().expect("the secret, shown once").to_owned();
    assert!(secret.len() >= 32, "a long secret: {secret}");
    assert_eq!(r.body["active"], true);
    let r = s.get(&format!("/api/webhooks/{hook}"), &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("secret").is_none(), "the secret is never shown again: {}", r.text);
    assert_eq!(s.get(&format!("/api/webhooks/{hook}"), &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/webhooks", &other).await.body, json!([]));

    // Another user's task reaches nobody's webhook but theirs.
    let r = s.post("/api/tasks", &other, json!({"title": "Not yours"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let task = s.create("/api/tasks", &token, json!({"title": "Water the plants"})).await;

    // First attempt answered 500, the second 200: the same delivery, sent twice.
    let seen = receiver.until(2).await;
    let (first, second) = (&seen[0], &seen[1]);
    for s in [first, second] {
        assert!(signed_by(s, &secret), "signature checks out: {:?}", s.headers);
        assert_eq!(header(s, "content-type"), "application/json");
        assert_eq!(header(s, "x-docket-event"), "com.todo.task.created");
        let event: Value = serde_json::from_str(&s.body).expect("a JSON body");
        assert_eq!(event["type"], "com.todo.task.created");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["data"]["task"]["id"], task.as_str());
        assert_eq!(event["partitionkey"], user.as_str());
    }
    assert!(!signed_by(first, "whsec_wrong"), "a wrong secret does not verify");
    let delivery = header(first, "x-docket-delivery").to_owned();
    assert!(!delivery.is_empty());
    assert_eq!(header(second, "x-docket-delivery"), delivery, "a retry keeps its delivery id");
    assert_eq!(first.body, second.body, "a retry sends the same body");

    let list =
        deliveries_until(&s, &token, &hook, |l| l.iter().any(|d| d["status"] == "delivered")).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], delivery.as_str());
    assert_eq!(list[0]["attempts"], 2);
    assert_eq!(list[0]["event_type"], "com.todo.task.created");
    assert!(list[0]["last_error"].as_str().unwrap_or_default().contains("500"), "{list:?}");

    // An event type it does not receive goes nowhere; one it does arrives.
    let path = format!("/api/tasks/{task}");
    let r = s.patch(&path, &token, json!({"priority": "high"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.post(&format!("{path}/complete"), &token, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let seen = receiver.until(3).await;
    assert_eq!(header(&seen[2], "x-docket-event"), "com.todo.task.completed");
    assert!(signed_by(&seen[2], &secret));

    // Paused: nothing more arrives.
    let r = s.patch(&format!("/api/webhooks/{hook}"), &token, json!({"active": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], false);
    let r = s.post(&format!("{path}/reopen"), &token, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = s.post(&format!("{path}/complete"), &token, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    // A marker: a later task of the same user, for a second, active webhook. The dispatcher
    // handles the user's events in log order, so once the marker's delivery is listed, the
    // reopen and the completion above have been dispatched too.
    let marker = Receiver::start(Vec::new()).await;
    let r = add_webhook(&s, &token, &marker.url, &["com.todo.task.created"]).await;
    let marker_hook = r.id();
    let r = s.post("/api/tasks", &token, json!({"title": "Marker"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    deliveries_until(&s, &token, &marker_hook, |l| l.len() == 1).await;
    // Nothing was enqueued for the inactive webhook, so nothing can reach it later either.
    let list = deliveries_until(&s, &token, &hook, |_| true).await;
    assert_eq!(list.len(), 2, "the created and completed deliveries only: {list:?}");
    assert_eq!(receiver.seen().len(), 3, "an inactive webhook receives nothing");

    assert_eq!(
        s.delete(&format!("/api/webhooks/{hook}"), &other).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.delete(&format!("/api/webhooks/{hook}"), &token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&format!("/api/webhooks/{hook}"), &token).await.status, StatusCode::NOT_FOUND);
}

on_each_database!(
    #[tokio::test]
    signed_deliveries_with_a_retry_after_500_sqlite,
    signed_deliveries_with_a_retry_after_500_postgres => signed_deliveries_with_a_retry_after_500
);

#[tokio::test]
async fn a_reminder_reaches_webhooks_and_a_failure_is_recorded_not_lost() {
    // Always 500: three attempts, then the delivery and its reminder are failed.
    let receiver = Receiver::start(vec![500, 500, 500]).await;
    let s = TestServer::start_on(Db::Sqlite, env(true)).await;
    let (token, _) = s.signup("hook-reminder@example.com").await;
    let r = add_webhook(&s, &token, &receiver.url, &["com.todo.reminder.triggered"]).await;
    let hook = r.id();
    let secret = r.body["secret"].as_str().expect("secret").to_owned();

    let r = s.post("/api/tasks", &token, json!({"title": "Call the bank"})).await;
    let task = r.id();
    let reminder = s.remind_in(&token, &task, 300, &["webhook", "in_app"]).await.id();

    let seen = receiver.until(3).await;
    for s in &seen {
        assert!(signed_by(s, &secret));
        assert_eq!(header(s, "x-docket-event"), "com.todo.reminder.triggered");
        let event: Value = serde_json::from_str(&s.body).expect("JSON");
        assert_eq!(event["data"]["reminder"]["id"], reminder.as_str());
        assert_eq!(event["data"]["task"]["title"], "Call the bank");
    }
    let list =
        deliveries_until(&s, &token, &hook, |l| l.iter().any(|d| d["status"] == "failed")).await;
    assert_eq!(list[0]["attempts"], 3);
    let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
    let rem = &r.body[0];
    assert_eq!(rem["status"], "failed", "{}", r.text);
    assert!(rem["last_error"].as_str().unwrap_or_default().contains("500"), "{}", r.text);
    // The in-app channel was delivered all the same.
    let r = s.get("/api/notifications", &token).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{}", r.text);

    // Retried on request: the receiver now answers 200, the reminder is fired again.
    let delivery = list[0]["id"].as_str().expect("id");
    let r = s
        .post(&format!("/api/webhooks/{hook}/deliveries/{delivery}/retry"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    receiver.until(4).await;
    deliveries_until(&s, &token, &hook, |l| l.iter().any(|d| d["status"] == "delivered")).await;
    let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
    assert_eq!(r.body[0]["status"], "fired", "{}", r.text);
}

#[tokio::test]
async fn a_reminder_asking_for_webhooks_with_none_subscribed_is_marked_failed() {
    let receiver = Receiver::start(Vec::new()).await;
    let s = TestServer::start_on(Db::Sqlite, env(true)).await;
    let (token, _) = s.signup("hook-none@example.com").await;
    let r = s.post("/api/tasks", &token, json!({"title": "Lonely"})).await;
    let task = r.id();
    s.remind_in(&token, &task, 200, &["webhook"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
        if r.body[0]["status"] == "failed" {
            let error = r.body[0]["last_error"].as_str().unwrap_or_default();
            assert!(error.contains("no active webhook"), "{}", r.text);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reminder = s.get(&format!("/api/tasks/{task}/reminders"), &token).await.body[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Fixed by adding a webhook, then retried: failed → pending, and it fires again.
    add_webhook(&s, &token, &receiver.url, &["com.todo.reminder.triggered"]).await;
    let (other, _) = s.signup("hook-none-other@example.com").await;
    let retry = format!("/api/reminders/{reminder}/retry");
    assert_eq!(s.post(&retry, &other, json!({})).await.status, StatusCode::NOT_FOUND);
    let r = s.post(&retry, &token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    let seen = receiver.until(1).await;
    let event: Value = serde_json::from_str(&seen[0].body).expect("JSON");
    assert_eq!(event["data"]["reminder"]["id"], reminder.as_str());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get(&format!("/api/tasks/{task}/reminders"), &token).await;
        if r.body[0]["status"] == "fired" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only a failed reminder can be retried.
    let r = s.post(&retry, &token, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed_and_input_is_checked() {
    let receiver = Receiver::start(Vec::new()).await;
    let s = TestServer::start_on(Db::Sqlite, env(false)).await;
    let (token, _) = s.signup("hook-private@example.com").await;
    let events = json!(["com.todo.task.created"]);
    for url in [
        receiver.url.clone(),
        "http://localhost:9/hook".to_owned(),
        "http://10.1.2.3/hook".to_owned(),
        "http://192.168.0.10/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]:8080/hook".to_owned(),
        "http://[::ffff:127.0.0.1]/hook".to_owned(),
    ] {
        let r = s.post("/api/webhooks", &token, json!({"url": url, "events": events})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {}", r.text);
        assert_eq!(field_codes(&r), vec![("url".to_owned(), "not_public".to_owned())], "{url}");
    }
    for (body, field) in [
        (json!({"events": events}), "url"),
        (json!({"url": "ftp://example.com/x", "events": events}), "url"),
        (json!({"url": "not a url", "events": events}), "url"),
        (json!({"url": "http://user:pw@example.com/", "events": events}), "url"),
        (json!({"url": "http://8.8.8.8/hook", "events": []}), "events"),
        (json!({"url": "http://8.8.8.8/hook"}), "events"),
        (json!({"url": "http://8.8.8.8/hook", "events": ["com.todo.task.exploded"]}), "events"),
    ] {
        let r = s.post("/api/webhooks", &token, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text);
        assert_eq!(field_codes(&r)[0].0, field, "{body}: {}", r.text);
    }
    let r = s
        .post(
            "/api/webhooks",
            &token,
            json!({"url": "http://8.8.8.8/x", "events": events, "colour": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields refused: {}", r.text);
    assert_eq!(s.get("/api/webhooks", &token).await.body, json!([]), "nothing was created");

    // A public address is accepted; moving it onto a private one is refused.
    let hook = s
        .create("/api/webhooks", &token, json!({"url": "http://8.8.8.8/hook", "events": events}))
        .await;
    let r = s.patch(&format!("/api/webhooks/{hook}"), &token, json!({"url": receiver.url})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        s.get(&format!("/api/webhooks/{hook}"), &token).await.body["url"],
        "http://8.8.8.8/hook"
    );
    assert!(receiver.seen().is_empty());

    // The same loopback receiver is accepted where the operator allows private targets.
    let open = TestServer::start_on(Db::Sqlite, env(true)).await;
    let (token, _) = open.signup("hook-private-ok@example.com").await;
    let r =
        open.post("/api/webhooks", &token, json!({"url": receiver.url, "events": events})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// The secret stored for webhook `hook`, read from the database itself.
async fn stored_secret(s: &TestServer, hook: &str) -> String {
    let id = uuid::Uuid::parse_str(hook).expect("a uuid");
    match s.database.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
            conn.query_row("SELECT secret FROM webhooks WHERE id = ?1", [id.as_bytes()], |r| {
                r.get(0)
            })
            .expect("the webhook's row")
        }
        None => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&s.database).await.expect("connect");
            sqlx::query_scalar("SELECT secret FROM webhooks WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("the webhook's row")
        }
    }
}

/// Overwrites webhook `hook`'s stored secret, as a version before sealing stored it.
async fn store_plain_secret(s: &TestServer, hook: &str, secret: &str) {
    let id = uuid::Uuid::parse_str(hook).expect("a uuid");
    let n = match s.database.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
            let sql = "UPDATE webhooks SET secret = ?2 WHERE id = ?1";
            conn.execute(sql, rusqlite::params![id.as_bytes(), secret]).expect("update") as u64
        }
        None => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&s.database).await.expect("connect");
            sqlx::query("UPDATE webhooks SET secret = $2 WHERE id = $1")
                .bind(id)
                .bind(secret)
                .execute(&mut conn)
                .await
                .expect("update")
                .rows_affected()
        }
    };
    assert_eq!(n, 1, "the webhook's row");
}

/// Creates a webhook on task creation; returns its id and secret.
async fn task_webhook(s: &TestServer, token: &str, url: &str) -> (String, String) {
    let body = json!({"url": url, "events": ["com.todo.task.created"]});
    let r = s.post("/api/webhooks", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hook = r.id();
    (hook, r.body["secret"].as_str().expect("the secret, shown once").to_owned())
}

#[tokio::test]
async fn a_webhook_secret_is_stored_sealed_and_deliveries_are_still_signed() {
    let receiver = Receiver::start(vec![]).await;
    let s = TestServer::start_on(Db::Sqlite, env(true)).await;
    let (token, _) = s.signup("sealed@example.com").await;
    let (hook, secret) = task_webhook(&s, &token, &receiver.url).await;
    let hex = secret.strip_prefix("whsec_").expect("a whsec_ secret");

    let stored = stored_secret(&s, &hook).await;
    assert!(stored.starts_with("v1:"), "stored sealed: {stored}");
    assert!(!stored.contains(hex), "the stored value does not hold the secret: {stored}");
    for path in ["/api/webhooks".to_owned(), format!("/api/webhooks/{hook}")] {
        let r = s.get(&path, &token).await;
        assert!(!r.text.contains("v1:") && !r.text.contains(hex), "{path}: {}", r.text);
    }

    let r = s.post("/api/tasks", &token, json!({"title": "Sealed"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let seen = receiver.until(1).await;
    assert!(signed_by(&seen[0], &secret), "signed with the secret shown at creation");
    assert!(!signed_by(&seen[0], &stored), "not with the stored value");
}

async fn a_plain_secret_is_sealed_at_start_and_still_signs(db: Db) {
    let receiver = Receiver::start(vec![]).await;
    let mut s = TestServer::start_on(db, env(true)).await;
    let (token, _) = s.signup("legacy@example.com").await;
    let (hook, _) = task_webhook(&s, &token, &receiver.url).await;
    let legacy = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    s.kill().await;
    store_plain_secret(&s, &hook, legacy).await;
    s.restart().await;
    let stored = stored_secret(&s, &hook).await;
    assert!(stored.starts_with("v1:"), "sealed before the server listens: {stored}");
    assert!(!stored.contains(&legacy[6..]), "{stored}");

    s.restart().await;
    assert_eq!(stored_secret(&s, &hook).await, stored, "a sealed secret is left as it is");

    let r = s.post("/api/tasks", &token, json!({"title": "From before"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let seen = receiver.until(1).await;
    assert!(signed_by(&seen[0], legacy), "still signed with the old secret: {:?}", seen[0]);
}

on_each_database!(
    #[tokio::test]
    a_plain_secret_is_sealed_at_start_and_still_signs_sqlite,
    a_plain_secret_is_sealed_at_start_and_still_signs_postgres => a_plain_secret_is_sealed_at_start_and_still_signs
);

#[test]
fn a_malformed_secret_key_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("docket.db").display());
    let data = dir.path().to_str().expect("utf-8");
    let args = ["serve", "--listen", "127.0.0.1:0", "--database", &database, "--data-dir", data];
    let out = docket(&args, &[("DOCKET_SECRET_KEY", "too-short")]);
    assert!(!out.status.success(), "refused");
    let err = stderr(&out);
    assert!(err.contains("DOCKET_SECRET_KEY must be 32 bytes"), "{err}");
    assert!(!err.contains("too-short"), "the value is not echoed: {err}");
}
