//! The outbox relay of Dapr mode (§5, §7): publishes each topic's outbox log to the Dapr
//! Pub/Sub component, in batches, and commits how far it got as consumer group
//! [`GROUP`] (so outbox pruning waits for it like for any consumer).
//!
//! Per topic: read the log after the committed position (`Store::read_outbox`, which only
//! hands out settled positions), publish the batch, and commit the position of the last event
//! before the first one Dapr did not take; the rest is published again after a backoff. The
//! `task-updates` log is the `task-events` rows and its own, as everywhere
//! (`topics::log_topics`), so each Dapr topic carries exactly what its subscribers read.
//!
//! **Order.** §5 keeps order per partition key (the CloudEvent's `partitionkey`, the user id,
//! sent as each entry's `metadata.partitionKey`). A batch of one event is a plain `publish`.
//! A larger batch goes out with `bulk_publish`, but Dapr does not order the entries of one
//! bulk request ("The bulk publish operation also does not guarantee any ordering of
//! messages", docs.dapr.io, "Publish and subscribe to bulk messages"), so the batch is cut
//! into consecutive requests in which no partition key appears twice (`requests`: a new one
//! starts at the event whose key the current one already holds), sent one after the other,
//! each only once the previous one was wholly taken. Two events of one key are then never in
//! flight together, and interleaved keys still share requests. Every request of such a batch
//! is a bulk publish, even one of a single entry, so a refused event is always named by
//! `failedEntries` and handled the same way. An event without a partition key counts as a key
//! of its own (it never forces a cut): §5 promises no order for it, and a broker given no key
//! (Kafka) spreads such messages over partitions anyway; every event Docket writes has one.
//!
//! Delivery is at least once: an event published just before a crash, or after a refused one
//! (later entries of the request with the refused event may have been taken), may be
//! published again, and the consumers dedupe on the CloudEvent id. A key's events are still
//! first published in log order: an event is only sent once every earlier event of its key
//! was taken. With several worker replicas, one relay per topic publishes at a time: it holds
//! a [`Lease`] in the state store (created with a TTL, renewed with its ETag); the others
//! wait, and take over within the TTL when the holder dies.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use docket_events::CloudEvent;
use docket_ports::{StateStore, Store};
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
    Store(#[from] docket_ports::StoreError),
    #[error(transparent)]
    Dapr(#[from] DaprError),
    #[error("Dapr did not take event {event_id}: {error}")]
    Refused { event_id: String, error: String },
}

/// Publishes what `topic`'s log holds after the relay's position, one batch; returns how
/// many events it published and committed (0: nothing new). On an error, what was published
/// before the failing request is committed all the same.
pub async fn relay_once(
    store: &dyn Store,
    client: &DaprClient,
    pubsub: &str,
    topic: &str,
    batch: usize,
) -> Result<usize, RelayError> {
    let after = store.consumer_position(GROUP, topic).await?;
    let rows = store.read_outbox(after, topic, batch.max(1)).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let events: Vec<CloudEvent> = rows.iter().map(|(_, e)| e.clone()).collect();
    let mut done = 0;
    let mut outcome = Ok(());
    if let [event] = events.as_slice() {
        match client.publish(pubsub, topic, event).await {
            Ok(()) => done = 1,
            Err(e) => outcome = Err(e.into()),
        }
    } else {
        for request in requests(&events) {
            match client.bulk_publish(pubsub, topic, &events[request.clone()]).await {
                Ok(failures) => match failures.into_iter().min_by_key(|f| f.index) {
                    None => done = request.end,
                    Some(first) => {
                        done = request.start + first.index;
                        outcome = Err(RelayError::Refused {
                            event_id: first.event_id,
                            error: first.error,
                        });
                        break;
                    }
                },
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            }
        }
    }
    if done > 0 {
        let position = rows[done - 1].0;
        store.save_consumer_position(GROUP, topic, position, jiff::Timestamp::now()).await?;
        metrics::counter!(PUBLISHED_METRIC, "topic" => topic.to_owned()).increment(done as u64);
    }
    outcome.map(|()| done)
}

/// Cuts a batch into the bulk requests the relay sends one after the other: consecutive runs
/// of `events` (as index ranges, covering them all in order) in which no partition key
/// appears twice; a run ends just before the event whose key it already holds. An event
/// without a partition key never ends a run (see the module doc).
fn requests(events: &[CloudEvent]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut keys = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let Some(key) = event.partitionkey.as_deref() else { continue };
        if !keys.insert(key) {
            runs.push(start..i);
            start = i;
            keys.clear();
            keys.insert(key);
        }
    }
    if start < events.len() {
        runs.push(start..events.len());
    }
    runs
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
                        docket_core::Backoff { base: Duration::from_millis(200), max: config.max_backoff }
                            .ceiling(failures)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: Option<&str>) -> CloudEvent {
        let mut json = serde_json::json!({
            "specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(),
            "source": "/docket/test", "type": "com.todo.task.created",
        });
        if let Some(key) = key {
            json["partitionkey"] = key.into();
        }
        CloudEvent::parse(json.to_string().as_bytes()).expect("event")
    }

    #[test]
    fn a_request_ends_before_a_key_it_already_holds() {
        let keys = [Some("a"), Some("b"), None, Some("a"), None, Some("c"), Some("c"), Some("b")];
        let events: Vec<CloudEvent> = keys.iter().map(|k| event(*k)).collect();
        assert_eq!(requests(&events), vec![0..3, 3..6, 6..8]);
        assert_eq!(requests(&[]), Vec::<Range<usize>>::new());
        let keyless: Vec<CloudEvent> = (0..3).map(|_| event(None)).collect();
        assert_eq!(requests(&keyless), vec![0..3], "keyless events never force a cut");
    }
}
