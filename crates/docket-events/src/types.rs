//! CloudEvent `type` values (§5). Past-tense facts, namespaced `com.todo.*` (seed 004's
//! contract, shared with the other implementations of the product).

pub const TASK_CREATED: &str = "com.todo.task.created";
pub const TASK_UPDATED: &str = "com.todo.task.updated";
pub const TASK_COMPLETED: &str = "com.todo.task.completed";
pub const TASK_REOPENED: &str = "com.todo.task.reopened";
pub const TASK_DELETED: &str = "com.todo.task.deleted";
pub const REMINDER_TRIGGERED: &str = "com.todo.reminder.triggered";
pub const RECURRING_SCHEDULED: &str = "com.todo.recurring.scheduled";
pub const NOTIFICATION_CREATED: &str = "com.todo.notification.created";

/// Every type Docket emits.
pub const ALL: [&str; 8] = [
    TASK_CREATED,
    TASK_UPDATED,
    TASK_COMPLETED,
    TASK_REOPENED,
    TASK_DELETED,
    REMINDER_TRIGGERED,
    RECURRING_SCHEDULED,
    NOTIFICATION_CREATED,
];
