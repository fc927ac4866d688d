//! Real time (§3, §5 `realtime`): every client sees its own user's task changes live, and a
//! client that reconnects with the last sequence it saw gets exactly what it missed.
//!
//! One [`Hub`] per process tails the `task-updates` log (the outbox, read through the
//! [`Store`]) from where it stood at start and fans each event out to the subscriptions of
//! the event's partition key, the owner's user id. Each subscription has a bounded buffer;
//! the hub never waits for a client. A subscription whose buffer is full is dropped by the
//! hub and catches up by itself from the log (the same replay a `Last-Event-ID` gets, read by
//! partition key), then re-joins; only when it is more than `replay_limit` events behind does
//! it receive a [`Item::Resync`] and skip to the head, telling the client to reload.
//!
//! Housekeeping prunes old events from the log. A replay reads the log's tail (the highest
//! pruned position) after each page: when it lies above where the page started, events the
//! subscription needs may be gone, so it gets a resync ([`ResyncReason::Pruned`]) instead of
//! a silent gap. The tail only grows and a prune commits its deletes with it, so a page read
//! before the check that missed a pruned row always sees the moved tail.
//!
//! Gap-free hand-over: a subscription registers with the hub and learns the hub's position
//! `P` under the same lock that fans out, so every event after `P` reaches its buffer and
//! every event up to `P` is in the log; it replays `(cursor, P]` from the log first, then
//! reads its buffer, skipping anything at or below what it already yielded. Positions only
//! grow, so nothing is yielded twice.
//!
//! On shutdown the hub drops every buffer; subscriptions then end, and so do the streams.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use docket_events::{CloudEvent, topics};
use docket_ports::{Store, StoreError};
use tokio::sync::{mpsc, watch};

/// The log real-time clients read.
pub const TOPIC: &str = topics::TASK_UPDATES;

/// Gauge: open real-time subscriptions.
pub const CLIENTS_METRIC: &str = "docket_stream_clients";
/// Counter: subscriptions dropped by the hub because their buffer was full.
pub const LAGGED_METRIC: &str = "docket_stream_lagged_total";
/// Counter: resync messages sent (a client too far behind to replay).
pub const RESYNC_METRIC: &str = "docket_stream_resyncs_total";

/// How a hub behaves; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events buffered per subscription before the hub drops it (it then replays from the log).
    pub buffer: usize,
    /// Most events one subscription replays from the log in one catch-up before it is told
    /// to resync instead.
    pub replay_limit: usize,
    /// Events read from the log per query.
    pub page: usize,
    /// How often the hub reads the log without a wake-up.
    pub fallback_poll: Duration,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            buffer: 256,
            replay_limit: 10_000,
            page: 500,
            fallback_poll: Duration::from_secs(1),
        }
    }
}

/// One event as clients receive it.
#[derive(Debug)]
pub struct Message {
    /// The event's log position (the SSE `id:`).
    pub seq: i64,
    /// `com.todo.task.created`, … (the SSE `event:`).
    pub event_type: String,
    /// The CloudEvent in structured JSON, `sequence` included.
    pub json: String,
}

impl Message {
    fn of(seq: i64, event: &CloudEvent) -> Message {
        Message { seq, event_type: event.ty.clone(), json: event.to_json() }
    }
}

/// Why a subscription was told to resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// It fell further behind than a replay covers.
    Lagged,
    /// It asked to resume after a position this log does not have yet.
    UnknownPosition,
    /// Events it had not seen were pruned from the log (it was away longer than the
    /// outbox retention).
    Pruned,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Lagged => "lagged",
            ResyncReason::UnknownPosition => "unknown_position",
            ResyncReason::Pruned => "pruned",
        }
    }
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Arc<Message>),
    /// Events were skipped: reload state; the stream continues after `sequence`.
    Resync {
        sequence: i64,
        reason: ResyncReason,
    },
}

/// The hub was shut down.
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down")]
pub struct Closed;

/// The per-process fan-out of the `task-updates` log; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: HubConfig,
    state: Mutex<State>,
    next_id: AtomicU64,
}

struct State {
    /// Every event up to here has been fanned out.
    position: i64,
    closed: bool,
    /// Each key's live buffers, by subscription id.
    subscribers: HashMap<String, Vec<(u64, Buffer)>>,
}

/// The sending half of one subscription's live buffer.
type Buffer = mpsc::Sender<Arc<Message>>;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("position", &self.lock().position).finish()
    }
}

impl Hub {
    /// A hub positioned at the log's current head; [`Hub::run`] makes it deliver.
    pub async fn new(store: Arc<dyn Store>, config: HubConfig) -> Result<Hub, StoreError> {
        let position = store.outbox_head(TOPIC).await?;
        let state = State { position, closed: false, subscribers: HashMap::new() };
        Ok(Hub {
            inner: Arc::new(Inner {
                store,
                config,
                state: Mutex::new(state),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is
        // a single insert, retain or assignment), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tails the log until `shutdown` turns true, waking on `wake` (the store's append signal)
    /// or every `fallback_poll`; then closes every subscription.
    pub async fn run(
        self,
        mut wake: Option<watch::Receiver<u64>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            if let Some(w) = wake.as_mut() {
                // Marked seen before the read: an append committed after it wakes the wait.
                w.borrow_and_update();
            }
            let mut idle = self.inner.config.fallback_poll;
            match self.step().await {
                Ok(Step::Skipped) => failures = 0,
                Ok(Step::Delivered(n)) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(Step::Delivered(_)) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    idle = Duration::from_millis(100 << failures.min(5));
                    tracing::warn!(error = %e, "real-time hub cannot read the log; retrying");
                }
            }
            tokio::select! {
                changed = async {
                    match wake.as_mut() {
                        Some(w) => w.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !changed {
                        // The store stopped signalling: only the poll is left.
                        wake = None;
                    }
                }
                () = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.close();
    }

    /// One move along the log: with no subscriber at all, a jump to the head without reading
    /// (nobody would receive those events, and a subscriber that registers later replays what
    /// it wants from the log); otherwise the next batch after the hub's position, fanned out.
    async fn step(&self) -> Result<Step, StoreError> {
        if self.lock().subscribers.is_empty() {
            let head = self.inner.store.outbox_head(TOPIC).await?;
            let mut st = self.lock();
            // Checked again under the lock: a subscriber that registered since the check has
            // a position at or below the old one and must get the events in between.
            if st.subscribers.is_empty() {
                st.position = st.position.max(head);
                return Ok(Step::Skipped);
            }
        }
        let position = self.lock().position;
        let batch = self.inner.store.read_outbox(position, TOPIC, self.inner.config.page).await?;
        self.fan_out(&batch);
        Ok(Step::Delivered(batch.len()))
    }

    /// Delivers a batch read after the hub's position to the subscribers of each event's key.
    fn fan_out(&self, batch: &[(i64, CloudEvent)]) {
        let mut lagged = 0u64;
        let mut st = self.lock();
        for (seq, event) in batch {
            if *seq <= st.position {
                continue;
            }
            st.position = *seq;
            let Some(key) = event.partitionkey.as_deref() else { continue };
            let Some(list) = st.subscribers.get_mut(key) else { continue };
            let message = Arc::new(Message::of(*seq, event));
            list.retain(|(_, tx)| match tx.try_send(Arc::clone(&message)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lagged += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                st.subscribers.remove(key);
            }
        }
        drop(st);
        if lagged > 0 {
            metrics::counter!(LAGGED_METRIC).increment(lagged);
        }
    }

    /// The last log position fanned out.
    pub fn position(&self) -> i64 {
        self.lock().position
    }

    /// Ends every subscription; later subscribes fail with [`Closed`].
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.subscribers.clear();
    }

    /// Registers a live buffer for `key`; returns its id, its receiver and the hub position
    /// after which it receives everything.
    fn register(&self, key: &str) -> Result<(u64, mpsc::Receiver<Arc<Message>>, i64), Closed> {
        let (tx, rx) = mpsc::channel(self.inner.config.buffer.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if st.closed {
            return Err(Closed);
        }
        st.subscribers.entry(key.to_owned()).or_default().push((id, tx));
        Ok((id, rx, st.position))
    }

    fn unregister(&self, key: &str, id: u64) {
        let mut st = self.lock();
        if let Some(list) = st.subscribers.get_mut(key) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                st.subscribers.remove(key);
            }
        }
    }

    /// A subscription to `key`'s events (a user id). With `after`, it first yields every event
    /// of `key` after that position (the client's `Last-Event-ID`), then live ones.
    pub fn subscribe(&self, key: &str, after: Option<i64>) -> Result<Subscription, Closed> {
        let (id, rx, position) = self.register(key)?;
        metrics::gauge!(CLIENTS_METRIC).increment(1.0);
        let mut sub = Subscription {
            hub: self.clone(),
            key: key.to_owned(),
            id,
            rx,
            cursor: position,
            replay_until: position,
            replayed: 0,
            backlog: VecDeque::new(),
            pending: None,
        };
        match after {
            Some(after) if after > position => {
                sub.pending = Some(Item::Resync {
                    sequence: position,
                    reason: ResyncReason::UnknownPosition,
                });
            }
            Some(after) => sub.cursor = after.max(0),
            None => {}
        }
        Ok(sub)
    }
}

/// What one [`Hub::step`] did.
enum Step {
    /// No subscribers: moved to the head without reading.
    Skipped,
    /// Read and fanned out this many events.
    Delivered(usize),
}

/// One client's view of its user's events; dropping it unsubscribes.
pub struct Subscription {
    hub: Hub,
    key: String,
    id: u64,
    rx: mpsc::Receiver<Arc<Message>>,
    /// The last position yielded (or skipped by a resync).
    cursor: i64,
    /// Replay from the log up to here before reading the live buffer.
    replay_until: i64,
    /// Events replayed in the current catch-up.
    replayed: usize,
    backlog: VecDeque<Arc<Message>>,
    pending: Option<Item>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("key", &self.key)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl Subscription {
    /// The next item, in log order; `None` once the hub has shut down (or the log cannot be
    /// read: the client reconnects with its last id and resumes where it stopped).
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.take() {
                if let Item::Resync { sequence, .. } = item {
                    self.cursor = self.cursor.max(sequence);
                    metrics::counter!(RESYNC_METRIC).increment(1);
                }
                return Some(item);
            }
            if let Some(message) = self.backlog.pop_front() {
                self.cursor = message.seq;
                return Some(Item::Event(message));
            }
            if self.cursor < self.replay_until {
                self.replay_page().await?;
                continue;
            }
            match self.rx.recv().await {
                Some(message) if message.seq > self.cursor => {
                    self.cursor = message.seq;
                    return Some(Item::Event(message));
                }
                Some(_) => {}
                None => self.rejoin()?,
            }
        }
    }

    /// Reads the next page of this key's events in `(cursor, replay_until]` into the backlog,
    /// or a resync when the catch-up has grown too long or the log no longer holds the range.
    async fn replay_page(&mut self) -> Option<()> {
        let config = &self.hub.inner.config;
        if self.replayed >= config.replay_limit {
            self.pending =
                Some(Item::Resync { sequence: self.replay_until, reason: ResyncReason::Lagged });
            return Some(());
        }
        let page = config.page.min(config.replay_limit - self.replayed).max(1);
        let read = self
            .hub
            .inner
            .store
            .read_outbox_for(TOPIC, &self.key, self.cursor, self.replay_until, page)
            .await;
        // Read after the page: a prune that deleted part of it has moved the tail by now.
        let tail = match read {
            Ok(_) => self.hub.inner.store.outbox_tail(TOPIC).await,
            Err(_) => Ok(0),
        };
        match tail {
            Ok(tail) if tail > self.cursor => {
                self.pending = Some(Item::Resync {
                    sequence: self.replay_until,
                    reason: ResyncReason::Pruned,
                });
                return Some(());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "real-time replay cannot read the log; ending the stream");
                return None;
            }
        }
        match read {
            Ok(events) if events.is_empty() => self.cursor = self.replay_until,
            Ok(events) => {
                self.replayed += events.len();
                self.backlog.extend(events.iter().map(|(seq, e)| Arc::new(Message::of(*seq, e))));
            }
            Err(e) => {
                tracing::warn!(error = %e, "real-time replay cannot read the log; ending the stream");
                return None;
            }
        }
        Some(())
    }

    /// The hub dropped this subscription's buffer: because it was full, or at shutdown.
    /// Registers a fresh buffer and replays what was missed from the log.
    fn rejoin(&mut self) -> Option<()> {
        self.hub.unregister(&self.key, self.id);
        let (id, rx, position) = self.hub.register(&self.key).ok()?;
        self.id = id;
        self.rx = rx;
        self.replay_until = position;
        self.replayed = 0;
        Some(())
    }

    /// The last position yielded.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.key, self.id);
        metrics::gauge!(CLIENTS_METRIC).decrement(1.0);
    }
}

#[cfg(test)]
mod tests;
