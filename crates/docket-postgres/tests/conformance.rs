//! Runs the store conformance suite (`docket_ports::conformance`) against `PostgresStore`: one
//! named test per check (`check_list_sorts`, …), the state store suite likewise
//! (`state::check_state_ttl_expiry`, …) and the consumer port's
//! (`consume::check_consume_duplicate_applies_nothing`, …), each in a fresh schema.
//!
//! It runs when `DOCKET_TEST_POSTGRES_URL` is set; without it the tests print why they skip,
//! except under `CI`, where a missing URL is a failure. An unreachable URL is always a
//! failure. Nothing here tests adapter internals (see `src/tests.rs`).

use docket_ports::conformance::consume::ConsumeFixture;
use docket_ports::conformance::{Fixture, StateFixture};
use docket_ports::consume::ConsumerStore;
use docket_ports::{StateStore, Store};

use docket_postgres::PostgresStore;

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
    let Some(url) = std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
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

docket_ports::store_conformance!(fresh().await);

mod state {
    docket_ports::state_conformance!(super::fresh().await);
}

mod consume {
    docket_ports::consume_conformance!(super::fresh().await);
}
