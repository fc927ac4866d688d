//! The consumer runtime: drives one subscription, calling a handler for each event with
//! retries (exponential backoff, capped, with jitter), dead letters (after `max_attempts`, or
//! at once for a permanent error), idempotency and metrics, until told to stop.
//!
//! Idempotency: a [`Processor`] runs the handler and writes `processed:{consumer}:{event_id}`
//! (TTL 7 days) in the same transaction as the handler's own writes, and skips an event whose
//! key exists. [`SqliteProcessor`] runs the handler inside `SqliteStore::write` (the handler
//! gets the `Transaction`); [`PgProcessor`] inside a sqlx transaction (the handler gets the
//! `&mut PgConnection`). With the embedded bus on the same database
//! ([`ConsumerConfig::position_in_transaction`]) the group's position commits in that
//! transaction too, so a crash after it redelivers nothing.
//!
//! Metrics (`metrics` crate, label `consumer`): `docket_consumer_delivered_total`,
//! `docket_consumer_retried_total`, `docket_consumer_dead_lettered_total`,
//! `docket_consumer_duplicates_total`, and the gauge `docket_consumer_lag` (log positions
//! behind the head, refreshed every [`LAG_EVERY`] deliveries). This module holds no
//! consumer's business (audit, recurrence, notifier come with their features).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_events::trace::{self, TraceContext};
use docket_store::postgres::PostgresStore;
use docket_store::sqlite::SqliteStore;
use docket_store::{StateError, StateKey, StoreError};
use futures::future::BoxFuture;
use rusqlite::Transaction;
use sqlx::postgres::PgConnection;
use tokio::sync::watch;

use crate::{BusError, Delivery, EventBus, Nacked, SubscribeOptions, Subscription};

/// How long a `processed:` key lives.
pub const PROCESSED_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

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

/// What processing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The handler ran and its writes committed with the `processed:` key.
    Handled,
    /// The `processed:` key existed: the event was handled before; nothing was done.
    Duplicate,
}

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
        delivery: &Delivery,
        position: bool,
    ) -> Result<Processed, HandlerError>;
}

/// The key `processed:{consumer}:{event_id}`.
pub fn processed_key(consumer: &str, event_id: &str) -> Result<StateKey, HandlerError> {
    StateKey::parse(&format!("processed:{consumer}:{event_id}"))
        .map_err(|e| HandlerError::Permanent(e.to_string()))
}

fn state_err(e: StateError) -> StoreError {
    match e {
        StateError::Store(e) => e,
        other => StoreError::Conflict(other.to_string()),
    }
}

/// A handler run inside a SQLite write transaction.
pub type SqliteHandler =
    dyn Fn(&Transaction<'_>, &CloudEvent) -> Result<(), HandlerError> + Send + Sync;

/// The [`Processor`] for handlers writing to a [`SqliteStore`]: the handler, the key and the
/// position are one savepoint of one group commit.
pub struct SqliteProcessor {
    store: Arc<SqliteStore>,
    handler: Arc<SqliteHandler>,
}

impl SqliteProcessor {
    pub fn new(store: Arc<SqliteStore>, handler: Arc<SqliteHandler>) -> SqliteProcessor {
        SqliteProcessor { store, handler }
    }
}

#[async_trait]
impl Processor for SqliteProcessor {
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Delivery,
        position: bool,
    ) -> Result<Processed, HandlerError> {
        let key = processed_key(consumer, &delivery.event.id)?;
        let (consumer, topic) = (consumer.to_owned(), topic.to_owned());
        let (event, seq) = (delivery.event.clone(), delivery.seq);
        let handler = Arc::clone(&self.handler);
        // The handler's own error, kept out of the `StoreError` that rolls its savepoint back.
        let failed: Arc<Mutex<Option<HandlerError>>> = Arc::default();
        let slot = Arc::clone(&failed);
        let now = Timestamp::now();
        let result = self
            .store
            .write(move |tx| {
                use docket_store::state::sqlite as state;
                if state::get(tx, &key, now).map_err(state_err)?.is_some() {
                    return Ok(Processed::Duplicate);
                }
                if let Err(e) = handler(tx, &event) {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(e);
                    }
                    return Err(StoreError::Conflict("the handler failed".to_owned()));
                }
                state::set(tx, &key, b"1", None, Some(PROCESSED_TTL), now).map_err(state_err)?;
                if position {
                    docket_store::bus::sqlite::save_position(tx, &consumer, &topic, seq, now)?;
                }
                Ok(Processed::Handled)
            })
            .await;
        result.map_err(|e| {
            let own = failed.lock().ok().and_then(|mut s| s.take());
            own.unwrap_or_else(|| HandlerError::Transient(e.to_string()))
        })
    }
}

/// A handler run inside a PostgreSQL transaction.
pub type PgHandler = dyn for<'c> Fn(&'c mut PgConnection, &'c CloudEvent) -> BoxFuture<'c, Result<(), HandlerError>>
    + Send
    + Sync;

/// The [`Processor`] for handlers writing to a [`PostgresStore`]: the handler, the key and
/// the position commit in one transaction.
pub struct PgProcessor {
    store: PostgresStore,
    handler: Arc<PgHandler>,
}

impl PgProcessor {
    pub fn new(store: PostgresStore, handler: Arc<PgHandler>) -> PgProcessor {
        PgProcessor { store, handler }
    }
}

fn pg_transient(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(format!("postgres: {e}"))
}

#[async_trait]
impl Processor for PgProcessor {
    async fn process(
        &self,
        consumer: &str,
        topic: &str,
        delivery: &Delivery,
        position: bool,
    ) -> Result<Processed, HandlerError> {
        use docket_store::state::postgres as state;
        let key = processed_key(consumer, &delivery.event.id)?;
        let now = Timestamp::now();
        let mut tx = self.store.pool().begin().await.map_err(pg_transient)?;
        if state::get(&mut tx, &key, now).await.map_err(pg_transient)?.is_some() {
            return Ok(Processed::Duplicate);
        }
        // Dropping `tx` on any error below rolls the handler's writes back.
        (self.handler)(&mut tx, &delivery.event).await?;
        // Not a guard against two subscribers handling one event at the same moment (both
        // may read no key): the bus hands an event to one subscriber of a group at a time.
        state::set(&mut tx, &key, b"1", None, Some(PROCESSED_TTL), now)
            .await
            .map_err(pg_transient)?;
        if position {
            docket_store::bus::postgres::save_position(&mut tx, consumer, topic, delivery.seq, now)
                .await
                .map_err(pg_transient)?;
        }
        tx.commit().await.map_err(pg_transient)?;
        Ok(Processed::Handled)
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
            .map_or_else(TraceContext::root, |t| t.child());
        let outcome = trace::scope(
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
    d: &Delivery,
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
