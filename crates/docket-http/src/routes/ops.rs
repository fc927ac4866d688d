//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.
//! None needs credentials; none reveals user data.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ApiError, Unavailable};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers.
    pub status: &'static str,
    /// The database backend (`sqlite`, `postgres`).
    pub database: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "ops",
    responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "ops",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, response = Unavailable),
    ))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    st.app.ready().await?;
    Ok(Json(Readiness { status: "ok", database: st.app.store().backend() }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "ops",
    responses((status = 200, description = "metrics", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics() -> Response {
    let text = match crate::observe::prometheus() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => "# metrics are recorded by another recorder in this process\n".to_owned(),
    };
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "ops",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
pub async fn openapi(State(st): State<AppState>) -> Response {
    let mut resp = st.openapi_json.as_ref().clone().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
