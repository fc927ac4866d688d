//! [`DaprStateStore`]: the `docket_ports::StateStore` contract over the Dapr state API.
//!
//! Each key holds a JSON envelope `{"docket_state": 1, "value": base64, "etag": …,
//! "expires_at_us": …}`. Why an envelope:
//! * **Time is an argument.** The contract takes `now` (tests inject it), but Dapr expires
//!   entries on its own clock. The expiry is kept in the envelope and checked against `now`
//!   on every read, so an entry is expired exactly when the contract says; `ttlInSeconds`
//!   (rounded up to whole seconds) is sent as well, so Dapr removes it physically on stores
//!   that support TTL. A `set` without ttl sends `ttlInSeconds = -1`, which Dapr documents as
//!   "keep this entry", clearing an earlier ttl.
//! * **ETags never repeat.** Dapr's ETags are the store's (Redis counts versions from 1
//!   again after a delete, so an old ETag could match a re-created key). Our ETag is a fresh
//!   UUIDv7 per write, in the envelope. A write with our ETag reads the key, checks that ETag
//!   and the expiry against `now`, then writes with Dapr's ETag from that read and
//!   `concurrency: first-write`, so Dapr rejects it (409) if anything wrote in between.
//!   The one window left: on a store with counter ETags, a delete and re-create that reaches
//!   the same counter between our read and write would not be detected.
//!
//! `purge_expired(now)` cannot list keys: Dapr's state API has no listing (the query API is
//! alpha and store-specific). Dapr expires entries by itself through `ttlInSeconds`, so
//! purging is only a complement: this store remembers the keys *it* wrote with a ttl (in
//! memory, up to [`TRACK_LIMIT`]) and deletes those expired at `now` with `If-Match`, so a
//! newer write is never deleted; the count is of those deletions. Keys written by another
//! process, or before a restart, are left to Dapr's own expiry, and for reads they behave as
//! missing either way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use docket_core::Timestamp;
use docket_ports::state::{expiry, missing_with_etag, new_etag, stale_etag};
use docket_ports::{StateEntry, StateError, StateKey, StateStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::client::{Concurrency, DaprClient, DaprError, SaveState};

/// How many keys with a ttl one store remembers for `purge_expired`; beyond it, new keys are
/// left to Dapr's own expiry.
pub const TRACK_LIMIT: usize = 100_000;

const BACKEND: &str = "dapr";
const ENVELOPE_VERSION: u8 = 1;

/// The state store contract over a Dapr state store component.
pub struct DaprStateStore {
    client: DaprClient,
    store: String,
    /// Keys this store wrote with a ttl: our ETag of that write and its expiry.
    tracked: Mutex<HashMap<String, Tracked>>,
}

#[derive(Debug, Clone)]
struct Tracked {
    etag: String,
    expires_at: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    docket_state: u8,
    value: String,
    etag: String,
    #[serde(default)]
    expires_at_us: Option<i64>,
}

/// A key as read from Dapr: the envelope decoded, and Dapr's own ETag.
struct Stored {
    value: Vec<u8>,
    etag: String,
    expires_at: Option<Timestamp>,
    dapr_etag: Option<String>,
}

impl Stored {
    fn live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl DaprStateStore {
    /// The state store component named `store` (its `metadata.name`) behind `client`.
    pub fn new(client: DaprClient, store: impl Into<String>) -> DaprStateStore {
        DaprStateStore { client, store: store.into(), tracked: Mutex::new(HashMap::new()) }
    }

    /// The component name.
    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// Reads the key as stored, expired or not.
    async fn read(&self, key: &StateKey) -> Result<Option<Stored>, StateError> {
        let Some(item) = self.client.get_state(&self.store, key.as_str()).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let foreign = || {
            StateError::Store(StoreError::unavailable(
                BACKEND,
                format!("state key '{key}' holds a value Docket did not write"),
            ))
        };
        let envelope: Envelope = serde_json::from_value(item.value).map_err(|_| foreign())?;
        if envelope.docket_state != ENVELOPE_VERSION {
            return Err(foreign());
        }
        let value = BASE64.decode(envelope.value.as_bytes()).map_err(|_| foreign())?;
        let expires_at = match envelope.expires_at_us {
            None => None,
            Some(us) => Some(Timestamp::from_microsecond(us).map_err(|_| foreign())?),
        };
        Ok(Some(Stored { value, etag: envelope.etag, expires_at, dapr_etag: item.etag }))
    }

    /// The live entry `etag` must be the current one of, with Dapr's ETag to write on.
    async fn current(
        &self,
        key: &StateKey,
        etag: &str,
        now: Timestamp,
    ) -> Result<String, StateError> {
        let stored = match self.read(key).await? {
            Some(s) if s.live(now) => s,
            _ => return Err(missing_with_etag(key, etag)),
        };
        if stored.etag != etag {
            return Err(stale_etag(key, etag));
        }
        stored.dapr_etag.ok_or_else(|| {
            StateError::Store(StoreError::unavailable(
                BACKEND,
                format!(
                    "state store '{}' returned no ETag for '{key}'; first-write concurrency needs a store with ETags",
                    self.store
                ),
            ))
        })
    }

    fn track(&self, key: &StateKey, tracked: Option<Tracked>) {
        let Ok(mut map) = self.tracked.lock() else { return };
        match tracked {
            Some(t) if map.len() < TRACK_LIMIT || map.contains_key(key.as_str()) => {
                map.insert(key.to_string(), t);
            }
            Some(_) => {}
            None => {
                map.remove(key.as_str());
            }
        }
    }
}

/// Any other failure of the sidecar is the backend's.
fn backend(e: DaprError) -> StateError {
    StateError::Store(StoreError::unavailable(BACKEND, e))
}

/// Dapr's conflict on the conditional write: someone wrote between our read and our write.
fn raced(key: &StateKey, etag: &str, e: DaprError) -> StateError {
    match e {
        DaprError::Conflict { .. } => stale_etag(key, etag),
        other => backend(other),
    }
}

/// Whole seconds, rounded up and at least one, so Dapr never expires an entry before `now`
/// says it has.
fn ttl_in_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0)).max(1);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The Dapr save of `value` as our envelope (with our ETag `etag` and the expiry), and
/// `ttlInSeconds` for Dapr's own expiry (`-1`: keep, clearing an earlier ttl).
fn save_item(
    key: &StateKey,
    value: &[u8],
    etag: &str,
    expires_at: Option<Timestamp>,
    ttl: Option<Duration>,
    concurrency: Option<Concurrency>,
    dapr_etag: Option<String>,
) -> Result<SaveState, StateError> {
    let envelope = Envelope {
        docket_state: ENVELOPE_VERSION,
        value: BASE64.encode(value),
        etag: etag.to_owned(),
        expires_at_us: expires_at.map(|t| t.as_microsecond()),
    };
    let value = serde_json::to_value(&envelope).map_err(|e| backend_msg(e.to_string()))?;
    Ok(SaveState {
        key: key.to_string(),
        value,
        concurrency,
        etag: dapr_etag,
        ttl_in_seconds: Some(ttl.map(ttl_in_seconds).unwrap_or(-1)),
    })
}

#[async_trait]
impl StateStore for DaprStateStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<StateEntry>, StateError> {
        let key = StateKey::parse(key)?;
        Ok(self.read(&key).await?.filter(|s| s.live(now)).map(|s| StateEntry {
            value: s.value,
            etag: s.etag,
            expires_at: s.expires_at,
        }))
    }

    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        etag: Option<&str>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<String, StateError> {
        let key = StateKey::parse(key)?;
        let expires_at = expiry(now, ttl)?;
        let dapr_etag = match etag {
            Some(e) => Some(self.current(&key, e, now).await?),
            None => None,
        };
        let new = new_etag();
        let concurrency = dapr_etag.as_ref().map(|_| Concurrency::FirstWrite);
        let item = save_item(&key, &value, &new, expires_at, ttl, concurrency, dapr_etag)?;
        self.client
            .save_state(&self.store, std::slice::from_ref(&item))
            .await
            .map_err(|e| raced(&key, etag.unwrap_or_default(), e))?;
        self.track(&key, expires_at.map(|expires_at| Tracked { etag: new.clone(), expires_at }));
        Ok(new)
    }

    async fn delete(
        &self,
        key: &str,
        etag: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let key = StateKey::parse(key)?;
        match etag {
            Some(e) => {
                let dapr_etag = self.current(&key, e, now).await?;
                self.client
                    .delete_state(&self.store, key.as_str(), Some(&dapr_etag))
                    .await
                    .map_err(|err| raced(&key, e, err))?;
            }
            None => {
                self.client.delete_state(&self.store, key.as_str(), None).await.map_err(backend)?
            }
        }
        self.track(&key, None);
        Ok(())
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<String>, StateError> {
        let key = StateKey::parse(key)?;
        let expires_at = expiry(now, ttl)?;
        // Missing: Dapr's first-write without an ETag only creates. Expired but still stored:
        // first-write with its Dapr ETag replaces it only if nobody else did in between.
        let dapr_etag = match self.read(&key).await? {
            Some(s) if s.live(now) => return Ok(None),
            Some(s) => s.dapr_etag,
            None => None,
        };
        let new = new_etag();
        let first_write = Some(Concurrency::FirstWrite);
        let item = save_item(&key, &value, &new, expires_at, ttl, first_write, dapr_etag)?;
        match self.client.save_state(&self.store, std::slice::from_ref(&item)).await {
            Ok(()) => {
                self.track(
                    &key,
                    expires_at.map(|expires_at| Tracked { etag: new.clone(), expires_at }),
                );
                Ok(Some(new))
            }
            Err(DaprError::Conflict { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StateError> {
        let due: Vec<(String, Tracked)> = match self.tracked.lock() {
            Ok(map) => map
                .iter()
                .filter(|(_, t)| t.expires_at <= now)
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect(),
            Err(_) => return Ok(0),
        };
        let mut purged = 0;
        for (raw, tracked) in due {
            let key = StateKey::parse(&raw)?;
            let stored = self.read(&key).await?;
            let ours = stored.filter(|s| s.etag == tracked.etag && !s.live(now));
            if let Some(Stored { dapr_etag: Some(dapr_etag), .. }) = ours {
                match self.client.delete_state(&self.store, key.as_str(), Some(&dapr_etag)).await {
                    Ok(()) => purged += 1,
                    // Rewritten since we read it: the newer write is not ours to purge.
                    Err(DaprError::Conflict { .. }) => {}
                    Err(e) => return Err(backend(e)),
                }
            }
            // Gone, rewritten, or purged now: forget it unless a newer write of ours is tracked.
            if let Ok(mut map) = self.tracked.lock()
                && map.get(&raw).is_some_and(|t| t.etag == tracked.etag)
            {
                map.remove(&raw);
            }
        }
        Ok(purged)
    }
}

fn backend_msg(message: String) -> StateError {
    StateError::Store(StoreError::unavailable(BACKEND, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let check = |ttl: Duration, expect: i64| assert_eq!(ttl_in_seconds(ttl), expect, "{ttl:?}");
        check(Duration::ZERO, 1);
        check(Duration::from_millis(1), 1);
        check(Duration::from_secs(60), 60);
        check(Duration::from_millis(60_001), 61);
        check(Duration::from_secs(7 * 24 * 3600), 604_800);
        check(Duration::MAX, i64::MAX);
    }
}
