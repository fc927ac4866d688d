//! Dapr's app callbacks for Pub/Sub (§7): `GET /dapr/subscribe` lists one programmatic
//! subscription per topic the process consumes, and `POST /dapr/events/{topic}` takes a
//! delivery from the sidecar and runs the same consumer code as the embedded bus.
//!
//! Dapr allows one subscription per (pubsub, topic) and app id, so a topic several consumers
//! read (`task-events`: audit, recurrence, webhooks) gets one route that hands the event to
//! each of them. Every consumer is idempotent on the event id (`processed:` keys), so when one
//! of them fails and Dapr redelivers, the others skip what they already did.
//!
//! The answer follows Dapr's contract for delivery routes (HTTP 200 with a `status`):
//! `SUCCESS` when every consumer handled (or had handled) it; `RETRY` when any failed
//! transiently (Dapr redelivers per its resiliency policy, then sends it to the
//! subscription's `deadLetterTopic`); `DROP` for poison input — a body that is not our
//! CloudEvent, or data a consumer can never handle — logged and counted
//! (`docket_dapr_deliveries_total{topic, status}`). Served by every role (a worker replica
//! with no API receives deliveries too); empty when the process is not in Dapr mode.
//!
//! Scheduling (`HttpConfig::dapr_triggers`): a Dapr job's trigger (`POST /job/{name}`) and the
//! `bindings.cron` fallback (`OPTIONS /{binding}` → 200 so Dapr knows the app takes it,
//! `POST /{binding}`) both sweep what is due through the scheduler's claims
//! (`App::sweep_due`), so a duplicate or late trigger fires nothing twice. (`/{binding}`
//! matches every one-segment path; for other methods the edge answers 404, not 405.)
//!
//! Inbox delivery (`DaprSubscriptions::inbox`, `docket serve --dapr-delivery inbox`): instead
//! of running the consumers, the route keeps the event in the process's inbox log and answers
//! `SUCCESS` once it is durable (`RETRY` when it cannot be kept, `DROP` when it is not a
//! CloudEvent); the consumers then read the inbox as independent groups with their own
//! retries and dead letters (`docket_dapr::bus::DaprBus`).
//!
//! With `HttpConfig::app_api_token` set (Dapr's `APP_API_TOKEN`), every callback must carry
//! it in the `dapr-api-token` header, so only the sidecar can drive them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use docket_bus::Message;
use docket_bus::runtime::{HandlerError, Processor};
use docket_events::CloudEvent;
use docket_events::trace::TraceContext;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ApiError, NotFound, Unauthorized, Unavailable};

/// Counter of deliveries from the sidecar, labelled by `topic` and answered `status`.
pub const DELIVERIES_METRIC: &str = "docket_dapr_deliveries_total";

/// The consumers a Dapr-mode process runs, by topic, and the pubsub component they use.
#[derive(Clone)]
pub struct DaprSubscriptions {
    /// The Pub/Sub component's name (`metadata.name`).
    pub pubsub: String,
    pub topics: Vec<DaprTopic>,
    /// When set, deliveries are kept here for the consumers to read, not run on the spot.
    pub inbox: Option<Arc<dyn DaprInbox>>,
}

/// Where inbox delivery keeps what the sidecar delivers.
#[async_trait::async_trait]
pub trait DaprInbox: Send + Sync {
    /// Keeps `event`, delivered on `topic`, durably before it returns `Ok` (a redelivery of
    /// an event already kept is `Ok` too); `Err` says why it could not.
    async fn keep(&self, topic: &str, event: CloudEvent) -> Result<(), String>;
}

/// One subscribed topic and the consumers (group name, processor) that read it.
#[derive(Clone)]
pub struct DaprTopic {
    pub topic: String,
    pub consumers: Vec<(String, Arc<dyn Processor>)>,
}

impl std::fmt::Debug for DaprSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<(&str, Vec<&str>)> = self
            .topics
            .iter()
            .map(|t| (t.topic.as_str(), t.consumers.iter().map(|(n, _)| n.as_str()).collect()))
            .collect();
        f.debug_struct("DaprSubscriptions")
            .field("pubsub", &self.pubsub)
            .field("topics", &topics)
            .field("inbox", &self.inbox.is_some())
            .finish()
    }
}

/// The triggers a Dapr scheduler-mode process serves.
#[derive(Debug, Clone)]
pub struct DaprTriggers {
    /// The `bindings.cron` component's name (its route is `/{name}`).
    pub cron_binding: String,
}

/// Refuses a callback without the sidecar's token, when one is configured.
fn from_sidecar(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match st.config.app_api_token.as_deref() {
        None => Ok(()),
        Some(token) => {
            let given = headers.get("dapr-api-token").and_then(|v| v.to_str().ok());
            // Compared in constant time: the answer's timing says nothing about the token.
            if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::App(docket_app::AppError::Unauthorized(
                    "Dapr callbacks need the sidecar's dapr-api-token".to_owned(),
                )))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The route Dapr delivers `topic`'s events to.
pub fn route(topic: &str) -> String {
    format!("/dapr/events/{topic}")
}

/// One programmatic subscription, as Dapr reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    pub pubsubname: String,
    pub topic: String,
    pub route: String,
    #[serde(rename = "deadLetterTopic")]
    pub dead_letter_topic: String,
    /// Component-specific options (none).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// What a delivery route answers Dapr.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryStatus {
    /// `SUCCESS`, `RETRY` or `DROP`.
    pub status: &'static str,
}

/// The subscriptions Dapr should make for this process (empty when not in Dapr mode).
#[utoipa::path(get, path = "/dapr/subscribe", operation_id = "dapr_subscribe", tag = "dapr",
    responses(
        (status = 200, description = "the subscriptions", body = Vec<Subscription>),
        (status = 401, response = Unauthorized),
    ))]
pub async fn subscribe(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    from_sidecar(&st, &headers)?;
    let Some(dapr) = st.config.dapr.as_deref() else {
        return Ok(Json(Vec::new()));
    };
    Ok(Json(
        dapr.topics
            .iter()
            .map(|t| Subscription {
                pubsubname: dapr.pubsub.clone(),
                topic: t.topic.clone(),
                route: route(&t.topic),
                dead_letter_topic: docket_events::topics::dlq(&t.topic),
                metadata: serde_json::Map::new(),
            })
            .collect(),
    ))
}

/// A delivery from the sidecar: the CloudEvent as Dapr sends it (our envelope plus the
/// attributes Dapr adds).
#[utoipa::path(post, path = "/dapr/events/{topic}", operation_id = "dapr_deliver", tag = "dapr",
    params(("topic" = String, Path, description = "the subscribed topic")),
    request_body(content = Object, content_type = "application/cloudevents+json",
        description = "a CloudEvent 1.0 in structured mode"),
    responses(
        (status = 200, description = "SUCCESS, RETRY or DROP", body = DeliveryStatus),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ))]
pub async fn deliver(
    State(st): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    from_sidecar(&st, &headers)?;
    let dapr = st.config.dapr.as_deref();
    let consumers = dapr
        .and_then(|d| d.topics.iter().find(|t| t.topic == topic))
        .map(|t| t.consumers.clone())
        .ok_or(ApiError::App(docket_app::AppError::NotFound("subscription")))?;
    let inbox = dapr.and_then(|d| d.inbox.clone());
    let status = match CloudEvent::parse(&body) {
        Ok(event) => match inbox {
            Some(inbox) => keep(&topic, event, inbox.as_ref()).await,
            None => handle(&topic, event, &consumers).await,
        },
        Err(e) => {
            tracing::warn!(%topic, error = %e, "dropping a delivery that is not a CloudEvent");
            "DROP"
        }
    };
    metrics::counter!(DELIVERIES_METRIC, "topic" => topic, "status" => status).increment(1);
    Ok(Json(DeliveryStatus { status }))
}

/// Keeps `event` in the inbox; the status for Dapr.
async fn keep(topic: &str, event: CloudEvent, inbox: &dyn DaprInbox) -> &'static str {
    let id = event.id.clone();
    match inbox.keep(topic, event).await {
        Ok(()) => "SUCCESS",
        Err(error) => {
            tracing::warn!(%topic, event.id = %id, %error, "cannot keep a delivery; asking Dapr to retry");
            "RETRY"
        }
    }
}

/// Runs every consumer of the topic on `event`; the status for Dapr.
async fn handle(
    topic: &str,
    event: CloudEvent,
    consumers: &[(String, Arc<dyn Processor>)],
) -> &'static str {
    let seq = event.sequence.as_deref().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let delivery = Message { event, seq, attempt: 1 };
    let (mut retry, mut drop) = (false, false);
    for (name, processor) in consumers {
        // Like the embedded runtime: a child span of the event's trace.
        let ctx = delivery
            .event
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse)
            .map_or_else(docket_trace::root, docket_trace::child);
        match docket_trace::scope(ctx, processor.process(name, topic, &delivery, false)).await {
            Ok(_) => {}
            Err(HandlerError::Transient(error)) => {
                tracing::info!(consumer = %name, event.id = %delivery.event.id, %error,
                    "handler failed; asking Dapr to retry");
                retry = true;
            }
            Err(HandlerError::Permanent(error)) => {
                tracing::warn!(consumer = %name, event.id = %delivery.event.id, %error,
                    "handler rejected the event; asking Dapr to drop it");
                drop = true;
            }
        }
    }
    if retry {
        "RETRY"
    } else if drop {
        "DROP"
    } else {
        "SUCCESS"
    }
}

/// What a trigger swept.
#[derive(Debug, Serialize, ToSchema)]
pub struct Swept {
    /// Fixed-mode series instances made.
    pub instances: usize,
    /// Reminders fired.
    pub reminders: usize,
}

async fn sweep(st: &AppState) -> Result<Json<Swept>, ApiError> {
    let (instances, reminders) = st.app.sweep_due().await?;
    Ok(Json(Swept { instances, reminders }))
}

/// A Dapr job fired: sweeps everything due (a duplicate trigger fires nothing twice).
#[utoipa::path(post, path = "/job/{name}", operation_id = "dapr_job", tag = "dapr",
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 200, description = "what was due, done", body = Swept),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
pub async fn job(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    from_sidecar(&st, &headers)?;
    if st.config.dapr_triggers.is_none() {
        return Err(ApiError::App(docket_app::AppError::NotFound("job")));
    }
    tracing::debug!(job = %name, "Dapr job triggered");
    sweep(&st).await
}

fn is_cron_binding(st: &AppState, name: &str) -> bool {
    st.config.dapr_triggers.as_ref().is_some_and(|t| t.cron_binding == name)
}

/// The route of the cron binding's callbacks.
pub const BINDING_ROUTE: &str = "/{binding}";

/// The answer to Dapr's probe of an input binding.
#[derive(Debug, Serialize, ToSchema)]
pub struct BindingServed {
    pub binding: String,
}

/// Dapr asks whether the app takes the cron binding's events.
#[utoipa::path(options, path = "/{binding}", operation_id = "dapr_binding_probe", tag = "dapr",
    params(("binding" = String, Path, description = "the cron binding's name")),
    responses(
        (status = 200, description = "the binding is served", body = BindingServed),
        (status = 404, response = NotFound),
    ))]
pub async fn binding_probe(
    State(st): State<AppState>,
    Path(binding): Path<String>,
) -> Result<Json<BindingServed>, ApiError> {
    if is_cron_binding(&st, &binding) {
        Ok(Json(BindingServed { binding }))
    } else {
        Err(ApiError::App(docket_app::AppError::NotFound("binding")))
    }
}

/// The cron binding fired: sweeps everything due (for clusters without the Dapr Scheduler).
#[utoipa::path(post, path = "/{binding}", operation_id = "dapr_binding", tag = "dapr",
    params(("binding" = String, Path, description = "the cron binding's name")),
    responses(
        (status = 200, description = "what was due, done", body = Swept),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
pub async fn binding(
    State(st): State<AppState>,
    Path(binding): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if !is_cron_binding(&st, &binding) {
        return Err(ApiError::App(docket_app::AppError::NotFound("binding")));
    }
    from_sidecar(&st, &headers)?;
    sweep(&st).await
}
