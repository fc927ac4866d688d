//! The outbox relay of Dapr mode (§5, §7): publishes each topic's outbox log to the Dapr
//! Pub/Sub component, in batches, and commits how far it got as consumer group
//! [`GROUP`] (so outbox pruning waits for it like for any consumer).
//!
//! Per topic: read the log after the committed position (`Store::read_outbox`, which only
//! hands out settled positions), publish the batch — one event with `publish`, several with
//! `bulk_publish` — and commit the position of the last event before the first one Dapr did
//! not take; the rest is published again after a backoff. The `task-updates` log is the
//! `task-events` rows and its own, as everywhere (`topics::log_topics`), so each Dapr topic
//! carries exactly what its subscribers read. Delivery is at least once: an event published
//! just before a crash, or after a partial bulk failure, may be published again, and the
//! consumers dedupe on the CloudEvent id. With several worker replicas, one relay per topic
//! publishes at a time: it holds a [`Lease`] in the state store (created with a TTL, renewed
//! with its ETag); the others wait, and take over within the TTL when the holder dies.

use std::sync::Arc;
use std::time::Duration;

use docket_events::CloudEvent;
use docket_store::{StateStore, Store};
use tokio::sync::watch;

use crate::client::{DaprClient, DaprError};

/// The relay's consumer group (its position in each topic's log).
pub const GROUP: &str = "relay-dapr";

/// Counter of events published to Dapr, labelled by `topic`.
pub const PUBLISHED_METRIC: &str = "docket_dapr_published_total";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The Pub/Sub component's name.
    pub pubsub: String,
    /// The logs to publish, each to the Dapr topic of the same name.
    pub topics: Vec<String>,
    /// Most events per publish call.
    pub batch: usize,
    /// The longest wait for new events without a wake-up (other processes append too).
    pub poll: Duration,
    /// The longest wait between attempts while the sidecar fails.
    pub max_backoff: Duration,
}

impl RelayConfig {
    /// Every topic of `docket_events::topics::ALL`, 100 per call, polling every 500 ms.
    pub fn new(pubsub: &str) -> RelayConfig {
        RelayConfig {
            pubsub: pubsub.to_owned(),
            topics: docket_events::topics::ALL.iter().map(|t| (*t).to_owned()).collect(),
            batch: 100,
            poll: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why a round stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] docket_store::StoreError),
    #[error(transparent)]
    Dapr(#[from] DaprError),
    #[error("Dapr did not take event {event_id}: {error}")]
    Refused { event_id: String, error: String },
}

/// Publishes what `topic`'s log holds after the relay's position, one batch; returns how
/// many events it published and committed (0: nothing new).
pub async fn relay_once(
    store: &dyn Store,
    client: &DaprClient,
    pubsub: &str,
    topic: &str,
    batch: usize,
) -> Result<usize, RelayError> {
    let after = store.consumer_position(GROUP, topic).await?;
    let rows = store.read_outbox(after, topic, batch.max(1)).await?;
    let Some((last, _)) = rows.last() else {
        return Ok(0);
    };
    let last = *last;
    let events: Vec<CloudEvent> = rows.iter().map(|(_, e)| e.clone()).collect();
    let (done, refused) = if events.len() == 1 {
        client.publish(pubsub, topic, &events[0]).await?;
        (1, None)
    } else {
        let failures = client.bulk_publish(pubsub, topic, &events).await?;
        match failures.iter().min_by_key(|f| f.index) {
            None => (events.len(), None),
            Some(first) => (first.index, Some(first.clone())),
        }
    };
    if done > 0 {
        let position = if done == rows.len() { last } else { rows[done - 1].0 };
        store.save_consumer_position(GROUP, topic, position, jiff::Timestamp::now()).await?;
        metrics::counter!(PUBLISHED_METRIC, "topic" => topic.to_owned()).increment(done as u64);
    }
    match refused {
        Some(f) => Err(RelayError::Refused { event_id: f.event_id, error: f.error }),
        None => Ok(done),
    }
}

/// Hands a topic over from the embedded bus: when the relay has never committed a position in
/// `topic` and some of `groups` (the consumers that read it before Dapr mode) have, the relay
/// starts after the lowest of theirs, so switching to Dapr mode does not publish again what
/// they already handled. Returns the position it starts after (0: the whole retained log).
pub async fn hand_over(store: &dyn Store, topic: &str, groups: &[&str]) -> Result<i64, RelayError> {
    let own = store.consumer_position(GROUP, topic).await?;
    if own > 0 {
        return Ok(own);
    }
    let mut lowest: Option<i64> = None;
    for group in groups {
        let p = store.consumer_position(group, topic).await?;
        if p > 0 {
            lowest = Some(lowest.map_or(p, |l| l.min(p)));
        }
    }
    match lowest {
        Some(p) => {
            store.save_consumer_position(GROUP, topic, p, jiff::Timestamp::now()).await?;
            tracing::info!(%topic, position = p, "relay starts where the embedded consumers stopped");
            Ok(p)
        }
        None => Ok(0),
    }
}

/// How long a relay's lease lasts without renewal (a dead holder's topic waits this long).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Leadership of one topic's relay among replicas: the state entry `relay:lease:{topic}`
/// holding this process's id, created only when missing or expired (`StateStore::create`) and
/// renewed with its ETag before a third of its TTL has passed.
pub struct Lease {
    state: Arc<dyn StateStore>,
    key: String,
    holder: Vec<u8>,
    ttl: Duration,
    held: Option<(String, std::time::Instant)>,
}

impl Lease {
    pub fn new(state: Arc<dyn StateStore>, topic: &str, holder: &str, ttl: Duration) -> Lease {
        Lease {
            state,
            key: format!("relay:lease:{topic}"),
            holder: holder.as_bytes().to_vec(),
            ttl,
            held: None,
        }
    }

    /// Whether this process holds the lease now, taking or renewing it as needed.
    pub async fn hold(&mut self) -> bool {
        let now = jiff::Timestamp::now();
        if let Some((etag, renewed)) = &self.held {
            if renewed.elapsed() < self.ttl / 3 {
                return true;
            }
            let renewal =
                self.state.set(&self.key, self.holder.clone(), Some(etag), Some(self.ttl), now);
            match renewal.await {
                Ok(etag) => {
                    self.held = Some((etag, std::time::Instant::now()));
                    return true;
                }
                Err(e) => {
                    tracing::info!(key = %self.key, error = %e, "relay lease lost");
                    self.held = None;
                }
            }
        }
        match self.state.create(&self.key, self.holder.clone(), Some(self.ttl), now).await {
            Ok(Some(etag)) => {
                self.held = Some((etag, std::time::Instant::now()));
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "cannot take the relay lease");
                false
            }
        }
    }
}

/// Relays every configured topic until `shutdown` turns true. `wake` (the embedded bus's
/// append signal) makes it look at once; otherwise it looks every `poll`. With `leases` (the
/// process's state store), a topic is relayed only while this process holds its [`Lease`].
pub async fn run_relay(
    store: Arc<dyn Store>,
    client: DaprClient,
    config: RelayConfig,
    wake: Option<watch::Receiver<u64>>,
    leases: Option<Arc<dyn StateStore>>,
    shutdown: watch::Receiver<bool>,
) {
    let holder = uuid::Uuid::now_v7().to_string();
    let runs = config.topics.iter().map(|topic| {
        let (store, client, config) = (Arc::clone(&store), client.clone(), config.clone());
        let (wake, mut shutdown) = (wake.clone(), shutdown.clone());
        let mut lease = leases.clone().map(|s| Lease::new(s, topic, &holder, LEASE_TTL));
        let topic = topic.clone();
        async move {
            let mut wake = wake;
            let mut failures = 0u32;
            loop {
                if *shutdown.borrow_and_update() {
                    return;
                }
                let leading = match lease.as_mut() {
                    Some(l) => l.hold().await,
                    None => true,
                };
                if !leading {
                    tokio::select! {
                        () = tokio::time::sleep(config.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                let wait = match relay_once(
                    store.as_ref(),
                    &client,
                    &config.pubsub,
                    &topic,
                    config.batch,
                )
                .await
                {
                    Ok(n) if n > 0 => {
                        failures = 0;
                        continue;
                    }
                    Ok(_) => {
                        failures = 0;
                        config.poll
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(%topic, error = %e, "cannot relay the outbox to Dapr; retrying");
                        Duration::from_millis(100u64 << failures.min(10)).min(config.max_backoff)
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = async {
                        match wake.as_mut() {
                            Some(w) => w.changed().await.is_ok(),
                            None => std::future::pending().await,
                        }
                    }, if failures == 0 => {
                        if !changed {
                            wake = None;
                        }
                    }
                    _ = shutdown.changed() => {}
                }
            }
        }
    });
    futures::future::join_all(runs).await;
}
