//! Extractors that answer with problems instead of axum's plain-text rejections.
//!
//! * [`Caller`] — the authenticated user (`Authorization: Bearer …`) and the app to call for
//!   them; on the seeds' path form `/api/{user_id}/…` it also checks that `{user_id}` is the
//!   caller (403 otherwise).
//! * [`StreamCaller`] — the same for `/api/stream` and `/api/ws`, which also accept the token
//!   as `?access_token=` (browsers cannot set headers on `EventSource`/`WebSocket`).
//! * [`JsonBody`] — a JSON body: 415 without a JSON content type, 413 over the limit, 400 for
//!   malformed JSON, 422 naming the field for a wrong type or a missing field. Unknown fields
//!   are ignored.
//! * [`IfMatch`] — an optional `If-Match: "<version>"` (400 when malformed).
//! * [`Id`] (and the nested `TaskReminderIdParam`, `DeliveryIdParam`) — a path's id (404
//!   when it is not one).
//! * [`ClientIp`] — the peer address, or the first `X-Forwarded-For` hop when trusted.
//!
//! The header and path extractors document themselves (`IntoParams`): a route lists
//! `params(Id<TaskId>, IfMatch)` and the document says what they read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use docket_app::{App, AppError};
use docket_core::{FieldError, User};
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, SchemaType};
use utoipa::openapi::{Required, Type};

use crate::AppState;
use crate::problem::ApiError;

/// The authenticated caller, with the app to call on their behalf.
pub struct Caller(pub Arc<App>, pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer_token(parts)? else {
            return Err(AppError::unauthorized(
                "missing credentials; send 'Authorization: Bearer <token>' (log in or create a token)",
            )
            .into());
        };
        let user = state.app.authenticate(token).await?;
        if let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((_, id)) = params.iter().find(|(k, _)| *k == "user_id")
            && id.parse::<uuid::Uuid>().ok() != Some(user.id.as_uuid())
        {
            return Err(AppError::Forbidden.into());
        }
        Ok(Caller(Arc::clone(&state.app), user))
    }
}

/// The token of an `Authorization: Bearer …` header, if the request has the header.
fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value =
        value.to_str().map_err(|_| AppError::unauthorized("Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token)),
        _ => Err(AppError::unauthorized(
            "Authorization header must use the Bearer scheme ('Authorization: Bearer <token>')",
        )
        .into()),
    }
}

/// The authenticated caller of a streaming route: a bearer header, or, because browsers'
/// `EventSource` and `WebSocket` cannot send headers, an `access_token` query parameter.
pub struct StreamCaller(pub Arc<App>, pub User);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let from_query = crate::query::param(parts.uri.query(), "access_token");
        let token = match (bearer_token(parts)?, from_query.as_deref()) {
            (Some(token), _) | (None, Some(token)) => token.to_owned(),
            (None, None) => {
                return Err(AppError::unauthorized(
                    "missing credentials; send 'Authorization: Bearer <token>' or '?access_token=<token>'",
                )
                .into());
            }
        };
        let user = state.app.authenticate(&token).await?;
        Ok(StreamCaller(Arc::clone(&state.app), user))
    }
}

/// A JSON request body deserialised into `T`.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(
                "request body must be JSON; send 'Content-Type: application/json'".to_owned(),
            ));
        }
        let limit = req.extensions().get::<BodyLimit>().map_or(crate::DEFAULT_BODY_LIMIT, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest("request body could not be read".to_owned())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The body limit in force, for messages (set by the router next to `DefaultBodyLimit`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses JSON, telling malformed text (400) from a well-formed value of the wrong shape
/// (422 naming the field where serde found the problem).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => data_error(&path, &inner).into(),
                _ => ApiError::BadRequest(format!("request body is not valid JSON: {inner}")),
            });
        }
    };
    de.end().map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

fn data_error(path: &str, e: &serde_json::Error) -> FieldError {
    // serde_json's messages end with " at line 1 column 12"; the field says where instead.
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let path = if path == "." { "" } else { path };
    if path.starts_with('[') {
        return FieldError::custom("body", "invalid_type", "request body must be a JSON object");
    }
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        let field = if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
        return FieldError::custom(field, "required", format!("{name} is required"));
    }
    let field = if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    FieldError::custom(field, "invalid_type", text)
}

/// `If-Match: "<version>"`; `*` or no header mean no precondition.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let bad = || {
            ApiError::BadRequest(
                "If-Match must be one entity tag such as \"3\" (the task's ETag) or *".to_owned(),
            )
        };
        let text = v.to_str().map_err(|_| bad())?.trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let version = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(bad)?;
        Ok(IfMatch(Some(version)))
    }
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let param = param(ParameterIn::Header, "If-Match", "the ETag the change is based on");
        let nullable = SchemaType::Array(vec![Type::String, Type::Null]);
        vec![param.required(Required::False).schema(Some(Object::with_type(nullable))).build()]
    }
}

/// A documented parameter named `name` in `place`: a required string unless changed.
fn param(place: ParameterIn, name: &str, description: &str) -> ParameterBuilder {
    Parameter::builder()
        .name(name)
        .parameter_in(place)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(Object::with_type(Type::String)))
}

/// The client's address, for rate limiting.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(ip));
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

/// An id type a path names, and what it identifies: the 404 for one that does not parse says
/// "{WHAT} not found", and the document describes the parameter as "{WHAT} id".
pub trait PathId: FromStr {
    const WHAT: &'static str;
}

macro_rules! path_ids {
    ($($id:ty => $what:literal),* $(,)?) => {$(
        impl PathId for $id {
            const WHAT: &'static str = $what;
        }
    )*};
}

path_ids! {
    docket_core::TaskId => "task",
    docket_core::CategoryId => "category",
    docket_core::TokenId => "token",
    docket_core::ReminderId => "reminder",
    docket_core::NotificationId => "notification",
    docket_core::SeriesId => "series",
    docket_core::WebhookId => "webhook",
    docket_core::DeliveryId => "delivery",
}

/// Reads path parameter `key` as a `T`; absent or not a `T` is a 404 (not found).
async fn path_id<T: PathId, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    key: &str,
) -> Result<T, ApiError> {
    let not_found = || ApiError::App(AppError::NotFound(T::WHAT));
    let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| not_found())?;
    let value = params.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    value.and_then(|v| v.parse::<T>().ok()).ok_or_else(not_found)
}

/// Declares an extractor of path parameter `key` as a `T`, documented as "{WHAT} id".
macro_rules! id_extractor {
    ($(#[$doc:meta])* $name:ident$(<$t:ident>)?, $id:ty, $key:literal) => {
        $(#[$doc])*
        pub struct $name$(<$t>)?(pub $id);

        impl<S: Send + Sync $(, $t: PathId)?> FromRequestParts<S> for $name$(<$t>)? {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                path_id(parts, state, $key).await.map($name)
            }
        }

        impl$(<$t: PathId>)? IntoParams for $name$(<$t>)? {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                let what = format!("{} id", <$id as PathId>::WHAT);
                vec![param(ParameterIn::Path, $key, &what).build()]
            }
        }
    };
}

id_extractor!(
    /// The `{id}` of a path, as the id type of what it names (`Id<TaskId>`).
    Id<T>,
    T,
    "id"
);
id_extractor!(
    /// The `{rid}` of a task's reminder path.
    TaskReminderIdParam,
    docket_core::ReminderId,
    "rid"
);
id_extractor!(
    /// The `{did}` of a webhook delivery path.
    DeliveryIdParam,
    docket_core::DeliveryId,
    "did"
);
