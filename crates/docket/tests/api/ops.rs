//! Operational endpoints: health, readiness, metrics, the OpenAPI document, security headers.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::TestServer;

#[tokio::test]
async fn health_ready_metrics() {
    let s = TestServer::start().await;
    let r = s.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (t, _) = s.signup("ops@example.com").await;
    assert_eq!(s.get("/api/tasks", &t).await.status, StatusCode::OK);
    let r = s.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains("# TYPE"),
        "prometheus text format: {}",
        &r.text[..r.text.len().min(300)]
    );
    assert!(r.text.contains("http_requests"), "request counter present");
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let s = TestServer::start().await;
    for path in ["/healthz", "/api/tasks", "/api/nowhere"] {
        let r = s.request(Method::GET, path, None, None).await;
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(r.header("x-frame-options").is_some(), "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
        assert!(r.header("referrer-policy").is_some(), "{path}");
    }
}

/// Every route the product serves, as `method /path` with OpenAPI's `{param}` syntax, read from
/// `docket_http::openapi()` (the HTTP crate adds a route only with its documentation), so a new
/// route is checked here without being listed.
fn routes() -> Vec<String> {
    let doc = serde_json::to_value(docket_http::openapi()).expect("the document is JSON");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push(format!("{method} {path}"));
            }
        }
    }
    routes
}

/// Follows a local `$ref` (`#/components/...`) to what it names.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(path) => path.split('/').fold(doc, |node, key| &node[key]),
        None => v,
    }
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let s = TestServer::start().await;
    let r = s.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push(format!("{method} {path}"));
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|k| k.starts_with('2') || k == "101"),
                    "{method} {path}: no success response (or 101 for a WebSocket)"
                );
                if path.starts_with("/api/") {
                    let problem = responses.iter().any(|(k, v)| {
                        (k.starts_with('4') || k.starts_with('5'))
                            && resolve(&doc, v).to_string().contains("application/problem+json")
                    });
                    assert!(problem, "{method} {path}: no problem response documented");
                }
                if ["post", "put", "patch"].contains(&method.as_str())
                    && op.get("requestBody").is_none()
                {
                    // Action endpoints without a body are fine (so are Dapr's triggers, whose
                    // body is ignored); those that read JSON must say so.
                    let trigger = path.starts_with("/job/") || path == "/{binding}";
                    let reads_json = !trigger
                        && ![
                            "/complete",
                            "/reopen",
                            "/read",
                            "/read-all",
                            "/pause",
                            "/resume",
                            "/retry",
                        ]
                        .iter()
                        .any(|action| path.ends_with(action));
                    assert!(!reads_json, "{method} {path}: request body not documented");
                }
            }
        }
    }
    let routes = routes();
    assert!(
        routes.iter().any(|r| r == "post /api/tasks"),
        "the inventory is the API's: {routes:?}"
    );
    for route in &routes {
        assert!(
            documented.iter().any(|d| d == route),
            "{route} is served but not in /openapi.json"
        );
    }
    // And nothing documented is unreachable: every documented route answers something other
    // than 404/405 for its method (auth may be missing, that is fine).
    let uid = uuid::Uuid::now_v7();
    for d in &documented {
        let (method, path) = d.split_once(' ').unwrap();
        let path = path.replace("{user_id}", &uid.to_string()).replace("{id}", &uid.to_string());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = s.request(method, &path, None, None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{d} is documented but not served");
        if r.status == StatusCode::NOT_FOUND {
            // Only a resource lookup may 404, and only behind authentication.
            assert!(r.body["title"].as_str().is_some(), "{d}: {}", r.text);
        }
    }
    let schemas = doc["components"]["schemas"].as_object().map(|m| m.len()).unwrap_or(0);
    assert!(schemas > 5, "component schemas are documented");
    let _: &Value = &doc;
}

/// `docket serve` with no configuration: SQLite under `./data`, a generated JWT secret kept
/// there, and a working API (only the port is overridden, as tests must not take 8080).
#[tokio::test]
async fn serve_without_configuration_uses_the_embedded_defaults() {
    use tokio::io::AsyncBufReadExt as _;
    let cwd = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_docket"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("DOCKET_DATABASE_URL")
        .env_remove("DOCKET_DATA_DIR")
        .env_remove("DOCKET_JWT_SECRET")
        .env("DOCKET_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("server prints its address");
        if let Some(u) = line.strip_prefix("docket listening on ") {
            break u.to_owned();
        }
    };
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/auth/signup"))
        .json(&serde_json::json!({"email": "fresh@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(cwd.path().join("data/docket.db").exists(), "the default database is ./data/docket.db");
    assert!(cwd.path().join("data/jwt-secret").exists(), "the JWT secret is kept in ./data");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
