//! `docket serve`: opens the store, builds the app and the router, binds, and serves until
//! SIGINT/SIGTERM, then drains in-flight requests.
//!
//! Beside HTTP it runs, as `--roles` says, the consumers (audit, notifier, recurrence, webhook
//! dispatcher) on the embedded bus over the same database (SQLite or PostgreSQL), the delivery
//! worker (`docket_app::delivery`: email and webhooks) and the reminder scheduler
//! (`docket_app::scheduler`); on shutdown, once HTTP has drained, a `watch` channel tells
//! them to finish what is in hand and commit. The
//! real-time hub (`docket_app::realtime`) tails the same log for `/api/stream` and `/api/ws`;
//! it closes every stream as soon as shutdown begins, so the drain is not held open by them.
//!
//! The bound address is printed on stdout as `docket listening on http://ADDR` so scripts
//! and tests that pass port 0 can find the server.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use docket_app::realtime::{Hub, HubConfig};
use docket_app::scheduler::{SchedulerConfig, run_scheduler};
use docket_app::secret_key::SecretKey;
use docket_app::{App, AuthConfig};
use docket_bus::EventBus;
use docket_bus::embedded::EmbeddedBus;
use docket_bus::runtime::{Processor, StoreProcessor, run_consumer};
use docket_dapr::bus::DaprBus;
use docket_dapr::callbacks::{AppCallbacks, DaprTopic};
use docket_dapr::{DaprClient, DaprStateStore, Secrets};
use docket_http::HttpConfig;
use docket_ports::consume::ConsumerStore;
use docket_ports::{StateStore, Store};
use secrecy::ExposeSecret as _;
use tokio::sync::watch;

use crate::cli::{Backend, DaprArgs, DaprDelivery, Role, ServeArgs};

/// A bound, ready-to-run server.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    consumers: Consumers,
    /// Serve the API and run the real-time hub (role `api`).
    api: bool,
    /// Run the consumers (role `worker`).
    worker: bool,
    /// The app, for the scheduler (role `scheduler`).
    app: Arc<App>,
    scheduler: bool,
    /// How long housekeeping keeps outbox events every consumer has passed.
    outbox_retention: Duration,
    /// Sends email and webhook deliveries (role `worker`).
    sender: Arc<docket_app::delivery::Sender>,
    /// What goes through the Dapr sidecar.
    dapr: Dapr,
}

/// The Dapr side of a server: the sidecar's client when any building block uses it, and which.
struct Dapr {
    client: Option<DaprClient>,
    bus: bool,
    /// With `bus`: the inbox the deliveries are kept in, which the consumers read
    /// (`--dapr-delivery inbox`).
    inbox: Option<DaprBus>,
    scheduler: bool,
    pubsub: String,
}

impl Dapr {
    fn new(args: &DaprArgs) -> anyhow::Result<Dapr> {
        let uses = [args.bus, args.scheduler, args.state, args.secrets].contains(&Backend::Dapr);
        let client = if uses {
            Some(DaprClient::from_env().context("cannot reach the Dapr sidecar's address")?)
        } else {
            None
        };
        Ok(Dapr {
            client,
            bus: args.bus == Backend::Dapr,
            inbox: None,
            scheduler: args.scheduler == Backend::Dapr,
            pubsub: args.dapr_pubsub.clone(),
        })
    }
}

/// The consumers a worker runs, by group: the same processors and names whichever bus
/// delivers to them.
fn consumer_runs(c: &Consumers) -> [(Arc<dyn Processor>, docket_bus::runtime::ConsumerConfig); 4] {
    [
        (Arc::clone(&c.audit), docket_app::audit::config()),
        (Arc::clone(&c.notifier), docket_app::notifier::config()),
        (Arc::clone(&c.recurrence), docket_app::next_instance::config()),
        (Arc::clone(&c.webhooks), docket_app::webhooks::config()),
    ]
}

/// Dapr's app callbacks of a process that uses the sidecar (`None` otherwise): a worker in
/// `--bus dapr` subscribes one route per topic, handing each event to that topic's consumers
/// or, with an inbox, keeping it there for them (its topics declared now, before the sidecar
/// reads them); `--scheduler dapr` serves the triggers.
fn dapr_callbacks(
    args: &DaprArgs,
    dapr: &Dapr,
    c: &Consumers,
    app: &Arc<App>,
    worker: bool,
) -> anyhow::Result<Option<axum::Router>> {
    if dapr.client.is_none() {
        return Ok(None);
    }
    let mut callbacks = AppCallbacks::new(args.app_api_token.clone());
    if dapr.bus && worker {
        let mut topics: Vec<DaprTopic> = Vec::new();
        for (processor, config) in consumer_runs(c) {
            let entry = (config.name.clone(), processor);
            match topics.iter_mut().find(|t| t.topic == config.topic) {
                Some(t) => t.consumers.push(entry),
                None => topics.push(DaprTopic { topic: config.topic, consumers: vec![entry] }),
            }
        }
        callbacks = match &dapr.inbox {
            Some(bus) => {
                for t in &topics {
                    bus.declare_topic(&t.topic).context("cannot declare a Dapr topic")?;
                }
                callbacks.keep_in(bus.clone())
            }
            None => callbacks.run_consumers(&dapr.pubsub, topics),
        };
    }
    if dapr.scheduler {
        callbacks = callbacks.sweep_on_triggers(Arc::clone(app), &args.dapr_cron_binding);
    }
    Ok(Some(callbacks.router()))
}

/// The consumers `serve` runs beside HTTP: the audit consumer on the embedded bus, and the
/// real-time hub tailing the log (woken by the bus's signal).
struct Consumers {
    bus: Arc<dyn EventBus>,
    /// The same bus, for Dapr mode's inbox.
    embedded: EmbeddedBus,
    audit: Arc<dyn Processor>,
    notifier: Arc<dyn Processor>,
    recurrence: Arc<dyn Processor>,
    /// The webhook dispatcher (task events → deliveries).
    webhooks: Arc<dyn Processor>,
    /// The state store of the same database, for housekeeping.
    state: Arc<dyn StateStore>,
    hub: Hub,
    wake: watch::Receiver<u64>,
}

/// How long a stopping server waits for its consumers to settle.
const CONSUMER_STOP: Duration = Duration::from_secs(10);

impl Application {
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Application> {
        let mut dapr = Dapr::new(&args.dapr)?;
        let secrets = match (&dapr.client, args.dapr.secrets) {
            (Some(client), Backend::Dapr) => Some(Secrets::dapr(
                client.clone(),
                args.dapr.dapr_secret_store.clone(),
                args.dapr.dapr_secret_name.clone(),
            )),
            _ => None,
        };
        let from_store = |key: &'static str| {
            let secrets = secrets.clone();
            async move {
                match secrets {
                    Some(s) => s
                        .get(key)
                        .await
                        .with_context(|| format!("cannot read {key} from the Dapr secret store"))
                        .map(|v| v.map(|v| v.expose_secret().to_owned())),
                    None => Ok(None),
                }
            }
        };
        let database = from_store(docket_dapr::DATABASE_URL)
            .await?
            .unwrap_or_else(|| args.db.database.clone());
        let jwt_secret =
            from_store(docket_dapr::JWT_SECRET).await?.or_else(|| args.jwt_secret.clone());
        let secret_key =
            from_store(docket_dapr::SECRET_KEY).await?.or_else(|| args.secret_key.clone());
        // Checked before the database is opened, so a bad key fails at once; empty is unset
        // (the chart's Secret always carries the key).
        let secret_key = secret_key.as_deref().filter(|k| !k.trim().is_empty());
        let secret_key = secret_key.map(SecretKey::parse).transpose()?;
        let smtp_password = from_store(docket_dapr::SMTP_PASSWORD).await?;
        let (store, mut consumers) = open_serving(&database).await?;
        let secret = crate::secret::jwt_secret(jwt_secret.as_deref(), &args.data_dir)?;
        // Webhook secrets are sealed with this key; without one it follows the JWT secret.
        let secret_key = secret_key.unwrap_or_else(|| SecretKey::derive(secret.as_bytes()));
        let mut auth = AuthConfig::new(secret);
        auth.token_ttl = Duration::from_secs(args.token_ttl_secs);
        auth.better_auth_secret = args.better_auth_secret.clone().map(Into::into);
        auth.jwks = args.jwks_url.clone().map(|url| {
            Arc::new(docket_outbound::HttpJwks::new(url)) as Arc<dyn docket_ports::JwksSource>
        });
        let api = args.roles.contains(&Role::Api);
        let worker = args.roles.contains(&Role::Worker);
        let scheduler = args.roles.contains(&Role::Scheduler);
        // Completing a recurring task waits for the recurrence consumer's next instance: the
        // one in this process, else one a `worker` process runs on the same database, unless
        // the operator says none does (`--next-instance-wait-ms 0`).
        let next_instance_wait = if worker {
            Some(docket_app::NEXT_INSTANCE_WAIT)
        } else {
            Some(Duration::from_millis(args.next_instance_wait_ms)).filter(|d| !d.is_zero())
        };
        let delivery = args.delivery.config();
        let mut smtp = args.delivery.smtp();
        if let (Some(smtp), Some(password)) = (smtp.as_mut(), smtp_password) {
            smtp.password = Some(password.into());
        }
        let mailer = match &smtp {
            Some(smtp) => Some(Arc::new(
                docket_outbound::SmtpMailer::new(smtp, delivery.timeout)
                    .context("the email settings do not work")?,
            ) as Arc<dyn docket_ports::MailTransport>),
            None => None,
        };
        let sender = docket_app::delivery::Sender::new(
            delivery.clone(),
            secret_key.clone(),
            Arc::new(docket_outbound::HttpWebhooks::new()),
            mailer,
        );
        let mut app = App::new(store, auth)
            .with_secret_key(secret_key)
            .with_next_instance_wait(next_instance_wait)
            .with_email(smtp.is_some())
            .with_private_webhooks(delivery.allow_private);
        if api {
            app = app.with_hub(consumers.hub.clone());
        }
        if let Some(client) = &dapr.client {
            // Not ready while the sidecar cannot reach its components (its outbound health,
            // which does not wait for this app, so the two never wait for each other).
            let client = client.clone();
            let probe: docket_app::Probe = Arc::new(move || {
                let client = client.clone();
                Box::pin(async move { client.healthz_outbound().await.map_err(|e| e.to_string()) })
            });
            app = app.with_dependency("the Dapr sidecar", probe);
        }
        let app = Arc::new(app);
        if api || worker {
            // Rows from before sealing (or from an older version in a rolling upgrade) are
            // sealed; replicas starting together seal each row once between them.
            let sealed = app
                .seal_webhook_secrets()
                .await
                .context("cannot seal the stored webhook secrets")?;
            if sealed > 0 {
                tracing::info!(webhooks = sealed, "sealed stored webhook secrets");
            }
        }
        if let (Some(client), Backend::Dapr) = (&dapr.client, args.dapr.state) {
            consumers.state =
                Arc::new(DaprStateStore::new(client.clone(), args.dapr.dapr_state_store.clone()));
        }
        if let (Some(client), true, DaprDelivery::Inbox) =
            (&dapr.client, dapr.bus && worker, args.dapr.dapr_delivery)
        {
            dapr.inbox = Some(DaprBus::new(
                client.clone(),
                &args.dapr.dapr_pubsub,
                consumers.embedded.clone(),
            ));
        }
        let http = HttpConfig {
            trust_forwarded_for: args.trust_forwarded_for,
            serve_api: api,
            callbacks: dapr_callbacks(&args.dapr, &dapr, &consumers, &app, worker)?,
            ..HttpConfig::default()
        };
        let router = docket_http::router(Arc::clone(&app), http);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        Ok(Application {
            listener,
            router,
            addr,
            consumers,
            api,
            worker,
            app,
            scheduler,
            outbox_retention: args.outbox_retention,
            sender: Arc::new(sender),
            dapr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let runs = consumer_runs(&self.consumers);
        let Consumers { bus, hub, wake, state, .. } = self.consumers;
        let worker = self.worker;
        // Dapr mode: a worker relays the outbox to the sidecar, which delivers to the
        // consumers' routes; the embedded consumers do not run.
        if self.dapr.bus && worker {
            // A database that ran in embedded mode: the relay starts where its consumers were.
            for topic in docket_events::topics::ALL {
                let groups: Vec<&str> = runs
                    .iter()
                    .filter(|(_, c)| c.topic == *topic)
                    .map(|(_, c)| c.name.as_str())
                    .collect();
                if let Err(e) =
                    docket_dapr::relay::hand_over(self.app.store().as_ref(), topic, &groups).await
                {
                    tracing::warn!(%topic, error = %e, "cannot hand the topic over to the relay");
                }
            }
        }
        let relay = match (&self.dapr.client, self.dapr.bus && worker) {
            (Some(client), true) => Some(tokio::spawn(docket_dapr::relay::run_relay(
                Arc::clone(self.app.store()),
                client.clone(),
                docket_dapr::relay::RelayConfig::new(&self.dapr.pubsub),
                Some(wake.clone()),
                Some(Arc::clone(&state)),
                stop.subscribe(),
            ))),
            _ => None,
        };
        // Consumers read the log: the outbox (embedded), or in Dapr mode the inbox (if any).
        let bus: Option<Arc<dyn EventBus>> = match (&self.dapr.inbox, self.dapr.bus) {
            (Some(inbox), _) => Some(Arc::new(inbox.clone())),
            (None, false) => Some(bus),
            (None, true) => None,
        };
        let bus = bus.filter(|_| worker);
        let deliveries = worker.then(|| {
            tokio::spawn(docket_app::delivery::run_delivery_worker(
                Arc::clone(self.app.store()),
                self.app.clock(),
                Arc::clone(&self.sender),
                stop.subscribe(),
            ))
        });
        let consumer = tokio::spawn(async move {
            let Some(bus) = bus else { return };
            let runs = runs.map(|(processor, config)| {
                let (bus, stopped) = (Arc::clone(&bus), stopped.clone());
                async move {
                    let name = config.name.clone();
                    if let Err(e) = run_consumer(bus, processor, config, stopped).await {
                        tracing::error!(error = %e, consumer = %name, "consumer cannot subscribe");
                    }
                }
            });
            futures::future::join_all(runs).await;
        });
        let scheduler = self.scheduler.then(|| {
            let app = &self.app;
            // Dapr mode: the timers are Dapr jobs calling back `POST /job/{name}`; this
            // process keeps them registered. Otherwise the embedded scheduler times them.
            let timers: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
                match (&self.dapr.client, self.dapr.scheduler) {
                    (Some(client), true) => Box::pin(docket_dapr::jobs::run_job_registrar(
                        Arc::clone(app.store()),
                        app.clock(),
                        client.clone(),
                        docket_dapr::jobs::JobsConfig::default(),
                        app.scheduler_wake(),
                        stop.subscribe(),
                    )),
                    _ => Box::pin(run_scheduler(
                        Arc::clone(app.store()),
                        app.clock(),
                        app.scheduler_wake(),
                        SchedulerConfig::default(),
                        stop.subscribe(),
                    )),
                };
            let housekeeping = docket_app::housekeeping::run_housekeeping(
                Arc::clone(app.store()),
                Arc::clone(&state),
                app.clock(),
                docket_app::housekeeping::EVERY,
                self.outbox_retention,
                stop.subscribe(),
            );
            tokio::spawn(async move {
                tokio::join!(timers, housekeeping);
            })
        });
        // Streams never end by themselves: the hub closes them as soon as shutdown begins,
        // so the graceful drain below only waits for ordinary requests.
        let (stop_streams, streams_stopped) = watch::channel(false);
        let realtime = self.api.then(|| tokio::spawn(hub.run(Some(wake), streams_stopped)));
        let shutdown = async move {
            shutdown.await;
            let _ = stop_streams.send(true);
        };
        // Small writes (stream events, short responses) go out at once: Nagle's algorithm
        // would hold them for the peer's delayed ACK.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let served =
            axum::serve(listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown)
                .await
                .context("server failed");
        if let Some(realtime) = realtime {
            realtime.abort();
        }
        // Sending fails only when the consumer already returned.
        let _ = stop.send(true);
        if tokio::time::timeout(CONSUMER_STOP, consumer).await.is_err() {
            tracing::warn!("consumers did not stop in time");
        }
        if let Some(deliveries) = deliveries
            && tokio::time::timeout(CONSUMER_STOP, deliveries).await.is_err()
        {
            tracing::warn!("the delivery worker did not stop in time");
        }
        if let Some(relay) = relay
            && tokio::time::timeout(CONSUMER_STOP, relay).await.is_err()
        {
            tracing::warn!("the Dapr relay did not stop in time");
        }
        if let Some(scheduler) = scheduler
            && tokio::time::timeout(CONSUMER_STOP, scheduler).await.is_err()
        {
            tracing::warn!("the scheduler did not stop in time");
        }
        served
    }
}

/// A database opened for serving: the ports the server uses, and the embedded bus over it.
struct Database {
    store: Arc<dyn Store>,
    consume: Arc<dyn ConsumerStore>,
    state: Arc<dyn StateStore>,
    embedded: EmbeddedBus,
}

impl Database {
    fn new<S>(store: Arc<S>, embedded: EmbeddedBus) -> Database
    where
        S: Store + ConsumerStore + StateStore + 'static,
    {
        Database { store: store.clone(), consume: store.clone(), state: store, embedded }
    }
}

/// Opens the store like [`open_store`], the embedded bus over the same database, and the
/// consumers' processors over the store (the same for either database).
async fn open_serving(url: &str) -> anyhow::Result<(Arc<dyn Store>, Consumers)> {
    let context = || format!("cannot open database {}", redact(url));
    let Database { store, consume, state, embedded } = if let Some(path) =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
    {
        let store = Arc::new(docket_sqlite::SqliteStore::open(path).await.with_context(context)?);
        let embedded = EmbeddedBus::new(store.clone());
        Database::new(store, embedded)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = docket_postgres::PostgresStore::connect(url).await.with_context(context)?;
        let embedded = EmbeddedBus::new(Arc::new(store.event_log().await.with_context(context)?));
        Database::new(Arc::new(store), embedded)
    } else {
        anyhow::bail!("database url '{}' is neither sqlite://PATH nor postgres://…", redact(url))
    };
    let wake = embedded.wakeups();
    let bus: Arc<dyn EventBus> = Arc::new(embedded.clone());
    let processor = |handler| -> Arc<dyn Processor> {
        Arc::new(StoreProcessor::new(Arc::clone(&consume), handler))
    };
    let hub = Hub::new(Arc::clone(&store), HubConfig::default()).await.with_context(context)?;
    let consumers = Consumers {
        bus,
        embedded,
        audit: processor(docket_app::audit::handler()),
        notifier: processor(docket_app::notifier::handler()),
        recurrence: processor(docket_app::next_instance::handler()),
        webhooks: processor(docket_app::webhooks::handler()),
        hub,
        wake,
        state,
    };
    Ok((store, consumers))
}

/// Opens the store a database URL names (`sqlite://PATH` or `postgres://…`), creating the
/// SQLite file and its directory when missing and applying pending migrations.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let context = || format!("cannot open database {}", redact(url));
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let store = docket_sqlite::SqliteStore::open(path).await.with_context(context)?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = docket_postgres::PostgresStore::connect(url).await.with_context(context)?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("database url '{}' is neither sqlite://PATH nor postgres://…", redact(url))
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(&args).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, database = %redact(&args.db.database), roles = ?args.roles, "docket started");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "docket listening on http://{addr}")?;
        out.flush()?;
    }
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("docket stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./data/docket.db"), "sqlite://./data/docket.db");
    }
}
