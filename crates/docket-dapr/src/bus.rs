//! [`DaprBus`]: the [`EventBus`] contract over Dapr Pub/Sub, by way of an inbox. Dapr pushes
//! (it POSTs each event to the app and reads `SUCCESS`/`RETRY`/`DROP`), allows one
//! subscription per topic and app id, and keeps no log an app could replay; the contract pulls
//! (`Subscription::next`) and wants independent consumer groups with their own positions. So
//! the bus keeps the received events in a log of its own, in the app's database, and serves
//! the groups from it:
//!
//! * Dapr delivers to the app's callbacks
//!   ([`AppCallbacks::keep_in`](crate::callbacks::AppCallbacks::keep_in)),
//!   which list the declared topics in `GET /dapr/subscribe` and hand each delivery to
//!   [`DaprBus::keep`]: it is appended to the inbox log of its topic (the outbox table under
//!   the topic [`inbox_topic`]`(topic)`, the attributes Dapr adds removed), and Dapr is
//!   answered `SUCCESS` once that append committed: the event is durable before Dapr forgets
//!   it. A redelivery of an event already in the inbox appends nothing (the row's unique key
//!   is the inbox topic and the event id). A failed append (the database is down) is `RETRY`.
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
use docket_bus::embedded::EmbeddedBus;
use docket_bus::{BusError, EventBus, SubscribeOptions, Subscription};
use docket_events::CloudEvent;

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
    /// callback does). Returns whether it was new; `Ok(false)` for a redelivery of an event
    /// already kept.
    pub async fn keep(&self, topic: &str, event: CloudEvent) -> Result<bool, BusError> {
        keep(&self.inner.log, topic, event).await
    }

    /// The declared topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        lock(&self.inner.topics).iter().cloned().collect()
    }

    /// The Pub/Sub component it publishes to and is subscribed through.
    pub fn pubsub(&self) -> &str {
        &self.inner.pubsub
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
