//! Docket's domain: the value types of tasks, categories, tags and users, their validation,
//! and the shape of a task list query.
//!
//! Everything here is pure: no IO, no clock, no async. Values are parsed once at the edge
//! (`Title::parse`, `Zone::parse`, …) and are valid by construction afterwards, so the use
//! cases and the stores never re-check them. Wire formats (JSON DTOs, event payloads) live in
//! the outer crates and convert into these types.

pub mod backoff;
pub mod category;
pub mod error;
pub mod ids;
mod line;
mod names;
pub mod notification;
pub mod plan;
pub mod query;
pub mod recurrence;
pub mod reminder;
pub mod series;
pub mod task;
pub mod time;
pub mod user;
pub mod webhook;

pub use backoff::Backoff;
pub use category::{Category, CategoryName, CategoryPatch, Color, NewCategory};
pub use error::{FieldError, Invalid, ValidationErrors};
pub use ids::{
    CategoryId, DeliveryId, NotificationId, ReminderId, SeriesId, TaskId, TokenId, UserId,
    WebhookId,
};
pub use line::LineError;
pub use notification::Notification;
pub use plan::{PlanError, TaskChanged};
pub use query::{
    Cursor, CursorKey, Limit, Order, Page, SearchText, SortField, StatusFilter, TaskQuery,
};
pub use recurrence::{
    Anchor, CronExpr, Mode, Occurrence, Pattern, Preset, PreviewCount, Recurrence, RecurrenceSpec,
    Rule, parse_local_start,
};
pub use reminder::{
    Channel, Channels, NewReminder, Offset, OffsetError, Reminder, ReminderStatus, Trigger,
};
pub use series::{NewSeries, Series, SeriesLink};
pub use task::{
    CategoryRef, Description, NewTask, Priority, Status, Tag, Tags, Task, TaskPatch, Title,
};
pub use time::{Timestamp, Zone, parse_instant};
pub use user::{DisplayName, Email, NewUser, Password, User};
pub use webhook::{
    Delivery, DeliveryChannel, DeliveryOutcome, DeliveryStatus, NewDelivery, NewWebhook, Webhook,
    WebhookPatch,
};
