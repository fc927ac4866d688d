//! Real time: `/api/stream` (SSE) and `/api/ws` (WebSocket) carry exactly the caller's task
//! events, in order; a reconnect with `Last-Event-ID` gets exactly what was missed; both end
//! cleanly when the server shuts down.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::support::{Db, TestServer, on_each_database};

/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(30);

/// One SSE message.
#[derive(Debug, Clone)]
pub(crate) struct SseMessage {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

impl SseMessage {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("SSE data is JSON")
    }
}

/// A reader of one open `text/event-stream` response.
pub(crate) struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    pub(crate) async fn open(s: &TestServer, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = s.http.get(format!("{}/api/stream", s.url)).bearer_auth(token);
        // The stream is endless: no whole-request timeout, only per-message waits below.
        req = req.timeout(Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("open the stream");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        Sse { resp, buf: String::new() }
    }

    /// The next message with data, `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut msg = SseMessage { id: None, event: None, data: String::new() };
                let mut has_data = false;
                for line in frame.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => msg.id = Some(value.to_owned()),
                        "event" => msg.event = Some(value.to_owned()),
                        "data" => {
                            if has_data {
                                msg.data.push('\n');
                            }
                            msg.data.push_str(value);
                            has_data = true;
                        }
                        _ => {} // comments (keep-alives) and unknown fields
                    }
                }
                if has_data {
                    return Some(msg);
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("a stream message within 30 s")
                .expect("read the stream")?;
            self.buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
        }
    }

    /// The next `n` messages.
    async fn take(&mut self, n: usize) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await.expect("the stream is still open"));
        }
        out
    }

    /// Asserts nothing arrives before a marker: writes a task of `token`'s user and checks that
    /// the next message is that task's creation (so nothing else was queued before it).
    async fn expect_only_marker(&mut self, s: &TestServer, token: &str) -> SseMessage {
        let marker = s.post("/api/tasks", token, json!({"title": "marker"})).await;
        assert_eq!(marker.status, StatusCode::CREATED);
        let m = self.next().await.expect("the marker's event");
        assert_eq!(
            m.json()["subject"],
            marker.body["id"],
            "expected the marker event next, got {}",
            m.data
        );
        m
    }
}

fn seq(m: &SseMessage) -> i64 {
    m.id.as_deref().expect("an id").parse().expect("a numeric id")
}

async fn create(s: &TestServer, token: &str, title: &str) -> String {
    let r = s.post("/api/tasks", token, json!({"title": title})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

async fn streams_carry_own_events_and_resume(db: Db) {
    let s = TestServer::start_on(db, Vec::new()).await;
    let (a, a_id) = s.signup("stream-a@example.com").await;
    let (b, _) = s.signup("stream-b@example.com").await;
    let mut sa = Sse::open(&s, &a, None).await;
    let mut sb = Sse::open(&s, &b, None).await;

    let t1 = create(&s, &a, "first").await;
    let r = s.patch(&format!("/api/tasks/{t1}"), &a, json!({"priority": "high"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let tb = create(&s, &b, "b's task").await;
    let r = s.post(&format!("/api/tasks/{t1}/complete"), &a, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);

    let got = sa.take(3).await;
    let types: Vec<&str> = got.iter().map(|m| m.event.as_deref().unwrap_or("")).collect();
    assert_eq!(
        types,
        ["com.todo.task.created", "com.todo.task.updated", "com.todo.task.completed"]
    );
    for m in &got {
        let e = m.json();
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["subject"], t1.as_str());
        assert_eq!(e["type"].as_str(), m.event.as_deref());
        assert_eq!(e["sequence"].as_str().map(|s| s.trim_start_matches('0')), m.id.as_deref());
    }
    assert!(seq(&got[0]) < seq(&got[1]) && seq(&got[1]) < seq(&got[2]), "ids grow");
    assert_eq!(got[1].json()["data"]["changes"]["priority"]["new"], "high");
    // B sees its own task and nothing of A's.
    let mb = sb.next().await.expect("b's event");
    assert_eq!(mb.json()["subject"], tb.as_str());
    sb.expect_only_marker(&s, &b).await;
    // A's stream carried nothing of B's either: its next message is A's next write.
    let marker = sa.expect_only_marker(&s, &a).await;

    // Disconnect, miss three writes, resume from the last id seen.
    drop(sa);
    let t2 = create(&s, &a, "while away").await;
    let r = s.delete(&format!("/api/tasks/{t1}"), &a).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    create(&s, &b, "b again").await;
    let t3 = create(&s, &a, "also while away").await;
    let mut sa = Sse::open(&s, &a, marker.id.as_deref()).await;
    let missed = sa.take(3).await;
    let subjects: Vec<Value> = missed.iter().map(|m| m.json()["subject"].clone()).collect();
    assert_eq!(subjects, [json!(t2), json!(t1), json!(t3)]);
    assert_eq!(missed[1].event.as_deref(), Some("com.todo.task.deleted"));
    assert!(seq(&missed[0]) > seq(&marker));
    // Then live again, with no duplicate of the replayed ones.
    let live = sa.expect_only_marker(&s, &a).await;
    assert!(seq(&live) > seq(&missed[2]));

    // Resuming from 0 replays the whole history of A's events, in order.
    let mut all = Sse::open(&s, &a, Some("0")).await;
    let history = all.take(8).await;
    let ids: Vec<i64> = history.iter().map(seq).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids.last(), Some(&seq(&live)));
    assert!(history.iter().all(|m| m.json()["partitionkey"] == a_id.as_str()));
}

on_each_database!(
    #[tokio::test]
    sse_streams_own_events_and_resumes_sqlite,
    sse_streams_own_events_and_resumes_postgres => streams_carry_own_events_and_resume
);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_open(s: &TestServer, query: &str) -> Ws {
    let url = format!("{}/api/ws?{query}", s.url.replacen("http://", "ws://", 1));
    let (ws, resp) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text frame as JSON.
async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a WebSocket message within 30 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_carries_the_same_messages() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("ws-a@example.com").await;
    let (b, _) = s.signup("ws-b@example.com").await;
    let mut wa = ws_open(&s, &format!("access_token={a}")).await;
    let mut sse = Sse::open(&s, &a, None).await;

    create(&s, &b, "not for a").await;
    let t = create(&s, &a, "over the socket").await;
    let via_ws = ws_next(&mut wa).await;
    let via_sse = sse.next().await.expect("the same event on SSE");
    assert_eq!(via_ws, via_sse.json(), "both transports carry the same CloudEvent");
    assert_eq!(via_ws["subject"], t.as_str());
    assert_eq!(via_ws["type"], "com.todo.task.created");
    let first_seq = via_sse.id.clone().expect("id");

    // Miss one, resume with ?last_event_id=.
    wa.close(None).await.expect("close");
    let r = s.post(&format!("/api/tasks/{t}/complete"), &a, json!({})).await;
    assert!(r.status.is_success(), "{}", r.text);
    let mut wa = ws_open(&s, &format!("access_token={a}&last_event_id={first_seq}")).await;
    let missed = ws_next(&mut wa).await;
    assert_eq!(missed["type"], "com.todo.task.completed");
    assert_eq!(missed["subject"], t.as_str());
    // A client message is ignored, the socket stays usable.
    wa.send(tungstenite::Message::Text("hello".into())).await.expect("send");
    let t2 = create(&s, &a, "after hello").await;
    assert_eq!(ws_next(&mut wa).await["subject"], t2.as_str());
}

#[tokio::test]
async fn stream_requests_are_checked() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("stream-checks@example.com").await;
    let problem = |r: &crate::support::Reply, status: StatusCode| {
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    };
    let r = s.request(reqwest::Method::GET, "/api/stream", None, None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
    problem(&s.get("/api/stream", "not-a-token").await, StatusCode::UNAUTHORIZED);
    let r = s.request(reqwest::Method::GET, "/api/stream?access_token=dkt_bogus", None, None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
    let r = s.request(reqwest::Method::GET, "/api/ws", None, None).await;
    problem(&r, StatusCode::UNAUTHORIZED);
    for bad in ["-1", "ten", "1.5"] {
        let r = TestServer::read(
            s.http
                .get(format!("{}/api/stream", s.url))
                .bearer_auth(&a)
                .header("Last-Event-ID", bad)
                .send()
                .await
                .expect("request"),
        )
        .await;
        problem(&r, StatusCode::BAD_REQUEST);
    }
    problem(&s.get("/api/stream?last_event_id=x", &a).await, StatusCode::BAD_REQUEST);
    // A plain GET of the WebSocket route is not an upgrade.
    problem(&s.get("/api/ws", &a).await, StatusCode::BAD_REQUEST);

    // A position beyond the log: told to resync at the head, then live.
    let mut sse = Sse::open(&s, &a, Some("999999")).await;
    let m = sse.next().await.expect("a resync");
    assert_eq!(m.event.as_deref(), Some("resync"));
    assert_eq!(m.json()["reason"], "unknown_position");
    assert_eq!(m.json()["type"], "resync");
    sse.expect_only_marker(&s, &a).await;
}

#[tokio::test]
async fn streams_end_cleanly_on_shutdown() {
    let mut s = TestServer::start().await;
    let (a, _) = s.signup("stream-shutdown@example.com").await;
    let mut sse = Sse::open(&s, &a, None).await;
    let mut ws = ws_open(&s, &format!("access_token={a}")).await;
    sse.expect_only_marker(&s, &a).await;
    ws_next(&mut ws).await;

    assert!(s.terminate().await, "the server exits successfully with open streams");
    assert!(sse.next().await.is_none(), "the SSE stream ends");
    let close = tokio::time::timeout(WAIT, ws.next()).await.expect("a close within 30 s");
    match close {
        Some(Ok(tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1001, "going away");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn events_carry_the_request_trace() {
    let s = TestServer::start().await;
    let (a, _) = s.signup("trace@example.com").await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = TestServer::read(
        s.http
            .post(format!("{}/api/tasks", s.url))
            .bearer_auth(&a)
            .header("traceparent", parent)
            .json(&json!({"title": "traced"}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    create(&s, &a, "untraced one").await;
    create(&s, &a, "untraced two").await;
    let mut sse = Sse::open(&s, &a, Some("0")).await;
    let events: Vec<Value> = sse.take(3).await.iter().map(SseMessage::json).collect();
    let tp =
        |e: &Value| e["traceparent"].as_str().expect("every event has a traceparent").to_owned();
    let parts = |t: &str| t.split('-').map(str::to_owned).collect::<Vec<_>>();
    let first = parts(&tp(&events[0]));
    assert_eq!(first[1], "4bf92f3577b34da6a3ce929d0e0e4736", "the caller's trace continues");
    assert_ne!(first[2], "00f067aa0ba902b7", "under the server's own span");
    // Requests without a traceparent each start their own trace.
    let (two, three) = (parts(&tp(&events[1])), parts(&tp(&events[2])));
    assert_ne!(two[1], three[1]);
    assert_ne!(two[1], first[1]);
}
