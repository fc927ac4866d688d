//! Router tests: the whole `router()` driven with `tower::ServiceExt::oneshot` over a real
//! SQLite store in a temporary directory (`FaultyStore`, switched off or made to panic for the
//! readiness checks). They check status codes, problem bodies, headers (ETag, security,
//! request id, Retry-After), the seeds' user-path form, list query validation, the login rate
//! limit, ops endpoints, and that the OpenAPI document and the routes agree.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use docket_app::testing::FaultyStore;
use docket_app::{App, AuthConfig};
use docket_sqlite::SqliteStore;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::{HttpConfig, router};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    #[track_caller]
    fn problem(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        assert_eq!(self.body["status"].as_u64(), Some(u64::from(status.as_u16())), "{}", self.text);
        assert!(
            self.body["type"].is_string()
                && self.body["title"].is_string()
                && self.body["detail"].is_string()
        );
        self
    }
}

struct Harness {
    router: Router,
    store: Arc<FaultyStore<SqliteStore>>,
}

/// A fresh SQLite store in a temporary directory (removed with it) behind the failure switches.
async fn faulty_sqlite() -> FaultyStore<SqliteStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("a utf-8 temporary path"))
        .await
        .expect("a fresh SQLite store opens");
    FaultyStore::new(store).holding(dir)
}

async fn harness_with(config: HttpConfig) -> Harness {
    let store = Arc::new(faulty_sqlite().await);
    let app = App::new(store.clone(), AuthConfig::new("router-test-secret-router-test-secret"));
    Harness { router: router(Arc::new(app), config), store }
}

async fn harness() -> Harness {
    harness_with(HttpConfig::default()).await
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => {
                req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string()))
            }
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    /// Signs up; returns the session token and the user id.
    async fn signup(&self, email: &str) -> (String, String) {
        let r = self
            .call(
                Method::POST,
                "/api/auth/signup",
                None,
                Some(json!({"email": email, "password": "correct horse"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            r.body["token"].as_str().unwrap().to_owned(),
            r.body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn create(&self, token: &str, body: Value) -> Value {
        let r = self.call(Method::POST, "/api/tasks", Some(token), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }
}

#[tokio::test]
async fn signup_me_and_task_lifecycle() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(json!({"email": "Ada@Example.com", "password": "correct horse", "name": "Ada", "timezone": "Europe/Berlin", "extra": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        (r.body["user"]["email"].as_str(), r.body["token_type"].as_str()),
        (Some("ada@example.com"), Some("Bearer"))
    );
    let t = r.body["token"].as_str().unwrap().to_owned();
    let me = h.call(Method::GET, "/api/auth/me", Some(&t), None).await;
    assert_eq!((me.status, me.body["timezone"].as_str()), (StatusCode::OK, Some("Europe/Berlin")));

    let r = h
        .call(
            Method::POST,
            "/api/tasks",
            Some(&t),
            Some(json!({"title": " Pay rent ", "priority": "HIGH", "tags": ["Home", "home", "money"], "category": "Bills", "due_date": "2026-12-01T10:00:00", "unknown": [1]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"1\""));
    let task = r.body.clone();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), Some(format!("/api/tasks/{id}").as_str()));
    assert_eq!(task["title"], "Pay rent");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["home", "money"]));
    assert_eq!(task["category"]["name"], "Bills");
    assert_eq!(task["category"]["color"], "#3b82f6");
    assert_eq!(
        task["due_date"], "2026-12-01T09:00:00Z",
        "a local due date is read in the user's zone"
    );
    assert_eq!(task["timezone"], "Europe/Berlin");
    assert_eq!(
        (task["status"].as_str(), task["completed"].as_bool()),
        (Some("pending"), Some(false))
    );
    assert!(task["completed_at"].is_null());

    let got = h.call(Method::GET, &format!("/api/tasks/{id}"), Some(&t), None).await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &task));

    let patched = h
        .call(
            Method::PATCH,
            &format!("/api/tasks/{id}"),
            Some(&t),
            Some(json!({"description": "soon", "category": null})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        (patched.body["description"].as_str(), patched.body["version"].as_i64()),
        (Some("soon"), Some(2))
    );
    assert!(patched.body["category"].is_null());
    assert_eq!(patched.header("etag"), Some("\"2\""));

    let put = h
        .call(
            Method::PUT,
            &format!("/api/tasks/{id}"),
            Some(&t),
            Some(json!({"title": "Replaced"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(
        (put.body["priority"].as_str(), put.body["tags"].clone()),
        (Some("medium"), json!([]))
    );

    let done =
        h.call(Method::POST, &format!("/api/tasks/{id}/complete"), Some(&t), Some(json!({}))).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["task"]["status"], "completed");
    assert_eq!(done.body["task"]["completed"], true);
    assert!(done.body["task"]["completed_at"].is_string() && done.body["next"].is_null());
    assert_eq!(done.header("etag"), Some("\"4\""));

    let reopened = h.call(Method::POST, &format!("/api/tasks/{id}/reopen"), Some(&t), None).await;
    assert_eq!(
        (reopened.status, reopened.body["status"].as_str()),
        (StatusCode::OK, Some("pending"))
    );
    let toggled = h.call(Method::PATCH, &format!("/api/tasks/{id}/complete"), Some(&t), None).await;
    assert_eq!(
        (toggled.status, toggled.body["task"]["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    assert!(toggled.body["next"].is_null());

    let del = h.call(Method::DELETE, &format!("/api/tasks/{id}"), Some(&t), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    h.call(Method::GET, &format!("/api/tasks/{id}"), Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let h = harness().await;
    let r = h.call(Method::GET, "/api/tasks", None, None).await;
    r.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    h.call(Method::GET, "/api/tasks", Some("garbage"), None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let basic = h
        .call_with(Method::GET, "/api/tasks", None, None, &[("authorization", "Basic YTpi")])
        .await;
    basic.problem(StatusCode::UNAUTHORIZED);
    let bad = h
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"email": "x@example.com", "password": "nope nope"})),
        )
        .await;
    bad.problem(StatusCode::UNAUTHORIZED);

    // Personal access tokens: created once, listed without their secret, revocable.
    let (t, _) = h.signup("pat@example.com").await;
    let created =
        h.call(Method::POST, "/api/auth/tokens", Some(&t), Some(json!({"name": "laptop"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let pat = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(h.call(Method::GET, "/api/auth/me", Some(&pat), None).await.status, StatusCode::OK);
    let list = h.call(Method::GET, "/api/auth/tokens", Some(&t), None).await;
    assert!(list.text.contains("laptop") && !list.text.contains(&pat), "{}", list.text);
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    let r = h.call(Method::POST, "/api/auth/tokens", Some(&t), Some(json!({"name": ""}))).await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["name"]);
    let r = h
        .call(
            Method::POST,
            "/api/auth/tokens",
            Some(&t),
            Some(json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["expires_at"]);
    assert_eq!(
        h.call(Method::DELETE, &format!("/api/auth/tokens/{id}"), Some(&t), None).await.status,
        StatusCode::NO_CONTENT
    );
    h.call(Method::GET, "/api/auth/me", Some(&pat), None).await.problem(StatusCode::UNAUTHORIZED);
    h.call(Method::DELETE, &format!("/api/auth/tokens/{id}"), Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    h.call(Method::DELETE, "/api/auth/tokens/nope", Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_requests_are_problems() {
    let h = harness_with(HttpConfig { body_limit: 1024, ..HttpConfig::default() }).await;
    let (t, _) = h.signup("bad@example.com").await;
    let raw = |body: &'static str, ct: Option<&'static str>| {
        let mut req =
            Request::post("/api/tasks").header(header::AUTHORIZATION, format!("Bearer {t}"));
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    h.send(raw("{\"title\": ", Some("application/json"))).await.problem(StatusCode::BAD_REQUEST);
    h.send(raw("{\"title\": \"x\"} trailing", Some("application/json")))
        .await
        .problem(StatusCode::BAD_REQUEST);
    h.send(raw("{\"title\": \"x\"}", Some("text/plain")))
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    h.send(raw("{\"title\": \"x\"}", None)).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ok = h.send(raw("{\"title\": \"x\"}", Some("application/json; charset=utf-8"))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);

    for (body, field) in [
        (json!({"title": 5}), "title"),
        (json!({"title": "x", "tags": "home"}), "tags"),
        (json!({"title": "x", "tags": ["ok", 3]}), "tags[1]"),
        (json!({"title": "x", "priority": 3}), "priority"),
        (json!({"title": "x", "due_date": 17}), "due_date"),
        (json!({"title": "x", "completed": "yes"}), "completed"),
        (json!([1, 2]), "body"),
    ] {
        let r = h.call(Method::POST, "/api/tasks", Some(&t), Some(body.clone())).await;
        assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), [field], "{body}");
    }
    let big = json!({"title": "big", "description": "x".repeat(2048)});
    let too_large = h.call(Method::POST, "/api/tasks", Some(&t), Some(big)).await;
    too_large.problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.header("connection"), Some("close"));

    h.call(Method::GET, "/api/tasks/not-a-uuid", Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    h.call(Method::GET, "/api/categories/not-a-uuid", Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let nowhere = h.call(Method::GET, "/api/nowhere", Some(&t), None).await;
    nowhere.problem(StatusCode::NOT_FOUND);
    let r = h.call(Method::PATCH, "/api/tasks", Some(&t), Some(json!({}))).await;
    r.problem(StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET") && a.contains("POST")),
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn if_match_guards_writes() {
    let h = harness().await;
    let (t, _) = h.signup("etag@example.com").await;
    let id = h.create(&t, json!({"title": "v1"})).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/tasks/{id}");
    let ok = h
        .call_with(
            Method::PATCH,
            &path,
            Some(&t),
            Some(json!({"title": "v2"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!((ok.status, ok.header("etag")), (StatusCode::OK, Some("\"2\"")));
    for (method, p, body) in [
        (Method::PATCH, path.clone(), Some(json!({"title": "stale"}))),
        (Method::PUT, path.clone(), Some(json!({"title": "stale"}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/complete"), None),
        (Method::POST, format!("{path}/reopen"), None),
        (Method::PATCH, format!("{path}/complete"), None),
    ] {
        let r = h.call_with(method.clone(), &p, Some(&t), body, &[("if-match", "\"1\"")]).await;
        r.problem(StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            (r.body["current_version"].as_i64(), r.header("etag")),
            (Some(2), Some("\"2\"")),
            "{method} {p}"
        );
    }
    for bad in ["1", "W/\"2\"", "\"x\"", "\"2\", \"3\""] {
        let r = h
            .call_with(
                Method::PATCH,
                &path,
                Some(&t),
                Some(json!({"title": "x"})),
                &[("if-match", bad)],
            )
            .await;
        r.problem(StatusCode::BAD_REQUEST);
    }
    let any = h.call_with(Method::DELETE, &path, Some(&t), None, &[("if-match", "*")]).await;
    assert_eq!(any.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn seeds_user_path_form_is_served_and_guarded() {
    let h = harness().await;
    let (t, uid) = h.signup("seed@example.com").await;
    let (other_t, other_uid) = h.signup("other@example.com").await;
    let r = h
        .call(
            Method::POST,
            &format!("/api/{uid}/tasks"),
            Some(&t),
            Some(json!({"title": "seed", "completed": true})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::CREATED, Some("completed")),
        "{}",
        r.text
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(Method::GET, &format!("/api/{uid}/tasks/{id}"), Some(&t), None).await.status,
        StatusCode::OK
    );
    let list = h.call(Method::GET, &format!("/api/{uid}/tasks"), Some(&t), None).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let toggled =
        h.call(Method::PATCH, &format!("/api/{uid}/tasks/{id}/complete"), Some(&t), None).await;
    assert_eq!(toggled.body["task"]["status"], "pending");

    for (method, path) in [
        (Method::GET, format!("/api/{other_uid}/tasks")),
        (Method::POST, format!("/api/{other_uid}/tasks")),
        (Method::GET, format!("/api/{other_uid}/tasks/{id}")),
        (Method::PATCH, format!("/api/{other_uid}/tasks/{id}")),
        (Method::PUT, format!("/api/{other_uid}/tasks/{id}")),
        (Method::DELETE, format!("/api/{other_uid}/tasks/{id}")),
        (Method::POST, format!("/api/{other_uid}/tasks/{id}/complete")),
        (Method::POST, format!("/api/{other_uid}/tasks/{id}/reopen")),
        (Method::PATCH, format!("/api/{other_uid}/tasks/{id}/complete")),
        (Method::GET, "/api/not-a-uuid/tasks".to_owned()),
    ] {
        h.call(method, &path, Some(&t), Some(json!({"title": "x"})))
            .await
            .problem(StatusCode::FORBIDDEN);
    }
    // Unauthenticated is 401 before 403; another user's task through their own path is 404.
    h.call(Method::GET, &format!("/api/{uid}/tasks"), None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    h.call(Method::GET, &format!("/api/{other_uid}/tasks/{id}"), Some(&other_t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    h.call(Method::DELETE, &format!("/api/tasks/{id}"), Some(&other_t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_queries_filter_page_and_name_bad_fields() {
    let h = harness().await;
    let (t, _) = h.signup("list@example.com").await;
    for (title, tags, priority) in
        [("a", vec!["home", "x"], "low"), ("b", vec!["home"], "high"), ("c", vec!["x"], "urgent")]
    {
        h.create(&t, json!({"title": title, "tags": tags, "priority": priority, "due_date": "2026-01-01T00:00:00Z"})).await;
    }
    let titles = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = h.call(Method::GET, "/api/tasks?tag=home&tag=X", Some(&t), None).await;
    assert_eq!(titles(&r), ["a"]);
    let r = h
        .call(Method::GET, "/api/tasks?priority=high,urgent&sort=title&order=asc", Some(&t), None)
        .await;
    assert_eq!(titles(&r), ["b", "c"]);
    let r = h.call(Method::GET, "/api/tasks?q=&status=&sort=title", Some(&t), None).await;
    assert_eq!(titles(&r), ["a", "b", "c"], "empty values count as absent");

    let first = h.call(Method::GET, "/api/tasks?sort=title&limit=2", Some(&t), None).await;
    assert_eq!(titles(&first), ["a", "b"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = h
        .call(
            Method::GET,
            &format!("/api/tasks?sort=title&limit=2&cursor={cursor}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(titles(&second), ["c"]);
    assert!(second.body["next_cursor"].is_null());
    let other_sort = h
        .call(Method::GET, &format!("/api/tasks?sort=due_date&cursor={cursor}"), Some(&t), None)
        .await;
    assert_eq!(other_sort.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["cursor"]);

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
        ("category=%20", "category"),
        ("tag=a%2Cb", "tag"),
    ] {
        let r = h.call(Method::GET, &format!("/api/tasks?{query}"), Some(&t), None).await;
        if field == "category" {
            // An all-blank value counts as absent.
            assert_eq!(r.status, StatusCode::OK, "{query}");
            continue;
        }
        assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), [field], "{query}");
    }
    let tags = h.call(Method::GET, "/api/tags", Some(&t), None).await;
    assert_eq!(tags.body, json!([{"name": "home", "count": 2}, {"name": "x", "count": 2}]));
}

#[tokio::test]
async fn categories_crud_and_conflicts() {
    let h = harness().await;
    let (t, _) = h.signup("cat@example.com").await;
    let r = h
        .call(
            Method::POST,
            "/api/categories",
            Some(&t),
            Some(json!({"name": "Garden", "color": "#22AA44"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["color"].as_str()),
        (StatusCode::CREATED, Some("#22aa44")),
        "{}",
        r.text
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    h.call(Method::POST, "/api/categories", Some(&t), Some(json!({"name": "garden"})))
        .await
        .problem(StatusCode::CONFLICT);
    let r = h
        .call(
            Method::POST,
            "/api/categories",
            Some(&t),
            Some(json!({"name": "", "color": "green"})),
        )
        .await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["name", "color"]);
    let r = h
        .call(
            Method::PATCH,
            &format!("/api/categories/{id}"),
            Some(&t),
            Some(json!({"color": null})),
        )
        .await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["color"]);
    let r = h
        .call(
            Method::PATCH,
            &format!("/api/categories/{id}"),
            Some(&t),
            Some(json!({"name": "Yard"})),
        )
        .await;
    assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("Yard")));
    let list = h.call(Method::GET, "/api/categories", Some(&t), None).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    assert_eq!(
        h.call(Method::GET, &format!("/api/categories/{id}"), Some(&t), None).await.body["name"],
        "Yard"
    );
    let (other, _) = h.signup("other@example.com").await;
    h.call(Method::GET, &format!("/api/categories/{id}"), Some(&other), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let r = h
        .call(
            Method::POST,
            "/api/tasks",
            Some(&other),
            Some(json!({"title": "x", "category_id": id})),
        )
        .await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY).fields(), ["category_id"]);
    assert_eq!(
        h.call(Method::DELETE, &format!("/api/categories/{id}"), Some(&t), None).await.status,
        StatusCode::NO_CONTENT
    );
    h.call(Method::DELETE, &format!("/api/categories/{id}"), Some(&t), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_is_rate_limited_per_ip_and_email() {
    let h = harness_with(HttpConfig { login_attempts: 3, ..HttpConfig::default() }).await;
    h.signup("rl@example.com").await;
    let login = |email: &'static str, ip: &'static str| {
        let body = json!({"email": email, "password": "wrong password"}).to_string();
        Request::post("/api/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [10, 0, 0, ip.parse::<u8>().unwrap()],
                4000,
            ))))
            .body(Body::from(body))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(h.send(login("rl@example.com", "1")).await.status, StatusCode::UNAUTHORIZED);
    }
    let r = h.send(login("rl@example.com", "1")).await;
    r.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s))
    );
    assert_eq!(
        h.send(login("rl@example.com", "2")).await.status,
        StatusCode::UNAUTHORIZED,
        "another client"
    );
    assert_eq!(
        h.send(login("other@example.com", "1")).await.status,
        StatusCode::UNAUTHORIZED,
        "another email"
    );
}

#[tokio::test]
async fn ops_endpoints_and_headers() {
    let h = harness().await;
    let r = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let r = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((r.status, r.body["database"].as_str()), (StatusCode::OK, Some("sqlite")));
    h.store.set_down(true);
    let r = h.call(Method::GET, "/readyz", None, None).await;
    r.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
    assert!(
        !r.text.contains("switched off"),
        "dependency errors are logged, not shown: {}",
        r.text
    );
    h.store.set_down(false);

    let (t, _) = h.signup("ops@example.com").await;
    h.call(Method::GET, "/api/tasks", Some(&t), None).await;
    let m = h.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").is_some_and(|c| c.starts_with("text/plain")));
    assert!(
        m.text.contains("http_requests_total") && m.text.contains("route=\"/api/tasks\""),
        "{}",
        m.text
    );
    assert!(m.text.contains("http_request_duration_seconds_bucket"), "{}", m.text);

    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/api/tasks"),
        (Method::GET, "/api/nowhere"),
        (Method::PATCH, "/api/tasks"),
    ] {
        let r = h.call(method, path, None, None).await;
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert!(
            r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'")),
            "{path}"
        );
        assert!(r.header("x-request-id").is_some_and(|id| id.len() >= 32), "{path}");
    }
    let r = h.call_with(Method::GET, "/healthz", None, None, &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"), "a client's request id is kept");
}

#[tokio::test]
async fn a_panic_is_a_500_problem() {
    let h = harness().await;
    h.store.set_panicking(true);
    let r = h.call(Method::GET, "/readyz", None, None).await;
    r.problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.text.contains("panic"), "{}", r.text);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

/// Every route the API serves, as `method path`, read from [`crate::openapi`]: a route exists
/// only with its documentation (`routes_are_only_added_with_their_documentation`), so a new one
/// is covered by the checks below without being listed anywhere.
fn routes() -> Vec<String> {
    const METHODS: [&str; 8] =
        ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let doc = serde_json::to_value(crate::openapi()).expect("the document is JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let mut routes = Vec::new();
    for (path, item) in paths {
        let methods = item.as_object().expect("a path item").keys();
        routes.extend(
            methods.filter(|m| METHODS.contains(&m.as_str())).map(|m| format!("{m} {path}")),
        );
    }
    routes
}

/// Operations that act on a path alone and read no body.
const BODYLESS: &[&str] = &[
    "complete_task",
    "reopen_task",
    "toggle_task",
    "read_notification",
    "read_all_notifications",
    "pause_series",
    "resume_series",
    "retry_delivery",
    "retry_reminder",
];

#[tokio::test]
async fn openapi_documents_exactly_the_served_routes() {
    let h = harness().await;
    let r = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert_eq!(
        doc,
        serde_json::to_value(crate::openapi()).unwrap(),
        "served and generated documents agree"
    );
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let mut documented = Vec::new();
    let mut op_ids = std::collections::HashSet::new();
    let mut secured = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = format!("{method} {path}");
            let id =
                op["operationId"].as_str().unwrap_or_else(|| panic!("{route}: no operationId"));
            assert!(op_ids.insert(id.to_owned()), "{route}: duplicate operationId {id}");
            let responses = op["responses"].as_object().unwrap();
            let success = responses
                .iter()
                .find(|(k, _)| k.starts_with('2') || *k == "101")
                .unwrap_or_else(|| panic!("{route}: no 2xx (or 101 for a WebSocket)"));
            if success.0 != "204" && success.0 != "101" {
                assert!(
                    success.1["content"].is_object(),
                    "{route}: success response has no schema"
                );
            }
            if op["security"].is_array() {
                assert!(responses.contains_key("401"), "{route}: no 401 documented");
                secured.insert(route.clone());
            }
            if path.starts_with("/api/") {
                assert!(responses.contains_key("503"), "{route}: no 503 documented");
                assert!(
                    responses.iter().any(|(k, v)| k.starts_with('4')
                        && v.to_string().contains("#/components/responses/")),
                    "{route}: no problem response"
                );
            }
            let base_id = id.trim_end_matches("_by_user_path");
            if ["post", "put", "patch"].contains(&method.as_str()) && !BODYLESS.contains(&base_id) {
                assert!(
                    op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{route}: no request body"
                );
                assert!(
                    responses.contains_key("422") && responses.contains_key("415"),
                    "{route}: body errors undocumented"
                );
            }
            if path.contains("{user_id}") {
                assert!(responses.contains_key("403"), "{route}: no 403");
            }
            documented.push(route);
        }
    }
    let mut expected = routes();
    expected.sort();
    documented.sort();
    assert_eq!(documented, expected, "the document lists exactly the served routes");

    // Every documented route is served: unauthenticated, it answers something other than the
    // router's "no route" 404 or a 405; 401 exactly when it documents the bearer scheme.
    let uid = uuid::Uuid::now_v7().to_string();
    let concrete = |path: &str| path.replace("{user_id}", &uid).replace("{id}", &uid);
    for route in &expected {
        let (method, path) = route.split_once(' ').unwrap();
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = h.call(method, &concrete(path), None, None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        assert_ne!(
            r.body["type"], "urn:docket:problem:no-route",
            "{route} is documented but not served"
        );
        let refused = r.status == StatusCode::UNAUTHORIZED;
        assert_eq!(refused, secured.contains(route), "{route}: {} {}", r.status, r.text);
    }
    // And on a documented path, no undocumented method is served.
    let paths: std::collections::BTreeSet<&str> =
        expected.iter().filter_map(|r| r.split_once(' ')).map(|(_, p)| p).collect();
    for path in paths {
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let route = format!("{} {path}", method.as_str().to_lowercase());
            if expected.contains(&route) {
                continue;
            }
            let r = h.call(method, &concrete(path), None, None).await;
            assert!(
                r.status == StatusCode::METHOD_NOT_ALLOWED
                    || r.body["type"] == "urn:docket:problem:no-route",
                "{route} is served but not documented: {} {}",
                r.status,
                r.text
            );
        }
    }
}

/// Routes exist only through `routes!`, which documents them: nothing in this crate may add
/// one another way.
#[test]
fn routes_are_only_added_with_their_documentation() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut stack = vec![std::path::PathBuf::from(src)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for banned in [".route(", ".route_service(", ".nest_service(", "axum::routing::"] {
                    assert!(
                        !text.contains(banned),
                        "{}: uses {banned}; register routes with routes!",
                        path.display()
                    );
                }
            }
        }
    }
}
