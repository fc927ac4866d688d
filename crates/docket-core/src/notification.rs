//! In-app notifications (§2.5): what the notifier made of a fired reminder, read or unread.

use crate::{NotificationId, ReminderId, TaskId, Timestamp, UserId};

/// One notification of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: NotificationId,
    pub user_id: UserId,
    /// The task it is about, when it is about one (kept after the task is deleted).
    pub task_id: Option<TaskId>,
    /// The reminder that caused it, if one did.
    pub reminder_id: Option<ReminderId>,
    pub title: String,
    pub body: String,
    pub created_at: Timestamp,
    /// When the user marked it read; `None` while unread.
    pub read_at: Option<Timestamp>,
}
