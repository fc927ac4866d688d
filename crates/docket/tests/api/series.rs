//! Recurring tasks end to end: completing an instance makes the next one (same template, the
//! next occurrence at the same local time), a second completion of the same instance makes
//! nothing new, a paused series makes nothing (and resuming catches up), a deleted one keeps
//! its instances (detached), a fixed series is made by the scheduler on time, another user
//! sees none of it, and a bad recurrence is a 422 naming the field. A task update's
//! `recurrence` makes a task recurring, replaces its series' rule or (`null`) ends it; a
//! completion waits for the next instance only when a recurrence consumer may make it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Db, TestServer, on_each_database};

/// The series' instances (tasks with its `series_id`), oldest occurrence first.
async fn instances(s: &TestServer, token: &str, series: &str) -> Vec<Value> {
    let r = s.get(&format!("/api/tasks?status=all&limit=200&series_id={series}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut all: Vec<Value> = r.body["items"].as_array().cloned().unwrap_or_default();
    assert!(all.iter().all(|t| t["series_id"] == series), "the filter keeps the series");
    all.sort_by(|a, b| a["instance_date"].as_str().cmp(&b["instance_date"].as_str()));
    all
}

/// Polls until the series has `n` instances (at most 60 s).
async fn until_instances(s: &TestServer, token: &str, series: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = instances(s, token, series).await;
        if got.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} instances: {got:?}", got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn recurring(s: &TestServer, token: &str, title: &str, due: &str) -> (String, String) {
    let body = json!({
        "title": title,
        "due_date": due,
        "timezone": "Europe/Berlin",
        "tags": ["home"],
        "priority": "high",
        "recurrence": "daily",
    });
    let r = s.post("/api/tasks", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let series = r.body["recurrence"]["series_id"].as_str().expect("series id").to_owned();
    assert_eq!(r.body["series_id"], series.as_str());
    (r.id(), series)
}

/// Completes the task; returns `{task, next}`.
async fn complete(s: &TestServer, token: &str, task: &str) -> Value {
    let r = s.post(&format!("/api/tasks/{task}/complete"), token, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    assert_eq!(r.body["task"]["id"], task, "{}", r.text);
    r.body
}

async fn series_lifecycle(db: Db) {
    let s = TestServer::start_on(db, Vec::new()).await;
    let (a, _) = s.signup("series-a@example.com").await;
    let (b, _) = s.signup("series-b@example.com").await;
    // 09:00 in Berlin, winter time: 08:00Z.
    let (first, series) = recurring(&s, &a, "Water the plants", "2030-12-01T09:00:00").await;
    let got = instances(&s, &a, &series).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["instance_date"], "2030-12-01T09:00:00");
    assert_eq!(got[0]["due_date"], "2030-12-01T08:00:00Z");

    let done = complete(&s, &a, &first).await;
    let got = until_instances(&s, &a, &series, 2).await;
    let next = &got[1];
    // The completion answered with the next instance (the consumer made it in time).
    assert_eq!(done["next"], *next, "the response's next is the instance made");
    assert_eq!(next["instance_date"], "2030-12-02T09:00:00");
    assert_eq!(next["due_date"], "2030-12-02T08:00:00Z", "same local time the next day");
    assert_eq!(next["title"], "Water the plants");
    assert_eq!(next["tags"], json!(["home"]));
    assert_eq!(next["priority"], "high");
    assert_eq!(next["completed"], false);
    let second = next["id"].as_str().expect("id").to_owned();

    // Reopening and completing the first instance again makes nothing new. The consumer
    // handles events in log order, so once the third instance (from completing the second)
    // exists, the repeated completion has been handled too.
    let r = s.post(&format!("/api/tasks/{first}/reopen"), &a, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let again = complete(&s, &a, &first).await;
    assert_eq!(again["next"], Value::Null, "a second completion makes no next instance");
    complete(&s, &a, &second).await;
    let got = until_instances(&s, &a, &series, 3).await;
    let dates: Vec<&str> = got.iter().filter_map(|t| t["instance_date"].as_str()).collect();
    assert_eq!(
        dates,
        ["2030-12-01T09:00:00", "2030-12-02T09:00:00", "2030-12-03T09:00:00"],
        "no duplicate instance"
    );
    let third = got[2]["id"].as_str().expect("id").to_owned();

    // Another user sees and touches none of it.
    assert_eq!(s.get(&format!("/api/series/{series}"), &b).await.status, StatusCode::NOT_FOUND);
    let r = s.post(&format!("/api/series/{series}/pause"), &b, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("/api/series/{series}"), &b).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/series", &b).await.body, json!([]));

    // Paused: completing makes nothing. A second series completed afterwards is the marker.
    let r = s.post(&format!("/api/series/{series}/pause"), &a, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["active"], false);
    let paused = complete(&s, &a, &third).await;
    assert_eq!(paused["next"], Value::Null, "a paused series makes nothing");
    let (marker, marker_series) = recurring(&s, &a, "Marker", "2030-12-01T10:00:00").await;
    complete(&s, &a, &marker).await;
    until_instances(&s, &a, &marker_series, 2).await;
    assert_eq!(instances(&s, &a, &series).await.len(), 3, "a paused series makes nothing");
    // Resuming catches up: the completion made while paused now gets its next instance.
    let r = s.post(&format!("/api/series/{series}/resume"), &a, json!({})).await;
    assert_eq!(r.body["active"], true, "{}", r.text);
    let got = until_instances(&s, &a, &series, 4).await;
    assert_eq!(got[3]["instance_date"], "2030-12-04T09:00:00");

    let r = s.get(&format!("/api/series/{series}"), &a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["title"], "Water the plants");
    assert_eq!(r.body["recurrence"]["preset"], "daily");
    assert_eq!(r.body["instances"], 4);
    let listed = s.get("/api/series", &a).await.body;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // Deleted: gone from the list, its instances stay, detached from it.
    let before = instances(&s, &a, &series).await;
    assert_eq!(s.delete(&format!("/api/series/{series}"), &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/api/series/{series}"), &a).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/series", &a).await.body.as_array().map(Vec::len), Some(1));
    assert_eq!(instances(&s, &a, &series).await.len(), 0, "no task links the deleted series");
    for old in &before {
        let id = old["id"].as_str().expect("id");
        let r = s.get(&format!("/api/tasks/{id}"), &a).await;
        assert_eq!(r.status, StatusCode::OK, "instances outlive their series: {}", r.text);
        let t = &r.body;
        assert_eq!(
            (&t["series_id"], &t["instance_date"], &t["recurrence"]),
            (&Value::Null, &Value::Null, &Value::Null),
            "{t}"
        );
        assert_eq!(t["version"], old["version"].as_i64().expect("version") + 1, "version bumped");
        assert_eq!(t["title"], old["title"]);
        assert_eq!(r.header("etag"), Some(format!("\"{}\"", t["version"]).as_str()));
    }
    // Each detachment is a `task.updated` in the task's history, naming the cleared link.
    let id = before[0]["id"].as_str().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let h = s.get(&format!("/api/tasks/{id}/history"), &a).await;
        let items = h.body["items"].as_array().cloned().unwrap_or_default();
        if let Some(e) = items.iter().find(|e| {
            e["event_type"] == "com.todo.task.updated"
                && !e["data"]["changes"]["series_id"].is_null()
        }) {
            assert_eq!(e["data"]["changes"]["series_id"]["old"], series.as_str(), "{e}");
            assert_eq!(e["data"]["changes"]["series_id"]["new"], Value::Null, "{e}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no detaching update: {}", h.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_each_database!(
    #[tokio::test]
    series_lifecycle_sqlite,
    series_lifecycle_postgres => series_lifecycle
);

#[tokio::test]
async fn bad_recurrences_name_the_field() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("series-bad@example.com").await;
    for (recurrence, field) in [
        (json!({"rule": "FREQ=FORTNIGHTLY"}), "recurrence.rule"),
        (json!({"cron": "61 * * * *"}), "recurrence.cron"),
        (json!({"preset": "daily", "timezone": "Mars/Olympus"}), "recurrence.timezone"),
        (json!({"preset": "daily", "interval": 0}), "recurrence.interval"),
        (json!({"preset": "daily", "rule": "FREQ=DAILY"}), "recurrence"),
        (json!("every so often"), "recurrence"),
    ] {
        let body =
            json!({"title": "x", "due_date": "2030-01-01T09:00:00Z", "recurrence": recurrence});
        let r = s.post("/api/tasks", &a, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{recurrence}: {}", r.text);
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.iter().any(|f| f.starts_with(field)), "{recurrence}: {}", r.text);
    }
    assert_eq!(s.all_tasks(&a).await.len(), 0, "nothing was created");
    let r = s.get("/api/tasks?series_id=nope", &a).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(s.get("/api/series", &a).await.body, json!([]));
}

#[tokio::test]
async fn an_hourly_series_makes_an_instance_per_occurrence() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("series-hourly@example.com").await;
    let body = json!({
        "title": "Stretch",
        "due_date": "2030-06-01T09:00:00Z",
        "recurrence": {"rule": "FREQ=HOURLY;INTERVAL=2", "timezone": "UTC"},
    });
    let r = s.post("/api/tasks", &a, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let series = r.body["series_id"].as_str().expect("series").to_owned();
    complete(&s, &a, r.body["id"].as_str().expect("id")).await;
    let got = until_instances(&s, &a, &series, 2).await;
    assert_eq!(got[1]["instance_date"], "2030-06-01T11:00:00", "the same day, two hours on");
    assert_eq!(got[1]["due_date"], "2030-06-01T11:00:00Z");
}

#[tokio::test]
async fn a_fixed_series_is_made_by_the_scheduler_on_time() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("series-fixed@example.com").await;
    // Every two seconds, whether or not earlier instances are done.
    let start = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
    let body = json!({
        "title": "Tick",
        "due_date": start,
        "recurrence": {"cron": "*/2 * * * * *", "mode": "fixed", "timezone": "UTC"},
    });
    let r = s.post("/api/tasks", &a, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let series = r.body["series_id"].as_str().expect("series").to_owned();
    let got = until_instances(&s, &a, &series, 3).await;
    let dues: Vec<jiff::Timestamp> = got
        .iter()
        .map(|t| t["due_date"].as_str().expect("due").parse().expect("instant"))
        .collect();
    for pair in dues.windows(2) {
        // On occurrences, in order (a scheduler that fell behind skips ahead, never doubles).
        let gap = pair[1].duration_since(pair[0]).as_secs();
        assert!(gap >= 2 && gap % 2 == 0, "on the two-second grid: {dues:?}");
    }
    assert!(got.iter().all(|t| t["completed"] == false), "made without any completion");
    // Each was made once its time came, not before.
    for t in &got[1..] {
        let created: jiff::Timestamp =
            t["created_at"].as_str().expect("created").parse().expect("t");
        let due: jiff::Timestamp = t["due_date"].as_str().expect("due").parse().expect("t");
        assert!(created >= due, "made at or after its time: {t}");
    }
}

async fn updating_the_recurrence(db: Db) {
    let s = TestServer::start_on(db, Vec::new()).await;
    let (a, _) = s.signup("series-update@example.com").await;
    let (b, _) = s.signup("series-update-b@example.com").await;
    let body =
        json!({"title": "Stretch", "due_date": "2030-12-01T09:00:00", "timezone": "Europe/Berlin"});
    let id = s.create("/api/tasks", &a, body).await;
    let path = format!("/api/tasks/{id}");

    // Never silently ignored: a bad rule is a 422 naming the field, and changes nothing.
    for (recurrence, field) in [
        (json!({"rule": "FREQ=FORTNIGHTLY"}), "recurrence.rule"),
        (json!(5), "recurrence"),
        (json!({"preset": "daily", "until": "2020-01-01T00:00:00Z"}), "recurrence"),
    ] {
        for method in [reqwest::Method::PATCH, reqwest::Method::PUT] {
            let body = json!({"title": "Stretch", "recurrence": recurrence});
            let r = s.request(method.clone(), &path, Some(&a), Some(body)).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {recurrence}: {}",
                r.text
            );
            let fields: Vec<&str> = r.body["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(fields.iter().any(|f| f.starts_with(field)), "{recurrence}: {}", r.text);
        }
    }
    assert_eq!(s.get(&path, &a).await.body["version"], 1, "nothing changed");
    let r = s.patch(&path, &b, json!({"recurrence": "daily"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another user's task");

    // A one-off task becomes the first instance of a new series.
    let r = s.patch(&path, &a, json!({"recurrence": "daily"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let series = r.body["series_id"].as_str().expect("now recurring").to_owned();
    assert_eq!(r.body["recurrence"]["preset"], "daily");
    assert_eq!(r.body["recurrence"]["series_id"], series.as_str());
    assert_eq!(r.body["instance_date"], "2030-12-01T09:00:00");
    assert_eq!(r.body["due_date"], "2030-12-01T08:00:00Z");
    assert_eq!(r.body["version"], 2);
    let got = s.get(&format!("/api/series/{series}"), &a).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body["next_occurrence"], "2030-12-02T08:00:00Z", "{}", got.text);

    // On an instance, a new rule for the instances after it (the same rule changes nothing).
    let weekly = json!({"preset": "weekly", "timezone": "Europe/Berlin"});
    let r = s.patch(&path, &a, json!({"recurrence": weekly})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["series_id"].as_str(), r.body["version"].as_i64()),
        (Some(series.as_str()), Some(3))
    );
    assert_eq!(r.body["recurrence"]["preset"], "weekly");
    let r = s.patch(&path, &a, json!({"recurrence": weekly})).await;
    assert_eq!(r.body["version"], 3, "the same rule changes nothing: {}", r.text);
    let got = s.get(&format!("/api/series/{series}"), &a).await;
    assert_eq!(got.body["recurrence"]["preset"], "weekly", "{}", got.text);
    assert_eq!(got.body["next_occurrence"], "2030-12-08T08:00:00Z", "{}", got.text);
    // A PUT without `recurrence` leaves the series alone.
    let body =
        json!({"title": "Stretch", "due_date": "2030-12-01T09:00:00", "timezone": "Europe/Berlin"});
    let r = s.request(reqwest::Method::PUT, &path, Some(&a), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["series_id"], series.as_str(), "{}", r.text);

    let done = complete(&s, &a, &id).await;
    let got = until_instances(&s, &a, &series, 2).await;
    assert_eq!(got[1]["instance_date"], "2030-12-08T09:00:00", "a week on, by the new rule");
    assert_eq!(done["next"], got[1]);
    let next = got[1]["id"].as_str().expect("id").to_owned();

    // `null` ends the series: no more instances, every instance detached.
    let r = s.patch(&format!("/api/tasks/{next}"), &a, json!({"recurrence": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((&r.body["series_id"], &r.body["recurrence"]), (&Value::Null, &Value::Null));
    assert_eq!(r.body["version"], 2);
    assert_eq!(s.get(&format!("/api/series/{series}"), &a).await.status, StatusCode::NOT_FOUND);
    let first = s.get(&path, &a).await.body;
    assert_eq!(first["series_id"], Value::Null, "the other instance is detached too: {first}");
    let r = s.post(&format!("/api/tasks/{next}/complete"), &a, json!({})).await;
    assert_eq!(r.body["next"], Value::Null, "an ended series makes nothing: {}", r.text);
    assert_eq!(instances(&s, &a, &series).await.len(), 0);

    // PUT with a recurrence makes a one-off task recurring too.
    let body =
        json!({"title": "Stretch", "due_date": "2030-12-01T09:00:00Z", "recurrence": "daily"});
    let r = s.request(reqwest::Method::PUT, &path, Some(&a), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["series_id"].is_string(), "{}", r.text);
    assert_ne!(r.body["series_id"], series.as_str(), "a new series");
}

on_each_database!(
    #[tokio::test]
    updating_the_recurrence_sqlite,
    updating_the_recurrence_postgres => updating_the_recurrence
);

/// Completes a fresh daily task's first instance on `s`; returns the reply and how long it
/// took.
async fn timed_completion(s: &TestServer, email: &str) -> (Value, Duration) {
    let (a, _) = s.signup(email).await;
    let (first, _) = recurring(s, &a, "Water the plants", "2030-12-01T09:00:00").await;
    let started = std::time::Instant::now();
    let done = complete(s, &a, &first).await;
    (done, started.elapsed())
}

#[tokio::test]
async fn completing_waits_only_for_a_consumer_that_may_run() {
    let env = |roles: &str, wait: Option<&str>| {
        let mut env = vec![("DOCKET_ROLES".to_owned(), roles.to_owned())];
        if let Some(w) = wait {
            env.push(("DOCKET_NEXT_INSTANCE_WAIT_MS".to_owned(), w.to_owned()));
        }
        env
    };
    // No worker here, and none elsewhere: `next` is null at once, not after a second.
    let s = TestServer::start_on(Db::Sqlite, env("api,scheduler", Some("0"))).await;
    let (done, took) = timed_completion(&s, "wait-none@example.com").await;
    assert_eq!(done["next"], Value::Null);
    assert!(took < Duration::from_millis(700), "answered without waiting: {took:?}");
    // No worker here, one assumed elsewhere: the configured wait, in full (none comes).
    let s = TestServer::start_on(Db::Sqlite, env("api,scheduler", Some("300"))).await;
    let (done, took) = timed_completion(&s, "wait-some@example.com").await;
    assert_eq!(done["next"], Value::Null);
    assert!(took >= Duration::from_millis(300), "waited for a worker elsewhere: {took:?}");
    // All roles in this process: the wait is 1 s and the next instance comes within it; the
    // flag is for API-only processes.
    let s = TestServer::start_on(Db::Sqlite, env("api,worker,scheduler", Some("0"))).await;
    let (done, _) = timed_completion(&s, "wait-all@example.com").await;
    assert_eq!(done["next"]["instance_date"], "2030-12-02T09:00:00", "{done}");
}
