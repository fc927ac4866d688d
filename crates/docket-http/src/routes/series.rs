//! Series (§2.3, §3): `GET /api/series`, `GET /api/series/{id}`,
//! `POST /api/series/{id}/pause`, `POST /api/series/{id}/resume`, `DELETE /api/series/{id}`.
//! A series is created by creating a task with a `recurrence`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use docket_core::Series;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::dto::RecurrenceDto;
use crate::extract::{Caller, SeriesIdParam};
use crate::problem::{ApiError, NotFound, Unauthorized, Unavailable};

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
    responses(
        (status = 200, description = "the series", body = Vec<SeriesDto>),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn list_series(
    State(st): State<AppState>,
    Caller(user): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let items = st.app.list_series(&user).await?;
    Ok(Json(items.iter().map(SeriesDto::from).collect::<Vec<_>>()))
}

/// One of the caller's series.
#[utoipa::path(get, path = "/series/{id}", operation_id = "get_series", tag = "series",
    params(("id" = String, Path, description = "series id")),
    responses(
        (status = 200, description = "the series", body = SeriesDto),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn get_series(
    State(st): State<AppState>,
    Caller(user): Caller,
    SeriesIdParam(id): SeriesIdParam,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(SeriesDto::from(&st.app.get_series(&user, id).await?)))
}

/// Pauses a series: no instance is made until it is resumed.
#[utoipa::path(post, path = "/series/{id}/pause", operation_id = "pause_series", tag = "series",
    params(("id" = String, Path, description = "series id")),
    responses(
        (status = 200, description = "the series, paused", body = SeriesDto),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn pause_series(
    State(st): State<AppState>,
    Caller(user): Caller,
    SeriesIdParam(id): SeriesIdParam,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(SeriesDto::from(&st.app.set_series_active(&user, id, false).await?)))
}

/// Resumes a paused series.
#[utoipa::path(post, path = "/series/{id}/resume", operation_id = "resume_series", tag = "series",
    params(("id" = String, Path, description = "series id")),
    responses(
        (status = 200, description = "the series, active", body = SeriesDto),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn resume_series(
    State(st): State<AppState>,
    Caller(user): Caller,
    SeriesIdParam(id): SeriesIdParam,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(SeriesDto::from(&st.app.set_series_active(&user, id, true).await?)))
}

/// Deletes a series: no more instances; the existing ones stay as one-off tasks, detached
/// in the same transaction (`series_id`, `instance_date` and `recurrence` become null, the
/// version is bumped, and each gets a `com.todo.task.updated` event whose `changes` name
/// `series_id` and `instance_date`). A task update with `"recurrence": null` does the same
/// for the task's series.
#[utoipa::path(delete, path = "/series/{id}", operation_id = "delete_series", tag = "series",
    params(("id" = String, Path, description = "series id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn delete_series(
    State(st): State<AppState>,
    Caller(user): Caller,
    SeriesIdParam(id): SeriesIdParam,
) -> Result<impl IntoResponse, ApiError> {
    st.app.delete_series(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
