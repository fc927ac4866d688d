//! [`DaprBus`]: the [`EventBus`] contract over Dapr Pub/Sub. Dapr pushes (it POSTs each event
//! to the app and reads `SUCCESS`/`RETRY`/`DROP`), the contract pulls (`Subscription::next`),
//! so this module bridges the two: the bus serves the app side of Dapr ([`DaprBus::router`]:
//! `GET /dapr/subscribe` and `POST /dapr/events/{topic}`), hands each delivered event to every
//! consumer group of its topic, and answers Dapr from the groups' settlements.
//!
//! * `publish` goes through the sidecar, one event per call in order (Dapr keeps no order
//!   between the entries of a bulk publish, and the contract wants publish order), each with
//!   its `partitionkey` as `metadata.partitionKey`. In Dapr mode the server's own events go
//!   through the store's outbox and the relay ([`crate::relay`]) instead.
//! * Groups are remembered in the [`StateStore`] (`bus:groups:{topic}`) when they first
//!   subscribe, so a delivery that arrives while a known group has no live subscriber (a
//!   crash, a restart) is answered `RETRY` and waits for it, instead of being lost.
//! * One Dapr subscription per topic serves every group: an event is `SUCCESS` once every
//!   group acked it or dead-lettered it; any nack below `max_attempts`, a subscriber dropped
//!   unsettled, or a known group with no live subscriber is `RETRY`. A group that already
//!   settled the event (mark `bus:acked:{topic}:{group}:{id}`, with a TTL) is not handed it
//!   again, so one group's retry does not redeliver to another.
//! * Attempts are counted per (group, event id) in `bus:attempts:{topic}:{group}:{id}` with the
//!   earliest time of the next attempt: they survive a restart, and a redelivery Dapr makes
//!   before a nack's `retry_after` is held (up to [`MAX_HOLD`]) or answered `RETRY` without
//!   counting an attempt.
//! * A nack at `max_attempts` and `dead_letter` publish the dead letter to `{topic}.dlq`
//!   (same shape as the embedded bus: a new id and the [`docket_bus::dlq`] extensions) and
//!   settle the event for that group. The Dapr subscription also names `{topic}.dlq` as its
//!   `deadLetterTopic`, where Dapr itself puts an event its resiliency policy gave up on (the
//!   raw event, without our extensions); run the sidecar with unbounded retries
//!   (`maxRetries: -1`) so that only the bus decides.
//!
//! What Dapr cannot give and this bus does not pretend to: a group sees only events Dapr
//! delivers after it first subscribed (there is no log to replay for a group that joins
//! later), and per-key order holds only when Dapr delivers a topic's events one at a time,
//! holding later ones back while one is retried (Kafka within a partition; not Redis
//! Streams); then every group of the topic waits for the slowest one, since they share one
//! Dapr subscription. Within one process a group has one live subscriber at a time; across
//! replicas (each receiving a share of Dapr's deliveries) nothing makes a group's subscribers
//! take turns. A group that is remembered but no longer runs holds its topic back (`RETRY`
//! forever) until its `bus:groups:` entry is edited. It does not run handlers (that is
//! `docket_bus::runtime::run_consumer`), check the `dapr-api-token` of callbacks, or decide
//! when the server uses it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use docket_bus::{BusError, Delivery, EventBus, Nacked, SubscribeOptions, Subscription, dlq};
use docket_events::CloudEvent;
use docket_store::{StateError, StateStore};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot, watch};

use crate::client::{DaprClient, DaprError};

const BACKEND: &str = "dapr";
/// How long settled marks and attempt counts are kept (a redelivery later than this is
/// handed to the groups again; consumers deduplicate on the event id anyway).
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest a delivery that came before its `retry_after` is held before being handed on;
/// longer waits are answered `RETRY` and Dapr's own retry interval brings it back.
pub const MAX_HOLD: Duration = Duration::from_secs(1);
/// The longest dead-letter error kept (as the embedded bus).
const MAX_ERROR_LEN: usize = 2000;
/// The longest event id that fits the state keys; a longer one is dropped (ours are UUIDs).
const MAX_ID_KEY: usize = 120;
/// Attributes Dapr adds to the envelope on delivery; removed before a group sees the event.
const DAPR_ATTRIBUTES: [&str; 4] = ["pubsubname", "topic", "traceid", "tracestate"];

/// The event bus over a Dapr sidecar's Pub/Sub component. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DaprBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: DaprClient,
    pubsub: String,
    state: Arc<dyn StateStore>,
    topics: Mutex<BTreeSet<String>>,
    groups: Mutex<HashMap<(String, String), Arc<Group>>>,
    /// Positions for deliveries without a `sequence` (events not from an outbox relay).
    arrivals: AtomicI64,
}

/// One group of one topic in this process: its live subscribers and the queue deliveries are
/// handed through to whichever of them holds the group.
struct Group {
    live: watch::Sender<usize>,
    handed: mpsc::UnboundedSender<Handed>,
    holder: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Handed>>>,
}

/// An event handed to a group, and where its settlement goes.
struct Handed {
    delivery: Delivery,
    reply: oneshot::Sender<Settled>,
}

/// How a group settled a delivery, as far as Dapr is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Acked or dead-lettered: this group is done with the event.
    Done,
    /// Nacked below `max_attempts` (or not handed): Dapr should deliver it again.
    Retry,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable(message: impl std::fmt::Display) -> BusError {
    BusError::Unavailable { backend: BACKEND, message: message.to_string() }
}

impl From<DaprError> for BusError {
    fn from(e: DaprError) -> BusError {
        unavailable(e)
    }
}

fn state_error(e: StateError) -> BusError {
    unavailable(e)
}

/// `s` with every byte that is not printable ASCII, `%` or `:` written as `%XX`, so that any
/// topic, group or id makes one unambiguous segment of a `docket_store::StateKey`.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' && b != b':' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn groups_key(topic: &str) -> String {
    format!("bus:groups:{}", segment(topic))
}

fn acked_key(topic: &str, group: &str, id: &str) -> String {
    format!("bus:acked:{}:{}:{}", segment(topic), segment(group), segment(id))
}

fn attempts_key(topic: &str, group: &str, id: &str) -> String {
    format!("bus:attempts:{}:{}:{}", segment(topic), segment(group), segment(id))
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

/// Topic and group names: 1 to 60 characters, no control characters (they go into state keys).
fn check_name(what: &str, value: &str) -> Result<(), BusError> {
    if value.is_empty() || value.chars().count() > 60 || value.chars().any(char::is_control) {
        return Err(BusError::Invalid(format!(
            "{what} '{value}' is not valid (expected 1 to 60 characters, no control characters)"
        )));
    }
    Ok(())
}

/// What `bus:attempts:…` holds: failed deliveries so far, and when the next may be made.
#[derive(Debug, Serialize, Deserialize)]
struct Attempts {
    failed: u32,
    /// Microseconds since the Unix epoch.
    retry_at: i64,
}

/// The dead letter of `event`: the same event under a new id, with the [`dlq`] extensions.
fn dead_letter_event(event: &CloudEvent, group: &str, attempts: u32, error: &str) -> CloudEvent {
    let mut letter = event.clone();
    letter.id = uuid::Uuid::now_v7().to_string();
    letter.sequence = None;
    let error: String = error.chars().take(MAX_ERROR_LEN).collect();
    letter.extensions.insert(dlq::ERROR.to_owned(), Value::String(error));
    letter.extensions.insert(dlq::GROUP.to_owned(), Value::String(group.to_owned()));
    letter.extensions.insert(dlq::ATTEMPTS.to_owned(), Value::from(attempts));
    letter.extensions.insert(dlq::ORIGINAL_ID.to_owned(), Value::String(event.id.clone()));
    letter
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
    /// A bus publishing to and subscribed through Pub/Sub component `pubsub`, keeping its
    /// groups, marks and attempt counts in `state`.
    pub fn new(client: DaprClient, pubsub: &str, state: Arc<dyn StateStore>) -> DaprBus {
        DaprBus {
            inner: Arc::new(Inner {
                client,
                pubsub: pubsub.to_owned(),
                state,
                topics: Mutex::new(BTreeSet::new()),
                groups: Mutex::new(HashMap::new()),
                arrivals: AtomicI64::new(0),
            }),
        }
    }

    /// Declares that this process consumes `topic`, so that `GET /dapr/subscribe` lists it.
    /// Dapr reads that list when the app starts: declare every topic before the sidecar reads
    /// it (a later `subscribe` to a new topic declares it too, but Dapr only learns of it when
    /// it reads the list again). Returns whether the topic was new.
    pub fn declare_topic(&self, topic: &str) -> Result<bool, BusError> {
        check_name("topic", topic)?;
        Ok(lock(&self.inner.topics).insert(topic.to_owned()))
    }

    /// The declared topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        lock(&self.inner.topics).iter().cloned().collect()
    }

    /// The app side of Dapr Pub/Sub: `GET /dapr/subscribe` (one subscription per declared
    /// topic, dead letters to `{topic}.dlq`) and `POST /dapr/events/{topic}` (a delivery,
    /// answered `SUCCESS`, `RETRY` or `DROP`). Merge it into the app's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/dapr/subscribe", get(list_subscriptions))
            .route("/dapr/events/{topic}", post(deliver))
            .with_state(Arc::clone(&self.inner))
    }
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
    let status = match CloudEvent::parse(&body) {
        Ok(event) if segment(&event.id).len() <= MAX_ID_KEY => {
            match bus.handle(&topic, event).await {
                Ok(Settled::Done) => "SUCCESS",
                Ok(Settled::Retry) => "RETRY",
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "cannot hand a Dapr delivery to its groups; asking Dapr to retry");
                    "RETRY"
                }
            }
        }
        Ok(event) => {
            tracing::warn!(%topic, event.id = %event.id, "dropping a delivery whose id is too long for the bus's state keys");
            "DROP"
        }
        Err(e) => {
            tracing::warn!(%topic, error = %e, "dropping a delivery that is not a CloudEvent");
            "DROP"
        }
    };
    Json(DeliveryStatus { status })
}

impl Inner {
    fn group(&self, topic: &str, group: &str) -> Arc<Group> {
        let mut groups = lock(&self.groups);
        let entry = groups.entry((topic.to_owned(), group.to_owned())).or_insert_with(|| {
            let (handed, rx) = mpsc::unbounded_channel();
            Arc::new(Group {
                live: watch::Sender::new(0),
                handed,
                holder: Arc::new(tokio::sync::Mutex::new(rx)),
            })
        });
        Arc::clone(entry)
    }

    async fn known_groups(&self, topic: &str) -> Result<Vec<String>, BusError> {
        let entry = self.state.get(&groups_key(topic), Timestamp::now()).await;
        match entry.map_err(state_error)? {
            None => Ok(Vec::new()),
            Some(e) => serde_json::from_slice(&e.value)
                .map_err(|e| unavailable(format!("the group list of '{topic}' is corrupt: {e}"))),
        }
    }

    /// Adds `group` to `topic`'s remembered groups (first-write concurrency, retried).
    async fn remember_group(&self, topic: &str, group: &str) -> Result<(), BusError> {
        let key = groups_key(topic);
        loop {
            let now = Timestamp::now();
            let entry = self.state.get(&key, now).await.map_err(state_error)?;
            let mut groups: Vec<String> = match &entry {
                None => Vec::new(),
                Some(e) => serde_json::from_slice(&e.value).map_err(|e| {
                    unavailable(format!("the group list of '{topic}' is corrupt: {e}"))
                })?,
            };
            if groups.iter().any(|g| g == group) {
                return Ok(());
            }
            groups.push(group.to_owned());
            let value = serde_json::to_vec(&groups).map_err(unavailable)?;
            let written = match &entry {
                None => self.state.create(&key, value, None, now).await.map(|e| e.is_some()),
                Some(e) => match self.state.set(&key, value, Some(&e.etag), None, now).await {
                    Ok(_) => Ok(true),
                    Err(StateError::Conflict { .. }) => Ok(false),
                    Err(e) => Err(e),
                },
            };
            if written.map_err(state_error)? {
                return Ok(());
            }
        }
    }

    /// Hands `event` to every remembered group of `topic` that has not settled it, and waits
    /// for their settlements.
    async fn handle(
        self: &Arc<Self>,
        topic: &str,
        mut event: CloudEvent,
    ) -> Result<Settled, BusError> {
        for attribute in DAPR_ATTRIBUTES {
            event.extensions.remove(attribute);
        }
        let groups = self.known_groups(topic).await?;
        let seq = event
            .sequence
            .as_deref()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_else(|| self.arrivals.fetch_add(1, Ordering::Relaxed) + 1);
        let settlements = groups.iter().map(|g| self.hand(topic, g, &event, seq));
        let mut settled = Settled::Done;
        for r in futures::future::join_all(settlements).await {
            if r? == Settled::Retry {
                settled = Settled::Retry;
            }
        }
        Ok(settled)
    }

    async fn hand(
        &self,
        topic: &str,
        group: &str,
        event: &CloudEvent,
        seq: i64,
    ) -> Result<Settled, BusError> {
        let now = Timestamp::now();
        let acked = self.state.get(&acked_key(topic, group, &event.id), now).await;
        if acked.map_err(state_error)?.is_some() {
            return Ok(Settled::Done);
        }
        let recorded = self.state.get(&attempts_key(topic, group, &event.id), now).await;
        let attempts = recorded
            .map_err(state_error)?
            .and_then(|e| serde_json::from_slice::<Attempts>(&e.value).ok());
        let failed = attempts.as_ref().map_or(0, |a| a.failed);
        if let Some(a) = &attempts {
            let wait = a.retry_at.saturating_sub(now.as_microsecond());
            if wait > 0 {
                let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(u64::MAX));
                if wait > MAX_HOLD {
                    return Ok(Settled::Retry);
                }
                tokio::time::sleep(wait).await;
            }
        }
        let slot = self.group(topic, group);
        let mut live = slot.live.subscribe();
        if *live.borrow_and_update() == 0 {
            return Ok(Settled::Retry);
        }
        let (reply, settled) = oneshot::channel();
        let delivery = Delivery { event: event.clone(), seq, attempt: failed.saturating_add(1) };
        if slot.handed.send(Handed { delivery, reply }).is_err() {
            return Ok(Settled::Retry);
        }
        tokio::select! {
            // A dropped reply: the subscriber went away without settling (a crash).
            r = settled => Ok(r.unwrap_or(Settled::Retry)),
            // Nobody left to take it; the queued hand-off goes stale (its reply is closed).
            _ = live.wait_for(|n| *n == 0) => Ok(Settled::Retry),
        }
    }
}

#[async_trait]
impl EventBus for DaprBus {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, topic: &str, events: Vec<CloudEvent>) -> Result<(), BusError> {
        check_name("topic", topic)?;
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
        check_name("group", group)?;
        check_name("topic", topic)?;
        if options.max_attempts == 0 || options.batch == 0 {
            return Err(BusError::Invalid("max_attempts and batch must be at least 1".to_owned()));
        }
        self.declare_topic(topic)?;
        self.inner.remember_group(topic, group).await?;
        let slot = self.inner.group(topic, group);
        slot.live.send_modify(|n| *n += 1);
        Ok(Box::new(DaprSubscription {
            bus: Arc::clone(&self.inner),
            group: group.to_owned(),
            topic: topic.to_owned(),
            options,
            slot,
            held: None,
            in_flight: None,
        }))
    }
}

/// A group's subscription: waits to hold its group, then takes what the delivery route hands
/// the group, one at a time.
struct DaprSubscription {
    bus: Arc<Inner>,
    group: String,
    topic: String,
    options: SubscribeOptions,
    slot: Arc<Group>,
    held: Option<OwnedMutexGuard<mpsc::UnboundedReceiver<Handed>>>,
    in_flight: Option<(String, oneshot::Sender<Settled>)>,
}

impl Drop for DaprSubscription {
    fn drop(&mut self) {
        // Dropping `in_flight` tells its delivery route to ask Dapr to retry.
        self.slot.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl DaprSubscription {
    /// Takes the in-flight delivery's reply if `d` is it.
    fn settle(&mut self, d: &Delivery) -> Result<oneshot::Sender<Settled>, BusError> {
        match self.in_flight.take() {
            Some((id, reply)) if id == d.event.id => Ok(reply),
            other => {
                self.in_flight = other;
                Err(BusError::Misuse(format!(
                    "event '{}' of group '{}' is not the one in flight (settle each delivery once, in order)",
                    d.event.id, self.group
                )))
            }
        }
    }

    fn is_in_flight(&self, d: &Delivery) -> Result<(), BusError> {
        match &self.in_flight {
            Some((id, _)) if *id == d.event.id => Ok(()),
            _ => Err(BusError::Misuse(format!(
                "event '{}' of group '{}' is not the one in flight",
                d.event.id, self.group
            ))),
        }
    }

    async fn mark_done(&self, d: &Delivery) -> Result<(), BusError> {
        let now = Timestamp::now();
        let key = acked_key(&self.topic, &self.group, &d.event.id);
        self.bus
            .state
            .set(&key, b"1".to_vec(), None, Some(RETENTION), now)
            .await
            .map_err(state_error)?;
        let attempts = attempts_key(&self.topic, &self.group, &d.event.id);
        if let Err(e) = self.bus.state.delete(&attempts, None, now).await {
            // Harmless: it expires, and the mark above wins over it.
            tracing::debug!(error = %e, "cannot delete a settled event's attempt count");
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for DaprSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        if let Some((id, _)) = &self.in_flight {
            return Err(BusError::Misuse(format!(
                "event '{id}' of group '{}' is unsettled (ack, nack or dead-letter it first)",
                self.group
            )));
        }
        if self.held.is_none() {
            // Cancel-safe: a dropped wait holds nothing.
            self.held = Some(Arc::clone(&self.slot.holder).lock_owned().await);
        }
        let Some(queue) = self.held.as_mut() else {
            return Err(BusError::Misuse("the group is not held".to_owned()));
        };
        loop {
            let Some(handed) = queue.recv().await else {
                return Err(unavailable("the bus's delivery queue closed"));
            };
            // A hand-off whose delivery route gave up (Dapr will bring the event again).
            if handed.reply.is_closed() {
                continue;
            }
            self.in_flight = Some((handed.delivery.event.id.clone(), handed.reply));
            return Ok(handed.delivery);
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        self.is_in_flight(delivery)?;
        self.mark_done(delivery).await?;
        let reply = self.settle(delivery)?;
        let _ = reply.send(Settled::Done);
        Ok(())
    }

    async fn nack(
        &mut self,
        delivery: &Delivery,
        retry_after: Duration,
        error: &str,
    ) -> Result<Nacked, BusError> {
        if delivery.attempt >= self.options.max_attempts {
            self.dead_letter(delivery, error).await?;
            return Ok(Nacked::DeadLettered);
        }
        self.is_in_flight(delivery)?;
        let now = Timestamp::now();
        let after = i64::try_from(retry_after.as_micros()).unwrap_or(i64::MAX);
        let attempts = Attempts {
            failed: delivery.attempt,
            retry_at: now.as_microsecond().saturating_add(after),
        };
        let value = serde_json::to_vec(&attempts).map_err(unavailable)?;
        let key = attempts_key(&self.topic, &self.group, &delivery.event.id);
        let recorded = self.bus.state.set(&key, value, None, Some(RETENTION), now).await;
        // Released for retry even when recording failed: the count is then lost, not the event.
        let reply = self.settle(delivery)?;
        let _ = reply.send(Settled::Retry);
        recorded.map_err(state_error)?;
        Ok(Nacked::Retrying)
    }

    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        self.is_in_flight(delivery)?;
        let letter = dead_letter_event(&delivery.event, &self.group, delivery.attempt, error);
        let dlq_topic = docket_events::topics::dlq(&self.topic);
        self.bus.client.publish(&self.bus.pubsub, &dlq_topic, &letter).await?;
        self.mark_done(delivery).await?;
        let reply = self.settle(delivery)?;
        let _ = reply.send(Settled::Done);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        // Every ack is durable when it returns; an unsettled delivery goes back to Dapr.
        Ok(())
    }
}
