//! `--roles`: a process without `api` serves only the operations routes; API and worker roles
//! split across two processes on one PostgreSQL database still audit every change.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Db, TestServer, all_activity, postgres_url};

fn roles(list: &str) -> Vec<(String, String)> {
    vec![("DOCKET_ROLES".to_owned(), list.to_owned())]
}

#[tokio::test]
async fn a_worker_serves_only_operations_routes() {
    let s = TestServer::start_on(Db::Sqlite, roles("worker")).await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = s.request(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    for path in ["/api/tasks", "/api/stream", "/api/auth/me"] {
        let r = s.request(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = s.request(Method::POST, "/api/auth/signup", None, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let doc = s.request(Method::GET, "/openapi.json", None, None).await.body;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| !p.starts_with("/api")), "{:?}", paths.keys());
}

#[tokio::test]
async fn an_unknown_role_is_refused() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_docket"))
        .args(["serve", "--listen", "127.0.0.1:0", "--roles", "api,janitor"])
        .output()
        .await
        .expect("run docket");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("janitor"), "{err}");
}

#[tokio::test]
async fn api_and_worker_in_separate_processes() {
    let Some(url) = postgres_url("api_and_worker_in_separate_processes") else { return };
    let api = TestServer::start_on(Db::Postgres(url), roles("api")).await;
    let (token, _) = api.signup("split-roles@example.com").await;
    for i in 0..5 {
        let r = api.post("/api/tasks", &token, json!({"title": format!("task {i}")})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // The API process runs no consumer: nothing is audited until a worker runs (were one
    // running here, this would at least sometimes see its entries).
    assert_eq!(all_activity(&api, &token).await, Vec::<serde_json::Value>::new());
    let worker = TestServer::start_on(Db::Shared(api.database.clone()), roles("worker")).await;
    let r = worker.get("/api/tasks", &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the worker serves no API");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let entries = all_activity(&api, &token).await;
        if entries.len() == 5 {
            assert!(entries.iter().all(|e| e["event_type"] == "com.todo.task.created"));
            break;
        }
        assert!(entries.len() < 5, "more entries than changes: {entries:?}");
        assert!(tokio::time::Instant::now() < deadline, "the worker audited {}", entries.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
