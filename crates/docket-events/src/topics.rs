//! Topic names (§5) and how the outbox maps them onto its log.
//!
//! One outbox row per task change, on `task-events`. `task-updates` (what real-time clients
//! see) carries exactly the same events today, so it is not written twice: reading the log of
//! `task-updates` reads the `task-events` rows ([`log_topic`]), and a relay to an external
//! broker publishes each `task-events` row to both topics ([`published_to`]). A realtime
//! consumer and the audit consumer still keep independent positions, because positions
//! belong to consumers, not to rows. This halves the outbox writes of every task write (the
//! create path targets ≥ 10,000 durable writes/s). Should `task-updates` ever carry events
//! that `task-events` does not, those are appended under `task-updates` and [`log_topic`]
//! grows into a list.

/// All task lifecycle events (audit, recurrence).
pub const TASK_EVENTS: &str = "task-events";
/// Reminders that fired (notifier).
pub const REMINDERS: &str = "reminders";
/// What real-time clients see (SSE/WebSocket).
pub const TASK_UPDATES: &str = "task-updates";

/// Every topic Docket publishes to.
pub const ALL: [&str; 3] = [TASK_EVENTS, REMINDERS, TASK_UPDATES];

/// The dead-letter topic of `topic`: `{topic}.dlq`.
pub fn dlq(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// The outbox topic whose rows make up the log of `topic`.
pub fn log_topic(topic: &str) -> &str {
    if topic == TASK_UPDATES { TASK_EVENTS } else { topic }
}

/// The broker topics an outbox row of `topic` is published to by a relay.
pub fn published_to(topic: &str) -> Vec<&str> {
    if topic == TASK_EVENTS { vec![TASK_EVENTS, TASK_UPDATES] } else { vec![topic] }
}
