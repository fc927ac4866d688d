//! `/api/stream` (Server-Sent Events) and `/api/ws` (WebSocket): the caller's task events as
//! they commit (§3 real time), from `docket_app::realtime`.
//!
//! SSE: each event is `id: <sequence>`, `event: <CloudEvent type>`, `data: <CloudEvent JSON>`;
//! a client resumes with `Last-Event-ID` (or `?last_event_id=`) and receives exactly the events
//! it missed. When it cannot be caught up, it receives `event: resync` with
//! `data: {"type": "resync", "sequence": N, "reason": …}`: reload, the stream continues after N.
//! WebSocket: one text frame per message, the same JSON (a CloudEvent, or the resync object;
//! they differ by `specversion`); `?last_event_id=` resumes. On shutdown SSE streams end and
//! WebSockets close with 1001 (going away).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use docket_app::realtime::{Item, Subscription};
use futures::stream;
use serde_json::json;
use utoipa::IntoParams;

use crate::extract::StreamCaller;
use crate::problem::{ApiError, BadRequest};

/// The documented query parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamParams {
    /// Resume after this sequence (the last `id:` received); `Last-Event-ID` wins over it.
    last_event_id: Option<i64>,
    /// The bearer token, for clients that cannot send an `Authorization` header.
    access_token: Option<String>,
}

/// How often an idle SSE stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The position to resume after: `Last-Event-ID`, else `?last_event_id=`; absent → live only.
fn resume_after(headers: &HeaderMap, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let from_query = crate::query::param(raw, "last_event_id");
    let value = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".to_owned()))?
                .to_owned(),
        ),
        None => from_query,
    };
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "Last-Event-ID '{v}' is not a sequence this stream sent (a non-negative integer)"
            ))),
        },
    }
}

/// The JSON of a resync message.
fn resync_json(sequence: i64, reason: &str) -> String {
    json!({"type": "resync", "sequence": sequence, "reason": reason}).to_string()
}

fn sse_event(item: Item) -> Event {
    match item {
        Item::Event(m) => Event::default().id(m.seq.to_string()).event(&m.event_type).data(&m.json),
        Item::Resync { sequence, reason } => Event::default()
            .id(sequence.to_string())
            .event("resync")
            .data(resync_json(sequence, reason.as_str())),
    }
}

/// The caller's task events as Server-Sent Events.
#[utoipa::path(get, path = "/stream", operation_id = "stream", tag = "stream",
    params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this sequence")),
    responses(
        (status = 200, description = "an endless `text/event-stream`: `id:` sequence, `event:` CloudEvent type, `data:` the CloudEvent; `event: resync` when events were skipped", content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
    ))]
pub async fn stream(
    StreamCaller(app, user): StreamCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let after = resume_after(&headers, raw.as_deref())?;
    let subscription = app.subscribe(&user, after)?;
    let events = stream::unfold(subscription, |mut sub| async move {
        let item = sub.next().await?;
        Some((Ok::<_, Infallible>(sse_event(item)), sub))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The caller's task events over a WebSocket: one JSON text frame per event.
#[utoipa::path(get, path = "/ws", operation_id = "websocket", tag = "stream",
    params(StreamParams),
    responses(
        (status = 101, description = "switching to a WebSocket that carries one CloudEvent JSON text frame per event (or a resync object)"),
        (status = 400, response = BadRequest),
    ))]
pub async fn websocket(
    StreamCaller(app, user): StreamCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!("/api/ws needs a WebSocket upgrade request: {e}"))
    })?;
    let after = resume_after(&headers, raw.as_deref())?;
    let subscription = app.subscribe(&user, after)?;
    Ok(upgrade.on_upgrade(move |socket| pump(socket, subscription)))
}

/// Sends the subscription's items until the client goes or the server stops.
async fn pump(mut socket: WebSocket, mut subscription: Subscription) {
    loop {
        tokio::select! {
            item = subscription.next() => {
                let Some(item) = item else {
                    let frame = CloseFrame {
                        code: close_code::AWAY,
                        reason: "server shutting down".into(),
                    };
                    let _ = socket.send(WsMessage::Close(Some(frame))).await;
                    return;
                };
                let text = match item {
                    Item::Event(m) => m.json.clone(),
                    Item::Resync { sequence, reason } => resync_json(sequence, reason.as_str()),
                };
                if socket.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by the socket itself; anything else a client sends is
                // ignored: the stream is one-way.
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
