//! Runs the bus conformance suite against the embedded adapter: one named test per check per
//! backing database (`sqlite::check_bus_per_key_order`, `postgres::check_bus_per_key_order`, …).
//!
//! SQLite always runs, on a fresh file per test. PostgreSQL runs when
//! `DOCKET_TEST_POSTGRES_URL` is set, each test in a fresh schema; without it the tests print
//! why they skip, except under `CI`, where a missing URL is a failure. The fallback poll is set
//! far beyond the checks' patience, so a passing wake-up check proves the wake-up path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_bus::EventBus;
use docket_bus::conformance::{BusFixture, OpenAppend};
use docket_bus::embedded::EmbeddedBus;
use docket_events::CloudEvent;

const NO_POLL: Duration = Duration::from_secs(3600);

mod sqlite {
    use super::*;
    use docket_sqlite::SqliteStore;

    pub struct SqliteFixture {
        store: Arc<SqliteStore>,
        bus: Arc<dyn EventBus>,
        _dir: tempfile::TempDir,
    }

    #[async_trait]
    impl BusFixture for SqliteFixture {
        fn bus(&self) -> Arc<dyn EventBus> {
            Arc::clone(&self.bus)
        }

        async fn begin_append(&self, topic: &str, events: Vec<CloudEvent>) -> Box<dyn OpenAppend> {
            docket_testkit::begin_sqlite_append(&self.store, topic, events).await
        }

        async fn restart(&self) -> Arc<dyn EventBus> {
            Arc::new(EmbeddedBus::new(self.store.clone()).with_fallback_poll(NO_POLL))
        }
    }

    pub async fn fresh() -> Option<SqliteFixture> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("docket.db");
        let path = path.to_str().expect("temporary paths are UTF-8");
        let store = Arc::new(SqliteStore::open(path).await.expect("open a fresh sqlite store"));
        let bus = Arc::new(EmbeddedBus::new(store.clone()).with_fallback_poll(NO_POLL));
        Some(SqliteFixture { store, bus, _dir: dir })
    }

    docket_bus::bus_conformance!(fresh().await);
}

mod postgres {
    use super::*;
    use docket_postgres::PostgresStore;

    pub struct PostgresFixture {
        store: PostgresStore,
        bus: Arc<dyn EventBus>,
    }

    #[async_trait]
    impl BusFixture for PostgresFixture {
        fn bus(&self) -> Arc<dyn EventBus> {
            Arc::clone(&self.bus)
        }

        async fn begin_append(&self, topic: &str, events: Vec<CloudEvent>) -> Box<dyn OpenAppend> {
            docket_testkit::begin_postgres_append(&self.store, topic, events).await
        }

        async fn restart(&self) -> Arc<dyn EventBus> {
            let bus =
                EmbeddedBus::new(Arc::new(self.store.event_log().await.expect("restart the bus")));
            Arc::new(bus.with_fallback_poll(NO_POLL))
        }

        async fn teardown(self) {
            drop(self.bus);
            self.store.drop_schema().await.expect("drop the test schema");
        }
    }

    /// A bus on a fresh schema of `DOCKET_TEST_POSTGRES_URL`, or `None` (skip) when the
    /// variable is unset outside CI.
    pub async fn fresh() -> Option<PostgresFixture> {
        let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
        else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "DOCKET_TEST_POSTGRES_URL must be set when CI is set (PostgreSQL bus conformance cannot be skipped in CI)"
                );
            }
            println!("skipped: DOCKET_TEST_POSTGRES_URL not set");
            return None;
        };
        let store = match PostgresStore::connect_isolated(&url).await {
            Ok(store) => store,
            Err(e) => panic!("DOCKET_TEST_POSTGRES_URL is set but the store cannot connect: {e}"),
        };
        let bus = EmbeddedBus::new(Arc::new(store.event_log().await.expect("start the bus")));
        Some(PostgresFixture { store, bus: Arc::new(bus.with_fallback_poll(NO_POLL)) })
    }

    docket_bus::bus_conformance!(fresh().await);
}
