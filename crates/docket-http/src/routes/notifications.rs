//! In-app notifications (§3): `GET /api/notifications?unread=true`,
//! `POST /api/notifications/{id}/read`, `POST /api/notifications/read-all`.

use axum::Json;
use axum::extract::RawQuery;
use axum::response::IntoResponse;
use docket_core::{FieldError, Limit, Notification, ValidationErrors};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Caller, Id};
use crate::problem::{ApiError, Unprocessable};
use crate::routes::{Reply, one};
use docket_core::NotificationId;

/// The documented query parameters (parsed by hand, like the task list's).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct NotificationParams {
    /// `true` for unread ones only.
    unread: Option<bool>,
    /// At most this many, 1–200 (default 50).
    limit: Option<u32>,
}

/// A notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub task_id: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reminder_id: Option<String>,
    pub title: String,
    pub body: String,
    pub created_at: String,
    /// When it was marked read; null while unread.
    pub read_at: Option<String>,
}

impl From<&Notification> for NotificationDto {
    fn from(n: &Notification) -> NotificationDto {
        NotificationDto {
            id: n.id.to_string(),
            task_id: n.task_id.map(|t| t.to_string()),
            reminder_id: n.reminder_id.map(|r| r.to_string()),
            title: n.title.clone(),
            body: n.body.clone(),
            created_at: n.created_at.to_string(),
            read_at: n.read_at.map(|t| t.to_string()),
        }
    }
}

/// How many were marked read.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedDto {
    pub marked: u64,
}

fn parse_params(raw: Option<&str>) -> Result<(bool, usize), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let (mut unread, mut limit) = (false, Limit::default());
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match key.as_ref() {
            "unread" => match value {
                "true" => unread = true,
                "false" => unread = false,
                _ => {
                    errors.push(FieldError::custom("unread", "invalid", "unread is true or false"))
                }
            },
            "limit" => {
                if let Some(l) = errors.check("limit", Limit::parse(value)) {
                    limit = l;
                }
            }
            _ => {}
        }
    }
    errors.into_result()?;
    Ok((unread, usize::try_from(limit.get()).unwrap_or(usize::MAX)))
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", operation_id = "list_notifications", tag = "notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "the notifications", body = Vec<NotificationDto>),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list_notifications(
    Caller(app, user): Caller,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let (unread, limit) = parse_params(raw.as_deref())?;
    let items = app.list_notifications(&user, unread, limit).await?;
    Ok(Json(items.iter().map(NotificationDto::from).collect::<Vec<_>>()))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(post, path = "/notifications/{id}/read", operation_id = "read_notification", tag = "notifications",
    params(Id<NotificationId>),
    responses((status = 200, description = "the notification, read", body = NotificationDto)))]
pub async fn read_notification(
    Caller(app, user): Caller,
    Id(id): Id<NotificationId>,
) -> Reply<NotificationDto> {
    one(&app.mark_notification_read(&user, id).await?)
}

/// Marks all the caller's notifications read.
#[utoipa::path(post, path = "/notifications/read-all", operation_id = "read_all_notifications", tag = "notifications",
    responses((status = 200, description = "how many were unread", body = MarkedDto)))]
pub async fn read_all_notifications(
    Caller(app, user): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let marked = app.mark_all_notifications_read(&user).await?;
    Ok(Json(MarkedDto { marked }))
}
