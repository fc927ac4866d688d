//! The delivery worker (§6): sends what the notifier and the webhook dispatcher enqueued —
//! emails over SMTP, webhook POSTs — and retries failures with exponential backoff (with
//! jitter, `docket_core::backoff`).
//!
//! Each round claims the deliveries due now (`Store::claim_deliveries`: the claim counts an
//! attempt and leases the delivery, so two workers never send the same one at once, and one
//! whose worker died is sent again after the lease), sends them concurrently, and settles each:
//! delivered; failed with the next attempt `backoff` later; or, after `max_attempts`, failed
//! for good, which also marks the reminder that caused it `failed` with the error. Nothing is
//! dropped: a failed delivery stays listed with its error and can be retried on request.
//!
//! Webhooks: `POST` of the event's CloudEvent JSON with `X-Docket-Signature: sha256=HMAC(secret,
//! body)`, `X-Docket-Delivery` (the delivery id, stable across retries, for the receiver to
//! dedupe), `X-Docket-Event` (the type); any 2xx is success. The target is checked again
//! before every attempt (a name re-pointed at an internal address is refused unless private
//! targets are allowed) and the request goes to exactly the addresses checked; redirects are
//! not followed.
//! Email: one message per delivery through the configured relay, plain text.
//!
//! The bytes move through the outbound ports (`docket_ports::WebhookTransport`,
//! `docket_ports::MailTransport`); what is sent, where, signed how, and when it is retried is
//! decided here.

use std::sync::Arc;
use std::time::Duration;

use docket_core::{Backoff, Delivery, DeliveryChannel, DeliveryOutcome, Timestamp};
use docket_ports::Store;
use docket_ports::webhooks::ClaimedDelivery;
use docket_ports::{MailTransport, OutboundMail, PostError, WebhookPost, WebhookTransport};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::secret_key::SecretKey;
use crate::webhooks;

/// Counter of delivery attempts, labelled by `channel` and `outcome`
/// (`delivered`, `retry`, `failed`).
pub const ATTEMPTS_METRIC: &str = "docket_delivery_attempts_total";

/// How the worker sends and retries.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Deliveries claimed per round.
    pub batch: usize,
    /// How long a claimed delivery is held before another worker may try it.
    pub lease: Duration,
    /// Attempts before a delivery fails for good.
    pub max_attempts: u32,
    /// The wait after a failed attempt: `backoff.base` after the first, doubling after each
    /// further one to `backoff.max`, less up to half of it as jitter.
    pub backoff: Backoff,
    /// Draws the jitter of each wait (`docket_bus::runtime::random_jitter`; a constant in tests that check exact
    /// times).
    pub jitter: fn() -> f64,
    /// Time limit of one webhook request or SMTP exchange.
    pub timeout: Duration,
    /// Lets webhooks reach loopback, private and link-local addresses.
    pub allow_private: bool,
    /// The longest the worker sleeps before looking for due deliveries again (other
    /// processes enqueue too).
    pub poll: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            batch: 32,
            lease: Duration::from_secs(120),
            max_attempts: 8,
            backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(3600) },
            jitter: docket_bus::runtime::random_jitter,
            timeout: Duration::from_secs(15),
            allow_private: false,
            poll: Duration::from_millis(500),
        }
    }
}

/// Sends deliveries through the outbound transports; built once per worker.
pub struct Sender {
    config: DeliveryConfig,
    webhooks: Arc<dyn WebhookTransport>,
    /// The relay's transport; without one, email deliveries fail with that reason (and are
    /// retried).
    mail: Option<Arc<dyn MailTransport>>,
    /// Opens the webhook secrets the API sealed (the same key as `App::with_secret_key`).
    secret_key: SecretKey,
}

impl Sender {
    pub fn new(
        config: DeliveryConfig,
        secret_key: SecretKey,
        webhooks: Arc<dyn WebhookTransport>,
        mail: Option<Arc<dyn MailTransport>>,
    ) -> Sender {
        Sender { config, webhooks, mail, secret_key }
    }

    /// Sends one claimed delivery; `Err` carries why it failed.
    pub async fn send(&self, claimed: &ClaimedDelivery) -> Result<(), String> {
        let d = &claimed.delivery;
        match d.channel {
            DeliveryChannel::Webhook => {
                let (Some(id), Some(stored)) = (d.webhook_id, claimed.secret.as_deref()) else {
                    return Err("the webhook was deleted".to_owned());
                };
                // A value that does not open fails this attempt like any other error: retried,
                // then given up, with the reason recorded.
                let secret = self.secret_key.open(id, stored).map_err(|e| e.to_string())?;
                self.post(d, &secret).await
            }
            DeliveryChannel::Email => self.mail(d).await,
        }
    }

    async fn post(&self, d: &Delivery, secret: &str) -> Result<(), String> {
        let url = webhooks::target(&d.target).map_err(|e| e.to_string())?;
        let addrs = webhooks::public_addresses(&url, self.config.allow_private)
            .await
            .map_err(|e| e.to_string())?;
        let request = WebhookPost {
            url: url.to_string(),
            addrs,
            headers: vec![
                (
                    "X-Docket-Signature".to_owned(),
                    webhooks::signature(secret.as_bytes(), d.payload.as_bytes()),
                ),
                ("X-Docket-Delivery".to_owned(), d.id.to_string()),
                ("X-Docket-Event".to_owned(), d.event_type.clone()),
            ],
            body: d.payload.clone(),
            timeout: self.config.timeout,
        };
        self.webhooks.post(request).await.map_err(|e| match e {
            PostError::Status(status) => format!("POST {} answered {status}", d.target),
            PostError::Transport(error) => format!("POST {}: {error}", d.target),
        })
    }

    async fn mail(&self, d: &Delivery) -> Result<(), String> {
        let transport =
            self.mail.as_ref().ok_or("no SMTP relay is configured on the delivering server")?;
        #[derive(serde::Deserialize)]
        struct Mail {
            subject: String,
            text: String,
        }
        let mail: Mail = serde_json::from_str(&d.payload)
            .map_err(|e| format!("the stored email does not parse: {e}"))?;
        transport
            .send(OutboundMail {
                to: d.target.clone(),
                subject: mail.subject,
                text: mail.text,
                message_id: format!("<{}@docket>", d.id),
            })
            .await
    }
}

/// Claims the deliveries due at `now`, sends them and settles each; returns how many it
/// claimed (a full batch means more may be due).
pub async fn deliver_due(
    store: &dyn Store,
    sender: &Sender,
    now: Timestamp,
) -> Result<usize, docket_ports::StoreError> {
    let config = &sender.config;
    let claimed = store.claim_deliveries(now, config.lease, config.batch).await?;
    let results = futures::future::join_all(claimed.iter().map(|c| sender.send(c))).await;
    for (c, result) in claimed.iter().zip(results) {
        let d = &c.delivery;
        let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        let outcome = match result {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(error) if attempts >= config.max_attempts => DeliveryOutcome::GiveUp { error },
            Err(error) => {
                let wait = config.backoff.delay(attempts, (config.jitter)());
                let wait =
                    jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
                DeliveryOutcome::Retry {
                    error,
                    at: now.checked_add(wait).unwrap_or(Timestamp::MAX),
                }
            }
        };
        let label = match &outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::GiveUp { .. } => "failed",
        };
        metrics::counter!(ATTEMPTS_METRIC, "channel" => d.channel.as_str(), "outcome" => label)
            .increment(1);
        match &outcome {
            DeliveryOutcome::Delivered => {
                tracing::debug!(delivery.id = %d.id, channel = d.channel.as_str(), "delivered");
            }
            DeliveryOutcome::Retry { error, at } => tracing::info!(
                delivery.id = %d.id, channel = d.channel.as_str(), attempt = attempts,
                next_attempt = %at, %error, "delivery failed; will retry"
            ),
            DeliveryOutcome::GiveUp { error } => tracing::warn!(
                delivery.id = %d.id, channel = d.channel.as_str(), attempt = attempts, %error,
                "delivery failed for good"
            ),
        }
        store.settle_delivery(d.id, outcome, now).await?;
    }
    Ok(claimed.len())
}

/// Delivers until `shutdown` turns true: a round whenever something is due, else sleeps until
/// the next delivery is due or `config.poll`, whichever is sooner.
pub async fn run_delivery_worker(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sender: Arc<Sender>,
    mut shutdown: watch::Receiver<bool>,
) {
    let poll = sender.config.poll;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let wait = match deliver_due(store.as_ref(), &sender, clock.now()).await {
            Ok(n) if n >= sender.config.batch => Duration::ZERO,
            Ok(_) => match store.next_delivery_at().await {
                Ok(Some(at)) => {
                    let d = at.duration_since(clock.now());
                    Duration::try_from(d).unwrap_or(Duration::ZERO).min(poll)
                }
                Ok(None) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery worker cannot read the next due time");
                    poll
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "delivery worker cannot claim deliveries");
                poll
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worker against a real SQLite store and a scripted HTTP receiver on loopback; every
    //! round gets its `now` explicitly, so retries are driven without waiting.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use docket_core::{
        DeliveryChannel, DeliveryId, DeliveryStatus, NewDelivery, NewWebhook, User, Webhook,
    };
    use docket_sqlite::SqliteStore;
    use hmac::{Hmac, Mac as _};

    use super::*;

    const SECRET: &str = "whsec-test-secret";

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("instant")
    }

    fn after(t: Timestamp, d: Duration) -> Timestamp {
        t.checked_add(jiff::SignedDuration::try_from(d).expect("short")).expect("in range")
    }

    /// What the receiver got: headers and body of each request, in order.
    type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

    /// An HTTP receiver on 127.0.0.1 answering each request with the next scripted status
    /// (200 once the script is used up); returns its URL and what it received.
    async fn receiver(script: &[u16]) -> (String, Received) {
        let script: Arc<Mutex<VecDeque<u16>>> =
            Arc::new(Mutex::new(script.iter().copied().collect()));
        let received: Received = Arc::default();
        let seen = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let script = Arc::clone(&script);
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().expect("lock").push((headers, body));
                    let code = script.lock().expect("lock").pop_front().unwrap_or(200);
                    StatusCode::from_u16(code).expect("valid status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{addr}/hook"), received)
    }

    struct Fixture {
        store: SqliteStore,
        user: User,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docket.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open");
        let user = crate::testing::user(&store, "Ada", ts("2026-06-01T00:00:00Z")).await;
        Fixture { store, user, _dir: dir }
    }

    impl Fixture {
        /// A webhook whose secret is stored as it was before sealing: `SECRET` in plain text.
        async fn webhook(&self, url: &str) -> Webhook {
            self.webhook_stored(url, |_| SECRET.to_owned()).await
        }

        /// A webhook whose stored secret is `stored(id)`.
        async fn webhook_stored(
            &self,
            url: &str,
            stored: impl FnOnce(docket_core::WebhookId) -> String,
        ) -> Webhook {
            let id = docket_ports::ids::new_id();
            let new = NewWebhook {
                id,
                url: url.to_owned(),
                events: vec!["com.todo.task.created".to_owned()],
                secret: stored(id),
                active: true,
            };
            self.store
                .create_webhook(self.user.id, new, ts("2026-06-01T00:00:00Z"))
                .await
                .expect("create_webhook")
        }

        /// Enqueues one delivery to `hook`, due at `now`.
        async fn enqueue(&self, hook: &Webhook, now: Timestamp) -> NewDelivery {
            let d = NewDelivery {
                id: docket_ports::ids::new_id(),
                user_id: self.user.id,
                channel: DeliveryChannel::Webhook,
                webhook_id: Some(hook.id),
                reminder_id: None,
                event_id: format!("evt-{}", uuid::Uuid::now_v7()),
                event_type: "com.todo.task.created".to_owned(),
                target: hook.url.clone(),
                payload:
                    r#"{"specversion":"1.0","type":"com.todo.task.created","data":{"title":"Tea"}}"#
                        .to_owned(),
                created_at: now,
            };
            assert_eq!(self.store.enqueue_deliveries(vec![d.clone()]).await.expect("enqueue"), 1);
            d
        }

        /// A receiver answering `script` in turn, a webhook to it, and one delivery to that
        /// webhook due at `now`.
        async fn hook_with_delivery(
            &self,
            script: &[u16],
            now: Timestamp,
        ) -> (Received, Webhook, NewDelivery) {
            let (url, received) = receiver(script).await;
            let hook = self.webhook(&url).await;
            let d = self.enqueue(&hook, now).await;
            (received, hook, d)
        }

        async fn delivery(&self, hook: &Webhook, id: DeliveryId) -> Delivery {
            let list = self.store.list_deliveries(self.user.id, hook.id, 50).await.expect("list");
            list.into_iter().find(|d| d.id == id).expect("listed")
        }
    }

    fn config(allow_private: bool) -> DeliveryConfig {
        DeliveryConfig {
            max_attempts: 3,
            backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(60) },
            jitter: || 0.0,
            timeout: Duration::from_secs(10),
            allow_private,
            ..DeliveryConfig::default()
        }
    }

    /// A sender posting webhooks over real HTTP, without an SMTP relay.
    fn sender(config: DeliveryConfig) -> Sender {
        Sender::new(config, key(), Arc::new(docket_outbound::HttpWebhooks::new()), None)
    }

    fn key() -> SecretKey {
        SecretKey::parse(&"11".repeat(32)).expect("a 32-byte hex key")
    }

    /// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`, computed with the `hmac`
    /// crate rather than our own `webhooks::signature`.
    fn expected_signature(secret: &str, body: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[tokio::test]
    async fn a_failed_webhook_is_retried_after_the_backoff_with_the_same_id() {
        let f = fixture().await;
        let t0 = ts("2026-06-01T09:00:00Z");
        let (received, hook, d) = f.hook_with_delivery(&[500, 200], t0).await;
        let config = config(true);
        let sender = sender(config.clone());

        assert_eq!(deliver_due(&f.store, &sender, t0).await.expect("round"), 1);
        {
            let got = received.lock().expect("lock");
            assert_eq!(got.len(), 1);
            let (headers, body) = &got[0];
            assert_eq!(body, &d.payload, "the body is the payload, byte for byte");
            assert_eq!(header(headers, "x-docket-signature"), expected_signature(SECRET, body));
            assert_eq!(header(headers, "x-docket-delivery"), d.id.to_string());
            assert_eq!(header(headers, "x-docket-event"), "com.todo.task.created");
            assert_eq!(header(headers, "content-type"), "application/json");
        }
        let retry_at = after(t0, config.backoff.delay(1, 0.0));
        let stored = f.delivery(&hook, d.id).await;
        assert_eq!(stored.status, DeliveryStatus::Pending);
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.next_attempt_at, Some(retry_at), "due again one backoff later");
        let error = stored.last_error.expect("the error is recorded");
        assert!(error.contains("500"), "{error}");

        let early = retry_at.checked_sub(jiff::SignedDuration::from_micros(1)).expect("range");
        assert_eq!(deliver_due(&f.store, &sender, early).await.expect("round"), 0, "not early");
        assert_eq!(received.lock().expect("lock").len(), 1);

        assert_eq!(deliver_due(&f.store, &sender, retry_at).await.expect("round"), 1);
        {
            let got = received.lock().expect("lock");
            assert_eq!(got.len(), 2);
            let (headers, body) = &got[1];
            assert_eq!(header(headers, "x-docket-delivery"), d.id.to_string(), "same id again");
            assert_eq!(header(headers, "x-docket-signature"), expected_signature(SECRET, body));
        }
        let stored = f.delivery(&hook, d.id).await;
        assert_eq!(stored.status, DeliveryStatus::Delivered);
        assert_eq!(stored.delivered_at, Some(retry_at));
        assert_eq!(stored.attempts, 2);
        assert_eq!(
            deliver_due(&f.store, &sender, after(retry_at, Duration::from_secs(3600)))
                .await
                .expect("round"),
            0
        );
        assert_eq!(received.lock().expect("lock").len(), 2, "a delivered one is not sent again");
    }

    #[tokio::test]
    async fn a_sealed_secret_is_opened_to_sign() {
        let f = fixture().await;
        let (url, received) = receiver(&[]).await;
        let hook = f.webhook_stored(&url, |id| key().seal(id, SECRET)).await;
        let now = ts("2026-06-01T09:00:00Z");
        let d = f.enqueue(&hook, now).await;

        assert_eq!(deliver_due(&f.store, &sender(config(true)), now).await.expect("round"), 1);
        assert_eq!(f.delivery(&hook, d.id).await.status, DeliveryStatus::Delivered);
        let got = received.lock().expect("lock");
        assert_eq!(got.len(), 1);
        let (headers, body) = &got[0];
        assert_eq!(header(headers, "x-docket-signature"), expected_signature(SECRET, body));
    }

    #[tokio::test]
    async fn a_secret_sealed_under_another_key_fails_the_delivery_with_the_reason() {
        let f = fixture().await;
        let (url, received) = receiver(&[]).await;
        let other = SecretKey::parse(&"22".repeat(32)).expect("key");
        let hook = f.webhook_stored(&url, |id| other.seal(id, SECRET)).await;
        let mut now = ts("2026-06-01T09:00:00Z");
        let d = f.enqueue(&hook, now).await;
        let config = config(true);
        let sender = sender(config.clone());

        for attempt in 1..=config.max_attempts {
            assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
            let stored = f.delivery(&hook, d.id).await;
            let error = stored.last_error.expect("the error is recorded");
            assert_eq!(
                error, "the webhook's secret cannot be decrypted (the server key changed?)",
                "attempt {attempt}"
            );
            now = after(now, config.backoff.delay(attempt, 0.0));
        }
        assert_eq!(f.delivery(&hook, d.id).await.status, DeliveryStatus::Failed, "gave up");
        assert!(received.lock().expect("lock").is_empty(), "nothing unsigned was sent");
    }

    #[tokio::test]
    async fn a_webhook_fails_for_good_after_max_attempts() {
        let f = fixture().await;
        let mut now = ts("2026-06-01T09:00:00Z");
        let (received, hook, d) = f.hook_with_delivery(&[500, 502, 503, 200], now).await;
        let config = config(true);
        let sender = sender(config.clone());

        for attempt in 1..config.max_attempts {
            assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
            let stored = f.delivery(&hook, d.id).await;
            assert_eq!(stored.status, DeliveryStatus::Pending, "attempt {attempt}");
            now = after(now, config.backoff.delay(attempt, 0.0));
            assert_eq!(stored.next_attempt_at, Some(now), "attempt {attempt}");
        }
        assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
        let stored = f.delivery(&hook, d.id).await;
        assert_eq!(stored.status, DeliveryStatus::Failed);
        assert_eq!(stored.attempts, 3);
        assert_eq!(stored.next_attempt_at, None);
        let error = stored.last_error.expect("the last error is kept");
        assert!(error.contains("503"), "{error}");
        let later = after(now, Duration::from_secs(86_400));
        assert_eq!(deliver_due(&f.store, &sender, later).await.expect("round"), 0);
        assert_eq!(received.lock().expect("lock").len(), 3, "never sent again");
    }

    #[tokio::test]
    async fn a_private_target_is_refused_before_any_request() {
        let f = fixture().await;
        let now = ts("2026-06-01T09:00:00Z");
        let (received, hook, d) = f.hook_with_delivery(&[], now).await;
        let sender = sender(config(false));

        assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
        let stored = f.delivery(&hook, d.id).await;
        assert_eq!(stored.status, DeliveryStatus::Pending, "an attempt failed, retried later");
        let error = stored.last_error.expect("the error is recorded");
        assert!(error.contains("127.0.0.1"), "the error names the address: {error}");
        assert!(error.contains("not a public address"), "{error}");
        assert!(received.lock().expect("lock").is_empty(), "no request reached the receiver");
    }

    #[tokio::test]
    async fn an_email_without_smtp_fails_with_the_reason() {
        let f = fixture().await;
        let now = ts("2026-06-01T09:00:00Z");
        let d = NewDelivery {
            id: docket_ports::ids::new_id(),
            user_id: f.user.id,
            channel: DeliveryChannel::Email,
            webhook_id: None,
            reminder_id: None,
            event_id: "evt-mail".to_owned(),
            event_type: "com.todo.reminder.triggered".to_owned(),
            target: "ada@example.com".to_owned(),
            payload: r#"{"subject":"Tea","text":"Tea is due"}"#.to_owned(),
            created_at: now,
        };
        f.store.enqueue_deliveries(vec![d.clone()]).await.expect("enqueue");
        let sender = sender(DeliveryConfig { max_attempts: 1, ..config(true) });

        assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
        // An email has no webhook to list it under: the last claim shows it is settled.
        let later = after(now, Duration::from_secs(86_400));
        let claimed = f.store.claim_deliveries(later, Duration::from_secs(60), 10).await;
        assert!(claimed.expect("claim").is_empty(), "failed for good after its one attempt");

        // With attempts left, the reason is recorded for the next attempt.
        let again =
            NewDelivery { id: docket_ports::ids::new_id(), event_id: "evt-mail-2".to_owned(), ..d };
        f.store.enqueue_deliveries(vec![again.clone()]).await.expect("enqueue");
        let sender = self::sender(config(true));
        assert_eq!(deliver_due(&f.store, &sender, later).await.expect("round"), 1);
        let retry_at = after(later, config(true).backoff.delay(1, 0.0));
        let claimed = f.store.claim_deliveries(retry_at, Duration::from_secs(60), 10).await;
        let claimed = claimed.expect("claim");
        assert_eq!(claimed.len(), 1);
        let error = claimed[0].delivery.last_error.clone().expect("the error is recorded");
        assert!(error.contains("no SMTP relay"), "{error}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let config = DeliveryConfig {
            backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(60) },
            ..DeliveryConfig::default()
        };
        let secs = |attempt| config.backoff.delay(attempt, 0.0).as_secs();
        assert_eq!([1, 2, 3, 4, 5].map(secs), [10, 20, 40, 60, 60]);
        assert_eq!(secs(0), 10, "attempt 0 counts as the first");
        assert_eq!(secs(40), 60, "large attempts stay capped");
        assert_eq!(secs(u32::MAX), 60, "no overflow");
        let defaults = DeliveryConfig::default();
        assert_eq!(defaults.backoff.delay(1, 0.0), defaults.backoff.base);
        assert_eq!(defaults.backoff.delay(100, 0.0), defaults.backoff.max);
    }

    #[tokio::test]
    async fn a_retry_waits_the_backoff_less_the_drawn_jitter() {
        let f = fixture().await;
        let now = ts("2026-06-01T09:00:00Z");
        let (_received, hook, d) = f.hook_with_delivery(&[], now).await;
        // A refused (private) target fails the first attempt: its wait is the 10 s ceiling
        // less 0.5 of its half.
        let sender = sender(DeliveryConfig { jitter: || 0.5, ..config(false) });

        assert_eq!(deliver_due(&f.store, &sender, now).await.expect("round"), 1);
        let stored = f.delivery(&hook, d.id).await;
        assert_eq!(stored.status, DeliveryStatus::Pending);
        assert_eq!(stored.next_attempt_at, Some(after(now, Duration::from_millis(7500))));
    }
}
