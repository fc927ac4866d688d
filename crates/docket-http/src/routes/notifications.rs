//! In-app notifications (§3): `GET /api/notifications?unread=true`,
//! `POST /api/notifications/{id}/read`, `POST /api/notifications/read-all`.

use axum::Json;
use axum::response::IntoResponse;
use docket_core::{Notification, NotificationId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{Caller, Id};
use crate::problem::{ApiError, Unprocessable};
use crate::query::{NotificationFilter, Parsed};
use crate::routes::{Reply, list, one};

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

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", operation_id = "list_notifications", tag = "notifications",
    params(Parsed<NotificationFilter>),
    responses(
        (status = 200, description = "the notifications", body = Vec<NotificationDto>),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list_notifications(
    Caller(app, user): Caller,
    Parsed(filter): Parsed<NotificationFilter>,
) -> Reply<Vec<NotificationDto>> {
    list(&app.list_notifications(&user, filter.unread, filter.limit).await?)
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
