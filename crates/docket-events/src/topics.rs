//! Topic names (§5) and how the outbox maps them onto its log.
//!
//! One outbox row per task change, on `task-events`. `task-updates` (what real-time clients
//! see) carries exactly the same events today, so it is not written twice: reading the log of
//! `task-updates` reads the `task-events` rows ([`log_topics`]), and a relay to an external
//! broker publishes each `task-events` row to both topics ([`published_to`]). A realtime
//! consumer and the audit consumer still keep independent positions, because positions
//! belong to consumers, not to rows. This halves the outbox writes of every task write (the
//! create path targets ≥ 10,000 durable writes/s). Events only real-time clients see (a
//! notification was created) are appended under `task-updates` itself, so the log of
//! `task-updates` is the rows of both outbox topics ([`log_topics`]).

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

/// The outbox topics whose rows make up the log of `topic`, as a pair (the same topic twice
/// when there is one), for `topic IN (a, b)` queries.
pub fn log_topics(topic: &str) -> [&str; 2] {
    if topic == TASK_UPDATES { [TASK_EVENTS, TASK_UPDATES] } else { [topic, topic] }
}

/// The broker topics an outbox row of `topic` is published to by a relay.
pub fn published_to(topic: &str) -> Vec<&str> {
    if topic == TASK_EVENTS { vec![TASK_EVENTS, TASK_UPDATES] } else { vec![topic] }
}
