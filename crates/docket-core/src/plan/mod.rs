//! Decisions of the task writes: pure functions from the records a store loaded inside its
//! transaction to the change set it must persist there (rows to write, task events to append).
//!
//! Each rule that decides what a write changes lives here once, for every store: applying a
//! patch with its category, series and reminder consequences (`task`), reminder re-planning
//! (`reminders`), series relink, detach and next instance (`series`).
//! A store only loads what a decision needs (in its own transaction and lock order), calls
//! it, writes the change set with its own SQL and turns each task change into the wire
//! events (`docket_events::task_events`; this crate does not know the wire format).
//!
//! Nothing here does IO, reads the clock or draws random numbers: `now` is an argument, and
//! so is the id of each row a decision may create (the caller makes it, whether or not the
//! decision then uses it).

pub mod reminders;
pub mod series;
pub mod task;
#[cfg(test)]
mod tests;

use crate::task::Task;

pub use reminders::{
    ReminderWrite, effective_zone, plan_reminders_on_task_change, planned, reminders_must_follow,
};
pub use series::{NextInstance, SeriesWrite, plan_next_instance, plan_series_detach};
pub use task::{TaskUpdate, plan_category_delete, plan_task_update};

/// Why a decision refused a write; each store maps it onto its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `If-Match` named a version that is no longer current.
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch { current: i64 },
    /// The input names something that cannot be: a rule without an occurrence to start at.
    #[error("{field}: {message}")]
    InvalidReference { field: &'static str, message: String },
}

/// A task a change set rewrites: the store writes `after` over `before` and appends the
/// event of the pair (an update; a status move would be a completion or a reopening).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskChanged {
    pub before: Task,
    pub after: Task,
}

/// The precondition of a write that names the version it read (`If-Match`).
pub fn check_version(task: &Task, expected: Option<i64>) -> Result<(), PlanError> {
    match expected {
        Some(v) if v != task.version => Err(PlanError::VersionMismatch { current: task.version }),
        _ => Ok(()),
    }
}
