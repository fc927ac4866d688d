//! The route table. Every route is registered through `utoipa_axum::routes!`, so a route
//! cannot exist without its OpenAPI operation (a test checks nothing else adds routes).
//!
//! Task routes are mounted twice: at `/api` and at the seeds' `/api/{user_id}` (the `Caller`
//! extractor answers 403 when `{user_id}` is not the caller). The second copy is documented
//! too, with `_by_user_path` operation ids, the `user_id` parameter and its 403.

pub mod audit;
pub mod auth;
pub mod categories;
pub mod notifications;
pub mod ops;
pub mod recurrence;
pub mod reminders;
pub mod series;
pub mod stream;
pub mod tasks;
pub mod webhooks;

use axum::Json;
use axum::http::StatusCode;
use docket_app::AppError;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Spec, Ref, RefOr, Required};
use utoipa::{IntoResponses as _, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::problem::{self, ApiError};

/// The base document: info, shared components and the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Docket",
        description = "A task service: tasks with priorities, tags, categories and due dates.\n\nErrors are RFC 9457 `application/problem+json`; a 422 lists each bad field in `errors`.",
    ),
    components(
        schemas(problem::Problem, problem::FieldProblem),
        responses(
            problem::BadRequest,
            problem::Unauthorized,
            problem::Forbidden,
            problem::NotFound,
            problem::Conflict,
            problem::PreconditionFailed,
            problem::PayloadTooLarge,
            problem::UnsupportedMediaType,
            problem::Unprocessable,
            problem::TooManyRequests,
            problem::Unavailable,
        ),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "accounts, sessions and personal access tokens"),
        (name = "tasks", description = "tasks"),
        (name = "tags", description = "tags"),
        (name = "categories", description = "categories"),
        (name = "recurrence", description = "recurrence rules: preview their occurrences"),
        (name = "audit", description = "the audit log: task history and activity"),
        (name = "notifications", description = "in-app notifications: list, mark read"),
        (name = "series", description = "recurring series: list, pause, resume, delete"),
        (name = "webhooks", description = "webhooks: signed event deliveries with retries"),
        (name = "reminders", description = "reminders of tasks: when, where, snooze"),
        (name = "stream", description = "real time: the caller's task events as they commit"),
        (name = "ops", description = "health, readiness, metrics, this document"),
    ),
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Spec) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT or personal access token (dkt_…)".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

fn task_routes() -> OpenApiRouter<AppState> {
    authenticated(
        OpenApiRouter::new()
            .routes(routes!(tasks::list_tasks, tasks::create_task))
            .routes(routes!(
                tasks::get_task,
                tasks::update_task,
                tasks::replace_task,
                tasks::delete_task
            ))
            .routes(routes!(tasks::complete_task, tasks::toggle_task))
            .routes(routes!(tasks::reopen_task))
            .routes(routes!(audit::task_history)),
    )
}

/// Every route with its documentation.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    let api = authenticated(
        OpenApiRouter::new()
            .routes(routes!(auth::me))
            .routes(routes!(auth::list_tokens, auth::create_token))
            .routes(routes!(auth::delete_token))
            .routes(routes!(audit::activity))
            .routes(routes!(reminders::list_reminders, reminders::create_reminder))
            .routes(routes!(reminders::delete_reminder))
            .routes(routes!(reminders::snooze_reminder))
            .routes(routes!(reminders::retry_reminder))
            .routes(routes!(notifications::list_notifications))
            .routes(routes!(notifications::read_notification))
            .routes(routes!(notifications::read_all_notifications))
            .routes(routes!(series::list_series))
            .routes(routes!(series::get_series, series::delete_series))
            .routes(routes!(series::pause_series))
            .routes(routes!(series::resume_series))
            .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
            .routes(routes!(
                webhooks::get_webhook,
                webhooks::update_webhook,
                webhooks::delete_webhook
            ))
            .routes(routes!(webhooks::list_deliveries))
            .routes(routes!(webhooks::retry_delivery))
            .routes(routes!(stream::stream))
            .routes(routes!(stream::websocket))
            .routes(routes!(tasks::list_tags))
            .routes(routes!(recurrence::preview))
            .routes(routes!(categories::list_categories, categories::create_category))
            .routes(routes!(
                categories::get_category,
                categories::update_category,
                categories::delete_category
            )),
    )
    .merge(task_routes())
    .routes(routes!(auth::signup))
    .routes(routes!(auth::login));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api", api)
        .nest(USER_PATH_PREFIX, task_routes())
        .merge(ops_routes())
}

/// Marks every route of `routes` as behind `Caller` (or `StreamCaller`): the document gives
/// each one the bearer scheme (and so, by [`problems_from_inputs`], 401 and 503). The router
/// tests check that each route so marked answers 401 without credentials, and no other does.
fn authenticated(mut routes: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for item in routes.get_openapi_mut().paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
        }
    }
    routes
}

/// Documents the problems an operation answers because of what it reads, so that no handler
/// repeats them: a path id (`Id`, …) 404 when there is no such thing of the caller's;
/// a JSON body (`JsonBody`) [`problem::BodyProblems`]; `If-Match` (`IfMatch`)
/// [`problem::IfMatchProblems`]; the bearer scheme (`Caller`) [`problem::AuthProblems`].
fn problems_from_inputs(op: &mut Operation) {
    let params = op.parameters.iter().flatten().filter_map(|p| match p {
        RefOr::T(p) => Some(p),
        RefOr::Ref(_) => None,
    });
    let (mut path_id, mut if_match) = (false, false);
    for p in params {
        path_id |= p.parameter_in == ParameterIn::Path && p.name != "user_id";
        if_match |= p.parameter_in == ParameterIn::Header && p.name == "If-Match";
    }
    let responses = &mut op.responses.responses;
    if path_id {
        responses.insert("404".to_owned(), Ref::from_response_name("NotFound").into());
    }
    if op.request_body.is_some() {
        responses.extend(problem::BodyProblems::responses());
    }
    if if_match {
        responses.extend(problem::IfMatchProblems::responses());
    }
    if op.security.is_some() {
        responses.extend(problem::AuthProblems::responses());
    }
}

/// The operations of a path item, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    let ops = [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
        &mut item.options,
    ];
    ops.into_iter().flatten()
}

/// Only the operations routes, for a process that does not serve the API (a worker).
pub(crate) fn ops_only() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(ops_routes())
}

fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
}

/// What most handlers answer: `T` as JSON, or a problem.
pub type Reply<T> = Result<Json<T>, ApiError>;

/// Answers `item` in its wire form.
pub fn one<T, D: for<'a> From<&'a T>>(item: &T) -> Reply<D> {
    Ok(Json(D::from(item)))
}

/// Answers `items` in their wire form, in order.
pub fn list<T, D: for<'a> From<&'a T>>(items: &[T]) -> Reply<Vec<D>> {
    Ok(Json(items.iter().map(D::from).collect()))
}

/// What a creating handler answers: 201 with `T` as JSON, or a problem.
pub type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

/// Answers the created `item` in its wire form.
pub fn created<T, D: for<'a> From<&'a T>>(item: &T) -> Created<D> {
    Ok((StatusCode::CREATED, Json(D::from(item))))
}

/// What a deleting handler answers: 204, or a problem.
pub type Deleted = Result<StatusCode, ApiError>;

/// Answers a deletion: done (204, with no body whatever the use case returns) or why not.
pub fn deleted<T>(done: Result<T, AppError>) -> Deleted {
    done?;
    Ok(StatusCode::NO_CONTENT)
}

const USER_PATH_PREFIX: &str = "/api/{user_id}";

/// Completes the generated document: each operation gets the problems its inputs answer
/// with ([`problems_from_inputs`]); the seeds' user-path copies get their own operation ids,
/// the `user_id` parameter and the 403 they can answer.
pub(crate) fn finish(mut spec: Spec) -> Spec {
    let prefix = format!("{USER_PATH_PREFIX}/");
    for (path, item) in spec.paths.paths.iter_mut() {
        operations(item).for_each(problems_from_inputs);
        if !path.starts_with(&prefix) {
            continue;
        }
        for op in operations(item) {
            op.operation_id = op.operation_id.take().map(|id| format!("{id}_by_user_path"));
            let user_id = Parameter::builder()
                .name("user_id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("the caller's own user id (any other answers 403)"))
                .schema(Some(utoipa::openapi::schema::Object::with_type(
                    utoipa::openapi::Type::String,
                )))
                .build();
            op.parameters.get_or_insert_with(Vec::new).insert(0, user_id.into());
            op.responses
                .responses
                .insert("403".to_owned(), Ref::from_response_name("Forbidden").into());
        }
    }
    spec
}
