//! The test sidecar's service invocation against a tiny axum app: any method, path, query
//! string, headers and body reach the app, and its status, headers and body come back
//! unchanged (a 404 and a redirect included); Dapr's own headers are added, hop-by-hop ones
//! and the API token are not forwarded; a streamed answer arrives chunk by chunk; an unknown
//! app id, a missing app or an empty method name get Dapr's errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use docket_dapr::testing::TestSidecar;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Lets the streaming route send its second chunk.
type Gate = Arc<Notify>;

/// Answers with what it received: method, path and query as sent, headers, body.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let seen = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let status =
        if parts.method == axum::http::Method::POST { StatusCode::CREATED } else { StatusCode::OK };
    (
        status,
        [("x-app", "echo"), ("connection", "x-private"), ("x-private", "hop")],
        axum::Json(seen),
    )
        .into_response()
}

async fn missing() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/problem+json")],
        r#"{"title":"not found","status":404}"#,
    )
        .into_response()
}

async fn moved() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/elsewhere")]).into_response()
}

/// One event, then a second only once the test opens the gate.
async fn stream(State(gate): State<Gate>) -> Response {
    let chunks = futures::stream::unfold(0, move |n| {
        let gate = gate.clone();
        async move {
            match n {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from("data: one\n\n")), 1)),
                1 => {
                    gate.notified().await;
                    Some((Ok(Bytes::from("data: two\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(chunks)).into_response()
}

/// The app on 127.0.0.1:0 and the gate of its streaming route.
async fn app() -> (String, Gate) {
    let gate = Gate::default();
    let router = Router::new()
        .route("/dapr/subscribe", get(|| async { axum::Json(json!([])) }))
        .route("/missing", get(missing))
        .route("/moved", get(moved))
        .route("/stream", get(stream))
        .fallback(echo)
        .with_state(gate.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    (url, gate)
}

async fn attached() -> (TestSidecar, String, Gate) {
    let sidecar = TestSidecar::builder().start().await.expect("start");
    let (app_url, gate) = app().await;
    sidecar.attach_app(&app_url).await.expect("attach");
    (sidecar, app_url, gate)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn get_with_query_reaches_the_app_as_sent() {
    let (sidecar, app_url, _) = attached().await;
    assert_eq!(sidecar.app_id(), "docket-api", "the default app id");
    let url = format!("{}/api/tasks/a%20b?status=all&tag=x%26y", sidecar.invoke_url());
    let r = http().get(url).header("x-custom", "kept").send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "x-app"), Some("echo"), "the app's headers come back");
    assert_eq!(header(r.headers(), "x-private"), None, "headers `connection` names do not");
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/api/tasks/a%20b", "the method path, still encoded");
    assert_eq!(seen["query"], "status=all&tag=x%26y");
    let headers = &seen["headers"];
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["dapr-caller-app-id"], "docket-api");
    assert_eq!(headers["dapr-callee-app-id"], "docket-api");
    assert_eq!(headers["host"], app_url.trim_start_matches("http://"), "Host is the app's");
    assert_eq!(headers["x-forwarded-host"], sidecar.url().trim_start_matches("http://"));
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    let traceparent = headers["traceparent"].as_str().expect("a new trace is started");
    assert_eq!(traceparent.split('-').map(str::len).collect::<Vec<_>>(), [2, 32, 16, 2]);
}

#[tokio::test]
async fn post_json_and_other_methods_carry_their_body() {
    let (sidecar, _, _) = attached().await;
    let url = format!("{}/api/tasks", sidecar.invoke_url());
    let r = http().post(&url).json(&json!({"title": "Through Dapr"})).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::CREATED, "the app's status comes back");
    assert_eq!(header(r.headers(), "content-type"), Some("application/json"));
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(seen["body"].as_str().unwrap()).expect("JSON body");
    assert_eq!(body, json!({"title": "Through Dapr"}));

    for method in [reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let r = http().request(method.clone(), &url).body("x").send().await.expect("invoke");
        assert_eq!(r.status(), StatusCode::OK);
        let seen: Value = r.json().await.expect("json");
        assert_eq!(
            (seen["method"].as_str(), seen["body"].as_str()),
            (Some(method.as_str()), Some("x"))
        );
    }
}

#[tokio::test]
async fn app_errors_and_redirects_pass_through() {
    let (sidecar, _, _) = attached().await;
    let r = http().get(format!("{}/missing", sidecar.invoke_url())).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an app 404 is not a sidecar error");
    assert_eq!(header(r.headers(), "content-type"), Some("application/problem+json"));
    assert_eq!(r.text().await.expect("body"), r#"{"title":"not found","status":404}"#);

    let r = http().get(format!("{}/moved", sidecar.invoke_url())).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the sidecar does not follow redirects");
    assert_eq!(header(r.headers(), "location"), Some("/elsewhere"));
}

#[tokio::test]
async fn trace_context_continues_and_the_api_token_stays_behind() {
    let sidecar = TestSidecar::builder().api_token("s3cret").start().await.expect("start");
    let (app_url, _) = app().await;
    sidecar.attach_app(&app_url).await.expect("attach");
    let url = format!("{}/echo", sidecar.invoke_url());

    let r = http().get(&url).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "invocation needs the API token too");

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = http()
        .get(&url)
        .header("dapr-api-token", "s3cret")
        .header("traceparent", parent)
        .header("tracestate", "k=v")
        .send()
        .await
        .expect("invoke");
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.expect("json");
    let headers = &seen["headers"];
    assert!(headers.get("dapr-api-token").is_none(), "the token is for the sidecar: {headers}");
    let child = headers["traceparent"].as_str().expect("traceparent");
    assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {child}");
    assert!(child.ends_with("-01") && child != parent, "a new parent span: {child}");
    assert_eq!(headers["tracestate"], "k=v");
}

#[tokio::test]
async fn a_streamed_answer_arrives_chunk_by_chunk() {
    let (sidecar, _, gate) = attached().await;
    let mut r =
        http().get(format!("{}/stream", sidecar.invoke_url())).send().await.expect("invoke");
    assert_eq!(header(r.headers(), "content-type"), Some("text/event-stream"));
    // A sidecar that buffered would wait for the whole body, which needs the gate opened.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), r.chunk())
        .await
        .expect("the first event arrives before the app has finished")
        .expect("read")
        .expect("a first chunk");
    assert_eq!(&first[..], b"data: one\n\n", "before the app has finished");
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("read") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: two\n\n");
}

#[tokio::test]
async fn unknown_app_missing_app_and_empty_method_are_errors() {
    let sidecar = TestSidecar::builder().app_id("tasks").start().await.expect("start");
    assert!(sidecar.invoke_url().ends_with("/v1.0/invoke/tasks/method"));
    let r = http().get(format!("{}/echo", sidecar.invoke_url())).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "no app attached yet");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");

    let (app_url, _) = app().await;
    sidecar.attach_app(&app_url).await.expect("attach");
    let r = http().get(format!("{}/echo", sidecar.invoke_url())).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::OK);

    let other = format!("{}/v1.0/invoke/docket-api/method/echo", sidecar.url());
    let r = http().get(other).send().await.expect("invoke");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(body["message"].as_str().unwrap().contains("docket-api"), "{body}");

    for empty in ["method", "method/"] {
        let url = format!("{}/v1.0/invoke/tasks/{empty}", sidecar.url());
        let r = http().post(url).send().await.expect("invoke");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{empty}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    }
}
