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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_ports::Store;
use docket_postgres::PostgresStore;
use docket_postgres::bus as pgbus;
use docket_sqlite::SqliteStore;
use docket_sqlite::bus as litebus;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BusError, EventBus, Message, Nacked, SubscribeOptions, Subscription, dlq};

const BACKEND: &str = "embedded";

/// How often a waiting subscription reads the log without having been woken.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// How often a standby subscriber tries to claim its group.
const CLAIM_RETRY: Duration = Duration::from_millis(200);

/// The `(database file, group, topic)` claims of SQLite subscriptions in this process.
static LOCAL_CLAIMS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// A subscription's exclusive hold on its group; released on drop.
enum Claim {
    Local(String),
    /// The session holding the advisory lock; closing it releases the lock.
    Postgres(#[allow(dead_code)] sqlx::postgres::PgConnection),
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Claim::Local(key) = self
            && let Ok(mut claims) = LOCAL_CLAIMS.lock()
        {
            claims.remove(key);
        }
    }
}

/// The longest error text a dead letter keeps.
const MAX_ERROR_LEN: usize = 2000;

#[derive(Clone)]
enum Db {
    Sqlite(Arc<SqliteStore>),
    Postgres(PostgresStore),
}

impl Db {
    fn store(&self) -> &dyn Store {
        match self {
            Db::Sqlite(s) => s.as_ref(),
            Db::Postgres(s) => s,
        }
    }
}

/// Stops the `LISTEN` task when the last handle on the bus goes.
struct ListenerGuard(tokio::task::JoinHandle<()>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The embedded [`EventBus`] over a store's outbox. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    db: Db,
    wake: watch::Receiver<u64>,
    poll: Duration,
    _listener: Option<Arc<ListenerGuard>>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").field("backend", &self.db.store().backend()).finish()
    }
}

impl EmbeddedBus {
    /// The bus over a SQLite store's outbox, woken by its writer.
    pub fn sqlite(store: Arc<SqliteStore>) -> EmbeddedBus {
        let wake = store.outbox_appended();
        EmbeddedBus { db: Db::Sqlite(store), wake, poll: FALLBACK_POLL, _listener: None }
    }

    /// The bus over a PostgreSQL store's outbox; opens one `LISTEN docket_outbox` connection.
    pub async fn postgres(store: PostgresStore) -> Result<EmbeddedBus, BusError> {
        let mut listener =
            sqlx::postgres::PgListener::connect_with(store.pool()).await.map_err(unavailable)?;
        listener.listen(pgbus::OUTBOX_CHANNEL).await.map_err(unavailable)?;
        let (tx, wake) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Err(e) => {
                        // The listener reconnects on its next `recv`; what was notified in
                        // between is found by the fallback poll.
                        tracing::warn!(error = %e, bus.backend = BACKEND, "outbox listener failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        });
        Ok(EmbeddedBus {
            db: Db::Postgres(store),
            wake,
            poll: FALLBACK_POLL,
            _listener: Some(Arc::new(ListenerGuard(task))),
        })
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

    /// Claims `(group, topic)` for one subscriber, or `None` when another holds it.
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
        let topic = topic.to_owned();
        let now = Timestamp::now();
        match &self.db {
            Db::Sqlite(s) => {
                let appended =
                    s.write(move |tx| litebus::append_once(tx, &topic, &event, &key, now)).await?;
                Ok(appended)
            }
            Db::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(unavailable)?;
                pgbus::hold_xid(&mut tx).await?;
                let appended = pgbus::append_once(&mut tx, &topic, &event, &key, now).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(appended)
            }
        }
    }

    async fn try_claim(&self, group: &str, topic: &str) -> Result<Option<Claim>, BusError> {
        match &self.db {
            Db::Sqlite(s) => {
                let key = format!("{}\0{group}\0{topic}", s.path().display());
                let mut claims = LOCAL_CLAIMS
                    .lock()
                    .map_err(|_| BusError::Misuse("the claims lock is poisoned".to_owned()))?;
                // Lazily: a `Claim` made and dropped here would release the holder's key (and
                // lock `LOCAL_CLAIMS` again, which this guard holds).
                Ok(claims.insert(key.clone()).then(|| Claim::Local(key)))
            }
            Db::Postgres(s) => {
                let mut conn = s.pool().acquire().await.map_err(unavailable)?.detach();
                let got: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtext('docket_bus:' || current_schema()), \
                     hashtext($1 || '/' || $2))",
                )
                .bind(group)
                .bind(topic)
                .fetch_one(&mut conn)
                .await
                .map_err(unavailable)?;
                Ok(got.then_some(Claim::Postgres(conn)))
            }
        }
    }

    async fn load_position(&self, group: &str, topic: &str) -> Result<i64, BusError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        Ok(match &self.db {
            Db::Sqlite(s) => s.read(move |c| litebus::position(c, &g, &t)).await?,
            Db::Postgres(s) => {
                let mut conn = s.pool().acquire().await.map_err(unavailable)?;
                pgbus::position(&mut conn, &g, &t).await?
            }
        })
    }

    async fn attempts_after(
        &self,
        group: &str,
        topic: &str,
        after: i64,
    ) -> Result<Vec<(i64, u32)>, BusError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        Ok(match &self.db {
            Db::Sqlite(s) => s.read(move |c| litebus::attempts_after(c, &g, &t, after)).await?,
            Db::Postgres(s) => {
                let mut conn = s.pool().acquire().await.map_err(unavailable)?;
                pgbus::attempts_after(&mut conn, &g, &t, after).await?
            }
        })
    }

    async fn save_position(&self, group: &str, topic: &str, position: i64) -> Result<(), BusError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        let now = Timestamp::now();
        match &self.db {
            Db::Sqlite(s) => {
                s.write(move |tx| litebus::save_position(tx, &g, &t, position, now)).await?
            }
            Db::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(unavailable)?;
                pgbus::save_position(&mut tx, &g, &t, position, now).await?;
                tx.commit().await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn record_attempt(
        &self,
        group: &str,
        topic: &str,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), BusError> {
        let (g, t, e) = (group.to_owned(), topic.to_owned(), error.to_owned());
        let now = Timestamp::now();
        match &self.db {
            Db::Sqlite(s) => {
                s.write(move |tx| litebus::record_attempt(tx, &g, &t, seq, attempts, &e, now))
                    .await?;
            }
            Db::Postgres(s) => {
                let mut conn = s.pool().acquire().await.map_err(unavailable)?;
                pgbus::record_attempt(&mut conn, &g, &t, seq, attempts, &e, now).await?;
            }
        }
        Ok(())
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
        let (g, t, dlq_topic, seq) = (group.to_owned(), topic.to_owned(), dlq_topic(topic), d.seq);
        let now = Timestamp::now();
        match &self.db {
            Db::Sqlite(s) => {
                s.write(move |tx| {
                    litebus::append_event(tx, &dlq_topic, &letter, now)?;
                    litebus::save_position(tx, &g, &t, seq, now)
                })
                .await?;
            }
            Db::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(unavailable)?;
                pgbus::save_position(&mut tx, &g, &t, seq, now).await?;
                pgbus::append_event(&mut tx, &dlq_topic, &letter, now).await?;
                tx.commit().await.map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

fn unavailable(e: sqlx::Error) -> BusError {
    BusError::Unavailable { backend: BACKEND, message: e.to_string() }
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
        let topic = topic.to_owned();
        let now = Timestamp::now();
        match &self.db {
            Db::Sqlite(s) => {
                s.write(move |tx| {
                    events.iter().try_for_each(|e| litebus::append_event(tx, &topic, e, now))
                })
                .await?;
            }
            Db::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(unavailable)?;
                pgbus::hold_xid(&mut tx).await?;
                for e in &events {
                    pgbus::append_event(&mut tx, &topic, e, now).await?;
                }
                tx.commit().await.map_err(unavailable)?;
            }
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
    claim: Option<Claim>,
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
                .db
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
        let head = self.bus.db.store().outbox_head(&self.topic).await?;
        Ok(Some(u64::try_from(head - self.acked).unwrap_or(0)))
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.flush().await
    }
}
