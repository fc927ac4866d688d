//! The notifier consumer (§5, §6): turns each `com.todo.reminder.triggered` event of the
//! `reminders` topic into its deliveries, as effects ([`handle`]) the store commits together
//! with the consumer's `processed:` key. The `in_app` channel is an in-app notification,
//! appended with its `notification.created` event (so it reaches the real-time stream).
//!
//! The `email` channel enqueues one delivery to the owner's address and the `webhook` channel
//! one per active webhook of the owner subscribed to `com.todo.reminder.triggered` (both
//! looked up by the store in that transaction); the delivery worker (`crate::delivery`) sends
//! them with retries. A reminder asking for a channel with nowhere to go (webhooks when its
//! owner has none subscribed, email when the owner is gone) is marked `failed` with that
//! reason at once (one failed attempt, the webhook reason when both are missing): nothing is
//! dropped silently.
//!
//! Idempotent twice over: the runtime skips an event whose `processed:` key exists, and a
//! notification is unique per causing event id, a delivery per (event, channel, target). An
//! event whose data does not parse is poison (`Permanent`, dead-lettered).

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, Handler, HandlerError};
use docket_core::{Notification, NotificationId, ReminderId, TaskId, UserId};
use docket_events::{CloudEvent, ReminderTriggeredV1, topics, types};
use docket_ports::consume::{DeliveryTemplate, Effect, Recipients, ReminderFailure};

/// The notifier's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "notifier";

/// The `source` of the events the notifier appends.
pub const SOURCE: &str = "/docket/worker";

/// The notifier's configuration: group `notifier` on `reminders`, position committed in the
/// handler's transaction.
pub fn config() -> ConsumerConfig {
    crate::consumer_config(CONSUMER, topics::REMINDERS)
}

/// What a reminder event asks the notifier for.
struct Asks {
    data: ReminderTriggeredV1,
    in_app: bool,
    email: bool,
    webhook: bool,
}

/// The reminder data `event` carries and its channels; `None` for any other event.
fn asks(event: &CloudEvent) -> Result<Option<Asks>, HandlerError> {
    if event.ty != types::REMINDER_TRIGGERED {
        return Ok(None);
    }
    let data: ReminderTriggeredV1 = event
        .data_as()
        .map_err(|e| HandlerError::Permanent(format!("event {} ({}): {e}", event.id, event.ty)))?;
    let has = |c: &str| data.reminder.channels.iter().any(|x| x == c);
    Ok(Some(Asks { in_app: has("in_app"), email: has("email"), webhook: has("webhook"), data }))
}

fn fired_at(data: &ReminderTriggeredV1, event: &CloudEvent) -> jiff::Timestamp {
    docket_core::time::truncate_micros(
        data.reminder.fired_at.or(event.time).unwrap_or_else(jiff::Timestamp::now),
    )
}

/// "Reminder: due …" in the task's zone when it has one, else UTC.
fn due_line(data: &ReminderTriggeredV1) -> String {
    let Some(due) = data.task.due_date else {
        return "Reminder".to_owned();
    };
    match data.task.timezone.as_deref().and_then(|z| jiff::tz::TimeZone::get(z).ok()) {
        Some(tz) => format!(
            "Reminder: due {} ({})",
            due.to_zoned(tz).strftime("%Y-%m-%d %H:%M"),
            data.task.timezone.as_deref().unwrap_or("UTC")
        ),
        None => format!("Reminder: due {}", due.strftime("%Y-%m-%d %H:%M UTC")),
    }
}

fn notification(data: &ReminderTriggeredV1, event: &CloudEvent) -> Notification {
    Notification {
        id: docket_ports::ids::new_id(),
        user_id: UserId(data.task.user_id),
        task_id: Some(TaskId(data.task.id)),
        reminder_id: Some(ReminderId(data.reminder.id)),
        title: data.task.title.clone(),
        body: due_line(data),
        created_at: fired_at(data, event),
        read_at: None,
    }
}

/// The email a reminder sends: `{"subject", "text"}`, the delivery's payload.
pub fn email_payload(data: &ReminderTriggeredV1) -> String {
    let mut text = format!("{}\n\n{}\n", data.task.title, due_line(data));
    if let Some(d) = data.task.description.as_deref().filter(|d| !d.is_empty()) {
        text.push('\n');
        text.push_str(d);
        text.push('\n');
    }
    text.push_str(&format!("\nTask: {}\nReminder: {}\n", data.task.id, data.reminder.id));
    serde_json::json!({ "subject": format!("Reminder: {}", data.task.title), "text": text })
        .to_string()
}

/// The notifier's decision: the notification and deliveries a fired reminder asks for, and
/// the failure to record for each channel that finds nowhere to go; nothing for other events.
pub fn handle(event: &CloudEvent) -> Result<Vec<Effect>, HandlerError> {
    let Some(a) = asks(event)? else {
        return Ok(Vec::new());
    };
    let data = &a.data;
    let mut effects = Vec::new();
    if a.in_app {
        effects.push(Effect::AddNotification {
            notification: notification(data, event),
            source_event: event.id.clone(),
            source: SOURCE.to_owned(),
        });
    }
    let template = |payload: String| DeliveryTemplate {
        user_id: UserId(data.task.user_id),
        reminder_id: Some(ReminderId(data.reminder.id)),
        event_id: event.id.clone(),
        event_type: event.ty.clone(),
        payload,
        created_at: fired_at(data, event),
    };
    let failure = |error: String| ReminderFailure {
        reminder: ReminderId(data.reminder.id),
        error,
        give_up: true,
    };
    if a.email {
        effects.push(Effect::Deliver {
            to: Recipients::OwnerEmail,
            delivery: template(email_payload(data)),
            if_none: Some(failure("the reminder's owner has no email address".to_owned())),
        });
    }
    if a.webhook {
        let body = serde_json::to_string(event)
            .map_err(|e| HandlerError::Permanent(format!("event {}: {e}", event.id)))?;
        effects.push(Effect::Deliver {
            to: Recipients::Webhooks { event_type: types::REMINDER_TRIGGERED.to_owned() },
            delivery: template(body),
            if_none: Some(failure(format!(
                "no active webhook of the owner receives {}",
                types::REMINDER_TRIGGERED
            ))),
        });
    }
    Ok(effects)
}

/// [`handle`] as the runtime's handler.
pub fn handler() -> Arc<Handler> {
    Arc::new(handle)
}

impl crate::App {
    /// The caller's notifications, newest first.
    pub async fn list_notifications(
        &self,
        user: &docket_core::User,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, crate::AppError> {
        Ok(self.store.list_notifications(user.id, unread_only, limit).await?)
    }

    pub async fn mark_notification_read(
        &self,
        user: &docket_core::User,
        id: NotificationId,
    ) -> Result<Notification, crate::AppError> {
        Ok(self.store.mark_notification_read(user.id, id, self.clock.now()).await?)
    }

    /// Marks all the caller's notifications read; returns how many were unread.
    pub async fn mark_all_notifications_read(
        &self,
        user: &docket_core::User,
    ) -> Result<u64, crate::AppError> {
        Ok(self.store.mark_all_notifications_read(user.id, self.clock.now()).await?)
    }
}
