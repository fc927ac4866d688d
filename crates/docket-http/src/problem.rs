//! Errors on the wire: RFC 9457 `application/problem+json`.
//!
//! [`ApiError`] is every failure a handler or an extractor can answer with: the use cases'
//! [`AppError`] plus what only the edge can get wrong (malformed JSON, a wrong content type,
//! an oversize body, an unknown route or method). Its one `IntoResponse` match decides status,
//! title and headers. It has no side effects: the text of internal and dependency errors is
//! handed to the observing middleware in a response extension ([`LogDetail`]), logged there
//! once inside the request span, and never shown to the client.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use docket_app::AppError;
use docket_core::{FieldError, ValidationErrors};
use serde::Serialize;
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, ToResponse, ToSchema};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One bad field of a 422.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The input field (`title`, `tags[2]`, `due_before`).
    pub field: String,
    /// A stable machine code (`required`, `too_long`, `invalid_choice`, …).
    pub code: String,
    /// What is wrong and how to fix it, for people.
    pub message: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:docket:problem:validation`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The bad fields of a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// The task's current version, on a 412.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

/// Text for the logs that a response carries to the observing middleware, which removes it.
#[derive(Debug, Clone)]
pub struct LogDetail {
    pub status: StatusCode,
    pub message: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The request cannot be read: malformed JSON, a bad header, a bad query string (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::App(AppError::Validation(e))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::App(AppError::Validation(ValidationErrors::single(e)))
    }
}

/// How many seconds clients are told to wait when a dependency is down.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> Problem {
    Problem {
        kind: format!("urn:docket:problem:{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        errors: None,
        current_version: None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let mut headers: Vec<(header::HeaderName, HeaderValue)> = Vec::new();
        let mut log = None;
        let body = match self {
            ApiError::App(e) => match e {
                AppError::Validation(errors) => {
                    let detail = match errors.0.as_slice() {
                        [one] => one.to_string(),
                        many => format!("{} fields are invalid; see errors", many.len()),
                    };
                    let mut p =
                        problem(S::UNPROCESSABLE_ENTITY, "validation", "validation failed", detail);
                    p.errors = Some(
                        errors
                            .0
                            .into_iter()
                            .map(|f| FieldProblem {
                                field: f.field,
                                code: f.code,
                                message: f.message,
                            })
                            .collect(),
                    );
                    p
                }
                AppError::Unauthorized(why) => {
                    headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                    problem(S::UNAUTHORIZED, "unauthorized", "unauthorized", why)
                }
                AppError::Forbidden => problem(
                    S::FORBIDDEN,
                    "forbidden",
                    "forbidden",
                    "this path belongs to another user; use your own id or the /api/tasks form"
                        .to_owned(),
                ),
                AppError::NotFound(what) => {
                    problem(S::NOT_FOUND, "not-found", "not found", format!("{what} not found"))
                }
                AppError::Conflict(msg) => problem(S::CONFLICT, "conflict", "conflict", msg),
                AppError::PreconditionFailed { current_version } => {
                    if let Ok(v) = HeaderValue::from_str(&format!("\"{current_version}\"")) {
                        headers.push((header::ETAG, v));
                    }
                    let mut p = problem(
                        S::PRECONDITION_FAILED,
                        "precondition-failed",
                        "version mismatch",
                        format!(
                            "the task changed: its current version is {current_version}; fetch it again and retry with If-Match: \"{current_version}\""
                        ),
                    );
                    p.current_version = Some(current_version);
                    p
                }
                AppError::RateLimited { retry_after_secs } => {
                    headers.push((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
                    problem(
                        S::TOO_MANY_REQUESTS,
                        "rate-limited",
                        "too many requests",
                        format!("too many attempts; retry in {retry_after_secs} s"),
                    )
                }
                AppError::Unavailable(msg) => {
                    log = Some(LogDetail { status: S::SERVICE_UNAVAILABLE, message: msg });
                    headers.push((header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_SECS)));
                    problem(
                        S::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "service unavailable",
                        "a dependency is unavailable; retry shortly".to_owned(),
                    )
                }
                AppError::Internal(e) => {
                    log = Some(LogDetail {
                        status: S::INTERNAL_SERVER_ERROR,
                        message: format!("{e:#}"),
                    });
                    internal_problem()
                }
            },
            ApiError::BadRequest(msg) => {
                problem(S::BAD_REQUEST, "malformed-request", "malformed request", msg)
            }
            ApiError::UnsupportedMediaType(msg) => problem(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "unsupported media type",
                msg,
            ),
            ApiError::PayloadTooLarge { limit } => problem(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "payload too large",
                format!("request body is larger than {limit} bytes; send less"),
            ),
            ApiError::NoRoute => problem(
                S::NOT_FOUND,
                "no-route",
                "not found",
                "no such route; see /openapi.json for the API".to_owned(),
            ),
            ApiError::MethodNotAllowed => problem(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed",
                "this route does not accept this method; see the Allow header".to_owned(),
            ),
        };
        let mut resp = problem_response(body);
        resp.headers_mut().extend(headers);
        if let Some(log) = log {
            resp.extensions_mut().insert(log);
        }
        resp
    }
}

pub(crate) fn internal_problem() -> Problem {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        "something went wrong on our side; it has been logged".to_owned(),
    )
}

/// A problem as a response, with its status and content type.
pub(crate) fn problem_response(p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&p).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

/// Declares the reusable problem responses of the OpenAPI document, one per status: a
/// `ToResponse` type per name (registered in `routes::ApiDoc`, named by routes' `response =`).
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident: $description:literal;)*) => {$(
        $(#[$doc])*
        #[derive(ToResponse)]
        #[response(description = $description, content_type = "application/problem+json")]
        pub struct $name(#[allow(dead_code)] Problem);
    )*};
}

problem_responses! {
    /// The request cannot be read: malformed JSON, a bad header, a bad query string.
    BadRequest: "malformed request";
    /// No or invalid credentials.
    Unauthorized: "missing or invalid credentials";
    /// The path names another user.
    Forbidden: "another user's path";
    /// The resource does not exist or is not the caller's.
    NotFound: "not found";
    /// A uniqueness rule was broken.
    Conflict: "conflict";
    /// `If-Match` named a stale version.
    PreconditionFailed: "version mismatch";
    /// The body is larger than the limit.
    PayloadTooLarge: "body too large";
    /// The body is not JSON.
    UnsupportedMediaType: "unsupported media type";
    /// The input breaks a rule; `errors` names each field.
    Unprocessable: "validation failed";
    /// Too many attempts; see `Retry-After`.
    TooManyRequests: "rate limited";
    /// A dependency is down; see `Retry-After`.
    Unavailable: "dependency unavailable";
}

/// Declares a set of problem responses that one extractor can answer with, for routes to
/// list as one name in `responses(...)`: each status refers to its reusable response.
macro_rules! problem_set {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $response:ident),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$(
                    ($status.to_owned(), Ref::from_response_name(stringify!($response)).into()),
                )*])
            }
        }
    };
}

problem_set!(
    /// What authentication answers: no or bad credentials (401), a store that cannot check
    /// them (503). Every route behind `Caller` gets them from `routes::authenticated`.
    AuthProblems { "401" => Unauthorized, "503" => Unavailable }
);
problem_set!(
    /// What `JsonBody` answers: malformed JSON (400), too large (413), not JSON (415), a field
    /// of the wrong type or missing (422).
    BodyProblems {
        "400" => BadRequest,
        "413" => PayloadTooLarge,
        "415" => UnsupportedMediaType,
        "422" => Unprocessable,
    }
);
problem_set!(
    /// What a write conditional on `IfMatch` answers: a malformed header (400), a stale
    /// version (412).
    IfMatchProblems { "400" => BadRequest, "412" => PreconditionFailed }
);
