//! The test sidecar's HTTP routes: the Dapr API side (state, secrets, publish, bulk publish,
//! jobs, service invocation, health) over the fixture's shared maps. The rules each route follows, and the pages
//! they come from, are in the module doc of [`super`]; this file only speaks HTTP.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Published, ScheduledJob, Shared, Slot, TraceHeaders, accept, child_traceparent, lock, plus,
};
use crate::client::{API_TOKEN_HEADER, CLOUDEVENTS_CONTENT_TYPE};

type SidecarState = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1.0/state/{store}", post(save_state))
        .route("/v1.0/state/{store}/{key}", get(get_state).delete(delete_state))
        .route("/v1.0/secrets/{store}/{name}", get(get_secret))
        .route("/v1.0/publish/{pubsub}/{topic}", post(publish))
        .route("/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", post(bulk_publish))
        .route("/v1.0-alpha1/jobs/{name}", post(schedule_job).delete(delete_job))
        .route("/v1.0/invoke/{app_id}/method/{*method}", any(invoke))
        .route("/v1.0/invoke/{app_id}/method", any(no_method))
        .route("/v1.0/invoke/{app_id}/method/", any(no_method))
        .layer(middleware::from_fn_with_state(shared.clone(), require_token));
    Router::new()
        .route("/v1.0/healthz", get(healthy))
        .route("/v1.0/healthz/outbound", get(healthy))
        .merge(api)
        .with_state(shared)
}

/// Dapr's error body.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "errorCode": code, "message": message.into() }))).into_response()
}

async fn require_token(State(shared): SidecarState, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.token {
        let given = request.headers().get(API_TOKEN_HEADER).and_then(|v| v.to_str().ok());
        if given != Some(token.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "ERR_UNAUTHORIZED", "invalid api token");
        }
    }
    next.run(request).await
}

async fn healthy() -> StatusCode {
    StatusCode::NO_CONTENT
}

// --- state

#[derive(Deserialize)]
struct SaveItem {
    key: String,
    value: Value,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    options: Option<SaveOptions>,
}

#[derive(Deserialize)]
struct SaveOptions {
    #[serde(default)]
    concurrency: Option<String>,
}

fn mismatch(code: &str, key: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        code,
        format!(
            "failed on key {key}: possible etag mismatch. error from state store: etag mismatch"
        ),
    )
}

async fn save_state(
    State(shared): SidecarState,
    Path(store): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let items: Vec<SaveItem> = match serde_json::from_slice(&body) {
        Ok(items) => items,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", e.to_string()),
    };
    let now = shared.clock.now();
    let mut state = lock(&shared.state);
    for item in items {
        if item.key.is_empty() || item.key.contains("||") {
            return error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", "invalid state key");
        }
        let ttl = item.metadata.get("ttlInSeconds").or_else(|| query.get("metadata.ttlInSeconds"));
        let expires_at = match ttl.map(|t| t.parse::<i64>()) {
            None | Some(Ok(-1)) => None,
            Some(Ok(secs)) if secs >= 0 => {
                Some(plus(now, std::time::Duration::from_secs(secs.unsigned_abs())))
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ERR_STATE_SAVE",
                    "ttlInSeconds must be a whole number of seconds, or -1",
                );
            }
        };
        let id = (store.clone(), item.key.clone());
        if state.get(&id).is_some_and(|s| s.expires_at.is_some_and(|at| at <= now)) {
            state.remove(&id);
        }
        let current = state.get(&id);
        let concurrency = item.options.and_then(|o| o.concurrency);
        let check = concurrency.as_deref() != Some("last-write");
        match (&item.etag, current) {
            (Some(etag), Some(slot)) if check && *etag != slot.version.to_string() => {
                return mismatch("ERR_STATE_SAVE", &item.key);
            }
            (Some(_), None) if check => return mismatch("ERR_STATE_SAVE", &item.key),
            (None, Some(_)) if concurrency.as_deref() == Some("first-write") => {
                return mismatch("ERR_STATE_SAVE", &item.key);
            }
            _ => {}
        }
        let version = current.map_or(1, |s| s.version + 1);
        state.insert(id, Slot { value: item.value, version, expires_at });
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The live slot of a key, removing it if it has expired.
fn live(shared: &Shared, store: &str, key: &str) -> Option<Slot> {
    let now = shared.clock.now();
    let mut state = lock(&shared.state);
    let id = (store.to_owned(), key.to_owned());
    match state.get(&id) {
        Some(slot) if slot.expires_at.is_some_and(|at| at <= now) => {
            state.remove(&id);
            None
        }
        other => other.cloned(),
    }
}

async fn get_state(
    State(shared): SidecarState,
    Path((store, key)): Path<(String, String)>,
) -> Response {
    match live(&shared, &store, &key) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(slot) => {
            let mut response = axum::Json(slot.value).into_response();
            if let Ok(etag) = HeaderValue::from_str(&slot.version.to_string()) {
                response.headers_mut().insert(header::ETAG, etag);
            }
            response
        }
    }
}

async fn delete_state(
    State(shared): SidecarState,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let slot = live(&shared, &store, &key);
    if let Some(etag) = headers.get(header::IF_MATCH) {
        let etag = etag.to_str().unwrap_or_default().trim_matches('"');
        if slot.is_none_or(|s| s.version.to_string() != etag) {
            return mismatch("ERR_STATE_DELETE", &key);
        }
    }
    lock(&shared.state).remove(&(store, key));
    StatusCode::NO_CONTENT.into_response()
}

// --- secrets

async fn get_secret(
    State(shared): SidecarState,
    Path((store, name)): Path<(String, String)>,
) -> Response {
    let Some(secrets) = shared.secrets.get(&store) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ERR_SECRET_STORE_NOT_FOUND",
            format!("failed finding secret store with key {store}"),
        );
    };
    match secrets.get(&name) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(entries) => {
            let body: Map<String, Value> =
                entries.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            axum::Json(body).into_response()
        }
    }
}

// --- publish

fn trace_headers(headers: &HeaderMap) -> TraceHeaders {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    TraceHeaders { traceparent: text("traceparent"), tracestate: text("tracestate") }
}

fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The event to record for a published body: a CloudEvent passes through as received;
/// other content is wrapped in one, as Dapr does.
fn to_event(content_type: &str, body: &[u8]) -> Result<Value, String> {
    let media = media_type(content_type);
    if media == CLOUDEVENTS_CONTENT_TYPE {
        return match serde_json::from_slice::<Value>(body) {
            Ok(event @ Value::Object(_)) => Ok(event),
            _ => Err("a cloudevents+json body must be a JSON object".to_owned()),
        };
    }
    let data = if media.ends_with("json") {
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    Ok(json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "test-sidecar",
        "type": "com.dapr.event.sent",
        "datacontenttype": if media.is_empty() { "text/plain".to_owned() } else { media },
        "data": data,
    }))
}

fn rejected(shared: &Shared, event: &Value) -> bool {
    let ty = event.get("type").and_then(Value::as_str).unwrap_or_default();
    lock(&shared.rejected_types).contains(ty)
}

async fn publish(
    State(shared): SidecarState,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/plain");
    let event = match to_event(content_type, &body) {
        Ok(event) => event,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ERR_PUBSUB_CLOUD_EVENTS_SER", e),
    };
    if rejected(&shared, &event) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            format!(
                "error when publish to topic {topic} in pubsub {pubsub}: rejected by the test sidecar"
            ),
        );
    }
    let partition_key = query.get("metadata.partitionKey").cloned();
    let published = Published { content_type: content_type.to_owned(), event, partition_key };
    accept(&shared, &pubsub, &topic, published, &trace_headers(&headers));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct BulkEntry {
    #[serde(rename = "entryId")]
    entry_id: String,
    event: Value,
    #[serde(rename = "contentType", default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

async fn bulk_publish(
    State(shared): SidecarState,
    Path((pubsub, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let entries: Vec<BulkEntry> = match serde_json::from_slice(&body) {
        Ok(entries) => entries,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", e.to_string()),
    };
    let mut ids = HashSet::new();
    if entries.iter().any(|e| e.entry_id.is_empty() || !ids.insert(e.entry_id.as_str())) {
        return error(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_EVENTS_SER",
            "entryId must be present and unique within a request",
        );
    }
    let trace = trace_headers(&headers);
    let mut entries: Vec<(String, Result<Published, String>)> = entries
        .into_iter()
        .map(|entry| {
            let content_type = entry.content_type.unwrap_or_else(|| "application/json".to_owned());
            // The event is JSON already; a string event is its text.
            let bytes = match &entry.event {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let partition_key = entry.metadata.get("partitionKey").cloned();
            let published = to_event(&content_type, &bytes).map(|event| Published {
                content_type,
                event,
                partition_key,
            });
            (entry.entry_id, published)
        })
        .collect();
    let sent = entries.iter().filter_map(|(_, p)| p.as_ref().ok().cloned()).collect();
    lock(&shared.bulk_requests).push((pubsub.clone(), topic.clone(), sent));
    if shared.unordered_bulk {
        entries.reverse();
    }
    let mut failed = Vec::new();
    for (entry_id, published) in entries {
        match published {
            Ok(published) if rejected(&shared, &published.event) => {
                failed.push(json!({ "entryId": entry_id, "error": "rejected by the test sidecar" }))
            }
            Ok(published) => accept(&shared, &pubsub, &topic, published, &trace),
            Err(e) => failed.push(json!({ "entryId": entry_id, "error": e })),
        }
    }
    if failed.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = json!({ "failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE" });
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    }
}

// --- jobs

#[derive(Deserialize)]
struct JobIn {
    #[serde(rename = "dueTime", default)]
    due_time: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    overwrite: bool,
}

async fn schedule_job(
    State(shared): SidecarState,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let job: JobIn = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", e.to_string()),
    };
    if job.schedule.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "the test sidecar runs one-shot jobs only: give dueTime, not schedule",
        );
    }
    let Some(raw) = job.due_time else {
        return error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", "dueTime is required");
    };
    let Ok(due_time) = raw.parse::<Timestamp>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("dueTime '{raw}' is not an RFC 3339 time with an offset"),
        );
    };
    {
        let mut jobs = lock(&shared.jobs);
        if jobs.contains_key(&name) && !job.overwrite {
            return error(
                StatusCode::CONFLICT,
                "ERR_SCHEDULE_JOB",
                format!("job '{name}' already exists (set overwrite to replace it)"),
            );
        }
        let data = job.data.unwrap_or(Value::Object(Map::new()));
        jobs.insert(name.clone(), ScheduledJob { name, due_time, data });
    }
    shared.jobs_changed.notify_one();
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_job(State(shared): SidecarState, Path(name): Path<String>) -> StatusCode {
    lock(&shared.jobs).remove(&name);
    StatusCode::NO_CONTENT
}

// --- service invocation

/// Headers about one connection rather than the message (RFC 9110 §7.6.1 and the older ones
/// proxies still drop); a proxy never forwards them.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, and those the `connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

fn direct_invoke_error(app_id: &str, err: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_DIRECT_INVOKE",
        format!("failed to invoke, id: {app_id}, err: {err}"),
    )
}

async fn no_method() -> Response {
    error(StatusCode::BAD_REQUEST, "ERR_DIRECT_INVOKE", "method name not given")
}

/// The method part of the path as the caller wrote it (still percent-encoded), which is what
/// the app receives.
fn raw_method(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1.0/invoke/")?;
    let (_app_id, rest) = rest.split_once('/')?;
    rest.strip_prefix("method/")
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The request headers the app receives: the caller's, less hop-by-hop ones, the API token and
/// what the next hop recomputes, plus what daprd adds.
fn forwarded_headers(shared: &Shared, incoming: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    for name in [header::HOST, header::CONTENT_LENGTH] {
        headers.remove(name);
    }
    headers.remove(API_TOKEN_HEADER);
    let host = incoming.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ip = peer.ip().to_string();
    let forwarded_for = match incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip.clone(),
    };
    set(&mut headers, "x-forwarded-for", &forwarded_for);
    set(&mut headers, "x-forwarded-host", host);
    set(&mut headers, "forwarded", &format!("for={ip};host={host}"));
    set(&mut headers, "dapr-caller-app-id", &shared.app_id);
    set(&mut headers, "dapr-callee-app-id", &shared.app_id);
    let parent = incoming.get("traceparent").and_then(|v| v.to_str().ok());
    set(&mut headers, "traceparent", &child_traceparent(parent));
    headers
}

async fn invoke(
    State(shared): SidecarState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app_id, _method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if app_id != shared.app_id {
        return direct_invoke_error(&app_id, format!("couldn't find service: {app_id}"));
    }
    let Some(app) = lock(&shared.app).clone() else {
        return direct_invoke_error(&app_id, "app channel is not initialized");
    };
    let (parts, body) = request.into_parts();
    let Some(method) = raw_method(parts.uri.path()) else {
        return no_method().await;
    };
    let mut target = format!("{}/{method}", app.base.as_str().trim_end_matches('/'));
    if let Some(query) = parts.uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let Ok(url) = reqwest::Url::parse(&target) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ERR_DIRECT_INVOKE",
            format!("method '{method}' does not make a URL"),
        );
    };
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return direct_invoke_error(&app_id, format!("reading the request body: {e}")),
    };
    let headers = forwarded_headers(&shared, &parts.headers, peer);
    let mut upstream = shared.invoke_http.request(parts.method, url).headers(headers);
    if !body.is_empty() {
        upstream = upstream.body(body);
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return direct_invoke_error(&app_id, e),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    // Streamed as the app writes it: an event stream reaches the caller event by event.
    let chunks = futures::stream::try_unfold(answer, |mut answer| async move {
        Ok::<_, reqwest::Error>(answer.chunk().await?.map(|chunk| (chunk, answer)))
    });
    let mut response = Response::new(axum::body::Body::from_stream(chunks));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
