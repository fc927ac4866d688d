//! Docket's event bus port: the [`EventBus`] contract, its embedded adapter
//! ([`embedded::EmbeddedBus`], the outbox table is the log) and the consumer runtime
//! ([`runtime::run_consumer`]: retries with backoff, dead letters, idempotency, metrics).
//!
//! The contract is deliberately small (publish; subscribe with a named group; ack, nack with a
//! retry delay, dead-letter) so that Redis Streams, NATS JetStream, Kafka and Dapr adapters can
//! implement it and run the same conformance suite ([`conformance`], feature `conformance`).
//! This crate does not relay the outbox to external brokers, and knows no consumer's business.

pub mod embedded;
pub mod runtime;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::time::Duration;

use async_trait::async_trait;
use docket_events::CloudEvent;
use docket_ports::StoreError;

/// How a subscription behaves; adapters take what they can express.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Deliveries of one event before a nack dead-letters it (≥ 1).
    pub max_attempts: u32,
    /// How many events an adapter may read ahead at once (also the bound on redelivery of
    /// acknowledged events after a crash, for adapters that commit positions lazily).
    pub batch: usize,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions { max_attempts: 5, batch: 256 }
    }
}

/// One event handed to a subscriber, with where it stands in the log and how often it was
/// delivered (a bus `Message`, not to be confused with `docket_core::Delivery`, a webhook or
/// email sent by the delivery worker).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The event, `sequence` set to its log position.
    pub event: CloudEvent,
    /// Its position in the topic's log (Kafka offset, stream id, outbox `seq`).
    pub seq: i64,
    /// 1 for the first delivery to this group, counting redeliveries after nacks.
    pub attempt: u32,
}

/// What [`Subscription::nack`] did with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nacked {
    /// It will be delivered again after the delay.
    Retrying,
    /// It had reached `max_attempts` and went to `{topic}.dlq`.
    DeadLettered,
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The backing store or broker failed; retrying later may work.
    #[error("{backend} bus unavailable: {message}")]
    Unavailable { backend: &'static str, message: String },
    /// The caller broke the protocol (settled a delivery that is not the one in flight, …).
    #[error("{0}")]
    Misuse(String),
    /// An argument is not acceptable (empty group or topic, …).
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for BusError {
    fn from(e: StoreError) -> BusError {
        BusError::Unavailable { backend: "embedded", message: e.to_string() }
    }
}

/// Extension attributes a dead letter carries besides the original event's.
pub mod dlq {
    /// The error the last attempt failed with.
    pub const ERROR: &str = "dlqerror";
    /// The consumer group that gave up.
    pub const GROUP: &str = "dlqgroup";
    /// How many deliveries were attempted.
    pub const ATTEMPTS: &str = "dlqattempts";
    /// The original event's `id` (the dead letter has its own).
    pub const ORIGINAL_ID: &str = "dlqoriginalid";
}

/// The event bus.
///
/// # Contract
/// * `publish(topic, events)` MUST make the events durable before it returns `Ok`, in order;
///   an `Err` MAY leave none or all of them published, never a reordering. Production writes
///   append through the stores' in-transaction outbox instead (the embedded bus reads the
///   same log); `publish` is for events that belong to no store write.
/// * `subscribe(group, topic, options)` returns a [`Subscription`]. Groups are independent:
///   each MUST receive every event of `topic` published after the group was first seen, and
///   the acknowledgements of one group MUST NOT affect another. Within a group an event is
///   handed to one subscriber at a time.
/// * An event MUST NOT be delivered before the transaction that appended it committed, nor
///   ever when that transaction rolled back.
/// * Delivery is at-least-once: an event that was not acknowledged (nacked, or its subscriber
///   dropped without settling it, or its process killed) MUST be delivered again, to the same
///   group. Redelivery of acknowledged events after a crash MUST be bounded (by
///   `options.batch` for the embedded bus); consumers deduplicate on the event `id`.
/// * Events with the same `partitionkey` MUST be delivered to a group in publish order, and an
///   event MUST NOT be delivered while an earlier event of its key is unsettled (nacked
///   events are retried before later events of their key).
/// * `nack(d, retry_after, error)` MUST redeliver `d` no sooner than `retry_after`, with
///   `attempt + 1`; when `d.attempt >= max_attempts` it MUST instead publish the event to
///   `{topic}.dlq` (a new `id`; the extensions in [`dlq`] carry the error, group, attempts
///   and original id) and move the group past it. `dead_letter` does that at once
///   (a poison event). Attempt counts SHOULD survive a restart.
/// * Waiting subscribers SHOULD learn of new events promptly (no fixed polling delay).
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Which adapter this is, for logs and metrics (`"embedded"`, `"kafka"`, …).
    fn backend(&self) -> &'static str;

    /// Publishes `events` to `topic` (see the contract).
    async fn publish(&self, topic: &str, events: Vec<CloudEvent>) -> Result<(), BusError>;

    /// Joins (creating on first use) consumer group `group` on `topic`.
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError>;
}

/// A group's subscription to a topic. Deliveries come one at a time: settle each (ack, nack or
/// dead-letter) before asking for the next. Dropping a subscription with a delivery unsettled
/// is a crash as far as the bus is concerned: that event is delivered again.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next delivery. Cancel-safe: dropping the future loses nothing.
    async fn next(&mut self) -> Result<Message, BusError>;

    /// The delivery was handled: the group moves past it.
    async fn ack(&mut self, delivery: &Message) -> Result<(), BusError>;

    /// The delivery failed with `error`: retry after `retry_after`, or dead-letter it once it
    /// has had `max_attempts` deliveries.
    async fn nack(
        &mut self,
        delivery: &Message,
        retry_after: Duration,
        error: &str,
    ) -> Result<Nacked, BusError>;

    /// The delivery can never succeed: publish it to `{topic}.dlq` with `error` now.
    async fn dead_letter(&mut self, delivery: &Message, error: &str) -> Result<(), BusError>;

    /// How far the group is behind the log's head, in log positions, when the adapter knows.
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        Ok(None)
    }

    /// Commits what was acknowledged and leaves the group (a graceful stop).
    async fn close(self: Box<Self>) -> Result<(), BusError>;
}
