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

use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Spec, Ref, Required};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::problem;

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
        .routes(routes!(audit::task_history))
}

/// Every route with its documentation.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::list_tokens, auth::create_token))
        .routes(routes!(auth::delete_token))
        .merge(task_routes())
        .routes(routes!(audit::activity))
        .routes(routes!(reminders::list_reminders, reminders::create_reminder))
        .routes(routes!(reminders::delete_reminder))
        .routes(routes!(reminders::snooze_reminder))
        .routes(routes!(reminders::retry_reminder))
        .routes(routes!(notifications::list_notifications))
        .routes(routes!(notifications::read_notification))
        .routes(routes!(notifications::read_all_notifications))
        .routes(routes!(series::list_series))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::get_webhook, webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(series::get_series, series::delete_series))
        .routes(routes!(series::pause_series))
        .routes(routes!(series::resume_series))
        .routes(routes!(stream::stream))
        .routes(routes!(stream::websocket))
        .routes(routes!(tasks::list_tags))
        .routes(routes!(recurrence::preview))
        .routes(routes!(categories::list_categories, categories::create_category))
        .routes(routes!(
            categories::get_category,
            categories::update_category,
            categories::delete_category
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api", api)
        .nest(USER_PATH_PREFIX, task_routes())
        .merge(ops_routes())
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

const USER_PATH_PREFIX: &str = "/api/{user_id}";

/// Completes the generated document: the seeds' user-path copies get their own operation
/// ids, the `user_id` parameter and the 403 they can answer.
pub(crate) fn finish(mut spec: Spec) -> Spec {
    let prefix = format!("{USER_PATH_PREFIX}/");
    for (path, item) in spec.paths.paths.iter_mut() {
        if !path.starts_with(&prefix) {
            continue;
        }
        let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for op in ops.into_iter().flatten() {
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
