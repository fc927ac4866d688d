//! [`DaprClient`]: typed calls to the Dapr sidecar's HTTP API (state, secrets, publish, bulk
//! publish, jobs, outbound health) and the one error they fail with ([`DaprError`]).
//!
//! Follows the Dapr API references (docs.dapr.io/reference/api/: state_api, secrets_api,
//! pubsub_api, jobs_api, health_api). Every path segment (store, key, topic, job name) is
//! percent-encoded, so a key can never address another route. Status mapping: 409 and 412 are
//! [`DaprError::Conflict`] (Dapr answers an ETag mismatch with 409 since dapr/dapr#2619);
//! anything else that is not a success is [`DaprError::Unavailable`], with Dapr's `errorCode`
//! and `message` when its body has them. This module logs nothing: values, secrets and event
//! bodies are user data.

use std::collections::BTreeMap;
use std::time::Duration;

use docket_events::CloudEvent;
use jiff::Timestamp;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The sidecar's HTTP port when `DAPR_HTTP_PORT` is not set.
pub const DEFAULT_HTTP_PORT: u16 = 3500;
/// The header carrying `DAPR_API_TOKEN` to the sidecar.
pub const API_TOKEN_HEADER: &str = "dapr-api-token";
/// The content type of a structured-mode CloudEvent: Dapr passes such an envelope through.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a call to the sidecar can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DaprError {
    /// First-write concurrency lost (409 or 412): the ETag is not the current one, or an
    /// ETag was given for a key that does not exist; or a job of that name already exists.
    #[error("dapr {operation}: conflict (status {status}{}): {message}", code_suffix(.code))]
    Conflict { operation: &'static str, status: u16, code: Option<String>, message: String },
    /// The sidecar could not be reached, timed out, or refused the call for another reason
    /// (a misconfigured component is a 400 or 500 from Dapr: it stays unavailable until an
    /// operator fixes it).
    #[error("dapr {operation} unavailable{}: {message}", status_suffix(*.status, .code))]
    Unavailable {
        operation: &'static str,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
    /// The client was configured with something that is not a usable sidecar address.
    #[error("dapr client configuration: {0}")]
    Config(String),
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
}

fn status_suffix(status: Option<u16>, code: &Option<String>) -> String {
    match status {
        Some(s) => format!(" (status {s}{})", code_suffix(code)),
        None => String::new(),
    }
}

impl DaprError {
    fn transport(operation: &'static str, e: reqwest::Error) -> DaprError {
        // Without the URL: it carries state keys and secret names.
        let message = e.without_url().to_string();
        DaprError::Unavailable { operation, status: None, code: None, message }
    }

    fn body(operation: &'static str, message: String) -> DaprError {
        DaprError::Unavailable { operation, status: None, code: None, message }
    }
}

/// Dapr's error body: `{"errorCode": "ERR_…", "message": "…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    message: Option<String>,
}

/// The error for a non-success answer of `operation`.
fn status_error(operation: &'static str, status: StatusCode, body: &[u8]) -> DaprError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.error_code.clone());
    let message = parsed
        .and_then(|b| b.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason given").to_owned());
    if status == StatusCode::CONFLICT || status == StatusCode::PRECONDITION_FAILED {
        DaprError::Conflict { operation, status: status.as_u16(), code, message }
    } else {
        DaprError::Unavailable { operation, status: Some(status.as_u16()), code, message }
    }
}

/// State concurrency (`options.concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// The write succeeds only if the given ETag is the current one.
    FirstWrite,
    /// The write ignores ETags (Dapr's default).
    LastWrite,
}

/// One item of a state save (`POST /v1.0/state/{store}`).
#[derive(Debug, Clone, PartialEq)]
pub struct SaveState {
    pub key: String,
    /// Stored as given; Dapr returns the same JSON on a read.
    pub value: Value,
    /// The ETag the write is conditional on.
    pub etag: Option<String>,
    pub concurrency: Option<Concurrency>,
    /// `metadata.ttlInSeconds`: seconds until the store expires the entry; `-1` asks the store
    /// to keep it (clearing an earlier ttl); `None` sends nothing.
    pub ttl_in_seconds: Option<i64>,
}

#[derive(Serialize)]
struct SaveStateWire<'a> {
    key: &'a str,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<OptionsWire>,
}

#[derive(Serialize)]
struct OptionsWire {
    concurrency: Concurrency,
}

impl<'a> From<&'a SaveState> for SaveStateWire<'a> {
    fn from(s: &'a SaveState) -> Self {
        let mut metadata = BTreeMap::new();
        if let Some(ttl) = s.ttl_in_seconds {
            metadata.insert("ttlInSeconds", ttl.to_string());
        }
        SaveStateWire {
            key: &s.key,
            value: &s.value,
            etag: s.etag.as_deref(),
            metadata,
            options: s.concurrency.map(|concurrency| OptionsWire { concurrency }),
        }
    }
}

/// A state value as read (`GET /v1.0/state/{store}/{key}`), with Dapr's `ETag` header.
#[derive(Debug, Clone, PartialEq)]
pub struct StateItem {
    pub value: Value,
    pub etag: Option<String>,
}

/// An entry a bulk publish did not deliver to the broker: its index in the call's slice, the
/// event's id and Dapr's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFailure {
    pub index: usize,
    pub event_id: String,
    pub error: String,
}

#[derive(Serialize)]
struct BulkEntryWire<'a> {
    #[serde(rename = "entryId")]
    entry_id: String,
    event: &'a CloudEvent,
    #[serde(rename = "contentType")]
    content_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<PartitionKeyWire<'a>>,
}

/// An entry's metadata: the event's partition key (see [`DaprClient::publish`]).
#[derive(Serialize)]
struct PartitionKeyWire<'a> {
    #[serde(rename = "partitionKey")]
    partition_key: &'a str,
}

#[derive(Deserialize)]
struct BulkResponseWire {
    #[serde(rename = "failedEntries", default)]
    failed_entries: Vec<FailedEntryWire>,
}

#[derive(Deserialize)]
struct FailedEntryWire {
    #[serde(rename = "entryId")]
    entry_id: String,
    #[serde(default)]
    error: String,
}

/// A one-shot Dapr job (`POST /v1.0-alpha1/jobs/{name}`): the sidecar calls the app's
/// `POST /job/{name}` with `data` once `due_time` has come.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub due_time: Timestamp,
    pub data: Value,
    /// Replace a job of the same name instead of failing with a conflict.
    pub overwrite: bool,
}

#[derive(Serialize)]
struct JobWire<'a> {
    #[serde(rename = "dueTime")]
    due_time: String,
    data: &'a Value,
    overwrite: bool,
}

/// The HTTP client of one Dapr sidecar. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct DaprClient {
    http: reqwest::Client,
    base: Url,
    token: Option<SecretString>,
}

impl std::fmt::Debug for DaprClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaprClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl DaprClient {
    /// The sidecar at `http://127.0.0.1:{DAPR_HTTP_PORT}` (3500 when unset), authenticated
    /// with `DAPR_API_TOKEN` when set.
    pub fn from_env() -> Result<DaprClient, DaprError> {
        let port = match std::env::var("DAPR_HTTP_PORT") {
            Ok(raw) => raw.trim().parse::<u16>().map_err(|_| {
                DaprError::Config(format!(
                    "DAPR_HTTP_PORT '{raw}' is not a port number (expected e.g. 3500)"
                ))
            })?,
            Err(_) => DEFAULT_HTTP_PORT,
        };
        let token = std::env::var("DAPR_API_TOKEN").ok().filter(|t| !t.is_empty());
        DaprClient::new(&format!("http://127.0.0.1:{port}"), token.map(SecretString::from))
    }

    /// The sidecar at `base` (e.g. `http://127.0.0.1:3500`).
    pub fn new(base: &str, token: Option<SecretString>) -> Result<DaprClient, DaprError> {
        let mut base = Url::parse(base).map_err(|e| {
            DaprError::Config(format!(
                "sidecar address '{base}' is not a URL ({e}); expected e.g. http://127.0.0.1:3500"
            ))
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(DaprError::Config(format!(
                "sidecar address '{base}' is not an http(s) URL; expected e.g. http://127.0.0.1:3500"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| DaprError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(DaprClient { http, base, token })
    }

    /// The sidecar's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` under the base, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.header(API_TOKEN_HEADER, token.expose_secret()),
            None => builder,
        }
    }

    /// Sends, and reads the whole answer.
    async fn send(
        &self,
        operation: &'static str,
        builder: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), DaprError> {
        let response = builder.send().await.map_err(|e| DaprError::transport(operation, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| DaprError::transport(operation, e))?;
        Ok((status, headers, body.to_vec()))
    }

    /// Sends the request of `operation`, which succeeds when Dapr answers a success status
    /// (its body, if any, is not read for anything else).
    async fn send_ok(
        &self,
        operation: &'static str,
        builder: reqwest::RequestBuilder,
    ) -> Result<(), DaprError> {
        let (status, _, body) = self.send(operation, builder).await?;
        if status.is_success() { Ok(()) } else { Err(status_error(operation, status, &body)) }
    }

    /// Reads a key: `None` when the store has no such key (Dapr answers 204).
    pub async fn get_state(&self, store: &str, key: &str) -> Result<Option<StateItem>, DaprError> {
        const OP: &str = "get state";
        let url = self.url(&["v1.0", "state", store, key]);
        let (status, headers, body) = self.send(OP, self.request(Method::GET, url)).await?;
        if status == StatusCode::NO_CONTENT || (status.is_success() && body.is_empty()) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(OP, status, &body));
        }
        let value = serde_json::from_slice(&body)
            .map_err(|e| DaprError::body(OP, format!("state value is not JSON: {e}")))?;
        let etag = headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_owned());
        Ok(Some(StateItem { value, etag }))
    }

    /// Saves items (one request, not a transaction: Dapr may apply some and fail others).
    pub async fn save_state(&self, store: &str, items: &[SaveState]) -> Result<(), DaprError> {
        const OP: &str = "save state";
        let wire: Vec<SaveStateWire<'_>> = items.iter().map(SaveStateWire::from).collect();
        let url = self.url(&["v1.0", "state", store]);
        self.send_ok(OP, self.request(Method::POST, url).json(&wire)).await
    }

    /// Deletes a key, conditionally on `etag` (`If-Match`); deleting a missing key without an
    /// ETag succeeds.
    pub async fn delete_state(
        &self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), DaprError> {
        const OP: &str = "delete state";
        let url = self.url(&["v1.0", "state", store, key]);
        let mut builder = self.request(Method::DELETE, url);
        if let Some(etag) = etag {
            builder = builder.header(reqwest::header::IF_MATCH, etag);
        }
        self.send_ok(OP, builder).await
    }

    /// Reads a secret: its key/value map (one entry named like the secret for stores with
    /// name/value semantics), or `None` when the store has no such secret (Dapr answers 204).
    pub async fn secret(
        &self,
        store: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, SecretString>>, DaprError> {
        const OP: &str = "get secret";
        let url = self.url(&["v1.0", "secrets", store, name]);
        let (status, _, body) = self.send(OP, self.request(Method::GET, url)).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(OP, status, &body));
        }
        // Never put the body in an error message: it is the secret.
        let map: BTreeMap<String, String> = serde_json::from_slice(&body).map_err(|_| {
            DaprError::body(OP, "the answer is not a JSON object of strings".to_owned())
        })?;
        Ok(Some(map.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect()))
    }

    /// Publishes one event as is (`Content-Type: application/cloudevents+json`, so Dapr passes
    /// our envelope through and only adds its own attributes). An event with a `partitionkey`
    /// is published with `metadata.partitionKey` set to it (per entry in a bulk publish), so
    /// brokers that partition (Kafka, Event Hubs) keep one key's events in one partition.
    pub async fn publish(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent,
    ) -> Result<(), DaprError> {
        const OP: &str = "publish";
        let mut url = self.url(&["v1.0", "publish", pubsub, topic]);
        if let Some(key) = &event.partitionkey {
            url.query_pairs_mut().append_pair("metadata.partitionKey", key);
        }
        let builder = self
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, CLOUDEVENTS_CONTENT_TYPE)
            .body(event.to_json());
        self.send_ok(OP, builder).await
    }

    /// Publishes events in one call (`/v1.0-alpha1/publish/bulk`), returning the entries
    /// that failed (empty when all were published). Not a transaction, and Dapr keeps no
    /// order between the entries of one call.
    pub async fn bulk_publish(
        &self,
        pubsub: &str,
        topic: &str,
        events: &[CloudEvent],
    ) -> Result<Vec<BulkFailure>, DaprError> {
        const OP: &str = "bulk publish";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<BulkEntryWire<'_>> = events
            .iter()
            .enumerate()
            .map(|(i, event)| BulkEntryWire {
                entry_id: i.to_string(),
                event,
                content_type: CLOUDEVENTS_CONTENT_TYPE,
                metadata: event
                    .partitionkey
                    .as_deref()
                    .map(|partition_key| PartitionKeyWire { partition_key }),
            })
            .collect();
        let url = self.url(&["v1.0-alpha1", "publish", "bulk", pubsub, topic]);
        let (status, _, body) =
            self.send(OP, self.request(Method::POST, url).json(&entries)).await?;
        if status == StatusCode::NO_CONTENT || (status.is_success() && body.is_empty()) {
            return Ok(Vec::new());
        }
        // Dapr answers a partial or total failure with 500 and the failed entries.
        let parsed: Option<BulkResponseWire> = serde_json::from_slice(&body).ok();
        match parsed {
            Some(r) if !r.failed_entries.is_empty() => r
                .failed_entries
                .into_iter()
                .map(|f| {
                    let index = f
                        .entry_id
                        .parse::<usize>()
                        .ok()
                        .filter(|i| *i < events.len())
                        .ok_or_else(|| {
                            DaprError::body(OP, format!("unknown failed entry id '{}'", f.entry_id))
                        })?;
                    Ok(BulkFailure { index, event_id: events[index].id.clone(), error: f.error })
                })
                .collect(),
            _ if status.is_success() => Ok(Vec::new()),
            _ => Err(status_error(OP, status, &body)),
        }
    }

    /// Schedules a one-shot job; an existing job of that name is a conflict unless
    /// `job.overwrite`.
    pub async fn schedule_job(&self, name: &str, job: &Job) -> Result<(), DaprError> {
        const OP: &str = "schedule job";
        let wire = JobWire {
            due_time: job.due_time.to_string(),
            data: &job.data,
            overwrite: job.overwrite,
        };
        let url = self.url(&["v1.0-alpha1", "jobs", name]);
        self.send_ok(OP, self.request(Method::POST, url).json(&wire)).await
    }

    /// Deletes a job, so it never fires; deleting a job that does not exist succeeds.
    pub async fn delete_job(&self, name: &str) -> Result<(), DaprError> {
        const OP: &str = "delete job";
        let url = self.url(&["v1.0-alpha1", "jobs", name]);
        let (status, _, body) = self.send(OP, self.request(Method::DELETE, url)).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(status_error(OP, status, &body))
        }
    }

    /// The sidecar's outbound health (`GET /v1.0/healthz/outbound`): its components are
    /// initialised, so state, publish and secrets calls can work. For readiness probes.
    pub async fn healthz_outbound(&self) -> Result<(), DaprError> {
        const OP: &str = "outbound health";
        let url = self.url(&["v1.0", "healthz", "outbound"]);
        self.send_ok(OP, self.request(Method::GET, url)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        let client = DaprClient::new("http://127.0.0.1:3500", None).expect("client");
        let url = client.url(&["v1.0", "state", "store", "test:a/b?c"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:3500/v1.0/state/store/test:a%2Fb%3Fc");
        let prefixed = DaprClient::new("http://h:1/dapr", None).expect("client");
        assert_eq!(prefixed.url(&["v1.0", "healthz"]).as_str(), "http://h:1/dapr/v1.0/healthz");
    }

    #[test]
    fn bad_addresses_are_config_errors() {
        for bad in ["", "not a url", "ftp://h/", "mailto:x@y"] {
            match DaprClient::new(bad, None) {
                Err(DaprError::Config(msg)) => assert!(msg.contains("expected e.g."), "{msg}"),
                other => panic!("{bad:?}: expected Config, got {other:?}"),
            }
        }
    }

    #[test]
    fn statuses_map_to_errors() {
        let body = br#"{"errorCode":"ERR_STATE_SAVE","message":"possible etag mismatch"}"#;
        for status in [StatusCode::CONFLICT, StatusCode::PRECONDITION_FAILED] {
            match status_error("save state", status, body) {
                DaprError::Conflict { code, message, .. } => {
                    assert_eq!(code.as_deref(), Some("ERR_STATE_SAVE"));
                    assert_eq!(message, "possible etag mismatch");
                }
                other => panic!("{status}: expected Conflict, got {other:?}"),
            }
        }
        match status_error("save state", StatusCode::BAD_REQUEST, b"not json") {
            DaprError::Unavailable { status: Some(400), code: None, message, .. } => {
                assert_eq!(message, "Bad Request")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
