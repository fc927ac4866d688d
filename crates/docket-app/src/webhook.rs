//! Webhook building blocks (§6): the `X-Docket-Signature` of a body and the target checks
//! that keep a webhook from reaching the server's own network.
//!
//! * [`signature`]: `sha256=` + hex HMAC-SHA256(secret, body) (RFC 2104 over SHA-256, `ring`'s
//!   `hmac`).
//! * [`target`]: a webhook URL is `http` or `https`, names a host, carries no credentials.
//! * [`public_addresses`]: resolves the host and refuses it when any address is loopback,
//!   private, link-local, shared (CGNAT), multicast, unspecified, reserved or documentation
//!   space (checked at creation and again before each delivery, so a name re-pointed at an
//!   internal address is caught), unless the operator allows private targets.
//!
//! The webhook use cases (create with a secret shown once and stored sealed with the server key
//! (`secret_key`), list, get, update, delete, its deliveries and their retry, sealing the plain
//! secrets of older rows at start) and the dispatcher consumer live here too: group `webhooks` on
//! `task-events` enqueues, in its transaction, one delivery per active webhook of the task's
//! owner subscribed to the event's type (reminders reach webhooks through the notifier).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, Handler, HandlerError};
use docket_core::{
    Delivery, DeliveryId, FieldError, NewWebhook, User, UserId, ValidationErrors, Webhook,
    WebhookId, WebhookPatch,
};
use docket_events::{CloudEvent, topics, types};
use docket_store::consume::{DeliveryTemplate, Effect, Recipients};
use ring::hmac;
use url::Url;

use crate::AppError;
use crate::secret_key::is_sealed;

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Docket-Signature`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Why a webhook target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("'{0}' is not a URL")]
    Malformed(String),
    #[error("a webhook URL must use http or https")]
    Scheme,
    #[error("a webhook URL must name a host")]
    NoHost,
    #[error("a webhook URL must not carry a user name or password")]
    Credentials,
    #[error("a webhook URL is at most 2048 characters")]
    TooLong,
    #[error("the host '{0}' does not resolve")]
    Unresolved(String),
    #[error("the host '{host}' resolves to {addr}, which is not a public address")]
    NotPublic { host: String, addr: IpAddr },
}

/// Checks the shape of a webhook URL (no network access).
pub fn target(raw: &str) -> Result<Url, TargetError> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed(raw.to_owned()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(TargetError::Scheme);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(url)
}

/// The addresses `url`'s host resolves to, refused when any is not public (unless
/// `allow_private`).
pub async fn public_addresses(
    url: &Url,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host_str().ok_or(TargetError::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(443);
    // An IPv6 literal comes bracketed in the URL.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| TargetError::Unresolved(host.to_owned()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolved(host.to_owned()));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(TargetError::NotPublic { host: host.to_owned(), addr: bad.ip() });
    }
    Ok(addrs)
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
        || s[..6] == [0; 6]) // IPv4-compatible and other ::/96 forms
}

/// The event types a webhook may subscribe to.
pub const EVENTS: [&str; 6] = [
    types::TASK_CREATED,
    types::TASK_UPDATED,
    types::TASK_COMPLETED,
    types::TASK_REOPENED,
    types::TASK_DELETED,
    types::REMINDER_TRIGGERED,
];

/// The dispatcher's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "webhooks";

/// A webhook as the caller gives it.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// A new webhook and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// The dispatcher's configuration: group `webhooks` on `task-events`, position committed in
/// the handler's transaction.
pub fn config() -> ConsumerConfig {
    let mut config = ConsumerConfig::new(CONSUMER, topics::TASK_EVENTS);
    config.position_in_transaction = true;
    config
}

/// The owner of a task event (its partition key), `None` for other events.
fn owner(event: &CloudEvent) -> Result<Option<UserId>, HandlerError> {
    if !EVENTS.contains(&event.ty.as_str()) || event.ty == types::REMINDER_TRIGGERED {
        return Ok(None);
    }
    let key = event.partitionkey.as_deref().ok_or_else(|| {
        HandlerError::Permanent(format!("event {} ({}) has no partitionkey", event.id, event.ty))
    })?;
    key.parse().map(Some).map_err(|_| {
        HandlerError::Permanent(format!(
            "event {}: partitionkey '{key}' is not a user id",
            event.id
        ))
    })
}

/// The dispatcher's decision: a task event goes to every active webhook of its owner (the
/// partition key) that receives its type, looked up by the store when it commits; nothing for
/// other events.
pub fn handle(event: &CloudEvent) -> Result<Vec<Effect>, HandlerError> {
    let Some(user) = owner(event)? else {
        return Ok(Vec::new());
    };
    let body = serde_json::to_string(event)
        .map_err(|e| HandlerError::Permanent(format!("event {}: {e}", event.id)))?;
    let created_at =
        docket_core::time::truncate_micros(event.time.unwrap_or_else(jiff::Timestamp::now));
    Ok(vec![Effect::Deliver {
        to: Recipients::Webhooks { event_type: event.ty.clone() },
        delivery: DeliveryTemplate {
            user_id: user,
            reminder_id: None,
            event_id: event.id.clone(),
            event_type: event.ty.clone(),
            payload: body,
            created_at,
        },
        if_none: None,
    }])
}

/// [`handle`] as the dispatcher's handler.
pub fn handler() -> Arc<Handler> {
    Arc::new(handle)
}

/// A fresh signing secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

fn field(name: &str, code: &str, message: impl Into<String>) -> AppError {
    AppError::Validation(ValidationErrors::single(FieldError::custom(name, code, message)))
}

impl crate::App {
    /// Checks a URL as a webhook target: shape, then (unless private targets are allowed)
    /// that every address it resolves to is public.
    async fn checked_url(&self, raw: &str) -> Result<String, AppError> {
        let url = target(raw).map_err(|e| field("url", "invalid", e.to_string()))?;
        public_addresses(&url, self.webhooks_allow_private).await.map_err(|e| match e {
            TargetError::NotPublic { .. } => {
                field("url", "not_public", format!("{e}; webhooks may only reach public addresses"))
            }
            other => field("url", "unresolved", other.to_string()),
        })?;
        Ok(url.to_string())
    }

    fn checked_events(events: Vec<String>) -> Result<Vec<String>, AppError> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let e = e.trim().to_owned();
            if !EVENTS.contains(&e.as_str()) {
                return Err(field(
                    "events",
                    "unknown",
                    format!(
                        "'{e}' is not an event a webhook can receive (one of {})",
                        EVENTS.join(", ")
                    ),
                ));
            }
            out.push(e);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(field("events", "required", "name at least one event type"));
        }
        Ok(out)
    }

    /// Creates a webhook of the caller; its secret is returned this once.
    pub async fn create_webhook(
        &self,
        user: &User,
        input: WebhookInput,
    ) -> Result<CreatedWebhook, AppError> {
        let raw = input.url.ok_or_else(|| field("url", "required", "a webhook needs a url"))?;
        let url = self.checked_url(&raw).await?;
        let events = Self::checked_events(input.events.unwrap_or_default())?;
        if self.store.list_webhooks(user.id).await?.len() >= MAX_WEBHOOKS {
            return Err(AppError::Conflict(format!(
                "a user has at most {MAX_WEBHOOKS} webhooks; delete one first"
            )));
        }
        let secret = new_secret();
        let id = WebhookId::new();
        let new = NewWebhook {
            id,
            url,
            events,
            secret: self.secret_key.seal(id, &secret),
            active: input.active.unwrap_or(true),
        };
        let webhook = self.store.create_webhook(user.id, new, self.clock.now()).await?;
        Ok(CreatedWebhook { webhook, secret })
    }

    pub async fn list_webhooks(&self, user: &User) -> Result<Vec<Webhook>, AppError> {
        Ok(self.store.list_webhooks(user.id).await?)
    }

    pub async fn get_webhook(&self, user: &User, id: WebhookId) -> Result<Webhook, AppError> {
        Ok(self.store.get_webhook(user.id, id).await?)
    }

    /// Changes the caller's webhook: the fields given, checked as on create.
    pub async fn update_webhook(
        &self,
        user: &User,
        id: WebhookId,
        input: WebhookInput,
    ) -> Result<Webhook, AppError> {
        let url = match input.url {
            Some(raw) => Some(self.checked_url(&raw).await?),
            None => None,
        };
        let events = input.events.map(Self::checked_events).transpose()?;
        let patch = WebhookPatch { url, events, active: input.active };
        Ok(self.store.update_webhook(user.id, id, patch, self.clock.now()).await?)
    }

    pub async fn delete_webhook(&self, user: &User, id: WebhookId) -> Result<(), AppError> {
        Ok(self.store.delete_webhook(user.id, id).await?)
    }

    /// Seals every webhook secret still stored in plain text (rows from before sealing, or
    /// written by an older version during a rolling upgrade); returns how many it sealed.
    /// Safe to run from several processes at once: each replacement happens only while the
    /// row still holds the plain value it read, so a secret is sealed once.
    pub async fn seal_webhook_secrets(&self) -> Result<usize, AppError> {
        let mut sealed = 0;
        let mut after = None;
        loop {
            let page = self.store.webhook_secrets(after, SEAL_PAGE).await?;
            let Some(&(last, _)) = page.last() else { break };
            after = Some(last);
            for (id, stored) in page {
                if is_sealed(&stored) {
                    continue;
                }
                let new = self.secret_key.seal(id, &stored);
                if self.store.replace_webhook_secret(id, stored, new).await? {
                    sealed += 1;
                }
            }
        }
        Ok(sealed)
    }

    /// The deliveries to the caller's webhook, newest first.
    pub async fn list_deliveries(
        &self,
        user: &User,
        id: WebhookId,
        limit: usize,
    ) -> Result<Vec<Delivery>, AppError> {
        Ok(self.store.list_deliveries(user.id, id, limit).await?)
    }

    /// Puts a failed delivery to the caller's webhook back in line, due now.
    pub async fn retry_delivery(
        &self,
        user: &User,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, AppError> {
        Ok(self.store.retry_delivery(user.id, webhook, id, self.clock.now()).await?)
    }
}

/// Most webhooks one user may have.
pub const MAX_WEBHOOKS: usize = 25;

/// Stored secrets read per page by `App::seal_webhook_secrets`.
const SEAL_PAGE: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_rfc_4231() {
        // Test case 2: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a 131-byte key (longer than a block, hashed first).
        assert_eq!(
            signature(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn targets_are_http_urls_with_a_host_and_no_credentials() {
        assert!(target("https://hooks.example.com/docket").is_ok());
        assert!(target(" http://hooks.example.com:8080/x?y=1 ").is_ok());
        assert_eq!(target("ftp://example.com/"), Err(TargetError::Scheme));
        assert_eq!(target("https://user:pw@example.com/"), Err(TargetError::Credentials));
        assert!(matches!(target("not a url"), Err(TargetError::Malformed(_))));
        assert_eq!(
            target(&format!("https://e.com/{}", "a".repeat(2100))),
            Err(TargetError::TooLong)
        );
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().expect(private)), "{private} is not public");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().expect(public)), "{public} is public");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let local = target("http://127.0.0.1:9/hook").expect("url");
        assert!(matches!(
            public_addresses(&local, false).await,
            Err(TargetError::NotPublic { .. })
        ));
        assert_eq!(public_addresses(&local, true).await.expect("allowed").len(), 1);
        let v6 = target("http://[::1]:9/hook").expect("url");
        assert!(matches!(public_addresses(&v6, false).await, Err(TargetError::NotPublic { .. })));
        let named = target("http://localhost:9/hook").expect("url");
        assert!(matches!(
            public_addresses(&named, false).await,
            Err(TargetError::NotPublic { .. } | TargetError::Unresolved(_))
        ));
        let public = target("https://93.184.216.34/hook").expect("url");
        let addrs = public_addresses(&public, false).await.expect("public");
        assert_eq!(addrs, vec!["93.184.216.34:443".parse().expect("addr")]);
    }
}
