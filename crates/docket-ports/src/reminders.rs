//! Reminders (§2.4) in both stores: the rows, the rules a task write applies to its
//! reminders in the same transaction, and the scheduler's claim.
//!
//! The rules are decided in `docket_core::plan::reminders` (each store loads what they need
//! and writes their `ReminderWrite`s inside the task write's transaction):
//! * a due date or time zone change recomputes `fire_at` of the task's relative reminders
//!   (`before_due`) that are pending or canceled;
//! * completing the task cancels its pending reminders; reopening re-arms the canceled ones
//!   whose `fire_at` is still after `now`;
//! * deleting the task deletes its reminders (foreign key cascade): none can fire after.
//!
//! Firing claims a due reminder (`pending`, `fire_at <= now`) by moving it to `fired` and
//! appends its `com.todo.reminder.triggered` event in the same transaction; the claim's
//! `status = 'pending'` condition (and `FOR UPDATE SKIP LOCKED` on PostgreSQL) makes each
//! reminder fire once, however many schedulers race for it.

// The PostgreSQL side lives in `crate::postgres::reminders` (it needs that adapter's codec).

use docket_core::{Offset, Reminder, Timestamp, Trigger};

pub use docket_core::plan::reminders::{effective_zone, planned};

/// The conflict of retrying a reminder that has not failed.
pub fn not_failed(r: &Reminder) -> crate::StoreError {
    crate::StoreError::Conflict(format!(
        "only a failed reminder can be retried; this one is {}",
        r.status.as_str()
    ))
}

/// A stored trigger from its two columns (exactly one is set).
pub fn trigger_from_columns(at: Option<Timestamp>, before_due: Option<&str>) -> Option<Trigger> {
    match (at, before_due) {
        (Some(at), None) => Some(Trigger::At(at)),
        (None, Some(text)) => Offset::parse(text).ok().map(Trigger::BeforeDue),
        _ => None,
    }
}

/// The two trigger columns of `trigger`.
pub fn trigger_columns(trigger: &Trigger) -> (Option<Timestamp>, Option<String>) {
    match trigger {
        Trigger::At(at) => (Some(*at), None),
        Trigger::BeforeDue(offset) => (None, Some(offset.to_iso())),
    }
}
