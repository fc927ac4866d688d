//! The internal key-value state store (§4, Dapr state semantics): the [`StateStore`] contract,
//! its key rules ([`StateKey`]) and error ([`StateError`]); the SQL adapters live in
//! [`sqlite`] and [`postgres`], as free functions usable inside a caller's transaction and as
//! `impl StateStore` for [`crate::sqlite::SqliteStore`] and [`crate::postgres::PostgresStore`].
//!
//! Consumers keep their idempotency keys here (`processed:{consumer}:{event_id}`, 7 days),
//! the scheduler and conversations their state. Time is an argument (`now`) so expiry is
//! tested without sleeping. This module has no Redis or Dapr adapter yet, and no
//! transactions across several keys beyond what the SQL functions give inside a caller's
//! own transaction.

use std::time::Duration;

use async_trait::async_trait;
use docket_core::Timestamp;

use crate::StoreError;

/// A validated state key: 1–255 characters of printable ASCII without spaces, of the form
/// `namespace:id…` where the namespace is lower-case letters, digits, `-` and `_`; the
/// `dapr` namespace is reserved for the Dapr runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey(String);

impl StateKey {
    pub const MAX: usize = 255;

    pub fn parse(raw: &str) -> Result<StateKey, StateError> {
        let invalid = |rule: &'static str| StateError::InvalidKey { key: shown(raw), rule };
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.len() > Self::MAX {
            return Err(invalid("is longer than 255 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("must be printable ASCII without spaces or control characters"));
        }
        let Some((namespace, id)) = raw.split_once(':') else {
            return Err(invalid("has no namespace"));
        };
        if namespace.is_empty()
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "has an invalid namespace (lower-case letters, digits, '-' and '_')",
            ));
        }
        if namespace == "dapr" {
            return Err(invalid("uses the reserved namespace 'dapr'"));
        }
        if id.is_empty() {
            return Err(invalid("has nothing after its namespace"));
        }
        Ok(StateKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key as an error message shows it: control characters escaped, long keys cut.
fn shown(raw: &str) -> String {
    let escaped: String = raw.chars().take(64).flat_map(char::escape_default).collect();
    if raw.chars().count() > 64 { format!("{escaped}…") } else { escaped }
}

/// What a state operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The key breaks a rule of [`StateKey`].
    #[error(
        "state key '{key}' {rule} (expected namespace:id, e.g. 'processed:audit:0192…', at most 255 printable ASCII characters, namespace 'dapr' reserved)"
    )]
    InvalidKey { key: String, rule: &'static str },
    /// First-write concurrency: the ETag given is not the key's current one, or an ETag was
    /// given for a key that does not exist (or has expired).
    #[error("state key '{key}': {message}")]
    Conflict { key: String, message: String },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<StateError> for StoreError {
    /// For state calls inside a `Store` write closure, which returns `StoreError`.
    fn from(e: StateError) -> StoreError {
        match e {
            StateError::InvalidKey { .. } => {
                StoreError::InvalidReference { field: "key", message: e.to_string() }
            }
            StateError::Conflict { .. } => StoreError::Conflict(e.to_string()),
            StateError::Store(e) => e,
        }
    }
}

/// The conflict of a write whose ETag is not the key's current one.
pub fn stale_etag(key: &StateKey, etag: &str) -> StateError {
    StateError::Conflict {
        key: key.to_string(),
        message: format!("etag '{etag}' is not the current one (read the key again)"),
    }
}

/// The conflict of a write with an ETag to a key that does not exist.
pub fn missing_with_etag(key: &StateKey, etag: &str) -> StateError {
    StateError::Conflict {
        key: key.to_string(),
        message: format!("etag '{etag}' was given but the key does not exist"),
    }
}

/// A stored value with its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub value: Vec<u8>,
    pub etag: String,
    /// When the entry expires (from the `ttl` of its last `set`).
    pub expires_at: Option<Timestamp>,
}

/// A fresh ETag: unique across writes and across deletes and re-creates of a key, so a
/// stale ETag never matches again (no ABA).
pub fn new_etag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The expiry of a write at `now` with `ttl`, at microsecond precision.
pub fn expiry(now: Timestamp, ttl: Option<Duration>) -> Result<Option<Timestamp>, StateError> {
    let Some(ttl) = ttl else { return Ok(None) };
    let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_microsecond(now.as_microsecond().saturating_add(micros)).map(Some).map_err(
        |_| {
            StoreError::InvalidReference {
                field: "ttlInSeconds",
                message: format!("ttl of {}s is too far in the future", ttl.as_secs()),
            }
            .into()
        },
    )
}

/// Key-value state with Dapr semantics.
///
/// # Contract
/// * Keys are validated by [`StateKey::parse`] in every operation; a bad key fails with
///   `InvalidKey` naming the key and the rule, and touches nothing.
/// * `set` stores `value` and returns the new ETag, which differs from every earlier ETag of
///   the key. With `etag: Some(e)` it is first-write-wins: it MUST fail with `Conflict` and
///   change nothing unless the key exists and `e` is its current ETag; a key that does not
///   exist (or has expired) with an ETag is a `Conflict`. Without an ETag it creates or
///   overwrites.
/// * `ttl: Some(d)` makes the entry expire at `now + d` (Dapr `ttlInSeconds`); an expired
///   entry behaves exactly as a missing one for `get`, `set` and `delete`, whether or not
///   `purge_expired` has removed it yet. A `set` without a ttl clears an earlier one.
/// * `delete` removes the key; with `etag: Some(e)` the same concurrency rule as `set`
///   applies. Deleting a missing key without an ETag succeeds (idempotent).
/// * `create` stores `value` only when the key is missing or expired, and returns its new ETag;
///   `None` (and no change) when a live entry exists. Of concurrent creates of one key at
///   most one MUST get `Some` (a lease is built on this).
/// * `purge_expired(now)` removes the entries expired at `now` and returns how many.
/// * A write that returned `Ok` is durable, like every store write.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<StateEntry>, StateError>;
    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        etag: Option<&str>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<String, StateError>;
    async fn delete(&self, key: &str, etag: Option<&str>, now: Timestamp)
    -> Result<(), StateError>;
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<String>, StateError>;
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StateError>;
}
