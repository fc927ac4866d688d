//! `/api/tasks` (and the seeds' `/api/{user_id}/tasks`, served by the same handlers): CRUD,
//! complete, reopen, toggle and the filtered, keyset-paginated list; plus `/api/tags`.
//!
//! Every response that carries one task sets `ETag: "<version>"`; `If-Match` makes a write
//! conditional (412 when stale).

use axum::Json;
use axum::extract::RawQuery;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use docket_app::{TaskChanges, TaskInput};
use docket_core::{Task, TaskId};

use crate::dto::{CompletionDto, TagDto, TaskBody, TaskDto, TaskPage, TaskPatchBody};
use crate::extract::{Caller, Id, IfMatch, JsonBody};
use crate::problem::{ApiError, Unprocessable};
use crate::query::{TaskListParams, parse_task_query};
use crate::routes::{Deleted, deleted};

fn etag(task: &Task) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", task.version))
        .expect("a quoted integer is a valid header value")
}

fn with_etag(status: StatusCode, task: &Task, body: impl serde::Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag(task));
    resp
}

fn task_response(status: StatusCode, task: &Task) -> Response {
    with_etag(status, task, TaskDto::from(task))
}

fn completion_response(c: docket_app::Completion) -> Response {
    let body =
        CompletionDto { task: TaskDto::from(&c.task), next: c.next.as_ref().map(TaskDto::from) };
    with_etag(StatusCode::OK, &c.task, body)
}

/// Lists the caller's tasks: filters, full-text search, sort and keyset pagination.
#[utoipa::path(get, path = "/tasks", operation_id = "list_tasks", tag = "tasks",
    params(TaskListParams),
    responses(
        (status = 200, description = "one page of tasks", body = TaskPage),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list_tasks(
    Caller(app, user): Caller,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let query = parse_task_query(raw.as_deref(), &user)?;
    let page = app.list_tasks(&user, query).await?;
    Ok(Json(TaskPage {
        items: page.items.iter().map(TaskDto::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// Creates a task.
#[utoipa::path(post, path = "/tasks", operation_id = "create_task", tag = "tasks",
    request_body = TaskBody,
    responses(
        (status = 201, description = "the new task", body = TaskDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn create_task(
    Caller(app, user): Caller,
    JsonBody(body): JsonBody<TaskBody>,
) -> Result<Response, ApiError> {
    let input = TaskInput::try_from(body)?;
    let task = app.create_task(&user, input).await?;
    let mut resp = task_response(StatusCode::CREATED, &task);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/tasks/{}", task.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", operation_id = "get_task", tag = "tasks",
    params(Id<TaskId>),
    responses(
        (status = 200, description = "the task", body = TaskDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn get_task(Caller(app, user): Caller, Id(id): Id<TaskId>) -> Result<Response, ApiError> {
    let task = app.get_task(&user, id).await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Changes some fields of a task; `null` clears a nullable field.
///
/// `recurrence` (§2.3), applied in the same transaction as the rest of the change:
/// on a one-off task it makes the task the first instance of a new series, as creating a
/// recurring task does (the due date moves to the rule's first occurrence from it); on an
/// instance it replaces its series' rule for the instances after this one (the rule restarts
/// at this instance's due date, `next_occurrence` is recomputed, the same rule changes
/// nothing, and a completed instance's next one is made at once); `null` ends the task's
/// series as `DELETE /api/series/{id}` does (every instance, this one included, stays as a
/// one-off task). The response shows the rule the task follows now. An invalid or
/// never-matching rule is a 422 naming `recurrence`.
#[utoipa::path(patch, path = "/tasks/{id}", operation_id = "update_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    request_body = TaskPatchBody,
    responses(
        (status = 200, description = "the task after the change", body = TaskDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn update_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<TaskPatchBody>,
) -> Result<Response, ApiError> {
    let changes = TaskChanges::try_from(body)?;
    let task = app.update_task(&user, id, changes, if_match).await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Replaces a task: fields left out go back to their defaults, except `recurrence`: left
/// out, the task's series stays as it is; given (a rule or `null`), it does what it does
/// on PATCH.
#[utoipa::path(put, path = "/tasks/{id}", operation_id = "replace_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    request_body = TaskBody,
    responses(
        (status = 200, description = "the task after the change", body = TaskDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn replace_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<TaskBody>,
) -> Result<Response, ApiError> {
    let input = TaskInput::try_from(body)?;
    let task = app.replace_task(&user, id, input, if_match).await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Deletes a task.
#[utoipa::path(delete, path = "/tasks/{id}", operation_id = "delete_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    responses((status = 204, description = "deleted")))]
pub async fn delete_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
) -> Deleted {
    deleted(app.delete_task(&user, id, if_match).await)
}

/// Completes a task (completing a completed task changes nothing).
///
/// For an instance of an active `after_completion` series, `next` is the instance the
/// recurrence consumer makes for it, when that is reported within a short wait: up to 1 s
/// when this process runs the `worker` role; in an API-only process, as long as
/// `--next-instance-wait-ms` says (default 1000, assuming a worker on the same database;
/// 0: none runs, answer at once). Otherwise, or when it comes later, `next` is null and the
/// instance shows up on `/api/stream`. Paused, `fixed`-mode or deleted series answer at once.
#[utoipa::path(post, path = "/tasks/{id}/complete", operation_id = "complete_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    responses(
        (status = 200, description = "the completed task and the next instance of its series, if any", body = CompletionDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn complete_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    let done = app.complete_task(&user, id, if_match).await?;
    Ok(completion_response(done))
}

/// Flips a task between pending and completed (the seeds' clients' "toggle complete");
/// a completion answers `next` as `POST /api/tasks/{id}/complete` does.
#[utoipa::path(patch, path = "/tasks/{id}/complete", operation_id = "toggle_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    responses(
        (status = 200, description = "the task after the flip (and the next instance, when it was completed)", body = CompletionDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn toggle_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    let done = app.toggle_task(&user, id, if_match).await?;
    Ok(completion_response(done))
}

/// Reopens a completed task.
#[utoipa::path(post, path = "/tasks/{id}/reopen", operation_id = "reopen_task", tag = "tasks",
    params(Id<TaskId>, IfMatch),
    responses(
        (status = 200, description = "the reopened task", body = TaskDto,
            headers(("ETag" = String, description = "the task's version, quoted"))),
    ))]
pub async fn reopen_task(
    Caller(app, user): Caller,
    Id(id): Id<TaskId>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    let task = app.reopen_task(&user, id, if_match).await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// The caller's tags with how many tasks carry each, most used first.
#[utoipa::path(get, path = "/tags", operation_id = "list_tags", tag = "tags",
    responses((status = 200, description = "the tags", body = Vec<TagDto>)))]
pub async fn list_tags(Caller(app, user): Caller) -> Result<impl IntoResponse, ApiError> {
    let tags = app.list_tags(&user).await?;
    Ok(Json(tags.into_iter().map(TagDto::from).collect::<Vec<_>>()))
}
