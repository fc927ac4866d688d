//! The notifier consumer (§5, §6): turns each `com.todo.reminder.triggered` event of the
//! `reminders` topic into its deliveries. The `in_app` channel is an in-app notification,
//! appended with its `notification.created` event (so it reaches the real-time stream) inside
//! the consumer runtime's transaction, together with the `processed:` key.
//!
//! Idempotent twice over: the runtime skips an event whose `processed:` key exists, and a
//! notification is unique per causing event id. An event whose data does not parse is
//! poison (`Permanent`, dead-lettered). Email and webhook channels are not delivered yet:
//! the HTTP edge refuses reminders that ask for them.

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, HandlerError, PgHandler, SqliteHandler};
use docket_core::{Notification, NotificationId, ReminderId, TaskId, UserId};
use docket_events::{CloudEvent, ReminderTriggeredV1, topics, types};
use docket_store::{notifications, postgres};
use futures::FutureExt as _;

/// The notifier's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "notifier";

/// The `source` of the events the notifier appends.
pub const SOURCE: &str = "/docket/worker";

/// The notifier's configuration: group `notifier` on `reminders`, position committed in the
/// handler's transaction.
pub fn config() -> ConsumerConfig {
    let mut config = ConsumerConfig::new(CONSUMER, topics::REMINDERS);
    config.position_in_transaction = true;
    config
}

/// The in-app notification `event` asks for, `None` when it asks for none (or is not a
/// reminder event).
pub fn in_app(event: &CloudEvent) -> Result<Option<Notification>, HandlerError> {
    if event.ty != types::REMINDER_TRIGGERED {
        return Ok(None);
    }
    let data: ReminderTriggeredV1 = event
        .data_as()
        .map_err(|e| HandlerError::Permanent(format!("event {} ({}): {e}", event.id, event.ty)))?;
    if !data.reminder.channels.iter().any(|c| c == "in_app") {
        return Ok(None);
    }
    let body = match data.task.due_date {
        Some(due) => format!("Reminder: due {}", due.strftime("%Y-%m-%d %H:%M UTC")),
        None => "Reminder".to_owned(),
    };
    let created_at = docket_core::time::truncate_micros(
        data.reminder.fired_at.or(event.time).unwrap_or_else(jiff::Timestamp::now),
    );
    Ok(Some(Notification {
        id: NotificationId::new(),
        user_id: UserId(data.task.user_id),
        task_id: Some(TaskId(data.task.id)),
        reminder_id: Some(ReminderId(data.reminder.id)),
        title: data.task.title,
        body,
        created_at,
        read_at: None,
    }))
}

fn transient(e: docket_store::StoreError) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

/// The handler for a `SqliteProcessor`.
pub fn sqlite_handler() -> Arc<SqliteHandler> {
    Arc::new(|tx, event| {
        if let Some(n) = in_app(event)? {
            notifications::sqlite::append(tx, &n, &event.id, SOURCE).map_err(transient)?;
        }
        Ok(())
    })
}

/// The handler for a `PgProcessor`.
pub fn pg_handler() -> Arc<PgHandler> {
    Arc::new(|conn, event| {
        async move {
            if let Some(n) = in_app(event)? {
                postgres::notifications::append(conn, &n, &event.id, SOURCE)
                    .await
                    .map_err(transient)?;
            }
            Ok(())
        }
        .boxed()
    })
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
