//! `/api/tasks/{id}/history` and `/api/activity`: the caller's audit log (§2.5), oldest
//! first, keyset paged (`limit`, `cursor` → `{items, next_cursor}`).

use axum::Json;
use docket_core::TaskId;
use docket_ports::{AuditEntry, AuditPage};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{Caller, Id};
use crate::problem::Unprocessable;
use crate::query::{Paging, Parsed};
use crate::routes::Reply;

/// One audit log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: uuid::Uuid,
    pub event_id: String,
    /// `com.todo.task.created`, `…updated`, `…completed`, `…reopened`, `…deleted`.
    pub event_type: String,
    /// `task`.
    pub entity_type: String,
    pub entity_id: uuid::Uuid,
    /// The user who made the change.
    pub actor: String,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub at: String,
    /// The after-image and, for updates, `changes: {field: {old, new}}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&AuditEntry> for AuditEntryDto {
    fn from(e: &AuditEntry) -> AuditEntryDto {
        AuditEntryDto {
            id: e.id,
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            entity_type: e.entity_type.clone(),
            entity_id: e.entity_id,
            actor: e.actor.clone(),
            at: e.at.to_string(),
            data: e.data.clone(),
        }
    }
}

/// A page of audit entries, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageDto {
    pub items: Vec<AuditEntryDto>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl From<AuditPage> for AuditPageDto {
    fn from(p: AuditPage) -> AuditPageDto {
        AuditPageDto {
            items: p.items.iter().map(AuditEntryDto::from).collect(),
            next_cursor: p.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// The audit log of one of the caller's tasks (also after it was deleted), oldest first.
#[utoipa::path(get, path = "/tasks/{id}/history", operation_id = "task_history", tag = "audit",
    params(Id<TaskId>, Parsed<Paging>),
    responses(
        (status = 200, description = "one page of the task's audit entries", body = AuditPageDto),
        (status = 422, response = Unprocessable),
    ))]
pub async fn task_history(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    Parsed(page): Parsed<Paging>,
) -> Reply<AuditPageDto> {
    let page = app.task_history(&user, id, page.cursor, page.limit).await?;
    Ok(Json(AuditPageDto::from(page)))
}

/// The caller's activity: every audit entry of theirs, oldest first.
#[utoipa::path(get, path = "/activity", operation_id = "activity", tag = "audit",
    params(Parsed<Paging>),
    responses(
        (status = 200, description = "one page of the caller's audit entries", body = AuditPageDto),
        (status = 422, response = Unprocessable),
    ))]
pub async fn activity(
    Caller(app, user): Caller,
    Parsed(page): Parsed<Paging>,
) -> Reply<AuditPageDto> {
    Ok(Json(AuditPageDto::from(app.activity(&user, page.cursor, page.limit).await?)))
}
