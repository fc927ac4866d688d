//! Runs the store conformance suite against every adapter: one named test per check per
//! adapter (`sqlite::check_list_sorts`, `postgres::check_list_sorts`, …), and the state
//! store suite likewise (`sqlite::state::check_state_ttl_expiry`, …), and the consumer port's
//! (`sqlite::consume::check_consume_duplicate_applies_nothing`, …).
//!
//! SQLite always runs, on a fresh file per test. PostgreSQL runs when
//! `DOCKET_TEST_POSTGRES_URL` is set, each test in a fresh schema; without it the tests print
//! why they skip, except under `CI`, where a missing URL is a failure. An unreachable URL is
//! always a failure. Nothing here tests adapter internals (see each adapter's `tests.rs`).

use docket_store::conformance::consume::ConsumeFixture;
use docket_store::conformance::{Fixture, StateFixture};
use docket_store::consume::ConsumerStore;
use docket_store::{StateStore, Store};

mod sqlite {
    use super::*;
    use docket_store::sqlite::SqliteStore;

    /// A store on a fresh file, and the directory that holds it (deleted with the fixture).
    pub struct SqliteFixture {
        store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    impl Fixture for SqliteFixture {
        fn store(&self) -> &dyn Store {
            &self.store
        }
    }

    pub async fn fresh() -> Option<SqliteFixture> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("data").join("docket.db");
        let path = path.to_str().expect("temporary paths are UTF-8");
        let store = SqliteStore::open(path).await.expect("open a fresh sqlite store");
        Some(SqliteFixture { store, _dir: dir })
    }

    impl StateFixture for SqliteFixture {
        fn state(&self) -> &dyn StateStore {
            &self.store
        }
    }

    impl ConsumeFixture for SqliteFixture {
        fn store(&self) -> &dyn Store {
            &self.store
        }

        fn consumer(&self) -> &dyn ConsumerStore {
            &self.store
        }
    }

    docket_store::store_conformance!(fresh().await);

    mod state {
        docket_store::state_conformance!(super::fresh().await);
    }

    mod consume {
        docket_store::consume_conformance!(super::fresh().await);
    }
}

mod postgres {
    use super::*;
    use docket_store::postgres::PostgresStore;

    pub struct PostgresFixture(PostgresStore);

    impl Fixture for PostgresFixture {
        fn store(&self) -> &dyn Store {
            &self.0
        }

        async fn teardown(self) {
            self.0.drop_schema().await.expect("drop the test schema");
        }
    }

    impl StateFixture for PostgresFixture {
        fn state(&self) -> &dyn StateStore {
            &self.0
        }

        async fn teardown(self) {
            self.0.drop_schema().await.expect("drop the test schema");
        }
    }

    impl ConsumeFixture for PostgresFixture {
        fn store(&self) -> &dyn Store {
            &self.0
        }

        fn consumer(&self) -> &dyn ConsumerStore {
            &self.0
        }

        async fn teardown(self) {
            self.0.drop_schema().await.expect("drop the test schema");
        }
    }

    /// A store in a fresh schema of `DOCKET_TEST_POSTGRES_URL`, or `None` (skip) when the
    /// variable is unset outside CI.
    pub async fn fresh() -> Option<PostgresFixture> {
        let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
        else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "DOCKET_TEST_POSTGRES_URL must be set when CI is set (PostgreSQL conformance cannot be skipped in CI)"
                );
            }
            println!("skipped: DOCKET_TEST_POSTGRES_URL not set");
            return None;
        };
        match PostgresStore::connect_isolated(&url).await {
            Ok(store) => Some(PostgresFixture(store)),
            Err(e) => panic!("DOCKET_TEST_POSTGRES_URL is set but the store cannot connect: {e}"),
        }
    }

    docket_store::store_conformance!(fresh().await);

    mod state {
        docket_store::state_conformance!(super::fresh().await);
    }

    mod consume {
        docket_store::consume_conformance!(super::fresh().await);
    }
}
