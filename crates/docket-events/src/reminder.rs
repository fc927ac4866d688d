//! The `com.todo.reminder.triggered` event (§5), on the `reminders` topic: what the notifier
//! consumes; and the `com.todo.notification.created` event the notifier appends for the
//! real-time stream. Built by the store in the transaction that claims the reminder, so a reminder
//! fires (and is announced) exactly once.

use docket_core::{Notification, Reminder, ReminderStatus, Task, Trigger};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{CloudEvent, Origin};
use crate::payload::TaskV1;
use crate::task::OutboxEvent;
use crate::{topics, types};

/// A reminder on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderV1 {
    pub id: Uuid,
    pub task_id: Uuid,
    pub user_id: Uuid,
    /// `{"at": instant}` or `{"before_due": "PT15M"}`.
    pub trigger: serde_json::Value,
    /// `in_app`, `email`, `webhook`.
    pub channels: Vec<String>,
    /// `pending`, `fired`, `canceled` or `failed`.
    pub status: String,
    pub fire_at: Option<Timestamp>,
    pub fired_at: Option<Timestamp>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// The trigger as JSON: `{"at": "…Z"}` or `{"before_due": "PT15M"}`.
pub fn trigger_json(trigger: &Trigger) -> serde_json::Value {
    match trigger {
        Trigger::At(t) => serde_json::json!({ "at": t.to_string() }),
        Trigger::BeforeDue(o) => serde_json::json!({ "before_due": o.to_iso() }),
    }
}

impl From<&Reminder> for ReminderV1 {
    fn from(r: &Reminder) -> ReminderV1 {
        ReminderV1 {
            id: r.id.0,
            task_id: r.task_id.0,
            user_id: r.user_id.0,
            trigger: trigger_json(&r.trigger),
            channels: r.channels.as_slice().iter().map(|c| c.as_str().to_owned()).collect(),
            status: r.status.as_str().to_owned(),
            fire_at: r.fire_at,
            fired_at: r.fired_at,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            created_at: r.created_at,
        }
    }
}

/// The data of a `reminder.triggered` event: the reminder as fired and its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderTriggeredV1 {
    pub reminder: ReminderV1,
    pub task: TaskV1,
}

/// The event announcing that `reminder` (now fired) of `task` fired (at `origin.time`).
pub fn reminder_triggered(reminder: &Reminder, task: &Task, origin: Origin<'_>) -> OutboxEvent {
    debug_assert_eq!(reminder.status, ReminderStatus::Fired);
    let data = ReminderTriggeredV1 { reminder: reminder.into(), task: task.into() };
    let event = CloudEvent::produced(
        origin,
        types::REMINDER_TRIGGERED,
        task.id.to_string(),
        task.user_id.to_string(),
        serde_json::to_value(data).expect("payload types always serialize"),
    );
    OutboxEvent { topic: topics::REMINDERS, event }
}

/// A notification on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationV1 {
    pub id: Uuid,
    pub user_id: Uuid,
    pub task_id: Option<Uuid>,
    pub reminder_id: Option<Uuid>,
    pub title: String,
    pub body: String,
    pub created_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

impl From<&Notification> for NotificationV1 {
    fn from(n: &Notification) -> NotificationV1 {
        NotificationV1 {
            id: n.id.0,
            user_id: n.user_id.0,
            task_id: n.task_id.map(|t| t.0),
            reminder_id: n.reminder_id.map(|r| r.0),
            title: n.title.clone(),
            body: n.body.clone(),
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

/// The `com.todo.notification.created` event of `n`, on `task-updates`: real-time clients
/// (the web UI raises a browser notification) are its audience.
pub fn notification_created(n: &Notification, origin: Origin<'_>) -> OutboxEvent {
    let event = CloudEvent::produced(
        origin,
        types::NOTIFICATION_CREATED,
        n.id.to_string(),
        n.user_id.to_string(),
        serde_json::json!({ "notification": NotificationV1::from(n) }),
    );
    OutboxEvent { topic: topics::TASK_UPDATES, event }
}
