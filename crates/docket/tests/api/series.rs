//! Recurring tasks end to end: completing an instance makes the next one (same template, the
//! next occurrence at the same local time), a second completion of the same instance makes
//! nothing new, a paused series makes nothing (and resuming catches up), a deleted one keeps
//! its instances, a fixed series is made by the scheduler on time, another user sees none of
//! it, and a bad recurrence is a 422 naming the field.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Db, TestServer, postgres_url};

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
    (r.body["id"].as_str().expect("id").to_owned(), series)
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

    // Deleted: gone from the list, its instances stay.
    assert_eq!(s.delete(&format!("/api/series/{series}"), &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/api/series/{series}"), &a).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/series", &a).await.body.as_array().map(Vec::len), Some(1));
    assert_eq!(instances(&s, &a, &series).await.len(), 4, "instances outlive their series");
}

#[tokio::test]
async fn series_lifecycle_sqlite() {
    series_lifecycle(Db::Sqlite).await;
}

#[tokio::test]
async fn series_lifecycle_postgres() {
    let Some(url) = postgres_url("series_lifecycle_postgres") else { return };
    series_lifecycle(Db::Postgres(url)).await;
}

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
