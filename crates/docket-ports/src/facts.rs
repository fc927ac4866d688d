//! From the task changes of a `docket_core::plan` change set to the outbox events both
//! stores append: one conversion, so the event a decision asks for is the same on every
//! dialect. It does not append anything (each dialect's `append_outbox` does, in its
//! transaction).

use docket_core::{Task, Timestamp};
use docket_events::{OutboxEvent, TaskChange, task_events};

/// The events of `before → after`, made at `now` by `source`: the update, completion or
/// reopening the pair amounts to (none when they are equal).
pub fn changed(before: &Task, after: &Task, now: Timestamp, source: &str) -> Vec<OutboxEvent> {
    TaskChange::update(before, after)
        .map(|c| task_events(c, now, source, docket_trace::current()))
        .unwrap_or_default()
}

/// The events of making `task` (a created task or a series instance).
pub fn created(task: &Task, now: Timestamp, source: &str) -> Vec<OutboxEvent> {
    task_events(TaskChange::Created(task), now, source, docket_trace::current())
}
