//! The embedded event bus: the outbox table is the log, on SQLite or PostgreSQL.
//!
//! Each consumer group keeps its committed position in `consumer_offsets` and the failed
//! attempts of the event it is retrying in `consumer_attempts` (both in `docket_ports::bus`).
//! A subscription reads the log in order, a batch at a time (`SubscribeOptions::batch`), and
//! hands out one event at a time; the log is a single partition, so keeping every group in log
//! order keeps per-key order too, and a nacked event holds its group until it is retried or
//! dead-lettered (like a Kafka partition). Acknowledgements are committed lazily: when the
//! fetched batch is used up, before waiting, on `close`, and with a dead letter. A crash
//! therefore redelivers at most one batch of acknowledged events; consumers deduplicate.
//!
//! Wake-ups: on SQLite the store's writer bumps a `watch` counter after a batch that appended
//! outbox rows commits (`SqliteStore::outbox_appended`); on PostgreSQL every append sends
//! `NOTIFY docket_outbox` in its transaction (delivered at commit, across processes) and one
//! `LISTEN` connection per bus bumps the same kind of counter. Both keep a slow fallback poll
//! (another process writing the SQLite file; notifications lost while the listener
//! reconnects; a PostgreSQL horizon that had not settled yet).
//!
//! One subscriber per group: a subscription claims its `(group, topic)` before its first read
//! (in-process on SQLite; a session advisory lock on PostgreSQL, so across processes too,
//! released when its connection closes) and loads the position only then. A second
//! subscriber of the group waits as a standby and takes over when the first goes.
//!
//! Pruning is not this module's: the scheduler's housekeeping deletes old rows every group has
//! passed (`Store::prune_outbox`, which reads the positions and attempts this bus commits), so
//! a group always reads on from its position past pruned rows. A group that commits nothing
//! holds nothing, and a new group starts from what is still kept. This module does not relay
//! the outbox to an external broker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_ports::bus::{Claim, EventLog};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BusError, EventBus, Message, Nacked, SubscribeOptions, Subscription, dlq};

const BACKEND: &str = "embedded";

/// How often a waiting subscription reads the log without having been woken.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// How often a standby subscriber tries to claim its group.
const CLAIM_RETRY: Duration = Duration::from_millis(200);

/// The longest error text a dead letter keeps.
const MAX_ERROR_LEN: usize = 2000;

/// The embedded [`EventBus`] over a store's outbox. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    log: Arc<dyn EventLog>,
    wake: watch::Receiver<u64>,
    poll: Duration,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").field("backend", &self.log.store().backend()).finish()
    }
}

impl EmbeddedBus {
    /// The bus over `log` (a `SqliteStore`, or a `PostgresStore`'s `event_log()`).
    pub fn new(log: Arc<dyn EventLog>) -> EmbeddedBus {
        let wake = log.wakeups();
        EmbeddedBus { log, wake, poll: FALLBACK_POLL }
    }

    /// A signal that changes after outbox appends commit (on PostgreSQL, from any process),
    /// for other tails of the log such as the real-time hub.
    pub fn wakeups(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    /// Sets how often a waiting subscription reads the log without a wake-up (default
    /// [`FALLBACK_POLL`]).
    pub fn with_fallback_poll(mut self, every: Duration) -> EmbeddedBus {
        self.poll = every;
        self
    }

    /// Appends `event` to `topic`'s log unless an event with unique key `key` was appended
    /// before (by this call; the key shares the outbox's event id column, so keep it apart
    /// from event ids, e.g. prefixed with the topic). Returns whether it appended. For logs
    /// fed from outside the store's writes, where the same event may arrive more than once.
    pub async fn append_once(
        &self,
        topic: &str,
        event: CloudEvent,
        key: String,
    ) -> Result<bool, BusError> {
        check_name("topic", topic)?;
        Ok(self.log.append_once(topic, event, key, Timestamp::now()).await?)
    }

    /// Claims `(group, topic)` for one subscriber, or `None` when another holds it.
    async fn try_claim(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Option<Box<dyn Claim>>, BusError> {
        Ok(self.log.claim(group, topic).await?)
    }

    async fn load_position(&self, group: &str, topic: &str) -> Result<i64, BusError> {
        Ok(self.log.position(group, topic).await?)
    }

    async fn attempts_after(
        &self,
        group: &str,
        topic: &str,
        after: i64,
    ) -> Result<Vec<(i64, u32)>, BusError> {
        Ok(self.log.attempts_after(group, topic, after).await?)
    }

    async fn save_position(&self, group: &str, topic: &str, position: i64) -> Result<(), BusError> {
        Ok(self.log.save_position(group, topic, position, Timestamp::now()).await?)
    }

    async fn record_attempt(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), BusError> {
        Ok(self.log.record_attempt(group, topic, seq, attempts, error, Timestamp::now()).await?)
    }

    /// Publishes the dead letter of `d` and moves `group` past it, in one transaction.
    async fn dead_letter(
        &self,
        group: &str,
        topic: &str,
        d: &Message,
        error: &str,
    ) -> Result<(), BusError> {
        let letter = dead_letter_event(&d.event, group, d.attempt, error);
        let dlq = dlq_topic(topic);
        Ok(self.log.dead_letter(group, topic, d.seq, &dlq, letter, Timestamp::now()).await?)
    }
}

/// `{topic}.dlq`; the dead letters of `task-updates` go with those of its log.
fn dlq_topic(topic: &str) -> String {
    docket_events::topics::dlq(topic)
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

fn check_name(what: &str, value: &str) -> Result<(), BusError> {
    if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
        return Err(BusError::Invalid(format!(
            "{what} '{value}' is not valid (expected 1 to 200 characters, no control characters)"
        )));
    }
    Ok(())
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, topic: &str, events: Vec<CloudEvent>) -> Result<(), BusError> {
        check_name("topic", topic)?;
        if events.is_empty() {
            return Ok(());
        }
        self.log.append(topic, events, Timestamp::now()).await?;
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
        Ok(Box::new(EmbeddedSubscription {
            bus: self.clone(),
            wake: self.wake.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            options,
            claim: None,
            committed: 0,
            acked: 0,
            cursor: 0,
            pending: VecDeque::new(),
            attempts: HashMap::new(),
            in_flight: None,
            retry: None,
        }))
    }
}

/// A group's cursor over the log. Invariant once claimed: `committed <= acked <= cursor`;
/// every event at or below `acked` is settled; `pending` holds the fetched events above
/// `acked` not yet handed out, in order.
struct EmbeddedSubscription {
    bus: EmbeddedBus,
    wake: watch::Receiver<u64>,
    group: String,
    topic: String,
    options: SubscribeOptions,
    /// `None` until this subscriber holds its group (positions are loaded then).
    claim: Option<Box<dyn Claim>>,
    committed: i64,
    acked: i64,
    cursor: i64,
    pending: VecDeque<(i64, CloudEvent)>,
    /// Failed attempts recorded before this subscription, by position.
    attempts: HashMap<i64, u32>,
    in_flight: Option<i64>,
    retry: Option<(Instant, Message)>,
}

impl EmbeddedSubscription {
    fn settle(&mut self, d: &Message) -> Result<(), BusError> {
        if self.in_flight != Some(d.seq) {
            return Err(BusError::Misuse(format!(
                "delivery {} of group '{}' is not the one in flight (settle each delivery once, in order)",
                d.seq, self.group
            )));
        }
        self.in_flight = None;
        Ok(())
    }

    /// Waits until this subscriber holds its group, then loads the group's position.
    async fn claim(&mut self) -> Result<(), BusError> {
        while self.claim.is_none() {
            match self.bus.try_claim(&self.group, &self.topic).await? {
                Some(claim) => {
                    let position = self.bus.load_position(&self.group, &self.topic).await;
                    // Dropping the claim on error releases it for a later attempt.
                    let position = position?;
                    self.claim = Some(claim);
                    (self.committed, self.acked, self.cursor) = (position, position, position);
                }
                None => tokio::time::sleep(CLAIM_RETRY).await,
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BusError> {
        if self.acked > self.committed {
            self.bus.save_position(&self.group, &self.topic, self.acked).await?;
            self.committed = self.acked;
        }
        Ok(())
    }

    async fn wait(&mut self) {
        tokio::select! {
            r = self.wake.changed() => {
                if r.is_err() {
                    // The store is closing: no more wake-ups, only the poll.
                    tokio::time::sleep(self.bus.poll).await;
                }
            }
            () = tokio::time::sleep(self.bus.poll) => {}
        }
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Message, BusError> {
        if let Some(seq) = self.in_flight {
            return Err(BusError::Misuse(format!(
                "delivery {seq} of group '{}' is unsettled (ack, nack or dead-letter it first)",
                self.group
            )));
        }
        self.claim().await?;
        loop {
            if let Some((at, _)) = &self.retry {
                tokio::time::sleep_until(*at).await;
                if let Some((_, d)) = self.retry.take() {
                    self.in_flight = Some(d.seq);
                    return Ok(d);
                }
            }
            if let Some((seq, event)) = self.pending.pop_front() {
                let attempt = self.attempts.remove(&seq).unwrap_or(0).saturating_add(1);
                self.in_flight = Some(seq);
                return Ok(Message { event, seq, attempt });
            }
            self.flush().await?;
            // Marked seen before the read: an append committed after it wakes the wait below.
            self.wake.borrow_and_update();
            let events = self
                .bus
                .log
                .store()
                .read_outbox(self.cursor, &self.topic, self.options.batch)
                .await?;
            let Some(&(last, _)) = events.last() else {
                self.wait().await;
                continue;
            };
            let recorded = self.bus.attempts_after(&self.group, &self.topic, self.cursor).await?;
            self.attempts = recorded.into_iter().filter(|(seq, _)| *seq <= last).collect();
            self.cursor = last;
            self.pending.extend(events);
        }
    }

    async fn ack(&mut self, delivery: &Message) -> Result<(), BusError> {
        self.settle(delivery)?;
        self.acked = self.acked.max(delivery.seq);
        if self.pending.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    async fn nack(
        &mut self,
        delivery: &Message,
        retry_after: Duration,
        error: &str,
    ) -> Result<Nacked, BusError> {
        if delivery.attempt >= self.options.max_attempts {
            self.dead_letter(delivery, error).await?;
            return Ok(Nacked::DeadLettered);
        }
        self.settle(delivery)?;
        let recorded = self
            .bus
            .record_attempt(&self.group, &self.topic, delivery.seq, delivery.attempt, error)
            .await;
        // Held for retry even when recording failed: the count is then lost on restart only.
        let again = Message { attempt: delivery.attempt.saturating_add(1), ..delivery.clone() };
        self.retry = Some((Instant::now() + retry_after, again));
        recorded?;
        Ok(Nacked::Retrying)
    }

    async fn dead_letter(&mut self, delivery: &Message, error: &str) -> Result<(), BusError> {
        if self.in_flight != Some(delivery.seq) {
            return Err(BusError::Misuse(format!(
                "delivery {} of group '{}' is not the one in flight",
                delivery.seq, self.group
            )));
        }
        self.bus.dead_letter(&self.group, &self.topic, delivery, error).await?;
        self.in_flight = None;
        self.acked = self.acked.max(delivery.seq);
        self.committed = self.committed.max(delivery.seq);
        Ok(())
    }

    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        let head = self.bus.log.store().outbox_head(&self.topic).await?;
        Ok(Some(u64::try_from(head - self.acked).unwrap_or(0)))
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.flush().await
    }
}
