//! Webhooks and deliveries (§2.5, §6): a user's webhook subscribes a URL to event types; a
//! delivery is one message (an email, a webhook POST) the notifier owes to an outside
//! channel, retried with backoff until it is delivered or gives up, never dropped silently.

use crate::names::named;
use crate::task::patch;
use crate::{DeliveryId, ReminderId, Timestamp, UserId, WebhookId};

/// A user's webhook. Its secret is not part of it: it is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub user_id: UserId,
    pub url: String,
    /// The event types (`com.todo.*`) it receives, sorted, without repeats.
    pub events: Vec<String>,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What creating a webhook stores (checked by the use case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Chosen by the caller, so the secret can be sealed to it before it is stored.
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    /// The HMAC key of `X-Docket-Signature`, as stored: opaque to the store (the application
    /// keeps it sealed with the server key).
    pub secret: String,
    pub active: bool,
}

/// A change to a webhook; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
}

impl WebhookPatch {
    /// Applies the fields given to `hook`, which was changed at `now` (the one place a
    /// webhook update is applied, so every store applies it alike).
    pub fn apply(self, hook: &mut Webhook, now: Timestamp) {
        patch(&mut hook.url, self.url);
        patch(&mut hook.events, self.events);
        patch(&mut hook.active, self.active);
        hook.updated_at = now;
    }
}

/// The outside channel a delivery goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryChannel {
    Email,
    Webhook,
}

named!(DeliveryChannel { Email => "email", Webhook => "webhook" });

impl DeliveryChannel {
    /// Parses a stored channel; `None` for anything else.
    pub fn from_db(s: &str) -> Option<DeliveryChannel> {
        DeliveryChannel::from_name(s)
    }
}

/// Where a delivery is: `pending` (waiting for its next attempt) → `delivered` | `failed`
/// (it gave up after its last attempt); `failed → pending` only when retried on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

named!(DeliveryStatus { Pending => "pending", Delivered => "delivered", Failed => "failed" });

impl DeliveryStatus {
    /// Parses a stored status; `None` for anything else.
    pub fn from_db(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::from_name(s)
    }
}

/// A delivery to enqueue: unique per (`event_id`, `channel`, `target`), so a redelivered
/// event enqueues nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub user_id: UserId,
    pub channel: DeliveryChannel,
    /// The webhook it goes to (webhook channel).
    pub webhook_id: Option<WebhookId>,
    /// The reminder that caused it, if one did: its status follows the delivery's outcome.
    pub reminder_id: Option<ReminderId>,
    pub event_id: String,
    pub event_type: String,
    /// The URL or the email address, as it was when the delivery was made.
    pub target: String,
    /// What is sent: the JSON body of a webhook POST, or the JSON `{subject, text}` of an email.
    pub payload: String,
    pub created_at: Timestamp,
}

/// A delivery and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub user_id: UserId,
    pub channel: DeliveryChannel,
    pub webhook_id: Option<WebhookId>,
    pub reminder_id: Option<ReminderId>,
    pub event_id: String,
    pub event_type: String,
    pub target: String,
    pub payload: String,
    pub status: DeliveryStatus,
    /// Attempts started so far (a claim counts one, so a crash mid-send is counted).
    pub attempts: i32,
    /// When it is next tried (while pending).
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// How one attempt of a claimed delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// It failed and is tried again at `at`.
    Retry {
        error: String,
        at: Timestamp,
    },
    /// It failed for the last time: the delivery and its reminder become `failed`.
    GiveUp {
        error: String,
    },
}
