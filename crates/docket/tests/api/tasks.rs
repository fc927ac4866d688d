//! Tasks over HTTP: every route's success path, validation (422 naming the field), malformed
//! input (4xx problem+json, never 5xx), optimistic concurrency (ETag / If-Match → 412), and
//! time zone handling of aware and naive instants.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TestServer};

fn fields(r: &Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn assert_problem(r: &Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{}", r.text);
    assert_eq!(r.body["status"].as_u64(), Some(u64::from(status.as_u16())), "{}", r.text);
}

async fn create(s: &TestServer, token: &str, body: Value) -> Value {
    let r = s.post("/api/tasks", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

#[tokio::test]
async fn task_lifecycle() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("life@example.com").await;
    let r = s
        .post(
            "/api/tasks",
            &t,
            json!({"title": "  Pay rent ", "description": "before the 5th", "priority": "high", "tags": ["Home", "money"], "category": "Bills", "due_date": "2026-12-01T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"1\""));
    let task = r.body.clone();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["title"], "Pay rent");
    assert_eq!(task["description"], "before the 5th");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["completed"], false);
    assert_eq!(task["tags"], json!(["home", "money"]));
    assert_eq!(task["category"]["name"], "Bills");
    assert_eq!(task["category"]["color"], "#3b82f6");
    assert_eq!(task["due_date"], "2026-12-01T09:00:00Z");
    assert_eq!(task["version"], 1);
    assert!(task["completed_at"].is_null());

    let got = s.get(&format!("/api/tasks/{id}"), &t).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, task);
    assert_eq!(got.header("etag"), Some("\"1\""));

    let patched = s
        .patch(
            &format!("/api/tasks/{id}"),
            &t,
            json!({"title": "Pay the rent", "description": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["title"], "Pay the rent");
    assert!(patched.body["description"].is_null());
    assert_eq!(patched.body["priority"], "high", "PATCH keeps fields it does not name");
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.header("etag"), Some("\"2\""));

    let put = s
        .request(
            Method::PUT,
            &format!("/api/tasks/{id}"),
            Some(&t),
            Some(json!({"title": "Replaced"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["title"], "Replaced");
    assert_eq!(put.body["priority"], "medium", "PUT resets what it leaves out");
    assert_eq!(put.body["tags"], json!([]));
    assert!(put.body["category"].is_null() && put.body["due_date"].is_null());

    let done = s.post(&format!("/api/tasks/{id}/complete"), &t, json!({})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["task"]["status"], "completed");
    assert_eq!(done.body["task"]["completed"], true);
    assert!(done.body["task"]["completed_at"].is_string());
    assert!(done.body["next"].is_null());

    let reopened = s.post(&format!("/api/tasks/{id}/reopen"), &t, json!({})).await;
    assert_eq!(reopened.status, StatusCode::OK, "{}", reopened.text);
    let reopened_task =
        if reopened.body.get("task").is_some() { &reopened.body["task"] } else { &reopened.body };
    assert_eq!(reopened_task["status"], "pending");
    assert!(reopened_task["completed_at"].is_null());

    let toggled =
        s.request(Method::PATCH, &format!("/api/tasks/{id}/complete"), Some(&t), None).await;
    assert_eq!(toggled.status, StatusCode::OK, "{}", toggled.text);
    assert_eq!(toggled.body["task"]["status"], "completed");
    let toggled =
        s.request(Method::PATCH, &format!("/api/tasks/{id}/complete"), Some(&t), None).await;
    assert_eq!(toggled.body["task"]["status"], "pending");

    let del = s.delete(&format!("/api/tasks/{id}"), &t).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    assert_problem(&s.get(&format!("/api/tasks/{id}"), &t).await, StatusCode::NOT_FOUND);
    assert_problem(&s.delete(&format!("/api/tasks/{id}"), &t).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn seed_clients_completed_flag_and_path_form() {
    let s = TestServer::start().await;
    let (t, uid) = s.signup("seed@example.com").await;
    let (other, other_id) = s.signup("other-seed@example.com").await;
    let r = s
        .post(
            &format!("/api/{uid}/tasks"),
            &t,
            json!({"title": "from the seeds", "completed": true, "extra_field": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "completed");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("/api/{uid}/tasks/{id}"), &t).await.status, StatusCode::OK);
    assert_eq!(
        s.get(&format!("/api/{uid}/tasks"), &t).await.body["items"].as_array().unwrap().len(),
        1
    );
    let toggled =
        s.request(Method::PATCH, &format!("/api/{uid}/tasks/{id}/complete"), Some(&t), None).await;
    assert_eq!(toggled.status, StatusCode::OK, "{}", toggled.text);
    assert_eq!(toggled.body["task"]["status"], "pending");
    let base = format!("/api/{uid}/tasks/{id}");
    let r = s.patch(&base, &t, json!({"priority": "urgent"})).await;
    assert_eq!(
        (r.status, r.body["priority"].as_str()),
        (StatusCode::OK, Some("urgent")),
        "{}",
        r.text
    );
    let r = s.request(Method::PUT, &base, Some(&t), Some(json!({"title": "replaced"}))).await;
    assert_eq!(
        (r.status, r.body["title"].as_str()),
        (StatusCode::OK, Some("replaced")),
        "{}",
        r.text
    );
    let r = s.post(&format!("{base}/complete"), &t, json!({})).await;
    assert_eq!(
        (r.status, r.body["task"]["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{}",
        r.text
    );
    let r = s.post(&format!("{base}/reopen"), &t, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The path form with somebody else's user id is forbidden, whatever the task.
    for (method, path) in [
        (Method::GET, format!("/api/{other_id}/tasks")),
        (Method::POST, format!("/api/{other_id}/tasks")),
        (Method::GET, format!("/api/{other_id}/tasks/{id}")),
        (Method::PATCH, format!("/api/{other_id}/tasks/{id}")),
        (Method::PUT, format!("/api/{other_id}/tasks/{id}")),
        (Method::DELETE, format!("/api/{other_id}/tasks/{id}")),
        (Method::POST, format!("/api/{other_id}/tasks/{id}/complete")),
        (Method::POST, format!("/api/{other_id}/tasks/{id}/reopen")),
        (Method::PATCH, format!("/api/{other_id}/tasks/{id}/complete")),
    ] {
        let r = s.request(method.clone(), &path, Some(&t), Some(json!({"title": "x"}))).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
    }
    // And the other user cannot reach the task through their own path either.
    let r = s.get(&format!("/api/{other_id}/tasks/{id}"), &other).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = s.delete(&base, &t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_problem(&s.get(&base, &t).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_task_route_is_isolated_between_users() {
    let s = TestServer::start().await;
    let (alice, _) = s.signup("alice@example.com").await;
    let (bob, _) = s.signup("bob@example.com").await;
    let task = create(
        &s,
        &alice,
        json!({"title": "alice's secret", "tags": ["private"], "category": "Hidden"}),
    )
    .await;
    let id = task["id"].as_str().unwrap();
    for (method, path, body) in [
        (Method::GET, format!("/api/tasks/{id}"), None),
        (Method::PATCH, format!("/api/tasks/{id}"), Some(json!({"title": "pwned"}))),
        (Method::PUT, format!("/api/tasks/{id}"), Some(json!({"title": "pwned"}))),
        (Method::DELETE, format!("/api/tasks/{id}"), None),
        (Method::POST, format!("/api/tasks/{id}/complete"), None),
        (Method::POST, format!("/api/tasks/{id}/reopen"), None),
        (Method::PATCH, format!("/api/tasks/{id}/complete"), None),
    ] {
        let r = s.request(method.clone(), &path, Some(&bob), body).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    let list = s.get("/api/tasks?status=all", &bob).await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(s.get("/api/tasks?q=secret", &bob).await.body["items"], json!([]));
    assert_eq!(s.get("/api/tags", &bob).await.body, json!([]));
    assert_eq!(s.get("/api/categories", &bob).await.body, json!([]));
    let cat = task["category"]["id"].as_str().unwrap();
    assert_problem(&s.get(&format!("/api/categories/{cat}"), &bob).await, StatusCode::NOT_FOUND);
    assert_problem(
        &s.patch(&format!("/api/categories/{cat}"), &bob, json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(&s.delete(&format!("/api/categories/{cat}"), &bob).await, StatusCode::NOT_FOUND);
    // Bob cannot file his task under Alice's category by id.
    let r = s.post("/api/tasks", &bob, json!({"title": "mine", "category_id": cat})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(fields(&r).contains(&"category_id".to_owned()), "{}", r.text);
    // Alice's task is untouched.
    let after = s.get(&format!("/api/tasks/{id}"), &alice).await;
    assert_eq!(after.body, task);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("valid@example.com").await;
    let long_tag = "x".repeat(51);
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let cases = [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(256)}), "title"),
        (json!({"title": "bell\u{7}"}), "title"),
        (json!({"title": "ok", "description": "x".repeat(4001)}), "description"),
        (json!({"title": "ok", "priority": "critical"}), "priority"),
        (json!({"title": "ok", "status": "done"}), "status"),
        (json!({"title": "ok", "tags": eleven}), "tags"),
        (json!({"title": "ok", "tags": [long_tag]}), "tags"),
        (json!({"title": "ok", "tags": [""]}), "tags"),
        (json!({"title": "ok", "due_date": "tomorrow"}), "due_date"),
        (json!({"title": "ok", "due_date": "2026-02-30T10:00:00Z"}), "due_date"),
        (json!({"title": "ok", "timezone": "Mars/Olympus"}), "timezone"),
        (json!({"title": "ok", "category_id": "not-a-uuid"}), "category_id"),
        (json!({"title": "ok", "category_id": uuid::Uuid::now_v7().to_string()}), "category_id"),
        (json!({"title": "ok", "category": ""}), "category"),
        (json!({"title": "ok", "category": "x".repeat(101)}), "category"),
    ];
    for (body, field) in cases {
        let r = s.post("/api/tasks", &t, body.clone()).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            fields(&r).iter().any(|f| f == field || f.starts_with(&format!("{field}["))),
            "{body}: expected an error on {field}, got {}",
            r.text
        );
    }
    // Several bad fields are reported together.
    let r = s.post("/api/tasks", &t, json!({"title": "", "priority": "x", "due_date": "y"})).await;
    let f = fields(&r);
    assert!(
        f.contains(&"title".into())
            && f.contains(&"priority".into())
            && f.contains(&"due_date".into()),
        "{}",
        r.text
    );
    // The same rules hold on update, and a rejected update changes nothing.
    let task = create(&s, &t, json!({"title": "keep me"})).await;
    let id = task["id"].as_str().unwrap();
    let r =
        s.patch(&format!("/api/tasks/{id}"), &t, json!({"title": "", "priority": "high"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.get(&format!("/api/tasks/{id}"), &t).await.body, task);
    // Nothing was created by any of the rejected requests.
    assert_eq!(s.all_tasks(&t).await.len(), 1);
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("malformed@example.com").await;
    let url = format!("{}/api/tasks", s.url);
    // A create with this raw body and content type.
    let send = |content_type: &'static str, body: String| {
        let req = s.http.post(&url).bearer_auth(&t).header("content-type", content_type).body(body);
        async move { TestServer::read(req.send().await.unwrap()).await }
    };

    let r = send("application/json", "{\"title\": ".into()).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = send("application/json", "[1,2]".into()).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let r = send("text/plain", "{\"title\":\"x\"}".into()).await;
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for body in [
        json!({"title": 5}),
        json!({"title": "x", "tags": "home"}),
        json!({"title": "x", "priority": 3}),
        json!({"title": "x", "due_date": 17}),
    ] {
        let r = s.post("/api/tasks", &t, body.clone()).await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::BAD_REQUEST,
            "{body}: {}",
            r.text
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let huge = json!({"title": "big", "description": "x".repeat(2 * 1024 * 1024)});
    let r = send("application/json", huge.to_string()).await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    // The unread body makes the connection unusable; the client is told not to reuse it.
    assert_eq!(r.header("connection"), Some("close"));

    assert_problem(&s.get("/api/tasks/not-a-uuid", &t).await, StatusCode::NOT_FOUND);
    assert_problem(&s.get("/api/nowhere", &t).await, StatusCode::NOT_FOUND);
    let r = s.request(Method::PATCH, "/api/tasks", Some(&t), Some(json!({}))).await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("sort=bogus", "sort"),
        ("order=sideways", "order"),
        ("status=done", "status"),
        ("priority=critical", "priority"),
        ("due_before=tomorrow", "due_before"),
        ("due_after=2026-13-01", "due_after"),
        ("overdue=maybe", "overdue"),
        ("cursor=garbage", "cursor"),
        ("q=%20--%20", "q"),
        ("tag=a%2Cb", "tag"),
    ] {
        let r = s.get(&format!("/api/tasks?{query}"), &t).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {}", r.text);
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(fields(&r).contains(&field.to_owned()), "{query}: {}", r.text);
    }
    // Nothing above was a server error, and the server is still fine.
    assert_eq!(s.get("/api/tasks", &t).await.status, StatusCode::OK);
}

#[tokio::test]
async fn stale_if_match_is_412_and_changes_nothing() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("etag@example.com").await;
    let task = create(&s, &t, json!({"title": "v1"})).await;
    let id = task["id"].as_str().unwrap();
    let path = format!("/api/tasks/{id}");
    // The answer to `method` on `p` with `If-Match: m`.
    let with_match = |m: &str, method: Method, p: &str, body: Option<Value>| {
        let mut req =
            s.http.request(method, format!("{}{p}", s.url)).bearer_auth(&t).header("if-match", m);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { TestServer::read(req.send().await.unwrap()).await }
    };
    let ok = with_match("\"1\"", Method::PATCH, &path, Some(json!({"title": "v2"}))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.header("etag"), Some("\"2\""));
    for (method, p, body) in [
        (Method::PATCH, path.clone(), Some(json!({"title": "stale"}))),
        (Method::PUT, path.clone(), Some(json!({"title": "stale"}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/complete"), None),
        (Method::PATCH, format!("{path}/complete"), None),
    ] {
        let r = with_match("\"1\"", method.clone(), &p, body).await;
        assert_problem(&r, StatusCode::PRECONDITION_FAILED);
    }
    let r = with_match("garbage", Method::PATCH, &path, Some(json!({"title": "x"}))).await;
    assert!(
        r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PRECONDITION_FAILED,
        "{}",
        r.text
    );
    let now = s.get(&path, &t).await;
    assert_eq!((now.body["title"].as_str(), now.body["version"].as_i64()), (Some("v2"), Some(2)));
    let del = with_match("\"2\"", Method::DELETE, &path, None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn aware_and_naive_instants() {
    let s = TestServer::start().await;
    let r = s
        .request(Method::POST, "/api/auth/signup", None, Some(json!({"email": "tz@example.com", "password": "long enough", "timezone": "America/New_York"})))
        .await;
    let t = r.body["token"].as_str().unwrap().to_owned();
    for (body, expect) in [
        (json!({"title": "z", "due_date": "2026-12-01T09:00:00Z"}), "2026-12-01T09:00:00Z"),
        (
            json!({"title": "offset", "due_date": "2026-12-01T10:00:00+01:00"}),
            "2026-12-01T09:00:00Z",
        ),
        // Naive: the task's zone wins…
        (
            json!({"title": "naive task tz", "due_date": "2026-12-01T10:00:00", "timezone": "Europe/Berlin"}),
            "2026-12-01T09:00:00Z",
        ),
        // …else the user's zone (New York, UTC-5 in December)…
        (
            json!({"title": "naive user tz", "due_date": "2026-12-01T10:00:00"}),
            "2026-12-01T15:00:00Z",
        ),
        // …in summer time too (UTC-4).
        (
            json!({"title": "naive summer", "due_date": "2026-07-01T10:00:00"}),
            "2026-07-01T14:00:00Z",
        ),
    ] {
        let task = create(&s, &t, body.clone()).await;
        assert_eq!(task["due_date"], expect, "{body}");
    }
    // A user without a zone: naive is UTC.
    let (plain, _) = s.signup("utc@example.com").await;
    let task = create(&s, &plain, json!({"title": "utc", "due_date": "2026-12-01T10:00:00"})).await;
    assert_eq!(task["due_date"], "2026-12-01T10:00:00Z");
    // Filters take naive and aware instants as well.
    let r = s.get("/api/tasks?due_before=2026-12-01T09:30:00%2B00:00", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
