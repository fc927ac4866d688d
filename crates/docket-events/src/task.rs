//! From a task change to the events the outbox stores: [`task_events`], pure.
//!
//! The store decides which change a write was (it has the before and after images inside its
//! transaction) and appends what this returns in that same transaction. Everything not in
//! the change, the event's id included, comes in its `Origin`.

use docket_core::{Status, Task};

use crate::envelope::{CloudEvent, Origin};
use crate::payload::{TaskDeletedV1, TaskEventDataV1, TaskV1, changes};
use crate::{topics, types};

/// What a task write did, with the images the events are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChange<'a> {
    Created(&'a Task),
    Updated { before: &'a Task, after: &'a Task },
    Completed { before: &'a Task, after: &'a Task },
    Reopened { before: &'a Task, after: &'a Task },
    Deleted(&'a Task),
}

impl<'a> TaskChange<'a> {
    /// The change from `before` to `after` of one update: `None` when nothing changed,
    /// `Completed`/`Reopened` when the status moved (whatever else changed with it), else
    /// `Updated`.
    pub fn update(before: &'a Task, after: &'a Task) -> Option<TaskChange<'a>> {
        if before == after {
            return None;
        }
        Some(match (before.status, after.status) {
            (Status::Pending, Status::Completed) => TaskChange::Completed { before, after },
            (Status::Completed, Status::Pending) => TaskChange::Reopened { before, after },
            _ => TaskChange::Updated { before, after },
        })
    }

    /// The CloudEvent type of this change.
    pub fn event_type(&self) -> &'static str {
        match self {
            TaskChange::Created(_) => types::TASK_CREATED,
            TaskChange::Updated { .. } => types::TASK_UPDATED,
            TaskChange::Completed { .. } => types::TASK_COMPLETED,
            TaskChange::Reopened { .. } => types::TASK_REOPENED,
            TaskChange::Deleted(_) => types::TASK_DELETED,
        }
    }

    fn task(&self) -> &'a Task {
        match *self {
            TaskChange::Created(t) | TaskChange::Deleted(t) => t,
            TaskChange::Updated { after, .. }
            | TaskChange::Completed { after, .. }
            | TaskChange::Reopened { after, .. } => after,
        }
    }
}

/// One event to append to the outbox, on `topic`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub topic: &'static str,
    pub event: CloudEvent,
}

/// The `source` of the events of a process role: `/docket/{role}` (`api`, `worker`, …).
pub fn source(role: &str) -> String {
    format!("/docket/{role}")
}

/// The events of one task change, stamped by `origin`: one event on `task-events` (which is
/// also the log of `task-updates`, see `topics`).
pub fn task_events(change: TaskChange<'_>, origin: Origin<'_>) -> Vec<OutboxEvent> {
    let task = change.task();
    let data = match change {
        TaskChange::Created(t) => {
            serde_json::to_value(TaskEventDataV1 { task: TaskV1::from(t), changes: None })
        }
        TaskChange::Updated { before, after }
        | TaskChange::Completed { before, after }
        | TaskChange::Reopened { before, after } => {
            let after = TaskV1::from(after);
            let changes = changes(&TaskV1::from(before), &after);
            serde_json::to_value(TaskEventDataV1 { task: after, changes: Some(changes) })
        }
        TaskChange::Deleted(t) => serde_json::to_value(TaskDeletedV1 {
            task_id: t.id.0,
            user_id: t.user_id.0,
            title: t.title.as_str().to_owned(),
        }),
    }
    .expect("payload types always serialize");
    let event = CloudEvent::produced(
        origin,
        change.event_type(),
        task.id.to_string(),
        task.user_id.to_string(),
        data,
    );
    vec![OutboxEvent { topic: topics::TASK_EVENTS, event }]
}
