//! Cross-cutting layers: the request span and its one log line, Prometheus metrics, logging
//! of internal errors (once, inside the span), security headers, and turning any bare error
//! response (axum's 405, a caught panic) into a problem.
//!
//! Logged per request: method, matched route (never the raw path, which holds ids), status,
//! latency, request id. Never bodies, headers with credentials, or query strings.

use docket_events::trace::TraceContext;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::problem::{ApiError, LogDetail, internal_problem, problem_response};

const DURATION_METRIC: &str = "http_request_duration_seconds";
const REQUESTS_METRIC: &str = "http_requests_total";
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide Prometheus recorder, installed on first use. `None` when another recorder
/// was installed first (then that one gets our metrics).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION_METRIC.to_owned()), &BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The span, the log line, the metrics and the error log of one request.
pub async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route =
        req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let request_id =
        req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    // Continue the caller's trace (W3C `traceparent`) or start one; the events this request
    // writes carry it (`docket_events::trace`).
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .map_or_else(docket_trace::root, docket_trace::child);
    let span = tracing::info_span!(
        "request",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
        request_id = %request_id,
        trace_id = %trace.trace_id(),
    );
    let mut resp = docket_trace::scope(trace, next.run(req).instrument(span.clone())).await;

    let status = resp.status();
    if status.as_u16() >= 400 && !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp = problem_for_bare(resp);
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read, so this connection cannot carry another
        // request; saying so keeps a client from reusing it and losing its next request.
        resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    let latency = start.elapsed();
    span.record("http.status", status.as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        if let Some(detail) = resp.extensions_mut().remove::<LogDetail>() {
            if detail.status.is_server_error() && detail.status != StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(error = %detail.message, "request failed");
            } else {
                tracing::warn!(error = %detail.message, "dependency unavailable");
            }
        }
        tracing::info!("request finished");
    });

    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!(REQUESTS_METRIC, &labels).increment(1);
    metrics::histogram!(DURATION_METRIC, &labels[..2]).record(latency.as_secs_f64());
    resp
}

/// A problem in place of an error response that has no body of ours, keeping its headers
/// (`Allow` on a 405).
fn problem_for_bare(resp: Response) -> Response {
    let (parts, _) = resp.into_parts();
    let mut fresh = match parts.status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
        StatusCode::NOT_FOUND => ApiError::NoRoute.into_response(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit: crate::DEFAULT_BODY_LIMIT }.into_response()
        }
        s if s.is_client_error() => {
            let mut p = internal_problem();
            p.status = s.as_u16();
            p.kind = "about:blank".to_owned();
            p.title = s.canonical_reason().unwrap_or("client error").to_lowercase();
            p.detail = p.title.clone();
            problem_response(p)
        }
        _ => problem_response(internal_problem()),
    };
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh.extensions_mut().extend(parts.extensions);
    fresh
}

/// The last resort when a handler panics: a 500 problem, the panic message for the log.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    let mut resp = problem_response(internal_problem());
    resp.extensions_mut().insert(LogDetail {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("handler panicked: {message}"),
    });
    resp
}

/// The security headers set on every response.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    ("cache-control", "no-store"),
];

pub fn header_value(v: &'static str) -> HeaderValue {
    HeaderValue::from_static(v)
}
