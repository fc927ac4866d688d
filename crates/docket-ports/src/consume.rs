//! The consumer port: a consumer decides what an event should cause as declarative
//! [`Effect`]s, and the store commits them, the consumer's `processed:{consumer}:{event_id}`
//! key (TTL [`PROCESSED_TTL`]) and, when asked, the group's position in one transaction
//! ([`ConsumerStore::commit_consumed`]).
//!
//! Effects that depend on data (the owner's address, the owner's webhooks subscribed to a
//! type) name what they need ([`Recipients`]) and are evaluated by the adapter inside that
//! same transaction; what they turn into is decided here once, for both dialects
//! ([`DeliveryTemplate::deliveries`], [`Failures`]). The adapters (`sqlite.rs`,
//! `postgres.rs`) only load and persist, with the per-table functions the rest of the crate
//! already has. This module does not run consumers, retry them or read the bus: that is the
//! consumer runtime's job (`docket-bus`).

use std::time::Duration;

use async_trait::async_trait;
use docket_core::{
    DeliveryChannel, NewDelivery, Notification, ReminderId, SeriesId, TaskId, Timestamp, UserId,
    WebhookId,
};
use docket_events::CloudEvent;

use crate::webhooks::Subscriber;
use crate::{AuditEntry, StateError, StateKey, StoreError};

/// How long a `processed:` key lives.
pub const PROCESSED_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The key `processed:{consumer}:{event_id}`.
pub fn processed_key(consumer: &str, event_id: &str) -> Result<StateKey, StateError> {
    StateKey::parse(&format!("processed:{consumer}:{event_id}"))
}

/// [`processed_key`] for an adapter: a key that breaks the rules commits nothing.
pub fn key(consumer: &str, event_id: &str) -> Result<StateKey, StoreError> {
    Ok(processed_key(consumer, event_id)?)
}

/// What committing a consumed event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// The effects committed with the `processed:` key.
    Handled,
    /// The `processed:` key existed: the event was handled before; nothing was done.
    Duplicate,
}

/// Where a group stands in a topic: committed with the effects when the bus keeps its
/// positions in the same database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub seq: i64,
}

/// One thing an event causes, applied by [`ConsumerStore::commit_consumed`] in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Appends an audit entry (nothing when its event already has one).
    AppendAudit(AuditEntry),
    /// Appends an in-app notification caused by event `source_event`, and its
    /// `notification.created` event with `source` (nothing when that event already made one).
    AddNotification { notification: Notification, source_event: String, source: String },
    /// Enqueues one delivery of `delivery` to each of `to` (none already enqueued for the same
    /// event, channel and target); when `to` has nobody, records `if_none` instead.
    Deliver { to: Recipients, delivery: DeliveryTemplate, if_none: Option<ReminderFailure> },
    /// Records a failed attempt on a reminder.
    RecordReminderFailure(ReminderFailure),
    /// Makes the next instance of an `after_completion` series after one was completed.
    SpawnNextInstance(NextInstance),
    /// Appends `event` to `topic`'s log.
    Publish { topic: String, event: CloudEvent },
}

/// Who a [`Effect::Deliver`] goes to, looked up in the committing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// The email address of the delivery's user (nobody when the user is gone).
    OwnerEmail,
    /// Every active webhook of the delivery's user that receives events of `event_type`,
    /// oldest first.
    Webhooks { event_type: String },
}

impl Recipients {
    fn channel(&self) -> DeliveryChannel {
        match self {
            Recipients::OwnerEmail => DeliveryChannel::Email,
            Recipients::Webhooks { .. } => DeliveryChannel::Webhook,
        }
    }
}

/// A recipient found for [`Recipients`]: the webhook (for that channel) and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub webhook: Option<WebhookId>,
    pub address: String,
}

impl Target {
    /// The owner's address, when the owner is still there.
    pub fn email(address: Option<String>) -> Vec<Target> {
        address.map(|address| Target { webhook: None, address }).into_iter().collect()
    }

    /// The subscribed webhooks, in the order found.
    pub fn webhooks(subscribers: Vec<Subscriber>) -> Vec<Target> {
        subscribers.into_iter().map(|s| Target { webhook: Some(s.id), address: s.url }).collect()
    }
}

/// A delivery without its channel and target: what every recipient gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTemplate {
    pub user_id: UserId,
    /// The reminder that caused it, if one did.
    pub reminder_id: Option<ReminderId>,
    pub event_id: String,
    pub event_type: String,
    /// The JSON body of a webhook POST, or the JSON `{subject, text}` of an email.
    pub payload: String,
    pub created_at: Timestamp,
}

impl DeliveryTemplate {
    /// One new delivery per target, each with its own id.
    pub fn deliveries(&self, to: &Recipients, targets: Vec<Target>) -> Vec<NewDelivery> {
        let channel = to.channel();
        targets
            .into_iter()
            .map(|t| NewDelivery {
                id: crate::ids::new_id(),
                user_id: self.user_id,
                channel,
                webhook_id: t.webhook,
                reminder_id: self.reminder_id,
                event_id: self.event_id.clone(),
                event_type: self.event_type.clone(),
                target: t.address,
                payload: self.payload.clone(),
                created_at: self.created_at,
            })
            .collect()
    }
}

/// A failed attempt to record on a reminder; `give_up` also moves it from `fired` to
/// `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderFailure {
    pub reminder: ReminderId,
    pub error: String,
    pub give_up: bool,
}

/// The reminder failures one commit records: one attempt per reminder, however many effects
/// named it, with the last error named and giving up if any did. Recorded after every other
/// effect of the commit.
#[derive(Debug, Default)]
pub struct Failures(Vec<ReminderFailure>);

impl Failures {
    pub fn note(&mut self, f: ReminderFailure) {
        match self.0.iter_mut().find(|x| x.reminder == f.reminder) {
            Some(x) => {
                x.give_up |= f.give_up;
                x.error = f.error;
            }
            None => self.0.push(f),
        }
    }

    pub fn into_vec(self) -> Vec<ReminderFailure> {
        self.0
    }

    /// What an [`Effect::Deliver`] writes once its recipients are known: a delivery to each
    /// (returned, to enqueue), or, when there is none, its `if_none` failure (noted here).
    pub fn deliver(
        &mut self,
        to: &Recipients,
        delivery: &DeliveryTemplate,
        if_none: Option<ReminderFailure>,
        targets: Vec<Target>,
    ) -> Vec<NewDelivery> {
        let new = delivery.deliveries(to, targets);
        if let Some(f) = if_none.filter(|_| new.is_empty()) {
            self.note(f);
        }
        new
    }
}

/// A completed instance of a series, and when and by whom its successor is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextInstance {
    pub user: UserId,
    pub series: SeriesId,
    /// The completed instance's `instance_date`.
    pub instance_date: String,
    pub completed: TaskId,
    pub due: Option<Timestamp>,
    pub completed_at: Timestamp,
    /// The new instance's creation time.
    pub at: Timestamp,
    /// The `source` of the `task.created` event of the new instance.
    pub source: String,
}

impl NextInstance {
    /// The instance after `completion` of the user's series `series`, made at `at`: what a
    /// series catching up on a completion (resume, a completed task joining it) asks for, as
    /// the consumer asks for it after a completion event.
    pub fn after(
        user: UserId,
        series: SeriesId,
        completion: docket_core::plan::series::Completion,
        at: Timestamp,
        source: &str,
    ) -> NextInstance {
        NextInstance {
            user,
            series,
            instance_date: completion.instance_date.to_string(),
            completed: completion.task,
            due: completion.due,
            completed_at: completion.completed_at,
            at,
            source: source.to_owned(),
        }
    }
}

/// The consumer port (implemented by [`crate::sqlite::SqliteStore`] and
/// [`crate::postgres::PostgresStore`]).
///
/// # Contract
/// * `commit_consumed` MUST apply every effect, write `processed:{consumer}:{event_id}` with
///   TTL [`PROCESSED_TTL`] and, with `position`, commit the consumer group's position in that
///   topic (never moving it back) in one transaction: all of them or none.
/// * When the key exists (and has not expired) at `now`, it MUST apply nothing and return
///   [`Consumed::Duplicate`].
/// * An effect that fails MUST roll back the whole commit, key and position included, and
///   return the error.
/// * Data-dependent effects ([`Effect::Deliver`]) MUST be evaluated inside the committing
///   transaction.
/// * `consumed` MUST say whether the key exists at `now`; it is an early look (the commit
///   checks again).
#[async_trait]
pub trait ConsumerStore: Send + Sync {
    /// Whether `consumer` already handled event `event_id`.
    async fn consumed(
        &self,
        consumer: &str,
        event_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Commits `effects` as `consumer`'s handling of event `event_id` (see the contract).
    async fn commit_consumed(
        &self,
        consumer: &str,
        event_id: &str,
        position: Option<Position>,
        effects: Vec<Effect>,
        now: Timestamp,
    ) -> Result<Consumed, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(reminder: ReminderId, error: &str, give_up: bool) -> ReminderFailure {
        ReminderFailure { reminder, error: error.to_owned(), give_up }
    }

    #[test]
    fn failures_count_one_attempt_per_reminder_with_the_last_error() {
        let (a, b) = (crate::ids::new_id(), crate::ids::new_id());
        let mut f = Failures::default();
        f.note(failure(a, "no email", true));
        f.note(failure(b, "other", false));
        f.note(failure(a, "no webhook", false));
        assert_eq!(f.into_vec(), vec![failure(a, "no webhook", true), failure(b, "other", false)]);
    }

    #[test]
    fn a_delivery_with_nobody_to_go_to_notes_its_failure() {
        let r = crate::ids::new_id();
        let template = DeliveryTemplate {
            user_id: UserId(uuid::Uuid::now_v7()),
            reminder_id: Some(r),
            event_id: "e1".to_owned(),
            event_type: "com.todo.reminder.triggered".to_owned(),
            payload: "{}".to_owned(),
            created_at: Timestamp::UNIX_EPOCH,
        };
        let mut f = Failures::default();
        let found = Target::email(Some("a@example.com".to_owned()));
        let sent =
            f.deliver(&Recipients::OwnerEmail, &template, Some(failure(r, "x", true)), found);
        assert_eq!(sent.len(), 1);
        let none = f.deliver(
            &Recipients::OwnerEmail,
            &template,
            Some(failure(r, "gone", true)),
            Target::email(None),
        );
        assert!(none.is_empty());
        assert_eq!(f.into_vec(), vec![failure(r, "gone", true)], "only the undeliverable one");
    }

    #[test]
    fn a_template_makes_one_delivery_per_target() {
        let template = DeliveryTemplate {
            user_id: UserId(uuid::Uuid::now_v7()),
            reminder_id: None,
            event_id: "e1".to_owned(),
            event_type: "com.todo.task.created".to_owned(),
            payload: "{}".to_owned(),
            created_at: Timestamp::UNIX_EPOCH,
        };
        let hooks = Recipients::Webhooks { event_type: "com.todo.task.created".to_owned() };
        let (w1, w2) = (crate::ids::new_id(), crate::ids::new_id());
        let targets = vec![
            Target { webhook: Some(w1), address: "https://a.example".to_owned() },
            Target { webhook: Some(w2), address: "https://b.example".to_owned() },
        ];
        let got = template.deliveries(&hooks, targets);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0].id, got[1].id, "each delivery has its own id");
        assert_eq!(
            got.iter().map(|d| (d.channel, d.webhook_id, d.target.as_str())).collect::<Vec<_>>(),
            vec![
                (DeliveryChannel::Webhook, Some(w1), "https://a.example"),
                (DeliveryChannel::Webhook, Some(w2), "https://b.example"),
            ]
        );
        let email = template.deliveries(
            &Recipients::OwnerEmail,
            vec![Target { webhook: None, address: "a@example.com".to_owned() }],
        );
        assert_eq!(email[0].channel, DeliveryChannel::Email);
        assert!(template.deliveries(&Recipients::OwnerEmail, Vec::new()).is_empty());
    }
}
