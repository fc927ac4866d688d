//! Webhooks and deliveries (§2.5, §6) in both stores.
//!
//! * A webhook belongs to a user; reads and writes are scoped by owner (another user's webhook
//!   is `NotFound`). Its secret is stored to sign deliveries and is never read back by the API.
//! * A delivery is one message owed to an outside channel. Consumers enqueue deliveries inside
//!   their own transaction (`enqueue`), unique per (event, channel, target), so a redelivered
//!   event enqueues nothing twice.
//! * The delivery worker claims due pending deliveries: the claim counts an attempt and moves
//!   `next_attempt_at` a lease ahead in one statement (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL), so two workers never hold the same delivery, and one that died mid-send is
//!   tried again when its lease runs out (at least once; receivers dedupe on the delivery id).
//! * Settling: `Delivered` ends it; `Retry` records the error and the next attempt's time;
//!   `GiveUp` makes it `failed`. A failed attempt records its error on the reminder that
//!   caused the delivery (`attempts`, `last_error`), and giving up moves that reminder from
//!   `fired` to `failed`; when a retried delivery then succeeds and none of the reminder's
//!   deliveries is still failed, the reminder is `fired` again.

// The PostgreSQL side lives in `crate::postgres::webhooks` (it needs that adapter's codec).

use docket_core::Delivery;

/// Most deliveries one list returns.
pub const MAX_LIST: usize = 200;

/// A claimed delivery and, for the webhook channel, the webhook's secret to sign it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub secret: Option<String>,
}

/// A user's webhook that receives events of some type: where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: docket_core::WebhookId,
    pub url: String,
}

/// Events as stored on SQLite: a JSON array of strings.
pub fn events_json(events: &[String]) -> String {
    serde_json::Value::from(events.to_vec()).to_string()
}
