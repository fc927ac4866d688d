//! The next-instance consumer (§2.3, §5), group `recurrence` on `task-events`. When an instance of
//! an `after_completion` series is completed, it makes the next instance (the rules are in
//! `docket_core::series` and `docket_core::plan::series`): [`handle`] returns it as an effect the
//! store commits with the consumer's `processed:` key, so the instance, its `task.created`
//! event and the acknowledgement commit together.
//!
//! Idempotent three times over: the runtime skips an event whose `processed:` key exists; the
//! store makes nothing when a later instance of the series exists (a reopen and a second
//! completion of the same instance make nothing new); and `(series_id, instance_date)` is
//! unique. Other events, and completions of tasks outside a series, are acknowledged and
//! ignored; an event whose data does not parse is poison (dead-lettered).

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, Handler, HandlerError};
use docket_core::{SeriesId, TaskId, Timestamp, UserId};
use docket_events::{CloudEvent, TaskEventDataV1, topics, types};
use docket_ports::consume::{Effect, NextInstance};

/// The consumer's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "recurrence";

/// The `source` of the events the consumer appends.
pub const SOURCE: &str = "/docket/worker";

/// Group `recurrence` on `task-events`, position committed in the handler's transaction.
pub fn config() -> ConsumerConfig {
    crate::consumer_config(CONSUMER, topics::TASK_EVENTS)
}

/// What a completion event says about its series instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub user: UserId,
    pub series: SeriesId,
    pub instance_date: String,
    pub task: TaskId,
    pub due: Option<Timestamp>,
    pub completed_at: Timestamp,
    /// The event's time: the new instance's creation time.
    pub at: Timestamp,
}

/// The series completion `event` reports, `None` for any other event.
pub fn completion(event: &CloudEvent) -> Result<Option<Completion>, HandlerError> {
    if event.ty != types::TASK_COMPLETED {
        return Ok(None);
    }
    let data: TaskEventDataV1 = event
        .data_as()
        .map_err(|e| HandlerError::Permanent(format!("event {} ({}): {e}", event.id, event.ty)))?;
    let task = data.task;
    let (Some(series), Some(instance_date)) = (task.series_id, task.instance_date) else {
        return Ok(None);
    };
    let at = docket_core::time::truncate_micros(event.time.unwrap_or_else(Timestamp::now));
    Ok(Some(Completion {
        user: UserId(task.user_id),
        series: SeriesId(series),
        instance_date,
        task: TaskId(task.id),
        due: task.due_date,
        completed_at: task.completed_at.unwrap_or(at),
        at,
    }))
}

/// The recurrence consumer's decision: the next instance after a completed series instance,
/// nothing for other events (whether one is due is the store's to evaluate in its
/// transaction).
pub fn handle(event: &CloudEvent) -> Result<Vec<Effect>, HandlerError> {
    let Some(c) = completion(event)? else {
        return Ok(Vec::new());
    };
    Ok(vec![Effect::SpawnNextInstance(NextInstance {
        user: c.user,
        series: c.series,
        instance_date: c.instance_date,
        completed: c.task,
        due: c.due,
        completed_at: c.completed_at,
        at: c.at,
        source: SOURCE.to_owned(),
    })])
}

/// [`handle`] as the runtime's handler.
pub fn handler() -> Arc<Handler> {
    Arc::new(handle)
}
