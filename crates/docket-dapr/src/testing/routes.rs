//! The test sidecar's HTTP routes: the Dapr API side (state, secrets, publish, bulk publish,
//! jobs, health) over the fixture's shared maps. The rules each route follows, and the pages
//! they come from, are in the module doc of [`super`]; this file only speaks HTTP.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Published, ScheduledJob, Shared, Slot, TraceHeaders, accept, lock, plus};
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
        Some(value) => {
            // Name/value semantics: one entry named like the secret.
            let body: Map<String, Value> =
                [(name, Value::String(value.clone()))].into_iter().collect();
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
    let published = Published { content_type: content_type.to_owned(), event };
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
    let mut failed = Vec::new();
    for entry in entries {
        let content_type = entry.content_type.unwrap_or_else(|| "application/json".to_owned());
        // The event is JSON already; a string event is its text.
        let bytes = match &entry.event {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        match to_event(&content_type, &bytes) {
            Ok(event) if rejected(&shared, &event) => failed.push(
                json!({ "entryId": entry.entry_id, "error": "rejected by the test sidecar" }),
            ),
            Ok(event) => {
                accept(&shared, &pubsub, &topic, Published { content_type, event }, &trace)
            }
            Err(e) => failed.push(json!({ "entryId": entry.entry_id, "error": e })),
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
