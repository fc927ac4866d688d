//! Reminders (§2.4, §3): `GET`/`POST /api/tasks/{id}/reminders`,
//! `DELETE /api/tasks/{id}/reminders/{rid}`, `POST /api/reminders/{id}/snooze`,
//! `POST /api/reminders/{id}/retry`.
//!
//! A trigger is `{"at": instant}` (an offset-less date-time is local time in the caller's
//! zone) or `{"before_due": "PT15M"}` (ISO 8601, zero or more; days count in the task's zone).

use docket_core::{
    Channel, Channels, FieldError, NewReminder, Offset, Reminder, ReminderId, TaskId, Trigger,
    User, ValidationErrors, Zone, parse_instant,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Caller, Id, JsonBody, TaskReminderIdParam};
use crate::problem::Conflict;
use crate::routes::{Created, Deleted, Reply, created, deleted, list, one};

/// When a reminder fires: exactly one of `at` and `before_due`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct TriggerBody {
    /// An instant (RFC 3339), or a local date-time in your time zone.
    pub at: Option<String>,
    /// How long before the task's due date, as an ISO 8601 duration (`PT15M`, `P1D`, `PT0S`).
    pub before_due: Option<String>,
}

/// A new reminder.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReminderBody {
    pub trigger: Option<TriggerBody>,
    /// `in_app` (the default), `email` (to the owner's address; refused when the server has no
    /// SMTP relay) and `webhook` (to the owner's active webhooks receiving
    /// `com.todo.reminder.triggered`).
    pub channels: Option<Vec<String>>,
}

/// A snooze.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SnoozeBody {
    /// How long from now, as an ISO 8601 duration (`PT10M`).
    #[serde(rename = "for")]
    pub for_: Option<String>,
}

/// A reminder.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = Uuid)]
    pub task_id: String,
    pub trigger: TriggerBody,
    pub channels: Vec<String>,
    /// `pending`, `fired`, `canceled` or `failed`.
    pub status: String,
    /// When it fires (RFC 3339); null for a relative reminder of a task without a due date.
    pub fire_at: Option<String>,
    pub fired_at: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: String,
}

impl From<&Reminder> for ReminderDto {
    fn from(r: &Reminder) -> ReminderDto {
        let trigger = match &r.trigger {
            Trigger::At(at) => TriggerBody { at: Some(at.to_string()), before_due: None },
            Trigger::BeforeDue(o) => TriggerBody { at: None, before_due: Some(o.to_iso()) },
        };
        ReminderDto {
            id: r.id.to_string(),
            task_id: r.task_id.to_string(),
            trigger,
            channels: r.channels.as_slice().iter().map(|c| c.as_str().to_owned()).collect(),
            status: r.status.as_str().to_owned(),
            fire_at: r.fire_at.map(|t| t.to_string()),
            fired_at: r.fired_at.map(|t| t.to_string()),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            created_at: r.created_at.to_string(),
        }
    }
}

fn parse_body(
    body: ReminderBody,
    user: &User,
    email_enabled: bool,
) -> Result<NewReminder, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let zone = user.timezone.clone().unwrap_or_else(Zone::utc);
    let trigger = match body.trigger {
        None => {
            errors.push(FieldError::custom("trigger", "required", "trigger is required"));
            None
        }
        Some(TriggerBody { at: Some(at), before_due: None }) => {
            errors.check("trigger.at", parse_instant(&at, &zone)).map(Trigger::At)
        }
        Some(TriggerBody { at: None, before_due: Some(d) }) => {
            errors.check("trigger.before_due", Offset::parse(&d)).map(Trigger::BeforeDue)
        }
        Some(_) => {
            errors.push(FieldError::custom(
                "trigger",
                "invalid",
                "give exactly one of 'at' and 'before_due'",
            ));
            None
        }
    };
    let channels =
        errors.check("channels", Channels::parse(&body.channels.unwrap_or_default())).filter(|c| {
            // Refused rather than accepted and never delivered.
            let undeliverable = !email_enabled && c.as_slice().contains(&Channel::Email);
            if undeliverable {
                errors.push(FieldError::custom(
                    "channels",
                    "unavailable",
                    "email is not configured on this server (no SMTP relay); use in_app or webhook",
                ));
            }
            !undeliverable
        });
    errors.clone().into_result()?;
    match (trigger, channels) {
        (Some(trigger), Some(channels)) => Ok(NewReminder { trigger, channels }),
        _ => Err(errors),
    }
}

/// The reminders of one of the caller's tasks, oldest first.
#[utoipa::path(get, path = "/tasks/{id}/reminders", operation_id = "list_reminders", tag = "reminders",
    params(Id<TaskId>),
    responses((status = 200, description = "the task's reminders", body = Vec<ReminderDto>)))]
pub async fn list_reminders(
    Caller(app, user): Caller,
    Id(task): Id<TaskId>,
) -> Reply<Vec<ReminderDto>> {
    list(&app.list_reminders(&user, task).await?)
}

/// Adds a reminder to one of the caller's tasks.
#[utoipa::path(post, path = "/tasks/{id}/reminders", operation_id = "create_reminder", tag = "reminders",
    params(Id<TaskId>),
    request_body = ReminderBody,
    responses((status = 201, description = "the new reminder", body = ReminderDto)))]
pub async fn create_reminder(
    Caller(app, user): Caller,
    Id(task): Id<TaskId>,
    JsonBody(body): JsonBody<ReminderBody>,
) -> Created<ReminderDto> {
    let new = parse_body(body, &user, app.email_enabled())?;
    created(&app.create_reminder(&user, task, new).await?)
}

/// Deletes a reminder of one of the caller's tasks.
#[utoipa::path(delete, path = "/tasks/{id}/reminders/{rid}", operation_id = "delete_reminder", tag = "reminders",
    params(Id<TaskId>, TaskReminderIdParam),
    responses((status = 204, description = "deleted")))]
pub async fn delete_reminder(
    Caller(app, user): Caller,
    Id(task): Id<TaskId>,
    TaskReminderIdParam(id): TaskReminderIdParam,
) -> Deleted {
    deleted(app.delete_reminder(&user, task, id).await)
}

/// Snoozes a reminder: a new pending reminder of the same task and channels, `for` from now.
#[utoipa::path(post, path = "/reminders/{id}/snooze", operation_id = "snooze_reminder", tag = "reminders",
    params(Id<ReminderId>),
    request_body = SnoozeBody,
    responses((status = 201, description = "the new reminder", body = ReminderDto)))]
pub async fn snooze_reminder(
    Caller(app, user): Caller,
    Id(id): Id<ReminderId>,
    JsonBody(body): JsonBody<SnoozeBody>,
) -> Created<ReminderDto> {
    let by = match body.for_ {
        Some(text) => Offset::parse(&text)
            .map_err(|e| ValidationErrors::single(FieldError::new("for", &e)))?,
        None => {
            return Err(ValidationErrors::single(FieldError::custom(
                "for",
                "required",
                "for is required (an ISO 8601 duration such as PT10M)",
            ))
            .into());
        }
    };
    created(&app.snooze_reminder(&user, id, by).await?)
}

/// Retries a failed reminder (`failed → pending`): it fires again now, on all its channels.
#[utoipa::path(post, path = "/reminders/{id}/retry", operation_id = "retry_reminder", tag = "reminders",
    params(Id<ReminderId>),
    responses(
        (status = 200, description = "the reminder, pending again", body = ReminderDto),
        (status = 409, response = Conflict),
    ))]
pub async fn retry_reminder(
    Caller(app, user): Caller,
    Id(id): Id<ReminderId>,
) -> Reply<ReminderDto> {
    one(&app.retry_reminder(&user, id).await?)
}
