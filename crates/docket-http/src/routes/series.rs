//! Series (§2.3, §3): `GET /api/series`, `GET /api/series/{id}`,
//! `POST /api/series/{id}/pause`, `POST /api/series/{id}/resume`, `DELETE /api/series/{id}`.
//! A series is created by creating a task with a `recurrence`.

use docket_core::{Series, SeriesId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::dto::RecurrenceDto;
use crate::extract::{Caller, Id};
use crate::routes::{Deleted, Reply, deleted, list, one};

/// A recurring series: the template of its instances and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    /// `low`, `medium`, `high` or `urgent`.
    pub priority: String,
    pub tags: Vec<String>,
    pub recurrence: RecurrenceDto,
    /// The local date-time of the first occurrence.
    pub start: String,
    /// False while paused.
    pub active: bool,
    /// When the next instance is due; null once the series has ended.
    pub next_occurrence: Option<String>,
    /// How many instances it has made.
    pub instances: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Series> for SeriesDto {
    fn from(s: &Series) -> SeriesDto {
        SeriesDto {
            id: s.id.to_string(),
            title: s.title.as_str().to_owned(),
            description: s.description.as_ref().map(|d| d.as_str().to_owned()),
            priority: s.priority.as_str().to_owned(),
            tags: s.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            recurrence: RecurrenceDto::new(&s.recurrence.to_spec(), s.id.to_string()),
            start: s.start.to_string(),
            active: s.active,
            next_occurrence: s.next_occurrence.map(|t| t.to_string()),
            instances: s.instances,
            created_at: s.created_at.to_string(),
            updated_at: s.updated_at.to_string(),
        }
    }
}

/// The caller's series, oldest first.
#[utoipa::path(get, path = "/series", operation_id = "list_series", tag = "series",
    responses((status = 200, description = "the series", body = Vec<SeriesDto>)))]
pub async fn list_series(Caller(app, user): Caller) -> Reply<Vec<SeriesDto>> {
    list(&app.list_series(&user).await?)
}

/// One of the caller's series.
#[utoipa::path(get, path = "/series/{id}", operation_id = "get_series", tag = "series",
    params(Id<SeriesId>),
    responses((status = 200, description = "the series", body = SeriesDto)))]
pub async fn get_series(Caller(app, user): Caller, Id(id): Id<SeriesId>) -> Reply<SeriesDto> {
    one(&app.get_series(&user, id).await?)
}

/// Pauses a series: no instance is made until it is resumed.
#[utoipa::path(post, path = "/series/{id}/pause", operation_id = "pause_series", tag = "series",
    params(Id<SeriesId>),
    responses((status = 200, description = "the series, paused", body = SeriesDto)))]
pub async fn pause_series(Caller(app, user): Caller, Id(id): Id<SeriesId>) -> Reply<SeriesDto> {
    one(&app.set_series_active(&user, id, false).await?)
}

/// Resumes a paused series.
#[utoipa::path(post, path = "/series/{id}/resume", operation_id = "resume_series", tag = "series",
    params(Id<SeriesId>),
    responses((status = 200, description = "the series, active", body = SeriesDto)))]
pub async fn resume_series(Caller(app, user): Caller, Id(id): Id<SeriesId>) -> Reply<SeriesDto> {
    one(&app.set_series_active(&user, id, true).await?)
}

/// Deletes a series: no more instances; the existing ones stay as one-off tasks, detached
/// in the same transaction (`series_id`, `instance_date` and `recurrence` become null, the
/// version is bumped, and each gets a `com.todo.task.updated` event whose `changes` name
/// `series_id` and `instance_date`). A task update with `"recurrence": null` does the same
/// for the task's series.
#[utoipa::path(delete, path = "/series/{id}", operation_id = "delete_series", tag = "series",
    params(Id<SeriesId>),
    responses((status = 204, description = "deleted")))]
pub async fn delete_series(Caller(app, user): Caller, Id(id): Id<SeriesId>) -> Deleted {
    deleted(app.delete_series(&user, id).await)
}
