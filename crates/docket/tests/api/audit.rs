//! The audit log end to end: task writes reach `/api/tasks/{id}/history` and
//! `/api/activity` through the outbox, the embedded bus and the audit consumer running in
//! `docket serve`, on SQLite and PostgreSQL. The consumer is asynchronous, so the tests poll
//! with a bounded timeout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Db, TestServer, on_each_database};

/// How long the audit consumer may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(10);

/// GETs `path` until it answers a page of `n` items (or more), failing after [`CATCH_UP`].
async fn poll_items(s: &TestServer, path: &str, token: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let r = s.get(path, token).await;
        // A deleted task with no entry yet is a 404 until the consumer catches up.
        assert!(matches!(r.status, StatusCode::OK | StatusCode::NOT_FOUND), "{}", r.text);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if r.status == StatusCode::OK && items.len() >= n {
            return items;
        }
        assert!(
            start.elapsed() < CATCH_UP,
            "{path}: {} of {n} entries after {CATCH_UP:?}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn history_lists_every_change(db: Db) {
    let s = TestServer::start_on(db, Vec::new()).await;
    let (alice, alice_id) = s.signup("audit-alice@example.com").await;
    let (bob, _) = s.signup("audit-bob@example.com").await;

    let r = s.post("/api/tasks", &alice, json!({"title": "Audit me"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().expect("task id").to_owned();
    let r = s.patch(&format!("/api/tasks/{id}"), &alice, json!({"title": "Audited"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.post(&format!("/api/tasks/{id}/complete"), &alice, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.post(&format!("/api/tasks/{id}/reopen"), &alice, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.delete(&format!("/api/tasks/{id}"), &alice).await;
    assert!(r.status.is_success(), "{}", r.text);

    let history = poll_items(&s, &format!("/api/tasks/{id}/history"), &alice, 5).await;
    let types: Vec<&str> = history.iter().filter_map(|e| e["event_type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "com.todo.task.created",
            "com.todo.task.updated",
            "com.todo.task.completed",
            "com.todo.task.reopened",
            "com.todo.task.deleted",
        ],
        "the task's history, oldest first"
    );
    for e in &history {
        assert_eq!(e["entity_type"], "task");
        assert_eq!(e["entity_id"].as_str(), Some(id.as_str()));
        for field in ["id", "event_id", "actor", "at"] {
            assert!(e[field].is_string(), "{field} in {e}");
        }
    }
    let changes = &history[1]["data"]["changes"]["title"];
    assert_eq!(changes["old"], "Audit me", "{}", history[1]);
    assert_eq!(changes["new"], "Audited", "{}", history[1]);
    assert_eq!(history[1]["data"]["task"]["title"], "Audited", "the after-image");

    // Paging one entry at a time gives the same list.
    let mut paged = Vec::new();
    let mut path = format!("/api/tasks/{id}/history?limit=1");
    loop {
        let r = s.get(&path, &alice).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        paged.extend(r.body["items"].as_array().cloned().unwrap_or_default());
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/tasks/{id}/history?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, history, "paging skips and repeats nothing");

    let activity = poll_items(&s, "/api/activity", &alice, 5).await;
    assert_eq!(activity, history, "the activity holds the same entries");

    let r = s.get("/api/activity", &bob).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!([]), "another user sees nothing");
    let r = s.get(&format!("/api/tasks/{id}/history"), &bob).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    // With a cursor too: a foreign task's history is not an empty page.
    let r = s.get(&format!("/api/tasks/{id}/history?cursor=1"), &bob).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // The caller's own deleted task, past its last entry: an empty page, not a 404.
    let r = s.get(&format!("/api/tasks/{id}/history?cursor=9223372036854775000"), &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!([]));
    // The seeds' path form serves the same history, and only to its owner.
    let r = s.get(&format!("/api/{alice_id}/tasks/{id}/history"), &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!(history));
    let r = s.get(&format!("/api/{alice_id}/tasks/{id}/history"), &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let r = s.get("/api/activity?cursor=nope", &alice).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

on_each_database!(
    #[tokio::test]
    history_lists_every_change_sqlite,
    history_lists_every_change_postgres => history_lists_every_change
);
