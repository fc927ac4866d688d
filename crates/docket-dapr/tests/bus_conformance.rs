//! Runs the bus conformance suite (`docket_bus::bus_conformance!`) against [`DaprBus`] in
//! Dapr mode, over the test sidecar: one fresh sidecar, SQLite store and app server per check.
//!
//! * The app: the callbacks keeping deliveries in the bus's inbox
//!   (`AppCallbacks::keep_in`, as the server's `--dapr-delivery inbox`) served on 127.0.0.1:0
//!   and attached to the sidecar. A restart builds a new bus on the same state store and
//!   serves its callbacks at the same address (the
//!   app restarting behind its sidecar), then attaches again.
//! * Topics: Dapr reads `GET /dapr/subscribe` when the app starts, and the checks make up
//!   their topics as they go, so the fixture's bus attaches the app again whenever a
//!   `subscribe` declares a new topic (standing in for a restart with that topic configured).
//! * `begin_append` is Dapr mode's write path: the events go into the outbox of a real SQLite
//!   store inside a write the check commits or rolls back, and the outbox relay (`run_relay`,
//!   woken by the store's append signal) publishes committed rows to the sidecar.
//! * The sidecar delivers each subscription's events one at a time
//!   (`SidecarBuilder::ordered_delivery`, a Kafka topic of one partition) and retries without
//!   limit every 10 ms (`maxRetries: -1`), so only the bus dead-letters.
//!
//! * The bus keeps what Dapr delivers in its inbox log in the same SQLite store (the app's
//!   database, as in production), so the producer's outbox rows and the inbox rows of the same
//!   events live side by side, as they do when the API and the workers share a database.
//!
//! All twelve checks run unchanged.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::Request;
use docket_bus::conformance::{BusFixture, OpenAppend};
use docket_bus::embedded::EmbeddedBus;
use docket_bus::{BusError, EventBus, SubscribeOptions, Subscription};
use docket_dapr::bus::DaprBus;
use docket_dapr::callbacks::AppCallbacks;
use docket_dapr::relay::{RelayConfig, run_relay};
use docket_dapr::testing::TestSidecar;
use docket_events::CloudEvent;
use docket_ports::Store;
use docket_postgres::PostgresStore;
use docket_sqlite::SqliteStore;
use tokio::sync::watch;
use tower::ServiceExt as _;

const PUBSUB: &str = "docket-pubsub";

/// The app's address and what it currently serves.
struct App {
    url: String,
    router: Arc<Mutex<Router>>,
    server: tokio::task::JoinHandle<()>,
}

impl App {
    async fn serve() -> App {
        let router = Arc::new(Mutex::new(Router::new()));
        let current = Arc::clone(&router);
        let app = Router::new().fallback(move |request: Request| {
            let router = current.lock().expect("router lock").clone();
            async move {
                match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("local address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve the app");
        });
        App { url, router, server }
    }
}

/// The bus the checks see: a [`DaprBus`] whose `subscribe` to a new topic attaches the app
/// again, so that the sidecar subscribes to it.
struct AttachingBus {
    bus: DaprBus,
    sidecar: Arc<TestSidecar>,
    app_url: String,
}

#[async_trait]
impl EventBus for AttachingBus {
    fn backend(&self) -> &'static str {
        self.bus.backend()
    }

    async fn publish(&self, topic: &str, events: Vec<CloudEvent>) -> Result<(), BusError> {
        self.bus.publish(topic, events).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        if self.bus.declare_topic(topic)? {
            self.sidecar.attach_app(&self.app_url).await.expect("attach the app");
        }
        self.bus.subscribe(group, topic, options).await
    }
}

/// The app's database: the producer's outbox and the bus's inbox.
enum Db {
    /// The store, and its directory (removed on drop).
    Sqlite(Arc<SqliteStore>, #[allow(dead_code)] tempfile::TempDir),
    Postgres(PostgresStore),
}

impl Db {
    async fn log(&self) -> EmbeddedBus {
        match self {
            Db::Sqlite(store, _) => EmbeddedBus::new(store.clone()),
            Db::Postgres(store) => {
                EmbeddedBus::new(Arc::new(store.event_log().await.expect("start the inbox's bus")))
            }
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(store, _) => store.clone(),
            Db::Postgres(store) => Arc::new(store.clone()),
        }
    }
}

struct DaprFixture {
    sidecar: Arc<TestSidecar>,
    db: Db,
    /// Wake-ups on outbox appends, for the relay (and on PostgreSQL the bus whose `LISTEN`
    /// connection sends them, kept alive).
    appended: watch::Receiver<u64>,
    _listener: Option<EmbeddedBus>,
    app: App,
    /// The bus now serving (`None` only while the fixture starts).
    bus: Mutex<Option<Arc<AttachingBus>>>,
    relayed: Mutex<BTreeSet<String>>,
    stop: watch::Sender<bool>,
}

impl Drop for DaprFixture {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.app.server.abort();
    }
}

impl DaprFixture {
    async fn start_bus(&self, topics: &[String]) -> Arc<AttachingBus> {
        let log = self.db.log().await;
        let bus = DaprBus::new(self.sidecar.client(), PUBSUB, log);
        for topic in topics {
            bus.declare_topic(topic).expect("a valid topic");
        }
        *self.app.router.lock().expect("router lock") =
            AppCallbacks::new(None).keep_in(bus.clone()).router();
        self.sidecar.attach_app(&self.app.url).await.expect("attach the app");
        let bus = Arc::new(AttachingBus {
            bus,
            sidecar: Arc::clone(&self.sidecar),
            app_url: self.app.url.clone(),
        });
        *self.bus.lock().expect("bus lock") = Some(Arc::clone(&bus));
        bus
    }

    /// Starts the outbox relay of `topic` once.
    fn relay(&self, topic: &str) {
        if !self.relayed.lock().expect("relay lock").insert(topic.to_owned()) {
            return;
        }
        let config = RelayConfig {
            topics: vec![topic.to_owned()],
            poll: Duration::from_millis(50),
            ..RelayConfig::new(PUBSUB)
        };
        tokio::spawn(run_relay(
            self.db.store(),
            self.sidecar.client(),
            config,
            Some(self.appended.clone()),
            None,
            self.stop.subscribe(),
        ));
    }
}

#[async_trait]
impl BusFixture for DaprFixture {
    fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.lock().expect("bus lock").clone().expect("the fixture started its bus")
    }

    async fn begin_append(&self, topic: &str, events: Vec<CloudEvent>) -> Box<dyn OpenAppend> {
        self.relay(topic);
        match &self.db {
            Db::Sqlite(store, _) => docket_testkit::begin_sqlite_append(store, topic, events).await,
            Db::Postgres(store) => {
                docket_testkit::begin_postgres_append(store, topic, events).await
            }
        }
    }

    async fn teardown(self) {
        self.stop.send_replace(true);
        let schema = match &self.db {
            Db::Postgres(store) => Some(store.clone()),
            Db::Sqlite(..) => None,
        };
        drop(self);
        if let Some(store) = schema {
            store.drop_schema().await.expect("drop the test schema");
        }
    }

    async fn restart(&self) -> Arc<dyn EventBus> {
        let topics = self.bus.lock().expect("bus lock").as_ref().map(|b| b.bus.topics());
        let topics = topics.expect("the fixture started its bus");
        self.start_bus(&topics).await
    }
}

/// A fixture on a fresh SQLite file.
async fn fresh_sqlite() -> Option<DaprFixture> {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("docket.db");
    let path = path.to_str().expect("temporary paths are UTF-8");
    let store = Arc::new(SqliteStore::open(path).await.expect("open a fresh sqlite store"));
    let appended = store.outbox_appended();
    Some(fixture(Db::Sqlite(store, dir), appended, None).await)
}

/// A fixture on a fresh schema of `DOCKET_TEST_POSTGRES_URL`, or `None` (skip) when the
/// variable is unset outside CI.
async fn fresh_postgres() -> Option<DaprFixture> {
    let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DOCKET_TEST_POSTGRES_URL must be set when CI is set (Dapr bus conformance on PostgreSQL cannot be skipped in CI)"
        );
        println!("skipped: DOCKET_TEST_POSTGRES_URL not set");
        return None;
    };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect to PostgreSQL");
    let listener = EmbeddedBus::new(Arc::new(store.event_log().await.expect("listen for appends")));
    Some(fixture(Db::Postgres(store), listener.wakeups(), Some(listener)).await)
}

async fn fixture(
    db: Db,
    appended: watch::Receiver<u64>,
    listener: Option<EmbeddedBus>,
) -> DaprFixture {
    let sidecar =
        TestSidecar::builder().ordered_until_taken().start().await.expect("start the test sidecar");
    let app = App::serve().await;
    let fixture = DaprFixture {
        sidecar: Arc::new(sidecar),
        db,
        appended,
        _listener: listener,
        app,
        bus: Mutex::new(None),
        relayed: Mutex::new(BTreeSet::new()),
        stop: watch::Sender::new(false),
    };
    fixture.start_bus(&[]).await;
    fixture
}

mod sqlite {
    docket_bus::bus_conformance!(super::fresh_sqlite().await);
}

mod postgres {
    docket_bus::bus_conformance!(super::fresh_postgres().await);
}
