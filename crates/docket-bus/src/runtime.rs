//! The consumer runtime: drives one subscription, calling a handler for each event with
//! retries (exponential backoff, capped, with jitter), dead letters (after `max_attempts`, or
//! at once for a permanent error), idempotency and metrics, until told to stop.
//!
//! Idempotency: a [`Processor`] skips an event whose `processed:{consumer}:{event_id}` key
//! exists. [`StoreProcessor`], the one implementation, asks the consumer's [`Handler`] for the
//! event's effects (declarative, no database in sight) and has the store commit them with the
//! key (TTL 7 days) in one transaction (`docket_ports::consume`), whichever database it is.
//! With the embedded bus on the same database ([`ConsumerConfig::position_in_transaction`])
//! the group's position commits in that transaction too, so a crash after it redelivers
//! nothing.
//!
//! Metrics (`metrics` crate, label `consumer`): `docket_consumer_delivered_total`,
//! `docket_consumer_retried_total`, `docket_consumer_dead_lettered_total`,
//! `docket_consumer_duplicates_total`, and the gauge `docket_consumer_lag` (log positions
//! behind the head, refreshed every [`LAG_EVERY`] deliveries). This module holds no
//! consumer's business (audit, recurrence, notifier come with their features).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_events::trace::TraceContext;
use docket_ports::consume::{self, ConsumerStore, Effect, Position};
use docket_ports::{StateKey, StoreError};
use tokio::sync::watch;

use crate::{BusError, EventBus, Message, Nacked, SubscribeOptions, Subscription};

/// How long a `processed:` key lives.
pub use docket_ports::consume::PROCESSED_TTL;

/// The lag gauge is refreshed every this many deliveries.
pub const LAG_EVERY: u64 = 64;

/// How long the runtime waits before trying the bus again after it failed.
const BUS_RETRY: Duration = Duration::from_secs(1);

/// Why a handler did not handle an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (a dependency is down, a conflict): retried with backoff, then
    /// dead-lettered after `max_attempts`.
    #[error("{0}")]
    Transient(String),
    /// Can never succeed (a poison event): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

/// What processing a delivery did: `Handled` (the effects committed with the `processed:`
/// key) or `Duplicate` (the key existed: the event was handled before; nothing was done).
pub use docket_ports::consume::Consumed as Processed;

/// Runs a handler for one delivery, idempotently (see the module docs).
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Handles `delivery` for `consumer` unless its `processed:` key exists; with
    /// `position` set, also commits `consumer`'s position in `topic` to the delivery's `seq`
    /// in the same transaction (only for the embedded bus on the same database).
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Message,
        position: bool,
    ) -> Result<Processed, HandlerError>;
}

/// The key `processed:{consumer}:{event_id}`.
pub fn processed_key(consumer: &str, event_id: &str) -> Result<StateKey, HandlerError> {
    consume::processed_key(consumer, event_id).map_err(|e| HandlerError::Permanent(e.to_string()))
}

/// A consumer's decision: the effects `event` should cause, or why it causes none. It reads
/// nothing and writes nothing; what depends on stored data is an effect the store evaluates.
pub type Handler = dyn Fn(&CloudEvent) -> Result<Vec<Effect>, HandlerError> + Send + Sync;

/// The [`Processor`]: runs a [`Handler`] and commits its effects through the store's
/// [`ConsumerStore::commit_consumed`], with the `processed:` key and (when asked) the
/// position, in one transaction.
pub struct StoreProcessor {
    store: Arc<dyn ConsumerStore>,
    handler: Arc<Handler>,
}

impl StoreProcessor {
    pub fn new(store: Arc<dyn ConsumerStore>, handler: Arc<Handler>) -> StoreProcessor {
        StoreProcessor { store, handler }
    }
}

fn transient(e: StoreError) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

#[async_trait]
impl Processor for StoreProcessor {
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Message,
        position: bool,
    ) -> Result<Processed, HandlerError> {
        let event = &delivery.event;
        processed_key(consumer, &event.id)?;
        let now = Timestamp::now();
        // An early look, so a redelivered event is not decided again; the commit checks the
        // key once more inside its transaction.
        if self.store.consumed(consumer, &event.id, now).await.map_err(transient)? {
            return Ok(Processed::Duplicate);
        }
        let effects = (self.handler)(event)?;
        let position = position.then(|| Position { topic: topic.to_owned(), seq: delivery.seq });
        self.store
            .commit_consumed(consumer, &event.id, position, effects, now)
            .await
            .map_err(transient)
    }
}

/// Retry delays of a consumer: exponential to a cap, with equal jitter (`docket_core::backoff`).
pub use docket_core::Backoff;

/// A jitter fraction in `[0, 1)` from the thread's random generator: what a consumer's
/// retry delay draws unless a test injects a constant.
pub fn random_jitter() -> f64 {
    rand::random()
}

/// One consumer: its group name, topic and retry policy.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group, also the `consumer` metric label and part of `processed:` keys.
    pub name: String,
    pub topic: String,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Draws the jitter of each retry delay ([`random_jitter`]; a constant in tests that
    /// check exact delays).
    pub jitter: fn() -> f64,
    /// Read-ahead of the subscription.
    pub batch: usize,
    /// Commit the group's position in the handler's transaction: set it only when the bus is
    /// the embedded bus on the processor's database.
    pub position_in_transaction: bool,
}

impl ConsumerConfig {
    /// Defaults: 5 attempts, backoff 100 ms doubling to 30 s with random jitter, batch 256,
    /// position committed by the bus.
    pub fn new(name: &str, topic: &str) -> ConsumerConfig {
        ConsumerConfig {
            name: name.to_owned(),
            topic: topic.to_owned(),
            max_attempts: 5,
            backoff: Backoff { base: Duration::from_millis(100), max: Duration::from_secs(30) },
            jitter: random_jitter,
            batch: 256,
            position_in_transaction: false,
        }
    }
}

/// Waits `d`, or less when `shutdown` turns true; returns whether to stop.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Runs `config`'s consumer on `bus` until `shutdown` becomes `true` (or its sender goes):
/// the event being handled is finished and settled, acknowledgements are committed, then it
/// returns. Errors of the bus are logged and retried (an unavailable bus at start too); only a
/// subscription the bus refuses (`Invalid`, `Misuse`) returns an error.
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    processor: Arc<dyn Processor>,
    config: ConsumerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let options = SubscribeOptions { max_attempts: config.max_attempts, batch: config.batch };
    // A bus that is down at start (the database restarting) is waited for, like one that
    // fails later; only a subscription the bus refuses outright is returned as an error.
    let mut sub = loop {
        match bus.subscribe(&config.name, &config.topic, options.clone()).await {
            Ok(sub) => break sub,
            Err(e @ BusError::Unavailable { .. }) => {
                tracing::warn!(consumer = %config.name, error = %e, "consumer cannot subscribe yet; retrying");
                if pause(BUS_RETRY, &mut shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    };
    let name = config.name.clone();
    let delivered =
        metrics::counter!("docket_consumer_delivered_total", "consumer" => name.clone());
    let retried = metrics::counter!("docket_consumer_retried_total", "consumer" => name.clone());
    let dead = metrics::counter!("docket_consumer_dead_lettered_total", "consumer" => name.clone());
    let duplicates =
        metrics::counter!("docket_consumer_duplicates_total", "consumer" => name.clone());
    let lag = metrics::gauge!("docket_consumer_lag", "consumer" => name.clone());
    let mut count: u64 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let next = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            d = sub.next() => d,
        };
        let d = match next {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "consumer cannot read its topic");
                if pause(BUS_RETRY, &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        delivered.increment(1);
        if count.is_multiple_of(LAG_EVERY)
            && let Ok(Some(n)) = sub.lag().await
        {
            lag.set(n as f64);
        }
        count += 1;
        // The handler runs in a child span of the event's trace (a new trace when the event
        // carries none), so whatever it writes, events included, stays in that trace.
        let trace = d
            .event
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse)
            .map_or_else(docket_trace::root, docket_trace::child);
        let outcome = docket_trace::scope(
            trace,
            processor.process(&name, &config.topic, &d, config.position_in_transaction),
        )
        .await;
        let settled = match outcome {
            Ok(p) => {
                if p == Processed::Duplicate {
                    duplicates.increment(1);
                }
                sub.ack(&d).await
            }
            Err(HandlerError::Transient(error)) => {
                tracing::debug!(consumer = %name, event.id = %d.event.id, attempt = d.attempt,
                    error = %error, "handler failed; retrying");
                let delay = config.backoff.delay(d.attempt, (config.jitter)());
                match sub.nack(&d, delay, &error).await {
                    Ok(Nacked::Retrying) => {
                        retried.increment(1);
                        Ok(())
                    }
                    Ok(Nacked::DeadLettered) => {
                        dead.increment(1);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(HandlerError::Permanent(error)) => {
                tracing::warn!(consumer = %name, event.id = %d.event.id, error = %error,
                    "handler rejected the event; dead-lettering it");
                dead_letter(&mut *sub, &d, &error, &mut shutdown).await.map(|()| dead.increment(1))
            }
        };
        if let Err(e) = settled {
            tracing::warn!(consumer = %name, event.id = %d.event.id, error = %e,
                "consumer cannot settle an event");
        }
    }
    if let Ok(Some(n)) = sub.lag().await {
        lag.set(n as f64);
    }
    sub.close().await
}

/// Dead-letters `d`, trying again while the bus fails (the group cannot move on without it).
async fn dead_letter(
    sub: &mut dyn Subscription,
    d: &Message,
    error: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), BusError> {
    loop {
        match sub.dead_letter(d, error).await {
            Ok(()) => return Ok(()),
            Err(e @ BusError::Misuse(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(event.id = %d.event.id, error = %e, "cannot dead-letter; retrying");
                if pause(BUS_RETRY, shutdown).await {
                    return Err(e);
                }
            }
        }
    }
}
