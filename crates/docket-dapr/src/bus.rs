//! [`DaprBus`]: the [`EventBus`] contract over Dapr Pub/Sub, by way of an inbox. Dapr pushes
//! (it POSTs each event to the app and reads `SUCCESS`/`RETRY`/`DROP`), allows one
//! subscription per topic and app id, and keeps no log an app could replay; the contract pulls
//! (`Subscription::next`) and wants independent consumer groups with their own positions. So
//! the bus keeps the received events in a log of its own, in the app's database, and serves
//! the groups from it:
//!
//! * [`DaprBus::router`] serves the app side of Dapr: `GET /dapr/subscribe` (one subscription
//!   per declared topic, with `{topic}.dlq` as its `deadLetterTopic`) and
//!   `POST /dapr/events/{topic}`. A delivery is appended to the inbox log of its topic (the
//!   outbox table under the topic [`inbox_topic`]`(topic)`, the attributes Dapr adds removed)
//!   and answered `SUCCESS` once that append committed: the event is durable before Dapr
//!   forgets it. A redelivery of an event already in the inbox appends nothing (the row's
//!   unique key is the inbox topic and the event id) and is answered `SUCCESS` too. A failed
//!   append (the database is down) is `RETRY`; a body that is not a CloudEvent, or a topic
//!   name the log cannot hold, is `DROP`. This router is the bus on its own (the conformance
//!   fixture serves it); the server keeps deliveries through [`DaprBus::keep`] behind
//!   docket-http's Dapr routes, which check the app API token and count the answers.
//! * `subscribe(group, topic)` is the embedded bus's subscription on the inbox log
//!   ([`docket_bus::embedded`]): each group has its own committed position, attempt counts and
//!   backoff, so one group's nacks and dead letters never hold another back; a group that
//!   joins later reads the events still kept; one subscriber per group at a time (across
//!   processes on PostgreSQL); per-key order is the inbox's order. Dead letters go, with the
//!   [`docket_bus::dlq`] extensions, to the log `{inbox topic}.dlq`, which is the inbox of
//!   `{topic}.dlq`: a group subscribed to `{topic}.dlq` sees them together with what Dapr
//!   itself dead-lettered to that topic. They stay in the app's database (not republished).
//! * `publish` goes through the sidecar, one event per call in order (Dapr keeps no order
//!   between the entries of a bulk publish), each with its `partitionkey` as
//!   `metadata.partitionKey`. In Dapr mode the server's own writes go through the store's
//!   outbox and the relay ([`crate::relay`]) instead.
//!
//! What the inbox does not restore: the order in which Dapr delivers. Per-key order holds
//! when Dapr delivers a topic's events of one key one at a time (Kafka partitions keyed by
//! `partitionKey`), not where a component delivers concurrently (Redis Streams). Inbox rows are
//! pruned like any outbox rows, by housekeeping, once every group passed them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use docket_bus::embedded::EmbeddedBus;
use docket_bus::{BusError, EventBus, SubscribeOptions, Subscription};
use docket_events::CloudEvent;
use serde::Serialize;

use crate::client::{DaprClient, DaprError};

const BACKEND: &str = "dapr";
/// Attributes Dapr adds to the envelope on delivery; removed before the event is kept.
const DAPR_ATTRIBUTES: [&str; 4] = ["pubsubname", "topic", "traceid", "tracestate"];
/// The longest topic name a Dapr topic may have here (its inbox name must fit the log).
const MAX_TOPIC: usize = 150;

/// The log the events Dapr delivers on `topic` are kept in.
pub fn inbox_topic(topic: &str) -> String {
    format!("dapr-inbox:{topic}")
}

/// The inbox row's unique key for `event` received on `topic`: the inbox topic and the event
/// id, separated by a character no topic name has, so that it never equals an event id the
/// producers' own outbox rows hold (the same event is in the producer's outbox when both
/// share the database).
fn inbox_key(topic: &str, event: &CloudEvent) -> String {
    format!("{}\u{1f}{}", inbox_topic(topic), event.id)
}

/// The event bus over a Dapr sidecar's Pub/Sub component. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DaprBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: DaprClient,
    pubsub: String,
    log: EmbeddedBus,
    topics: Mutex<BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<DaprError> for BusError {
    fn from(e: DaprError) -> BusError {
        BusError::Unavailable { backend: BACKEND, message: e.to_string() }
    }
}

/// Topic names: 1 to [`MAX_TOPIC`] characters, no control characters.
fn check_topic(topic: &str) -> Result<(), BusError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC || topic.chars().any(char::is_control) {
        return Err(BusError::Invalid(format!(
            "topic '{topic}' is not valid (expected 1 to {MAX_TOPIC} bytes, no control characters)"
        )));
    }
    Ok(())
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

/// One programmatic subscription, as Dapr reads it from `GET /dapr/subscribe`.
#[derive(Debug, Serialize)]
struct SubscriptionWire {
    pubsubname: String,
    topic: String,
    route: String,
    #[serde(rename = "deadLetterTopic")]
    dead_letter_topic: String,
}

/// What a delivery route answers Dapr.
#[derive(Debug, Serialize)]
struct DeliveryStatus {
    status: &'static str,
}

impl DaprBus {
    /// A bus publishing to and subscribed through Pub/Sub component `pubsub`, keeping what
    /// it receives in `log`'s database (the app's own store).
    pub fn new(client: DaprClient, pubsub: &str, log: EmbeddedBus) -> DaprBus {
        DaprBus {
            inner: Arc::new(Inner {
                client,
                pubsub: pubsub.to_owned(),
                log,
                topics: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Declares that this process consumes `topic`, so that `GET /dapr/subscribe` lists it.
    /// Dapr reads that list when the app starts: declare every topic before the sidecar reads
    /// it (a later `subscribe` to a new topic declares it too, but Dapr only learns of it when
    /// it reads the list again). Returns whether the topic was new.
    pub fn declare_topic(&self, topic: &str) -> Result<bool, BusError> {
        check_topic(topic)?;
        Ok(lock(&self.inner.topics).insert(topic.to_owned()))
    }

    /// Keeps `event`, delivered by Dapr on `topic`, in the topic's inbox (what the delivery
    /// route does, for a process that serves deliveries on routes of its own). Returns
    /// whether it was new; `Ok(false)` for a redelivery of an event already kept.
    pub async fn keep(&self, topic: &str, event: CloudEvent) -> Result<bool, BusError> {
        keep(&self.inner.log, topic, event).await
    }

    /// The declared topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        lock(&self.inner.topics).iter().cloned().collect()
    }

    /// The app side of Dapr Pub/Sub: `GET /dapr/subscribe` and `POST /dapr/events/{topic}`
    /// (see the module doc). Merge it into the app's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/dapr/subscribe", get(list_subscriptions))
            .route("/dapr/events/{topic}", post(deliver))
            .with_state(Arc::clone(&self.inner))
    }
}

impl Inner {
    /// Keeps a delivery's body, delivered on `topic`, in the topic's inbox; the answer for
    /// Dapr.
    async fn receive(&self, topic: &str, body: &[u8]) -> &'static str {
        if let Err(e) = check_topic(topic) {
            tracing::warn!(error = %e, "dropping a delivery on a topic the inbox cannot hold");
            return "DROP";
        }
        let event = match CloudEvent::parse(body) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "dropping a delivery that is not a CloudEvent");
                return "DROP";
            }
        };
        let id = event.id.clone();
        match keep(&self.log, topic, event).await {
            Ok(_) => "SUCCESS",
            Err(e) => {
                tracing::warn!(%topic, event.id = %id, error = %e, "cannot keep a Dapr delivery; asking Dapr to retry");
                "RETRY"
            }
        }
    }
}

/// Appends `event`, delivered on `topic`, to the topic's inbox in `log` (the attributes Dapr
/// adds removed) unless it is there already; whether it appended.
async fn keep(log: &EmbeddedBus, topic: &str, mut event: CloudEvent) -> Result<bool, BusError> {
    check_topic(topic)?;
    for attribute in DAPR_ATTRIBUTES {
        event.extensions.remove(attribute);
    }
    event.sequence = None;
    let key = inbox_key(topic, &event);
    let id = event.id.clone();
    let appended = log.append_once(&inbox_topic(topic), event, key).await?;
    if !appended {
        tracing::debug!(%topic, event.id = %id, "a redelivered event is already in the inbox");
    }
    Ok(appended)
}

async fn list_subscriptions(State(bus): State<Arc<Inner>>) -> Json<Vec<SubscriptionWire>> {
    let topics: Vec<String> = lock(&bus.topics).iter().cloned().collect();
    Json(
        topics
            .into_iter()
            .map(|topic| SubscriptionWire {
                pubsubname: bus.pubsub.clone(),
                route: route(&topic),
                dead_letter_topic: docket_events::topics::dlq(&topic),
                topic,
            })
            .collect(),
    )
}

async fn deliver(
    State(bus): State<Arc<Inner>>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Json<DeliveryStatus> {
    Json(DeliveryStatus { status: bus.receive(&topic, &body).await })
}

#[async_trait]
impl EventBus for DaprBus {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, topic: &str, events: Vec<CloudEvent>) -> Result<(), BusError> {
        check_topic(topic)?;
        for event in &events {
            self.inner.client.publish(&self.inner.pubsub, topic, event).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.declare_topic(topic)?;
        self.inner.log.subscribe(group, &inbox_topic(topic), options).await
    }
}
