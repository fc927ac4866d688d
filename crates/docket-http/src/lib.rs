//! Docket's HTTP edge: the axum router over [`docket_app::App`], its JSON wire types, RFC 9457
//! problems, and the OpenAPI 3.1 document generated from the same route table.
//!
//! The binary calls [`router`] and [`openapi`]. Handlers convert wire input into domain
//! values, call one use case and convert the result back; business rules live in docket-app.
//! Real-time streams (`/api/stream`, `/api/ws`) are served from the app's hub. Routes an
//! adapter serves to its own peer (Dapr's callbacks, in `docket-dapr`) are not here: the
//! binary mounts them through [`HttpConfig::callbacks`], and they answer with [`ApiError`].

mod dto;
mod extract;
mod observe;
mod problem;
mod query;
mod ratelimit;
mod routes;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use docket_app::App;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use problem::{ApiError, FieldProblem, Problem};

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// How the HTTP edge behaves.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Larger request bodies get a 413 (default 1 MiB).
    pub body_limit: usize,
    /// Login attempts allowed per client address and email within `login_window` (default 10).
    pub login_attempts: u32,
    /// The login rate-limit window (default 1 minute).
    pub login_window: Duration,
    /// Take the client address from the first `X-Forwarded-For` hop (only behind a proxy that
    /// sets it; default false: the peer address).
    pub trust_forwarded_for: bool,
    /// Serve the API (default true). Without it only the operations routes are served
    /// (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`): a worker replica's probes.
    pub serve_api: bool,
    /// Routes another adapter serves to its own peer beside the API, whatever the roles (in
    /// Dapr mode, the sidecar's callbacks: `docket_dapr::callbacks`). They run under the same
    /// layers (request span, metrics, security headers, problems for bare errors) and answer
    /// with [`ApiError`], but are not in the OpenAPI document: they are not the product's API.
    pub callbacks: Option<axum::Router>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: DEFAULT_BODY_LIMIT,
            login_attempts: 10,
            login_window: Duration::from_secs(60),
            trust_forwarded_for: false,
            serve_api: true,
            callbacks: None,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub app: Arc<App>,
    pub config: Arc<HttpConfig>,
    pub login_limiter: Arc<ratelimit::LoginLimiter>,
    pub openapi_json: Arc<String>,
}

/// The whole API as one router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so logins are rate-limited per peer.
pub fn router(app: Arc<App>, mut config: HttpConfig) -> axum::Router {
    observe::prometheus();
    let callbacks = config.callbacks.take().unwrap_or_default();
    let routes = if config.serve_api { routes::api() } else { routes::ops_only() };
    let (router, spec) = routes.split_for_parts();
    let spec = routes::finish(spec);
    let openapi_json = spec.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    });
    let state = AppState {
        app,
        login_limiter: Arc::new(ratelimit::LoginLimiter::new(
            config.login_attempts,
            config.login_window,
        )),
        config: Arc::new(config.clone()),
        openapi_json: Arc::new(openapi_json),
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    let security = observe::SECURITY_HEADERS.map(|(name, value)| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            observe::header_value(value),
        )
    });
    let [h1, h2, h3, h4, h5] = security;
    router.fallback(not_found).with_state(state).merge(callbacks).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(x_request_id))
            .layer(h1)
            .layer(h2)
            .layer(h3)
            .layer(h4)
            .layer(h5)
            .layer(axum::middleware::from_fn(observe::observe))
            .layer(CatchPanicLayer::custom(observe::panic_response))
            .layer(axum::Extension(extract::BodyLimit(config.body_limit)))
            .layer(DefaultBodyLimit::max(config.body_limit)),
    )
}

async fn not_found() -> problem::ApiError {
    problem::ApiError::NoRoute
}

/// The OpenAPI 3.1 document of [`router`] (also served at `GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::finish(routes::api().into_openapi())
}
