//! The webhook dispatcher (§6), the consumer of group `webhooks` on `task-events`: a task
//! event becomes one delivery per active webhook of the task's owner (the partition key)
//! subscribed to its type, which the store looks up and enqueues when it commits the event
//! (`Effect::Deliver`). Reminders reach webhooks through the notifier, not here.

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, Handler, HandlerError};
use docket_core::UserId;
use docket_events::{CloudEvent, topics, types};
use docket_ports::consume::{DeliveryTemplate, Effect, Recipients};

use super::EVENTS;

/// The dispatcher's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "webhooks";

/// The dispatcher's configuration: group `webhooks` on `task-events`, position committed in
/// the handler's transaction.
pub fn config() -> ConsumerConfig {
    crate::consumer_config(CONSUMER, topics::TASK_EVENTS)
}

/// The owner of a task event (its partition key), `None` for other events.
fn owner(event: &CloudEvent) -> Result<Option<UserId>, HandlerError> {
    if !EVENTS.contains(&event.ty.as_str()) || event.ty == types::REMINDER_TRIGGERED {
        return Ok(None);
    }
    let key = event.partitionkey.as_deref().ok_or_else(|| {
        HandlerError::Permanent(format!("event {} ({}) has no partitionkey", event.id, event.ty))
    })?;
    key.parse().map(Some).map_err(|_| {
        HandlerError::Permanent(format!(
            "event {}: partitionkey '{key}' is not a user id",
            event.id
        ))
    })
}

/// The dispatcher's decision: a task event goes to every active webhook of its owner (the
/// partition key) that receives its type, looked up by the store when it commits; nothing for
/// other events.
pub fn handle(event: &CloudEvent) -> Result<Vec<Effect>, HandlerError> {
    let Some(user) = owner(event)? else {
        return Ok(Vec::new());
    };
    let body = serde_json::to_string(event)
        .map_err(|e| HandlerError::Permanent(format!("event {}: {e}", event.id)))?;
    let created_at =
        docket_core::time::truncate_micros(event.time.unwrap_or_else(jiff::Timestamp::now));
    Ok(vec![Effect::Deliver {
        to: Recipients::Webhooks { event_type: event.ty.clone() },
        delivery: DeliveryTemplate {
            user_id: user,
            reminder_id: None,
            event_id: event.id.clone(),
            event_type: event.ty.clone(),
            payload: body,
            created_at,
        },
        if_none: None,
    }])
}

/// [`handle`] as the dispatcher's handler.
pub fn handler() -> Arc<Handler> {
    Arc::new(handle)
}
