//! [`TestSidecar`]: a test fixture that stands in for `daprd`, implementing the parts of the
//! published Dapr HTTP contract Docket uses. No daprd runs on the build machines, so the
//! Dapr adapters are tested against this; it is a fixture following the Dapr documentation,
//! not Dapr, and where the documentation leaves a detail open the choice is named below.
//!
//! Pages it follows (docs.dapr.io):
//! * "State management API reference" (/reference/api/state_api/) and "State Time-to-Live
//!   (TTL)" (/developing-applications/building-blocks/state-management/state-store-ttl):
//!   save with `etag`, `options.concurrency` and `metadata.ttlInSeconds` (`-1` keeps the
//!   entry), get (204 when missing, `ETag` header), delete with `If-Match`. ETags are
//!   per-key version counters that start again at 1 after a delete, as the Redis state store
//!   does; a mismatch is 409 (dapr/dapr#2619). `first-write` without an ETag only creates.
//!   TTL is measured on the fixture's clock ([`SidecarClock`]), which tests can drive.
//! * "Secrets API reference" (/reference/api/secrets_api/): 200 with the secret's keys (a plain
//!   secret is `{name: value}`, a multi-valued one all its keys), 204 for an unknown secret,
//!   400 for an unknown store.
//! * "Pub/sub API reference" (/reference/api/pubsub_api), "Publishing & subscribing messages
//!   with Cloudevents" (/developing-applications/building-blocks/pubsub/pubsub-cloudevents),
//!   "Publish and subscribe to bulk messages" (…/pubsub/pubsub-bulk/) and "Dead Letter
//!   Topics" (…/pubsub/pubsub-deadletter/): publish (`application/cloudevents+json` passes
//!   the envelope through; other content is wrapped), bulk publish answering 500 with
//!   `failedEntries`, the `partitionKey` metadata of a publish (query `metadata.partitionKey`)
//!   or of a bulk entry (its `metadata`) recorded with the event, programmatic subscriptions from the app's `GET /dapr/subscribe`, and
//!   deliveries to each route as CloudEvents with the attributes Dapr adds (`pubsubname`,
//!   `topic`, `traceid`, `traceparent`, `tracestate`). The app's answer: 2xx with
//!   `{"status": "SUCCESS"}` or an empty body is handled; `DROP` is logged as a warning and
//!   dropped; `RETRY`, an unknown status or a non-2xx status is retried; 404 is dropped.
//!   After the last attempt the event goes to the subscription's `deadLetterTopic`, if any.
//!   Retries are a fixed number of attempts with a fixed delay ([`RetryPolicy`], standing in
//!   for a resiliency policy). Only events published after [`TestSidecar::attach_app`] reach
//!   the app. By default every event is delivered on its own, concurrently with the others
//!   (as with the Redis Streams component, whose handlers run concurrently). With
//!   [`SidecarBuilder::ordered_delivery`] each subscription gets one event at a time in the
//!   order the sidecar accepted them, and the next only after the previous one's last attempt:
//!   what the Kafka and Event Hubs components do within a partition (a `RETRY` holds back the
//!   later messages of its partition, unlike Redis Streams: dapr/components-contrib#2204; with
//!   no resiliency policy Kafka retries without limit: dapr/dapr#8796), modelling a topic of
//!   one partition.
//!   Each bulk publish request is recorded as sent ([`TestSidecar::bulk_requests`]). Its
//!   entries are taken in the order they were sent by default; the bulk page says "The bulk
//!   publish operation also does not guarantee any ordering of messages" (for a component
//!   without native bulk publish, daprd publishes the entries in parallel:
//!   `pkg/runtime/pubsub/default_bulkpub.go` in dapr/dapr), so with
//!   [`SidecarBuilder::unordered_bulk`] the sidecar takes each request's entries in reverse
//!   order (accepted, delivered and refused in that order): every pair of entries swapped,
//!   for tests of what relies on order.
//! * "Jobs API reference" (/reference/api/jobs_api) and "Features and concepts" (…/jobs/
//!   jobs-features-concepts): one-shot jobs with an RFC 3339 `dueTime` (a `schedule` is
//!   refused with 400: this fixture has no cron), `data`, `overwrite` (an existing name
//!   without it is a 409, the fixture's code for the documented error), delete; a due job is
//!   triggered once with `POST {app}/job/{name}` carrying `data`, never before its due time,
//!   and retried like deliveries when the app fails.
//! * "Health API reference": `GET /v1.0/healthz` and `/v1.0/healthz/outbound` answer 204.
//! * "Service invocation API reference" (/reference/api/service_invocation_api): any method on
//!   `/v1.0/invoke/{app-id}/method/{method-name}` reaches the attached app at `/{method-name}`
//!   with the same method, query string, headers and body, and the app's status, headers and
//!   body come back as they are ("XXX: upstream status returned"). The sidecar serves one app,
//!   named with [`SidecarBuilder::app_id`] (`docket-api` by default), so the caller's and the
//!   callee's sidecar are the same and both `dapr-caller-app-id` and `dapr-callee-app-id` are
//!   that id; `x-forwarded-for`, `x-forwarded-host` and `forwarded` are added as daprd does.
//!   A `traceparent` keeps its trace id and gets a new parent span id; without one a new
//!   trace starts. Hop-by-hop headers (RFC 9110 §7.6.1, and those `connection` names) and
//!   `dapr-api-token` are not forwarded. Any other app id, no attached app or an unreachable
//!   app is a 500 with `ERR_DIRECT_INVOKE` ("if there's a network error… Dapr will return a
//!   500"); an empty method name is a 400 ("method name not given"). Redirects are passed
//!   back, not followed. The request body is read whole before it is forwarded; the response
//!   body is streamed chunk by chunk as the app writes it, so server-sent events arrive as
//!   they are sent, and no timeout cuts a long answer (daprd has none unless a resiliency
//!   policy sets one).
//!
//! With an API token set, every other call without the `dapr-api-token` header is a 401.
//! Not implemented: state transactions, bulk get, queries, actors, workflows, invocation by
//! the `dapr-app-id` header, namespaced app ids (`app.namespace`), non-Dapr endpoints and
//! gRPC invocation, configuration, bindings, declarative and streaming subscriptions, routing
//! rules (only `route` or `routes.default`), bulk subscribe.

mod routes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::client::{CLOUDEVENTS_CONTENT_TYPE, DaprClient};

/// How often the job runner looks at the system clock when no manual clock drives it.
const SYSTEM_CLOCK_POLL: Duration = Duration::from_millis(20);
const APP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an invocation may take to connect to the app (the answer itself has no limit).
const INVOKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The app id the sidecar serves unless the builder names another.
pub const DEFAULT_APP_ID: &str = "docket-api";

/// A clock tests move by hand; the sidecar's TTLs and job due times follow it.
#[derive(Clone)]
pub struct ManualClock(Arc<watch::Sender<Timestamp>>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(watch::Sender::new(start)))
    }

    pub fn now(&self) -> Timestamp {
        *self.0.borrow()
    }

    /// Moves the clock forward by `by` and wakes the job runner.
    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|t| *t = plus(*t, by));
    }

    /// Sets the clock (it may go back: tests decide).
    pub fn set(&self, to: Timestamp) {
        self.0.send_replace(to);
    }

    fn subscribe(&self) -> watch::Receiver<Timestamp> {
        self.0.subscribe()
    }
}

/// The sidecar's clock: the system's, or one the test drives.
#[derive(Clone)]
pub enum SidecarClock {
    System,
    Manual(ManualClock),
}

impl SidecarClock {
    pub fn now(&self) -> Timestamp {
        match self {
            SidecarClock::System => Timestamp::now(),
            SidecarClock::Manual(c) => c.now(),
        }
    }
}

fn plus(t: Timestamp, by: Duration) -> Timestamp {
    let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_microsecond(t.as_microsecond().saturating_add(micros)).unwrap_or(Timestamp::MAX)
}

/// How deliveries and job triggers are retried: `max_attempts` in all, `delay` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, delay: Duration::from_millis(10) }
    }
}

/// One accepted publish: the event as received (wrapped in a CloudEvent when it was not one)
/// and the content type it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub content_type: String,
    pub event: Value,
    /// The `partitionKey` metadata it was published with (query `metadata.partitionKey`, or a
    /// bulk entry's `metadata`).
    pub partition_key: Option<String>,
}

/// A programmatic subscription read from the app's `GET /dapr/subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub pubsubname: String,
    pub topic: String,
    pub route: String,
    pub dead_letter_topic: Option<String>,
}

/// What the app answered to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Success,
    Retry,
    Drop,
    /// A non-2xx status (404 drops, others retry).
    Status(u16),
    /// A 2xx whose `status` is none of the documented ones (retried).
    Unknown(String),
    /// The app could not be reached (retried).
    Unreachable,
}

/// One delivery attempt of an event to a subscription's route.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub pubsub: String,
    pub topic: String,
    pub route: String,
    pub event_id: String,
    pub attempt: u32,
    pub answer: Answer,
    /// The CloudEvent as sent to the app, with Dapr's attributes.
    pub sent: Value,
}

/// A job as scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub name: String,
    pub due_time: Timestamp,
    pub data: Value,
}

/// One trigger of a job: when (on the sidecar's clock), on which attempt, and the app's status
/// (`None`: unreachable).
#[derive(Debug, Clone, PartialEq)]
pub struct JobFiring {
    pub name: String,
    pub due_time: Timestamp,
    pub fired_at: Timestamp,
    pub attempt: u32,
    pub status: Option<u16>,
}

/// Why the app could not be attached.
#[derive(Debug, thiserror::Error)]
#[error("test sidecar: {0}")]
pub struct AttachError(String);

#[derive(Debug, Clone)]
struct Slot {
    value: Value,
    version: u64,
    expires_at: Option<Timestamp>,
}

struct App {
    base: Url,
    subscriptions: Vec<Subscription>,
}

struct Shared {
    clock: SidecarClock,
    token: Option<String>,
    policy: RetryPolicy,
    http: reqwest::Client,
    /// Forwards service invocations: no overall timeout, redirects passed back to the caller.
    invoke_http: reqwest::Client,
    app_id: String,
    state: Mutex<HashMap<(String, String), Slot>>,
    secrets: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    published: Mutex<Vec<(String, String, Published)>>,
    /// Every bulk publish request: pubsub, topic and its readable entries as sent.
    bulk_requests: Mutex<Vec<(String, String, Vec<Published>)>>,
    /// Takes the entries of a bulk publish in reverse order.
    unordered_bulk: bool,
    rejected_types: Mutex<HashSet<String>>,
    app: Mutex<Option<Arc<App>>>,
    deliveries: Mutex<Vec<DeliveryRecord>>,
    in_flight: watch::Sender<usize>,
    jobs: Mutex<BTreeMap<String, ScheduledJob>>,
    job_firings: Mutex<Vec<JobFiring>>,
    jobs_changed: Notify,
    firing: tokio::sync::Mutex<()>,
    /// With ordered delivery: one queue (and task) per subscribed `(pubsub, topic)`.
    lanes: Option<Mutex<HashMap<(String, String), LaneQueue>>>,
    lane_tasks: Mutex<Vec<JoinHandle<()>>>,
}

type LaneQueue = tokio::sync::mpsc::UnboundedSender<Lane>;

/// One event waiting in an ordered subscription's queue.
struct Lane {
    app: Arc<App>,
    sub: Subscription,
    event: Map<String, Value>,
    trace: TraceHeaders,
    guard: InFlight,
}

/// A lock that survives a panicked holder (the fixture's maps stay usable in later asserts).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Builds a [`TestSidecar`].
pub struct SidecarBuilder {
    clock: SidecarClock,
    app_id: String,
    token: Option<String>,
    policy: RetryPolicy,
    secrets: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    ordered: bool,
    unordered_bulk: bool,
}

impl SidecarBuilder {
    pub fn clock(mut self, clock: SidecarClock) -> Self {
        self.clock = clock;
        self
    }

    /// The app id the attached app is invoked by (`/v1.0/invoke/{app_id}/method/…`);
    /// [`DEFAULT_APP_ID`] unless set.
    pub fn app_id(mut self, app_id: &str) -> Self {
        self.app_id = app_id.to_owned();
        self
    }

    /// Requires `dapr-api-token: token` on every call but health.
    pub fn api_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Delivers each subscription's events one at a time, in accepted order, the next only
    /// after the previous one's last attempt (a Kafka topic of one partition; see the module
    /// doc).
    pub fn ordered_delivery(mut self) -> Self {
        self.ordered = true;
        self
    }

    /// Delivers like a broker that never gives up: `ordered_delivery`, and every event retried
    /// (10 ms apart) until it is taken, so nothing is dead-lettered.
    pub fn ordered_until_taken(self) -> Self {
        self.retry(RetryPolicy { max_attempts: u32::MAX, delay: Duration::from_millis(10) })
            .ordered_delivery()
    }

    /// Takes the entries of each bulk publish request in reverse order, as Dapr, which keeps
    /// no order within a bulk request, may (see the module doc).
    pub fn unordered_bulk(mut self) -> Self {
        self.unordered_bulk = true;
        self
    }

    /// Seeds secret `name` of secret store `store`.
    pub fn secret(mut self, store: &str, name: &str, value: &str) -> Self {
        let entry = [(name.to_owned(), value.to_owned())].into_iter().collect();
        self.secrets.entry(store.to_owned()).or_default().insert(name.to_owned(), entry);
        self
    }

    /// Adds a multi-valued secret `name` to `store` (a Kubernetes Secret, or a local-file store
    /// with `multiValued`): the API answers all its keys together.
    pub fn secret_keys(mut self, store: &str, name: &str, entries: &[(&str, &str)]) -> Self {
        let map = entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.secrets.entry(store.to_owned()).or_default().insert(name.to_owned(), map);
        self
    }

    /// Declares a secret store with no secrets in it.
    pub fn secret_store(mut self, store: &str) -> Self {
        self.secrets.entry(store.to_owned()).or_default();
        self
    }

    /// Binds 127.0.0.1:0 and serves until the sidecar is dropped.
    pub async fn start(self) -> std::io::Result<TestSidecar> {
        let http = reqwest::Client::builder()
            .timeout(APP_TIMEOUT)
            .build()
            .map_err(|e| std::io::Error::other(format!("cannot build the HTTP client: {e}")))?;
        let invoke_http = reqwest::Client::builder()
            .connect_timeout(INVOKE_CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| std::io::Error::other(format!("cannot build the HTTP client: {e}")))?;
        let shared = Arc::new(Shared {
            clock: self.clock,
            token: self.token,
            policy: self.policy,
            http,
            invoke_http,
            app_id: self.app_id,
            state: Mutex::new(HashMap::new()),
            secrets: self.secrets,
            published: Mutex::new(Vec::new()),
            bulk_requests: Mutex::new(Vec::new()),
            unordered_bulk: self.unordered_bulk,
            rejected_types: Mutex::new(HashSet::new()),
            app: Mutex::new(None),
            deliveries: Mutex::new(Vec::new()),
            in_flight: watch::Sender::new(0),
            jobs: Mutex::new(BTreeMap::new()),
            job_firings: Mutex::new(Vec::new()),
            jobs_changed: Notify::new(),
            firing: tokio::sync::Mutex::new(()),
            lanes: self.ordered.then(|| Mutex::new(HashMap::new())),
            lane_tasks: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "test sidecar stopped serving");
            }
        });
        let ticker = tokio::spawn(job_runner(shared.clone()));
        Ok(TestSidecar { addr, shared, tasks: vec![server, ticker] })
    }
}

/// The running fixture. Dropping it stops its server and job runner.
pub struct TestSidecar {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestSidecar {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in lock(&self.shared.lane_tasks).iter() {
            task.abort();
        }
    }
}

impl TestSidecar {
    pub fn builder() -> SidecarBuilder {
        SidecarBuilder {
            clock: SidecarClock::System,
            app_id: DEFAULT_APP_ID.to_owned(),
            token: None,
            policy: RetryPolicy::default(),
            secrets: BTreeMap::new(),
            ordered: false,
            unordered_bulk: false,
        }
    }

    /// `http://127.0.0.1:{port}`, what `DAPR_HTTP_PORT` would point at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:{port}/v1.0/invoke/{app_id}/method`: the base a client of the app
    /// puts its paths under to reach it through this sidecar.
    pub fn invoke_url(&self) -> String {
        format!("{}/v1.0/invoke/{}/method", self.url(), self.shared.app_id)
    }

    /// The app id the attached app answers to.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// A client of this sidecar (with its API token, if it has one).
    pub fn client(&self) -> DaprClient {
        DaprClient::new(&self.url(), self.shared.token.clone().map(SecretString::from))
            .expect("the sidecar's own URL is a valid http URL")
    }

    pub fn clock(&self) -> &SidecarClock {
        &self.shared.clock
    }

    /// Reads the app's programmatic subscriptions (`GET {app}/dapr/subscribe`) and from now
    /// on delivers published events to it, triggers its due jobs and forwards invocations of
    /// its app id to it.
    pub async fn attach_app(&self, app: &str) -> Result<Vec<Subscription>, AttachError> {
        let base = Url::parse(app).map_err(|e| AttachError(format!("app URL '{app}': {e}")))?;
        let url = base.join("dapr/subscribe").map_err(|e| AttachError(e.to_string()))?;
        let response = self
            .shared
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AttachError(format!("GET /dapr/subscribe: {e}")))?;
        let status = response.status();
        let body =
            response.bytes().await.map_err(|e| AttachError(format!("GET /dapr/subscribe: {e}")))?;
        // An app with no subscriptions may answer 404 (Dapr then subscribes to nothing).
        let subscriptions = if status == reqwest::StatusCode::NOT_FOUND {
            Vec::new()
        } else if status.is_success() {
            parse_subscriptions(&body)?
        } else {
            return Err(AttachError(format!("GET /dapr/subscribe answered {status}")));
        };
        *lock(&self.shared.app) =
            Some(Arc::new(App { base, subscriptions: subscriptions.clone() }));
        self.shared.jobs_changed.notify_one();
        Ok(subscriptions)
    }

    /// Everything accepted on `pubsub`/`topic`, in order (dead letters included).
    pub fn published(&self, pubsub: &str, topic: &str) -> Vec<Published> {
        lock(&self.shared.published)
            .iter()
            .filter(|(p, t, _)| p == pubsub && t == topic)
            .map(|(_, _, published)| published.clone())
            .collect()
    }

    /// The bulk publish requests received on `pubsub`/`topic`, in order, each with its
    /// entries in the order they were sent (entries that could not be read are left out;
    /// refused ones are in).
    pub fn bulk_requests(&self, pubsub: &str, topic: &str) -> Vec<Vec<Published>> {
        lock(&self.shared.bulk_requests)
            .iter()
            .filter(|(p, t, _)| p == pubsub && t == topic)
            .map(|(_, _, entries)| entries.clone())
            .collect()
    }

    /// Refuses to publish events of CloudEvent `type` (publish: 500; bulk: a failed entry).
    pub fn reject_type(&self, ty: &str) {
        lock(&self.shared.rejected_types).insert(ty.to_owned());
    }

    /// Publishes events of CloudEvent `type` again after [`TestSidecar::reject_type`].
    pub fn allow_type(&self, ty: &str) {
        lock(&self.shared.rejected_types).remove(ty);
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        lock(&self.shared.deliveries).clone()
    }

    /// Waits until no delivery is in flight (retries and dead letters included).
    pub async fn idle(&self) {
        let mut rx = self.shared.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The live keys of state store `store`, sorted.
    pub fn state_keys(&self, store: &str) -> Vec<String> {
        let now = self.shared.clock.now();
        let mut keys: Vec<String> = lock(&self.shared.state)
            .iter()
            .filter(|((s, _), slot)| s == store && slot.expires_at.is_none_or(|at| at > now))
            .map(|((_, k), _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The jobs waiting for their due time.
    pub fn jobs(&self) -> Vec<ScheduledJob> {
        lock(&self.shared.jobs).values().cloned().collect()
    }

    /// Every job trigger so far.
    pub fn job_firings(&self) -> Vec<JobFiring> {
        lock(&self.shared.job_firings).clone()
    }

    /// Triggers every job due on the sidecar's clock now, and returns once they (and any the
    /// background runner was triggering) are done. Tests call it after moving the clock so
    /// that what they assert next does not depend on the runner's timing.
    pub async fn run_due_jobs(&self) {
        run_due_jobs(&self.shared).await;
    }
}

#[derive(Deserialize)]
struct SubscriptionWire {
    pubsubname: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<RoutesWire>,
    #[serde(rename = "deadLetterTopic", default)]
    dead_letter_topic: Option<String>,
}

#[derive(Deserialize)]
struct RoutesWire {
    #[serde(default)]
    default: Option<String>,
}

fn parse_subscriptions(body: &[u8]) -> Result<Vec<Subscription>, AttachError> {
    let wire: Vec<SubscriptionWire> = serde_json::from_slice(body)
        .map_err(|e| AttachError(format!("GET /dapr/subscribe: not a subscription list: {e}")))?;
    wire.into_iter()
        .map(|s| {
            let route = s
                .route
                .or(s.routes.and_then(|r| r.default))
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    AttachError(format!(
                        "subscription to '{}' on '{}' has no route (this fixture reads 'route' or 'routes.default')",
                        s.topic, s.pubsubname
                    ))
                })?;
            Ok(Subscription {
                pubsubname: s.pubsubname,
                topic: s.topic,
                route,
                dead_letter_topic: s.dead_letter_topic.filter(|t| !t.is_empty()),
            })
        })
        .collect()
}

// --- publishing and delivery

/// Decrements the in-flight count when a delivery ends, however it ends.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.send_modify(|n| *n += 1);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Records an accepted event and delivers it to every matching subscription.
fn accept(
    shared: &Arc<Shared>,
    pubsub: &str,
    topic: &str,
    published: Published,
    trace: &TraceHeaders,
) {
    let event = match &published.event {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    lock(&shared.published).push((pubsub.to_owned(), topic.to_owned(), published));
    let Some(app) = lock(&shared.app).clone() else { return };
    for sub in app.subscriptions.iter().filter(|s| s.pubsubname == pubsub && s.topic == topic) {
        let guard = InFlight::start(shared);
        if let Some(lanes) = &shared.lanes {
            let lane = Lane {
                app: app.clone(),
                sub: sub.clone(),
                event: event.clone(),
                trace: trace.clone(),
                guard,
            };
            let mut lanes = lock(lanes);
            let key = (pubsub.to_owned(), topic.to_owned());
            let queue = lanes.entry(key).or_insert_with(|| {
                let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
                let task = tokio::spawn(run_lane(shared.clone(), rx));
                lock(&shared.lane_tasks).push(task);
                queue
            });
            // The lane task lives as long as the sidecar (its sender is in `shared`).
            let _ = queue.send(lane);
            continue;
        }
        let shared = shared.clone();
        let app = app.clone();
        let sub = sub.clone();
        let event = event.clone();
        let trace = trace.clone();
        tokio::spawn(async move {
            deliver(&shared, &app, &sub, event, &trace).await;
            drop(guard);
        });
    }
}

/// Delivers an ordered subscription's events one after the other.
async fn run_lane(shared: Arc<Shared>, mut queue: tokio::sync::mpsc::UnboundedReceiver<Lane>) {
    while let Some(lane) = queue.recv().await {
        deliver(&shared, &lane.app, &lane.sub, lane.event, &lane.trace).await;
        drop(lane.guard);
    }
}

/// The trace context of a publish request (`traceparent`/`tracestate` headers).
#[derive(Debug, Clone, Default)]
struct TraceHeaders {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// The CloudEvent as Dapr hands it to the app: the published envelope plus `pubsubname`,
/// `topic` and the trace attributes (the publish request's context, else the event's own,
/// else a new one).
fn as_delivered(
    mut event: Map<String, Value>,
    pubsub: &str,
    topic: &str,
    trace: &TraceHeaders,
) -> Map<String, Value> {
    event.insert("pubsubname".into(), Value::String(pubsub.to_owned()));
    event.insert("topic".into(), Value::String(topic.to_owned()));
    let traceparent = trace
        .traceparent
        .clone()
        .or_else(|| event.get("traceparent").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(new_traceparent);
    let tracestate = trace
        .tracestate
        .clone()
        .or_else(|| event.get("tracestate").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    event.insert("traceid".into(), Value::String(traceparent.clone()));
    event.insert("traceparent".into(), Value::String(traceparent));
    event.insert("tracestate".into(), Value::String(tracestate));
    event
}

fn new_traceparent() -> String {
    let trace = uuid::Uuid::now_v7().simple().to_string();
    format!("00-{trace}-{}-01", new_span_id())
}

/// 16 hex digits: the random tail of a UUIDv7.
fn new_span_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()[16..].to_owned()
}

/// The `traceparent` the sidecar sends on: the caller's trace with a new parent span id, or a
/// new trace when the caller sent none or one that is not W3C version 00.
fn child_traceparent(parent: Option<&str>) -> String {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(parent) = parent {
        let parts: Vec<&str> = parent.trim().split('-').collect();
        if let ["00", trace, span, flags] = parts[..]
            && hex(trace, 32)
            && hex(span, 16)
            && hex(flags, 2)
        {
            return format!("00-{trace}-{}-{flags}", new_span_id());
        }
    }
    new_traceparent()
}

async fn deliver(
    shared: &Arc<Shared>,
    app: &App,
    sub: &Subscription,
    event: Map<String, Value>,
    trace: &TraceHeaders,
) {
    let event_id = event.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let sent = Value::Object(as_delivered(event.clone(), &sub.pubsubname, &sub.topic, trace));
    let body = sent.to_string();
    let Ok(url) = app.base.join(&sub.route) else {
        tracing::warn!(route = %sub.route, "test sidecar: subscription route is not a path");
        return;
    };
    let max = shared.policy.max_attempts.max(1);
    for attempt in 1..=max {
        let answer = match shared
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, CLOUDEVENTS_CONTENT_TYPE)
            .body(body.clone())
            .send()
            .await
        {
            Err(_) => Answer::Unreachable,
            Ok(response) => {
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                read_answer(status, &bytes)
            }
        };
        lock(&shared.deliveries).push(DeliveryRecord {
            pubsub: sub.pubsubname.clone(),
            topic: sub.topic.clone(),
            route: sub.route.clone(),
            event_id: event_id.clone(),
            attempt,
            answer: answer.clone(),
            sent: sent.clone(),
        });
        match answer {
            Answer::Success => return,
            Answer::Drop | Answer::Status(404) => {
                tracing::warn!(
                    pubsub = %sub.pubsubname,
                    topic = %sub.topic,
                    event.id = %event_id,
                    "test sidecar: the app dropped the event"
                );
                return;
            }
            _ if attempt < max => tokio::time::sleep(shared.policy.delay).await,
            _ => {}
        }
    }
    match &sub.dead_letter_topic {
        Some(dlt) => {
            let published = Published {
                content_type: CLOUDEVENTS_CONTENT_TYPE.into(),
                event: Value::Object(event),
                partition_key: None,
            };
            accept(shared, &sub.pubsubname, dlt, published, trace);
        }
        None => tracing::warn!(
            pubsub = %sub.pubsubname,
            topic = %sub.topic,
            event.id = %event_id,
            "test sidecar: retries exhausted and no dead-letter topic"
        ),
    }
}

#[derive(Deserialize)]
struct AppAnswer {
    #[serde(default)]
    status: Option<String>,
}

fn read_answer(status: reqwest::StatusCode, body: &[u8]) -> Answer {
    if !status.is_success() {
        return Answer::Status(status.as_u16());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Answer::Success;
    }
    match serde_json::from_slice::<AppAnswer>(body) {
        Ok(AppAnswer { status: None }) => Answer::Success,
        Ok(AppAnswer { status: Some(s) }) => match s.to_ascii_uppercase().as_str() {
            "SUCCESS" | "" => Answer::Success,
            "RETRY" => Answer::Retry,
            "DROP" => Answer::Drop,
            _ => Answer::Unknown(s),
        },
        Err(_) => Answer::Unknown(String::from_utf8_lossy(body).chars().take(64).collect()),
    }
}

// --- jobs

async fn job_runner(shared: Arc<Shared>) {
    let mut clock = match &shared.clock {
        SidecarClock::Manual(c) => Some(c.subscribe()),
        SidecarClock::System => None,
    };
    loop {
        let tick = async {
            match clock.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        tokio::time::sleep(SYSTEM_CLOCK_POLL).await;
                    }
                }
                None => tokio::time::sleep(SYSTEM_CLOCK_POLL).await,
            }
        };
        tokio::select! {
            () = tick => {}
            () = shared.jobs_changed.notified() => {}
        }
        run_due_jobs(&shared).await;
    }
}

async fn run_due_jobs(shared: &Arc<Shared>) {
    let _one_runner = shared.firing.lock().await;
    let Some(app) = lock(&shared.app).clone() else { return };
    let now = shared.clock.now();
    let mut due: Vec<ScheduledJob> = {
        let mut jobs = lock(&shared.jobs);
        let names: Vec<String> =
            jobs.values().filter(|j| j.due_time <= now).map(|j| j.name.clone()).collect();
        names.iter().filter_map(|n| jobs.remove(n)).collect()
    };
    due.sort_by(|a, b| a.due_time.cmp(&b.due_time).then_with(|| a.name.cmp(&b.name)));
    for job in due {
        fire(shared, &app, &job).await;
    }
}

async fn fire(shared: &Arc<Shared>, app: &App, job: &ScheduledJob) {
    let mut url = app.base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("job").push(&job.name);
    }
    let max = shared.policy.max_attempts.max(1);
    for attempt in 1..=max {
        let status = shared
            .http
            .post(url.clone())
            .json(&job.data)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        lock(&shared.job_firings).push(JobFiring {
            name: job.name.clone(),
            due_time: job.due_time,
            fired_at: shared.clock.now(),
            attempt,
            status,
        });
        if status.is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        if attempt < max {
            tokio::time::sleep(shared.policy.delay).await;
        }
    }
    tracing::warn!(job = %job.name, "test sidecar: job trigger failed on every attempt");
}
