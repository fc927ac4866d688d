//! The API and the CLI through Dapr service invocation (DESIGN §7): every call goes to the
//! test sidecar's `/v1.0/invoke/docket-api/method/…`, which forwards it to the real server.
//! No daprd exists on the build machines; `docket_dapr::testing::TestSidecar` follows the
//! published service invocation contract (its module doc cites the page).

use docket_dapr::testing::TestSidecar;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Reply, TestServer, docket, stderr, stdout};

/// The real server and a sidecar that invokes it as `docket-api`.
async fn through_dapr() -> (TestServer, TestSidecar) {
    let server = TestServer::start().await;
    let sidecar = TestSidecar::builder().app_id("docket-api").start().await.expect("sidecar");
    sidecar.attach_app(&server.url).await.expect("the sidecar attaches to the server");
    (server, sidecar)
}

/// Sends `request` (through the sidecar) and reads the answer; `what` names it on failure.
async fn call(request: reqwest::RequestBuilder, what: &str) -> Reply {
    TestServer::read(request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"))).await
}

fn invoke_url(sidecar: &TestSidecar) -> String {
    format!("http://127.0.0.1:{}/v1.0/invoke/docket-api/method", sidecar.port())
}

#[tokio::test]
async fn the_api_answers_through_service_invocation() {
    let (server, sidecar) = through_dapr().await;
    let base = invoke_url(&sidecar);
    let http = reqwest::Client::new();

    let r = call(
        http.post(format!("{base}/api/auth/signup"))
            .json(&json!({"email": "invoke@example.com", "password": "correct horse battery"})),
        "signup through the sidecar",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "signup: {}", r.text);
    let token = r.body["token"].as_str().expect("token").to_owned();

    let r = call(
        http.post(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .json(&json!({"title": "Invoked", "tags": ["dapr"]})),
        "create through the sidecar",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "create: {}", r.text);
    let id = r.id();

    let r = call(
        http.get(format!("{base}/api/tasks?status=all&tag=dapr")).bearer_auth(&token),
        "list through the sidecar",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "list: {}", r.text);
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "the query string reached the server");

    // The server's own answers pass through: a problem for a missing task, 401 without a token.
    let r = call(
        http.get(format!("{base}/api/tasks/01890000-0000-7000-8000-000000000000"))
            .bearer_auth(&token),
        "get through the sidecar",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r =
        TestServer::read(http.get(format!("{base}/api/tasks")).send().await.expect("list")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // And what went through is the server's state, read directly.
    let direct = server.all_tasks(&token).await;
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0]["title"], "Invoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_service_invocation() {
    let (server, sidecar) = through_dapr().await;
    let (token, _) = server.signup("invoke-cli@example.com").await;
    let base = invoke_url(&sidecar);
    let wrong_app = format!("http://127.0.0.1:{}/v1.0/invoke/nope/method", sidecar.port());
    let cli_token = token.clone();
    let id = tokio::task::spawn_blocking(move || {
        let auth = [("DOCKET_TOKEN", cli_token.as_str())];
        let o = docket(&["add", "Through Dapr", "--tag", "dapr", "--url", &base, "--json"], &auth);
        assert!(o.status.success(), "add: {}", stderr(&o));
        let task: Value = serde_json::from_slice(&o.stdout).expect("add --json prints the task");
        let id = task["id"].as_str().expect("id").to_owned();

        let o = docket(&["ls", "--url", &base], &auth);
        assert!(o.status.success(), "ls: {}", stderr(&o));
        assert!(stdout(&o).contains("Through Dapr") && stdout(&o).contains(&id), "{}", stdout(&o));

        // The base may end with a slash, and may come from DOCKET_URL.
        let with_slash = format!("{base}/");
        let env = [("DOCKET_TOKEN", cli_token.as_str()), ("DOCKET_URL", with_slash.as_str())];
        let o = docket(&["done", &id], &env);
        assert!(o.status.success(), "done: {}", stderr(&o));
        assert!(stdout(&o).starts_with("completed "), "{}", stdout(&o));
        let o = docket(&["ls", "--status", "completed", "--json"], &env);
        assert!(o.status.success(), "ls: {}", stderr(&o));
        let page: Value = serde_json::from_slice(&o.stdout).expect("ls --json");
        assert_eq!(page["items"][0]["id"], id.as_str(), "{page}");

        let o = docket(&["rm", &id, "--url", &base], &auth);
        assert!(o.status.success(), "rm: {}", stderr(&o));
        let o = docket(&["rm", &id, "--url", &base], &auth);
        assert!(!o.status.success() && stderr(&o).contains("404"), "{}", stderr(&o));

        let o = docket(&["ls", "--url", &wrong_app], &auth);
        assert!(!o.status.success(), "an unknown app id fails");
        assert!(
            stderr(&o).contains("ERR_DIRECT_INVOKE"),
            "the sidecar's error is shown: {}",
            stderr(&o)
        );
        id
    })
    .await
    .expect("cli steps");

    let r = server.get(&format!("/api/tasks/{id}"), &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the server removed it: {}", r.text);
}
