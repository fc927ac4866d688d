//! `docket bench`: measures a server the way DESIGN §9 states its targets.
//!
//! Without `--url` it starts this same binary as a child `docket serve` on a fresh SQLite
//! database in a temp directory (full durability, nothing tuned for the benchmark), so the
//! figures are those of a real deployment on this machine, client included. Phases:
//! 1. durable `POST /api/tasks` at `--connections` for `--seconds`;
//! 2. seeding `--list-tasks` tasks for a second user (reported as well);
//! 3. `GET /api/tasks` (50 items, filter + sort) at `--connections` for `--seconds`;
//! 4. end-to-end event latency: `--event-writes` creates, 4 at a time, by a user whose
//!    `/api/stream` is open; per write, from its acknowledgement (response received) to its
//!    event on the stream (0 when the event came first);
//!    and (measured first, before the write phases leave the consumers a backlog) one at a
//!    time, completing a recurring instance → the next instance's `task.created` on the
//!    stream (made by the recurrence consumer);
//! 5. the embedded bus in this process, on its own fresh SQLite database (the server is
//!    stopped first when it is our child): `--bus-events` task events published durably in
//!    batches of 500, then drained by one consumer group with `next` + `ack`, as the audit
//!    consumer reads the outbox (without the audit's own write, so this is the bus's ceiling).
//!
//! Also reported: the server's idle RSS after start and its peak RSS (only when it is a
//! child of the benchmark, read from /proc).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use docket_bus::embedded::EmbeddedBus;
use docket_bus::{EventBus as _, SubscribeOptions};
use docket_core::{Description, DisplayName, Email, NewTask, NewUser, Tags, Title};
use docket_ports::Store as _;
use docket_sqlite::SqliteStore;

use crate::cli::BenchArgs;

/// Events per `publish` call in the bus phase.
const BUS_BATCH: usize = 500;

/// The topic the bus phase publishes to, apart from the store's own `task-events`.
const BUS_TOPIC: &str = "bench-events";

/// The figures of one measured phase.
#[derive(Debug, serde::Serialize)]
struct PhaseResult {
    name: String,
    requests: u64,
    errors: u64,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

struct ChildServer {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl ChildServer {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

async fn start_server(database: Option<&str>) -> anyhow::Result<(ChildServer, String)> {
    let dir = tempfile::tempdir().context("cannot make a temp directory")?;
    let db = match database {
        Some(d) => d.to_owned(),
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let exe = std::env::current_exe().context("cannot find the docket binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &db])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DOCKET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `docket serve`")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout from the server"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("docket listening on ") {
                return Ok::<_, anyhow::Error>(url.trim().to_owned());
            }
        }
        bail!("the server exited before listening")
    })
    .await
    .context("the server did not start within 60 s")??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((ChildServer { child, _dir: dir }, url))
}

/// Resident set size (`VmRSS`) and peak (`VmHWM`) of a process, in MiB.
pub(crate) fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn signup(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let resp = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({ "email": email, "password": "bench-password-1" }))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("signup failed with {status}: {body}");
    }
    body.get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("signup answered no token"))
}

fn task_body(i: u64) -> Value {
    let mut rng = rand::rng();
    let priorities = ["low", "medium", "high", "urgent"];
    let tags = ["work", "home", "errand", "health", "finance"];
    let mut body = json!({
        "title": format!("benchmark task {i}"),
        "priority": priorities[rng.random_range(0..4)],
        "tags": [tags[rng.random_range(0..tags.len())]],
    });
    if rng.random_bool(0.8) {
        let secs: i64 = 1_800_000_000 + rng.random_range(-5_000_000..5_000_000);
        body["due_date"] =
            json!(jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default());
    }
    if rng.random_bool(0.2) {
        body["status"] = json!("completed");
    }
    if rng.random_bool(0.3) {
        body["description"] = json!("some words to index for full-text search");
    }
    body
}

/// Runs `connections` workers issuing requests made by `make` until `deadline` or until
/// `total` requests were sent; returns the latency histogram (µs) and error count.
async fn load<F>(
    connections: usize,
    duration: Option<Duration>,
    total: Option<u64>,
    make: F,
) -> anyhow::Result<(Histogram<u64>, u64, Duration)>
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let make = make.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| n >= t) {
                    break;
                }
                let t0 = Instant::now();
                let ok = match make(n).send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        // Read the body: the request is not done until it has arrived.
                        let _ = resp.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = hist.record(micros.max(1));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            hist
        }));
    }
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    for w in workers {
        hist.add(w.await?).map_err(|e| anyhow!("{e}"))?;
    }
    Ok((hist, errors.load(Ordering::Relaxed), start.elapsed()))
}

/// A phase counted in requests: `hist` holds one sample (µs) per request.
fn summarize(name: &str, hist: &Histogram<u64>, errors: u64, elapsed: Duration) -> PhaseResult {
    PhaseResult { errors, ..summarize_events(name, hist, hist.len(), elapsed) }
}

/// The median, 95th and 99th percentile and the maximum of `hist` (µs samples), in ms.
pub(crate) fn quantiles_ms(hist: &Histogram<u64>) -> [f64; 4] {
    let ms = |v: u64| v as f64 / 1000.0;
    let q = |q: f64| ms(hist.value_at_quantile(q));
    [q(0.50), q(0.95), q(0.99), ms(hist.max())]
}

/// A phase counted in events: `latency` holds one sample (µs) per call, which for publish is
/// a whole batch.
fn summarize_events(
    name: &str,
    latency: &Histogram<u64>,
    events: u64,
    elapsed: Duration,
) -> PhaseResult {
    let [p50_ms, p95_ms, p99_ms, max_ms] = quantiles_ms(latency);
    let seconds = elapsed.as_secs_f64();
    PhaseResult {
        name: name.to_owned(),
        requests: events,
        errors: 0,
        seconds,
        per_second: events as f64 / seconds,
        p50_ms,
        p95_ms,
        p99_ms,
        max_ms,
    }
}

/// A latency for the table: microsecond resolution below a millisecond (bus deliveries).
fn millis(ms: f64) -> String {
    if ms < 1.0 { format!("{ms:.3}") } else { format!("{ms:.2}") }
}

fn record(hist: &mut Histogram<u64>, since: Instant) {
    let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _ = hist.record(micros.max(1));
}

/// Writers in the event latency phase.
const EVENT_WRITERS: usize = 4;

/// Phase 4: per create, the time from its acknowledgement to its event on the user's SSE
/// stream (zero when the event arrived before the response was read).
async fn event_latency_phase(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    writes: usize,
) -> anyhow::Result<PhaseResult> {
    let (mut seen_rx, reader) = watch_stream(http, base, token).await?;
    let start = Instant::now();
    let mut writers = Vec::new();
    for w in 0..EVENT_WRITERS {
        let (http, base, token) = (http.clone(), base.to_owned(), token.to_owned());
        let n = writes / EVENT_WRITERS + usize::from(w < writes % EVENT_WRITERS);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::with_capacity(n);
            for i in 0..n {
                let resp = http
                    .post(format!("{base}/api/tasks"))
                    .bearer_auth(&token)
                    .json(&task_body(i as u64))
                    .send()
                    .await?
                    .error_for_status()?;
                let at = Instant::now();
                let body: Value = resp.json().await?;
                let id = body["id"].as_str().ok_or_else(|| anyhow!("no id in {body}"))?;
                acked.push((id.to_owned(), at));
            }
            anyhow::Ok(acked)
        }));
    }
    let mut acked = std::collections::HashMap::new();
    for w in writers {
        acked.extend(w.await.context("a writer panicked")??);
    }
    let elapsed = start.elapsed();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut pending = acked.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending > 0 {
        let Ok(Some((event, at))) = tokio::time::timeout_at(deadline, seen_rx.recv()).await else {
            reader.abort();
            bail!("{pending} of {writes} events did not reach /api/stream within 60 s");
        };
        let Some(id) = event["subject"].as_str() else { continue };
        if let Some(ack) = acked.remove(id) {
            let micros = at.saturating_duration_since(ack).as_micros();
            let _ = hist.record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
            pending -= 1;
        }
    }
    reader.abort();
    Ok(summarize_events("event latency (ack → /api/stream)", &hist, writes as u64, elapsed))
}

/// Opens the user's `/api/stream`; a reader task sends each event (JSON) with the instant its
/// chunk arrived.
async fn watch_stream(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<(
    tokio::sync::mpsc::UnboundedReceiver<(Value, Instant)>,
    tokio::task::JoinHandle<()>,
)> {
    let mut stream = http
        .get(format!("{base}/api/stream"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(24 * 3600))
        .send()
        .await
        .context("cannot open /api/stream")?
        .error_for_status()
        .context("/api/stream refused")?;
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel::<(Value, Instant)>();
    let reader = tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for line in frame.lines() {
                    let Some(data) = line.strip_prefix("data:") else { continue };
                    let Ok(event) = serde_json::from_str::<Value>(data.trim()) else { continue };
                    if seen_tx.send((event, at)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok((seen_rx, reader))
}

/// Series completions timed, one at a time.
const SERIES_ROUNDS: usize = 200;

/// Phase 0b: completing a recurring instance (from sending the request) → the next
/// instance's `task.created` on the user's `/api/stream` (made by the recurrence consumer).
async fn series_latency_phase(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<PhaseResult> {
    let (mut seen_rx, reader) = watch_stream(http, base, token).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let start = Instant::now();
    for i in 0..SERIES_ROUNDS {
        let body = json!({
            "title": format!("recurring {i}"),
            "due_date": "2031-01-01T09:00:00",
            "timezone": "Europe/Berlin",
            "recurrence": "daily",
        });
        let task: Value = http
            .post(format!("{base}/api/tasks"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = task["id"].as_str().ok_or_else(|| anyhow!("no id in {task}"))?.to_owned();
        let series = task["series_id"].as_str().ok_or_else(|| anyhow!("no series in {task}"))?;
        // From the request: the response itself waits for the next instance (it carries it
        // as `next`), so its acknowledgement comes after the event.
        let sent = Instant::now();
        http.post(format!("{base}/api/tasks/{id}/complete"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let Ok(Some((event, at))) = tokio::time::timeout_at(deadline, seen_rx.recv()).await
            else {
                reader.abort();
                bail!("the next instance of series {series} did not reach /api/stream in 30 s");
            };
            let next = event["type"] == "com.todo.task.created"
                && event["data"]["task"]["series_id"] == series
                && event["subject"] != id.as_str();
            if next {
                let micros = at.saturating_duration_since(sent).as_micros();
                let _ = hist.record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                break;
            }
        }
    }
    reader.abort();
    Ok(summarize_events(
        "next instance (complete sent → /api/stream)",
        &hist,
        SERIES_ROUNDS as u64,
        start.elapsed(),
    ))
}

/// Phase 5: publishes `events` copies of a real task event to the embedded bus on a fresh
/// SQLite database, then times one consumer group taking them all with `next` + `ack`.
/// Returns the publish and the delivery figures.
async fn bus_phase(events: usize) -> anyhow::Result<(PhaseResult, PhaseResult)> {
    let dir = tempfile::tempdir().context("cannot make a temp directory")?;
    let path = dir.path().join("bus.db");
    let path = path.to_str().ok_or_else(|| anyhow!("temp path {path:?} is not UTF-8"))?;
    let store =
        Arc::new(SqliteStore::open(path).await.context("cannot open the bus benchmark database")?);
    // The published events are copies of one the store made for a task write, so they have
    // the size and shape of the outbox's real rows.
    let now = jiff::Timestamp::now();
    let parsed = |what: &str, e: &dyn std::fmt::Display| anyhow!("bench {what}: {e}");
    let user = NewUser::with_email(
        Email::parse("bench-bus@example.com").map_err(|e| parsed("email", &e))?,
        DisplayName::parse("bench").map_err(|e| parsed("name", &e))?,
    );
    let user = store.create_user(user, now).await.context("cannot create the bench user")?;
    let task = NewTask {
        description: Description::parse("some words to index for full-text search")
            .map_err(|e| parsed("description", &e))?,
        tags: Tags::parse(&["work"]).map_err(|e| parsed("tags", &e))?,
        ..NewTask::new(Title::parse("benchmark task").map_err(|e| parsed("title", &e))?)
    };
    store.create_task(user.id, task, now).await.context("cannot create the bench task")?;
    let (_, template) = store
        .read_outbox(0, "task-events", 1)
        .await
        .context("cannot read the outbox")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the task write appended no event"))?;
    let bus = EmbeddedBus::new(store.clone());

    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut hist = new_hist();
    let mut elapsed = Duration::ZERO;
    let mut published = 0;
    while published < events {
        let n = BUS_BATCH.min(events - published);
        let batch: Vec<_> = (0..n)
            .map(|_| {
                let mut e = template.clone();
                e.id = uuid::Uuid::now_v7().to_string();
                e.sequence = None;
                e
            })
            .collect();
        let t0 = Instant::now();
        bus.publish(BUS_TOPIC, batch).await.context("publish failed")?;
        record(&mut hist, t0);
        elapsed += t0.elapsed();
        published += n;
    }
    let publish =
        summarize_events("bus publish (events; latency per 500)", &hist, events as u64, elapsed);

    let mut sub = bus
        .subscribe("bench", BUS_TOPIC, SubscribeOptions::default())
        .await
        .context("subscribe failed")?;
    let mut hist = new_hist();
    let start = Instant::now();
    for _ in 0..events {
        let t0 = Instant::now();
        let d = sub.next().await.context("next failed")?;
        sub.ack(&d).await.context("ack failed")?;
        record(&mut hist, t0);
    }
    sub.close().await.context("closing the subscription failed")?;
    let deliver = summarize_events(
        "bus delivery (events; next + ack)",
        &hist,
        events as u64,
        start.elapsed(),
    );
    Ok((publish, deliver))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.seconds == 0 {
        bail!("--connections and --seconds must be at least 1");
    }
    // First, so this process's peak RSS is the reminder phase's own.
    let reminders = if args.reminders > 0 {
        eprintln!(
            "phase 0: {} pending reminders, due at {}/s, fired by the scheduler in this process",
            args.reminders, args.reminder_rate
        );
        Some(crate::bench_reminders::run(args.reminders, args.reminder_rate).await?)
    } else {
        None
    };
    let (server, base) = match &args.url {
        Some(url) => (None, url.trim_end_matches('/').to_owned()),
        None => {
            let (server, url) = start_server(args.database.as_deref()).await?;
            (Some(server), url)
        }
    };
    let pid = server.as_ref().and_then(ChildServer::pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = pid.and_then(rss_mib).map(|(rss, _)| rss);
    let stamp = uuid::Uuid::now_v7().simple().to_string();
    let writer = signup(&http, &base, &format!("bench-create-{stamp}@example.com")).await?;
    let reader = signup(&http, &base, &format!("bench-list-{stamp}@example.com")).await?;
    let duration = Duration::from_secs(args.seconds);
    let phases = 3 + usize::from(args.event_writes > 0) + usize::from(args.bus_events > 0);
    let mut results = Vec::new();

    // Before the write phases: the consumers read the log in order, so a backlog of 180k
    // creates would be measured instead of the consumer.
    let series_result = if args.event_writes > 0 {
        eprintln!("phase 0b: {SERIES_ROUNDS} recurring completions → next instance on /api/stream");
        let owner = signup(&http, &base, &format!("bench-series-{stamp}@example.com")).await?;
        Some(series_latency_phase(&http, &base, &owner).await?)
    } else {
        None
    };

    eprintln!(
        "phase 1/{phases}: durable POST /api/tasks, {} connections, {} s",
        args.connections, args.seconds
    );
    let (h, c, t) = {
        let http = http.clone();
        let base = base.clone();
        load(args.connections, Some(duration), None, move |i| {
            http.post(format!("{base}/api/tasks")).bearer_auth(&writer).json(&task_body(i))
        })
        .await?
    };
    results.push(summarize("create (POST /api/tasks)", &h, c, t));

    eprintln!("phase 2/{phases}: seeding {} tasks for the list user", args.list_tasks);
    let (h, c, t) = {
        let http = http.clone();
        let base = base.clone();
        let reader = reader.clone();
        load(args.connections, None, Some(args.list_tasks as u64), move |i| {
            http.post(format!("{base}/api/tasks")).bearer_auth(&reader).json(&task_body(i))
        })
        .await?
    };
    results.push(summarize("seed (POST /api/tasks)", &h, c, t));

    eprintln!(
        "phase 3/{phases}: GET /api/tasks (limit 50, filter + sort), {} connections, {} s",
        args.connections, args.seconds
    );
    let queries = [
        "status=pending&priority=high,urgent&sort=due_date&limit=50",
        "tag=work&sort=priority&limit=50",
        "status=pending&sort=created_at&order=desc&limit=50",
    ];
    let (h, c, t) = {
        let http = http.clone();
        let base = base.clone();
        load(args.connections, Some(duration), None, move |i| {
            let q = queries[(i % queries.len() as u64) as usize];
            http.get(format!("{base}/api/tasks?{q}")).bearer_auth(&reader)
        })
        .await?
    };
    results.push(summarize("list (GET /api/tasks, 50 items)", &h, c, t));

    if args.event_writes > 0 {
        eprintln!(
            "phase 4/{phases}: event latency, {} writes acknowledged → on /api/stream",
            args.event_writes
        );
        let watcher = signup(&http, &base, &format!("bench-stream-{stamp}@example.com")).await?;
        results.push(event_latency_phase(&http, &base, &watcher, args.event_writes).await?);
        results.extend(series_result);
    }

    let peak = pid.and_then(rss_mib);
    let failed: u64 = results.iter().map(|r| r.errors).sum();
    // The server is idle now, but stopping it keeps it off the cores the bus phase measures.
    drop(server);

    if args.bus_events > 0 {
        eprintln!(
            "phase {phases}/{phases}: embedded bus on a fresh SQLite database, {} events (publish, then next + ack)",
            args.bus_events
        );
        let (publish, deliver) = bus_phase(args.bus_events).await?;
        results.push(publish);
        results.push(deliver);
    }
    if args.json {
        let out = json!({
            "url": base,
            "connections": args.connections,
            "phases": results,
            "idle_rss_mib": idle_rss,
            "rss_mib": peak.map(|p| p.0),
            "peak_rss_mib": peak.map(|p| p.1),
            "reminders": reminders,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED).set_header([
            "phase", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
        ]);
        for r in &results {
            table.add_row([
                r.name.clone(),
                r.requests.to_string(),
                r.errors.to_string(),
                format!("{:.0}", r.per_second),
                millis(r.p50_ms),
                millis(r.p95_ms),
                millis(r.p99_ms),
                millis(r.max_ms),
            ]);
        }
        println!("docket bench against {base} ({} connections)", args.connections);
        println!("{table}");
        if args.bus_events > 0 {
            println!(
                "bus rows count events, not requests: publish latency is per {BUS_BATCH}-event call, delivery latency per next + ack"
            );
        }
        if let Some(r) = &reminders {
            println!(
                "reminders: {} seeded in {:.1} s; restart to ready {:.1} ms; fired {:.0}/s; \
                 lateness p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS {}",
                r.reminders,
                r.seed_seconds,
                r.restart_to_ready_ms,
                r.fired_per_second,
                r.lateness_p50_ms,
                r.lateness_p95_ms,
                r.lateness_p99_ms,
                r.lateness_max_ms,
                r.peak_rss_mib.map_or("n/a".to_owned(), |m| format!("{m:.1} MiB")),
            );
        }
        if let Some(idle) = idle_rss {
            println!("server idle RSS after start: {idle:.1} MiB");
        }
        if let Some((rss, hwm)) = peak {
            println!("server RSS after the run: {rss:.1} MiB (peak {hwm:.1} MiB)");
        }
    }
    if failed > 0 {
        bail!("{failed} requests failed during the benchmark");
    }
    Ok(())
}
