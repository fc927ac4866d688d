//! Reminders end to end: the routes and their validation, a due reminder firing once, an
//! overdue one firing after a SIGKILL and restart, and two scheduler processes on one
//! PostgreSQL firing each of many reminders exactly once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Db, Reply, TestServer, postgres_url};

fn fields(r: &Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn instant_in(d: Duration) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::try_from(d).expect("duration");
    t.to_string()
}

async fn task(s: &TestServer, token: &str, body: Value) -> String {
    let r = s.post("/api/tasks", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

/// Polls the task's reminders until `n` have fired (at most 60 s); returns the list.
async fn until_fired(s: &TestServer, token: &str, task: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(&format!("/api/tasks/{task}/reminders"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let list = r.body.as_array().cloned().unwrap_or_default();
        if list.iter().filter(|x| x["status"] == "fired").count() >= n {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "not fired in time: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reminder_routes_and_validation() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("remind-routes-a@example.com").await;
    let (b, _) = s.signup("remind-routes-b@example.com").await;
    let t = task(&s, &a, json!({"title": "Dentist", "due_date": "2030-05-01T09:00:00Z"})).await;
    let path = format!("/api/tasks/{t}/reminders");

    let r = s.post(&path, &a, json!({"trigger": {"before_due": "PT15M"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["fire_at"], "2030-05-01T08:45:00Z");
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["channels"], json!(["in_app"]));
    let relative = r.id();
    let r = s
        .post(&path, &a, json!({"trigger": {"at": "2030-04-30T18:00:00Z"}, "channels": ["in_app"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["channels"], json!(["in_app"]));
    let absolute = r.id();
    let list = s.get(&path, &a).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));

    // Moving the due date moves the relative reminder.
    let r =
        s.patch(&format!("/api/tasks/{t}"), &a, json!({"due_date": "2030-05-02T09:00:00Z"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = s.get(&path, &a).await.body;
    let rel = list.as_array().and_then(|l| l.iter().find(|x| x["id"] == relative.as_str()));
    assert_eq!(rel.expect("listed")["fire_at"], "2030-05-02T08:45:00Z");

    for (body, field) in [
        (json!({}), "trigger"),
        (json!({"trigger": {}}), "trigger"),
        (json!({"trigger": {"at": "2030-01-01T00:00:00Z", "before_due": "PT1M"}}), "trigger"),
        (json!({"trigger": {"before_due": "15m"}}), "trigger.before_due"),
        (json!({"trigger": {"before_due": "-PT5M"}}), "trigger.before_due"),
        (json!({"trigger": {"at": "next tuesday"}}), "trigger.at"),
        (json!({"trigger": {"at": "2030-01-01T00:00:00Z"}, "channels": ["sms"]}), "channels"),
        (json!({"trigger": {"at": "2030-01-01T00:00:00Z"}, "channels": ["email"]}), "channels"),
    ] {
        let r = s.post(&path, &a, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text);
        assert!(fields(&r).contains(&field.to_owned()), "{body}: {}", r.text);
    }

    // Another user sees and touches nothing.
    assert_eq!(s.get(&path, &b).await.status, StatusCode::NOT_FOUND);
    let r = s.post(&path, &b, json!({"trigger": {"before_due": "PT1M"}})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("{path}/{absolute}"), &b).await.status, StatusCode::NOT_FOUND);
    let r = s.post(&format!("/api/reminders/{absolute}/snooze"), &b, json!({"for": "PT10M"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&path, &a).await.body.as_array().map(Vec::len), Some(2), "nothing changed");

    // Snooze: a new pending reminder ten minutes from now, same channels.
    let r = s.post(&format!("/api/reminders/{absolute}/snooze"), &a, json!({"for": "PT10M"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["channels"], json!(["in_app"]));
    let fire_at: jiff::Timestamp =
        r.body["fire_at"].as_str().expect("fire_at").parse().expect("instant");
    let ahead = fire_at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((500..=600).contains(&ahead), "about ten minutes ahead: {ahead} s");
    let r = s.post(&format!("/api/reminders/{absolute}/snooze"), &a, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r), ["for"]);

    let r = s.delete(&format!("{path}/{absolute}"), &a).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(s.delete(&format!("{path}/{absolute}"), &a).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("{path}/not-an-id"), &a).await.status, StatusCode::NOT_FOUND);
    let r = s.request(Method::GET, &path, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_due_reminder_fires_once() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("remind-fire@example.com").await;
    let t = task(&s, &a, json!({"title": "Soon"})).await;
    let at = instant_in(Duration::from_millis(500));
    let r = s.post(&format!("/api/tasks/{t}/reminders"), &a, json!({"trigger": {"at": at}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let list = until_fired(&s, &a, &t, 1).await;
    assert_eq!(list[0]["attempts"], 1);
    assert!(list[0]["fired_at"].as_str() >= list[0]["fire_at"].as_str(), "never early: {list:?}");
    // Completing the task cancels a pending one.
    let later = instant_in(Duration::from_secs(3600));
    let r =
        s.post(&format!("/api/tasks/{t}/reminders"), &a, json!({"trigger": {"at": later}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.post(&format!("/api/tasks/{t}/complete"), &a, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let list = s.get(&format!("/api/tasks/{t}/reminders"), &a).await.body;
    let statuses: Vec<&str> =
        list.as_array().expect("list").iter().filter_map(|x| x["status"].as_str()).collect();
    assert_eq!(statuses, ["fired", "canceled"]);
}

#[tokio::test]
async fn an_overdue_reminder_fires_after_a_restart() {
    let mut s = TestServer::start().await;
    let (a, _) = s.signup("remind-restart@example.com").await;
    let t = task(&s, &a, json!({"title": "While down"})).await;
    let at = instant_in(Duration::from_secs(2));
    let r = s.post(&format!("/api/tasks/{t}/reminders"), &a, json!({"trigger": {"at": at}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.kill().await;
    // The reminder comes due while no server runs.
    let due: jiff::Timestamp = at.parse().expect("instant");
    while jiff::Timestamp::now() <= due {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.restart().await;
    let list = until_fired(&s, &a, &t, 1).await;
    assert_eq!(list[0]["attempts"], 1, "fired once");
}

#[tokio::test]
async fn two_schedulers_on_postgres_fire_each_reminder_once() {
    use sqlx::Connection as _;
    let Some(url) = postgres_url("two_schedulers_on_postgres_fire_each_reminder_once") else {
        return;
    };
    let roles = |r: &str| vec![("DOCKET_ROLES".to_owned(), r.to_owned())];
    let api = TestServer::start_on(Db::Postgres(url), roles("api")).await;
    let (a, _) = api.signup("remind-pg@example.com").await;
    let at = instant_in(Duration::from_secs(3));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let t = task(&api, &a, json!({"title": format!("task {i}")})).await;
        for _ in 0..10 {
            let r = api
                .post(&format!("/api/tasks/{t}/reminders"), &a, json!({"trigger": {"at": at}}))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        tasks.push(t);
    }
    let one = TestServer::start_on(Db::Shared(api.database.clone()), roles("scheduler")).await;
    let two = TestServer::start_on(Db::Shared(api.database.clone()), roles("scheduler")).await;
    for t in &tasks {
        let list = until_fired(&api, &a, t, 10).await;
        assert!(list.iter().all(|r| r["attempts"] == 1), "claimed once each: {list:?}");
    }
    let mut conn = sqlx::PgConnection::connect(&api.database).await.expect("connect");
    let (events, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload::jsonb -> 'data' -> 'reminder' ->> 'id') \
         FROM outbox WHERE topic = 'reminders'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count events");
    assert_eq!((events, distinct), (100, 100), "one triggered event per reminder");
    drop((one, two));
}

#[tokio::test]
async fn a_fired_reminder_becomes_a_notification_on_the_stream() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("notify-a@example.com").await;
    let (b, _) = s.signup("notify-b@example.com").await;
    let t = task(&s, &a, json!({"title": "Water the plants"})).await;
    let mut stream = crate::stream::Sse::open(&s, &a, None).await;
    let at = instant_in(Duration::from_millis(300));
    let reminder =
        s.create(&format!("/api/tasks/{t}/reminders"), &a, json!({"trigger": {"at": at}})).await;

    // The stream carries the notification (it is a user's own task-updates event).
    let pushed = loop {
        let m = stream.next().await.expect("the stream stays open");
        if m.event.as_deref() == Some("com.todo.notification.created") {
            break m.json();
        }
    };
    let pushed = &pushed["data"]["notification"];
    assert_eq!(pushed["title"], "Water the plants");
    assert_eq!(pushed["reminder_id"], reminder.as_str());

    let r = s.get("/api/notifications?unread=true", &a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.body.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], pushed["id"]);
    assert_eq!(list[0]["task_id"], t.as_str());
    assert_eq!(list[0]["read_at"], Value::Null);
    let id = list[0]["id"].as_str().expect("id").to_owned();

    // Another user sees none and cannot mark it.
    assert_eq!(s.get("/api/notifications", &b).await.body, json!([]));
    let r = s.post(&format!("/api/notifications/{id}/read"), &b, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    let r = s.post(&format!("/api/notifications/{id}/read"), &a, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["read_at"].is_string());
    assert_eq!(s.get("/api/notifications?unread=true", &a).await.body, json!([]));
    assert_eq!(s.get("/api/notifications", &a).await.body.as_array().map(Vec::len), Some(1));
    let r = s.post("/api/notifications/read-all", &a, json!({})).await;
    assert_eq!(r.body["marked"], 0, "{}", r.text);
    let r = s.get("/api/notifications?unread=maybe", &a).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r), ["unread"]);
}

#[tokio::test]
async fn sigkill_during_a_burst_of_firings_loses_and_doubles_nothing() {
    const N: usize = 150;
    let mut s = TestServer::start().await;
    let (a, _) = s.signup("remind-burst@example.com").await;
    let t = task(&s, &a, json!({"title": "Burst"})).await;
    let path = format!("/api/tasks/{t}/reminders");
    // Due one after another over six seconds, starting four seconds from now (creating them
    // all takes well under that, even on a loaded machine).
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    for i in 0..N {
        let at = start + jiff::SignedDuration::from_millis(40 * i as i64);
        let r = s.post(&path, &a, json!({"trigger": {"at": at.to_string()}})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Kill the server once firing is under way, before it is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = s.get(&path, &a).await.body;
        let fired =
            list.as_array().map_or(0, |l| l.iter().filter(|r| r["status"] == "fired").count());
        if fired >= 10 {
            assert!(fired < N, "everything fired before the kill; the burst is too short");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.kill().await;
    s.restart().await;

    let list = until_fired(&s, &a, &t, N).await;
    assert!(list.iter().all(|r| r["attempts"] == 1), "each claimed once: {list:?}");
    // Each firing made one event, and the notifier one notification per event: N of them,
    // one per reminder (a double firing would be a second event, so a second notification).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let notes = loop {
        let notes = s.get("/api/notifications?limit=200", &a).await.body;
        let notes = notes.as_array().cloned().unwrap_or_default();
        if notes.len() >= N {
            break notes;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} notifications", notes.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reminders: std::collections::HashSet<&str> =
        notes.iter().filter_map(|n| n["reminder_id"].as_str()).collect();
    assert_eq!((notes.len(), reminders.len()), (N, N), "one notification per reminder");
}
