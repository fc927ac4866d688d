//! Dapr's app callbacks (§7), the one place the app side of Dapr is served: the binary merges
//! [`AppCallbacks::router`] into docket-http's router in Dapr mode (so the callbacks get its
//! request span, metrics, security headers and problems), and this crate's tests serve it on
//! its own.
//!
//! Pub/Sub: `GET /dapr/subscribe` lists one programmatic subscription per consumed topic, with
//! `{topic}.dlq` as its `deadLetterTopic`, and `POST /dapr/events/{topic}` takes a delivery.
//! Dapr allows one subscription per (pubsub, topic) and app id, so a topic several consumers
//! read (`task-events`: audit, recurrence, webhooks) gets one route for all of them. A
//! delivery goes one of two ways:
//!
//! * [`AppCallbacks::run_consumers`] (`--dapr-delivery direct`): each consumer of the topic
//!   runs on the event in the request, in a child span of the event's trace. Every consumer is
//!   idempotent on the event id (`processed:` keys), so when one fails and Dapr redelivers,
//!   the others skip what they already did.
//! * [`AppCallbacks::keep_in`] (`--dapr-delivery inbox`, and the bus conformance fixture): the
//!   event is kept in the [`DaprBus`] inbox of its topic ([`DaprBus::keep`]); the consumers
//!   read the inbox later as independent groups. The topics are those the bus declared.
//!
//! The answer follows Dapr's contract for delivery routes (HTTP 200 with a `status`):
//! `SUCCESS` when every consumer handled (or had handled) it, or once it is kept; `RETRY` when
//! a consumer failed transiently or it cannot be kept (Dapr redelivers per its resiliency
//! policy, then sends it to the `deadLetterTopic`); `DROP` for poison: a body that is not our
//! CloudEvent, or data a consumer can never handle. Answers are counted
//! ([`DELIVERIES_METRIC`]`{topic, status}`). A topic not subscribed to is a 404.
//!
//! Scheduling ([`AppCallbacks::sweep_on_triggers`], `--scheduler dapr`): a Dapr job's trigger
//! (`POST /job/{name}`) and the `bindings.cron` fallback (`OPTIONS /{binding}` → 200 so Dapr
//! knows the app takes it, `POST /{binding}`) both sweep what is due through the scheduler's
//! claims (`App::sweep_due`), so a duplicate or late trigger fires nothing twice. `/{binding}`
//! matches every one-segment path; other methods there are no route (404, not 405).
//!
//! With an app API token (Dapr's `APP_API_TOKEN`), every callback but the binding probe must
//! carry it in `dapr-api-token`, so only the sidecar can drive them. Errors are docket-http's
//! problems. Not in the OpenAPI document: these are Dapr's routes, not the product's API.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, get, post};
use docket_app::{App, AppError};
use docket_bus::Message;
use docket_bus::runtime::{HandlerError, Processor};
use docket_events::CloudEvent;
use docket_events::trace::TraceContext;
use docket_http::ApiError;
use serde::Serialize;

use crate::bus::DaprBus;

/// Counter of deliveries from the sidecar, labelled by `topic` and answered `status`.
pub const DELIVERIES_METRIC: &str = "docket_dapr_deliveries_total";

/// One subscribed topic and the consumers (group name, processor) that read it.
#[derive(Clone)]
pub struct DaprTopic {
    pub topic: String,
    pub consumers: Vec<(String, Arc<dyn Processor>)>,
}

/// Where deliveries go.
#[derive(Clone, Default)]
enum Deliveries {
    /// Nowhere: nothing is subscribed to.
    #[default]
    None,
    /// To the topic's consumers, run in the request.
    Run { pubsub: String, topics: Vec<DaprTopic> },
    /// Into the bus's inbox.
    Keep(DaprBus),
}

/// The Dapr callbacks one process serves; [`AppCallbacks::router`] serves them.
#[derive(Clone, Default)]
pub struct AppCallbacks {
    deliveries: Deliveries,
    /// The app whose due work triggers sweep, and the cron binding's name.
    triggers: Option<(Arc<App>, String)>,
    /// Dapr's `APP_API_TOKEN`, when set.
    token: Option<String>,
}

impl AppCallbacks {
    /// Callbacks that need `app_api_token` (when given) and serve nothing yet: no subscription,
    /// no trigger.
    pub fn new(app_api_token: Option<String>) -> AppCallbacks {
        AppCallbacks { token: app_api_token, ..AppCallbacks::default() }
    }

    /// Subscribes to `topics` on Pub/Sub component `pubsub` and runs their consumers on each
    /// delivery.
    pub fn run_consumers(self, pubsub: &str, topics: Vec<DaprTopic>) -> AppCallbacks {
        AppCallbacks { deliveries: Deliveries::Run { pubsub: pubsub.to_owned(), topics }, ..self }
    }

    /// Subscribes to the topics `bus` declares (now and later) and keeps each delivery in its
    /// inbox.
    pub fn keep_in(self, bus: DaprBus) -> AppCallbacks {
        AppCallbacks { deliveries: Deliveries::Keep(bus), ..self }
    }

    /// Serves the job trigger and the cron binding `cron_binding`, sweeping what is due in
    /// `app`.
    pub fn sweep_on_triggers(self, app: Arc<App>, cron_binding: &str) -> AppCallbacks {
        AppCallbacks { triggers: Some((app, cron_binding.to_owned())), ..self }
    }

    /// The routes, to merge into the app's router.
    pub fn router(self) -> Router {
        let mut router = Router::new()
            .route("/dapr/subscribe", get(list_subscriptions))
            .route("/dapr/events/{topic}", post(deliver));
        if self.triggers.is_some() {
            let binding: MethodRouter<Arc<AppCallbacks>> =
                post(binding).options(binding_probe).fallback(no_route);
            router = router.route("/job/{name}", post(job)).route("/{binding}", binding);
        }
        router.with_state(Arc::new(self))
    }

    /// Refuses a callback without the sidecar's token, when one is configured.
    fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = self.token.as_deref() else { return Ok(()) };
        let given = headers.get(crate::API_TOKEN_HEADER).and_then(|v| v.to_str().ok());
        // Compared in constant time: the answer's timing says nothing about the token.
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            Ok(())
        } else {
            Err(AppError::Unauthorized("Dapr callbacks need the sidecar's dapr-api-token".into())
                .into())
        }
    }

    /// The pubsub component and the subscribed topics.
    fn subscriptions(&self) -> Option<(String, Vec<String>)> {
        match &self.deliveries {
            Deliveries::None => None,
            Deliveries::Run { pubsub, topics } => {
                Some((pubsub.clone(), topics.iter().map(|t| t.topic.clone()).collect()))
            }
            Deliveries::Keep(bus) => Some((bus.pubsub().to_owned(), bus.topics())),
        }
    }

    fn is_cron_binding(&self, name: &str) -> bool {
        self.triggers.as_ref().is_some_and(|(_, binding)| binding == name)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The route Dapr delivers `topic`'s events to (the topic percent-encoded as one segment).
pub fn route(topic: &str) -> String {
    let mut out = String::from("/dapr/events/");
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One programmatic subscription, as Dapr reads it.
#[derive(Debug, Serialize)]
struct Subscription {
    pubsubname: String,
    topic: String,
    route: String,
    #[serde(rename = "deadLetterTopic")]
    dead_letter_topic: String,
    /// Component-specific options (none).
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// What a delivery route answers Dapr.
#[derive(Debug, Serialize)]
struct DeliveryStatus {
    /// `SUCCESS`, `RETRY` or `DROP`.
    status: &'static str,
}

async fn list_subscriptions(
    State(callbacks): State<Arc<AppCallbacks>>,
    headers: HeaderMap,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    callbacks.check_token(&headers)?;
    let Some((pubsub, topics)) = callbacks.subscriptions() else {
        return Ok(Json(Vec::new()));
    };
    Ok(Json(
        topics
            .into_iter()
            .map(|topic| Subscription {
                pubsubname: pubsub.clone(),
                route: route(&topic),
                dead_letter_topic: docket_events::topics::dlq(&topic),
                topic,
                metadata: serde_json::Map::new(),
            })
            .collect(),
    ))
}

/// A delivery from the sidecar: the CloudEvent as Dapr sends it (our envelope plus the
/// attributes Dapr adds).
async fn deliver(
    State(callbacks): State<Arc<AppCallbacks>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeliveryStatus>, ApiError> {
    callbacks.check_token(&headers)?;
    let subscribed = callbacks.subscriptions().is_some_and(|(_, topics)| topics.contains(&topic));
    if !subscribed {
        return Err(AppError::NotFound("subscription").into());
    }
    let status = match CloudEvent::parse(&body) {
        Ok(event) => match &callbacks.deliveries {
            Deliveries::Keep(bus) => keep(bus, &topic, event).await,
            Deliveries::Run { topics, .. } => {
                let consumers = topics.iter().filter(|t| t.topic == topic);
                run(&topic, event, consumers.flat_map(|t| &t.consumers)).await
            }
            Deliveries::None => unreachable!("no topic is subscribed without deliveries"),
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
async fn keep(bus: &DaprBus, topic: &str, event: CloudEvent) -> &'static str {
    let id = event.id.clone();
    match bus.keep(topic, event).await {
        Ok(_) => "SUCCESS",
        Err(error) => {
            tracing::warn!(%topic, event.id = %id, %error, "cannot keep a delivery; asking Dapr to retry");
            "RETRY"
        }
    }
}

/// Runs every consumer of the topic on `event`; the status for Dapr.
async fn run<'a>(
    topic: &str,
    event: CloudEvent,
    consumers: impl Iterator<Item = &'a (String, Arc<dyn Processor>)>,
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
#[derive(Debug, Serialize)]
struct Swept {
    /// Fixed-mode series instances made.
    instances: usize,
    /// Reminders fired.
    reminders: usize,
}

/// Sweeps everything due (a duplicate trigger fires nothing twice).
async fn sweep(callbacks: &AppCallbacks) -> Result<Json<Swept>, ApiError> {
    let (app, _) = callbacks.triggers.as_ref().expect("trigger routes exist only with triggers");
    let (instances, reminders) = app.sweep_due().await?;
    Ok(Json(Swept { instances, reminders }))
}

/// A Dapr job fired.
async fn job(
    State(callbacks): State<Arc<AppCallbacks>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Swept>, ApiError> {
    callbacks.check_token(&headers)?;
    tracing::debug!(job = %name, "Dapr job triggered");
    sweep(&callbacks).await
}

/// The answer to Dapr's probe of an input binding.
#[derive(Debug, Serialize)]
struct BindingServed {
    binding: String,
}

/// Dapr asks whether the app takes the cron binding's events.
async fn binding_probe(
    State(callbacks): State<Arc<AppCallbacks>>,
    Path(binding): Path<String>,
) -> Result<Json<BindingServed>, ApiError> {
    if callbacks.is_cron_binding(&binding) {
        Ok(Json(BindingServed { binding }))
    } else {
        Err(AppError::NotFound("binding").into())
    }
}

/// The cron binding fired (for clusters without the Dapr Scheduler).
async fn binding(
    State(callbacks): State<Arc<AppCallbacks>>,
    Path(binding): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Swept>, ApiError> {
    if !callbacks.is_cron_binding(&binding) {
        return Err(AppError::NotFound("binding").into());
    }
    callbacks.check_token(&headers)?;
    sweep(&callbacks).await
}

/// Any other method on a one-segment path: not a route.
async fn no_route() -> ApiError {
    ApiError::NoRoute
}
