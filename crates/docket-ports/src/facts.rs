//! From the task changes of a `docket_core::plan` change set to the outbox events both
//! stores append: one conversion, so the event a decision asks for is the same on every
//! dialect. It does not append anything (each dialect's `append_outbox` does, in its
//! transaction).

use docket_core::{Task, Timestamp};
use docket_events::{Origin, OutboxEvent, TaskChange, task_events};

/// What an event a store appends at `now` for `source` is stamped with: a new event id, and
/// the trace of the running work (`docket_trace::current`).
pub fn origin(now: Timestamp, source: &str) -> Origin<'_> {
    Origin { id: crate::ids::event_id(now), time: now, source, trace: docket_trace::current() }
}

/// The events of `before → after`, made at `now` by `source`: the update, completion or
/// reopening the pair amounts to (none when they are equal).
pub fn changed(before: &Task, after: &Task, now: Timestamp, source: &str) -> Vec<OutboxEvent> {
    TaskChange::update(before, after)
        .map(|c| task_events(c, origin(now, source)))
        .unwrap_or_default()
}

/// The events of making `task` (a created task or a series instance).
pub fn created(task: &Task, now: Timestamp, source: &str) -> Vec<OutboxEvent> {
    task_events(TaskChange::Created(task), origin(now, source))
}
