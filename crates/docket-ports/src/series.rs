//! Recurring series (§2.3) in both stores: the `series` rows, the link columns of their
//! instances, and the two ways an instance is made.
//!
//! The rules are decided in `docket_core::plan::series` (instances, relink, detach, next
//! instance) and `docket_core::plan::task` (an update's series write); each store loads what
//! they need and persists their change sets inside one transaction. What they amount to:
//! * creating a recurring task inserts its series (template from the task, `instances = 1`,
//!   `next_occurrence` = the occurrence after the first) and the task as its first instance;
//! * an instance is a pending task with the template's fields, due at its occurrence, linked
//!   by `(series_id, instance_date)`; a unique index on that pair means at most one task per
//!   occurrence, whatever races or redeliveries happen; making one appends its
//!   `com.todo.task.created` event and bumps `instances` and `next_occurrence`;
//! * after completion (`after_completion` mode, the `recurrence` consumer): nothing is made
//!   when the series is paused or gone, when an instance later than the completed one exists
//!   (a second completion of the same instance), or when the series has ended; the completed
//!   task's relative (`before_due`) reminders are copied to the new instance;
//! * fixed mode (the scheduler): a due series (active, `next_occurrence <= now`) is claimed by
//!   moving `next_occurrence` on in the transaction that inserts the instance (`FOR UPDATE
//!   SKIP LOCKED` on PostgreSQL), so one process makes it; a series that fell behind makes one
//!   catch-up instance and moves on to the first occurrence after `now`;
//! * pausing and resuming flip `active`; resuming an `after_completion` series whose latest
//!   instance was completed while paused makes the next instance then;
//! * deleting removes the series row and detaches its instances in the same transaction: they
//!   stay, with `series_id`, `instance_date` and `recurrence` cleared (a one-off task has
//!   none, and NULLs never collide in the unique index), each with its version bumped and a
//!   `com.todo.task.updated` event whose `changes` name `series_id` and `instance_date`;
//! * a task update with a `recurrence` (`TaskPatch::recurrence`, applied after the rest of the
//!   patch, in the update's transaction): on a one-off task it creates a series with the task
//!   as its first instance, as creating a recurring task does (the due date moves to the
//!   first occurrence); on an instance it replaces the series' rule for the instances after
//!   this one (`Series::replace_rule`; the same rule changes nothing); `null` ends the
//!   task's series as deleting it does, the task's own detachment folded into its update.
//!   When the task is completed afterwards, the next instance is made at once, as resuming
//!   does (no completion event will come for it).

// The PostgreSQL side lives in `crate::postgres::series` (it needs that adapter's codec).

use docket_core::{Recurrence, RecurrenceSpec, Zone};

use crate::StoreError;

/// The canonical JSON of a recurrence, as the `recurrence` columns hold it.
pub fn spec_json(r: &Recurrence) -> String {
    serde_json::to_string(&r.to_spec()).expect("a recurrence spec serialises")
}

/// A stored recurrence back from its JSON (its zone is in the spec).
pub fn recurrence_from_json(json: &str) -> Result<Recurrence, StoreError> {
    let spec: RecurrenceSpec = serde_json::from_str(json).map_err(|e| {
        StoreError::unavailable("store", format!("stored recurrence does not parse: {e}"))
    })?;
    Recurrence::parse(&spec, &Zone::utc())
        .map_err(|_| StoreError::unavailable("store", "stored recurrence is not valid"))
}
