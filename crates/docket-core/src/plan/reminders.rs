//! Reminder rules (DESIGN §2.4) a task write applies to the task's reminders, decided here
//! once for every store.
//!
//! * a new reminder is pending, or canceled while its task is completed (reopening re-arms
//!   it); its `fire_at` comes from its trigger and the due date, counted in the task's zone,
//!   else its owner's;
//! * a due date or time zone change recomputes `fire_at` of the task's relative reminders
//!   (`before_due`) that are pending or canceled;
//! * completing the task cancels its pending reminders; reopening re-arms the canceled ones
//!   whose `fire_at` (after the recomputation) is still after `now`.
//!
//! Cancel and re-arm are written as one statement per task (no reminder is loaded for them),
//! so a completion costs no read; the recomputation needs the reminders and the owner's zone,
//! which the store loads only when [`reminders_must_follow`] says so.

use crate::ids::{ReminderId, TaskId};
use crate::reminder::{NewReminder, Reminder, ReminderStatus, Trigger};
use crate::task::{Status, Task};
use crate::time::{Timestamp, Zone};

/// One write to the reminders of a task, in the order a change set lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderWrite {
    /// Set the `fire_at` of reminder `id`.
    FireAt { id: ReminderId, fire_at: Option<Timestamp> },
    /// Every pending reminder of `task` becomes canceled.
    CancelPending { task: TaskId },
    /// Every canceled reminder of `task` whose `fire_at` is after `after` becomes pending.
    RearmCanceled { task: TaskId, after: Timestamp },
}

/// The zone a relative reminder counts days in: the task's, else its owner's, else UTC.
pub fn effective_zone(task: &Task, user_zone: Option<Zone>) -> Option<Zone> {
    task.timezone.clone().or(user_zone)
}

/// New reminder `id` of `task` (the owner's zone given): pending, or canceled while the task
/// is completed (reopening re-arms it); `fire_at` from the trigger and the due date.
pub fn planned(
    id: ReminderId,
    task: &Task,
    new: NewReminder,
    user_zone: Option<Zone>,
    now: Timestamp,
) -> Reminder {
    let zone = effective_zone(task, user_zone);
    Reminder {
        id,
        task_id: task.id,
        user_id: task.user_id,
        fire_at: new.trigger.fire_at(task.due_date, zone.as_ref()),
        trigger: new.trigger,
        channels: new.channels,
        status: match task.status {
            Status::Pending => ReminderStatus::Pending,
            Status::Completed => ReminderStatus::Canceled,
        },
        fired_at: None,
        attempts: 0,
        last_error: None,
        created_at: now,
    }
}

/// True when the write `before → after` moves relative fire times: the store then loads the
/// task's reminders and its owner's zone for [`plan_reminders_on_task_change`].
pub fn reminders_must_follow(before: &Task, after: &Task) -> bool {
    before.due_date != after.due_date || before.timezone != after.timezone
}

/// The writes to the reminders of `after` that the task write `before → after` implies;
/// `reminders` are the task's reminders and `user_zone` its owner's zone, loaded when
/// [`reminders_must_follow`] (otherwise nothing of them is read).
pub fn plan_reminders_on_task_change(
    before: &Task,
    after: &Task,
    reminders: &[Reminder],
    user_zone: Option<Zone>,
    now: Timestamp,
) -> Vec<ReminderWrite> {
    let mut writes = Vec::new();
    if reminders_must_follow(before, after) {
        let zone = effective_zone(after, user_zone);
        for r in reminders {
            let relative = matches!(r.trigger, Trigger::BeforeDue(_));
            let open = matches!(r.status, ReminderStatus::Pending | ReminderStatus::Canceled);
            if !relative || !open {
                continue;
            }
            let fire_at = r.trigger.fire_at(after.due_date, zone.as_ref());
            if fire_at != r.fire_at {
                writes.push(ReminderWrite::FireAt { id: r.id, fire_at });
            }
        }
    }
    match (before.status, after.status) {
        (Status::Pending, Status::Completed) => {
            writes.push(ReminderWrite::CancelPending { task: after.id });
        }
        (Status::Completed, Status::Pending) => {
            writes.push(ReminderWrite::RearmCanceled { task: after.id, after: now });
        }
        _ => {}
    }
    writes
}

/// The reminders a new instance copies from the instance before it: the relative ones, which
/// follow the new due date (absolute ones belonged to that one occurrence).
pub fn carried_over(from: &[Reminder]) -> Vec<NewReminder> {
    from.iter()
        .filter(|r| matches!(r.trigger, Trigger::BeforeDue(_)))
        .map(|r| NewReminder { trigger: r.trigger.clone(), channels: r.channels.clone() })
        .collect()
}
