//! Runs the store conformance suite (`docket_ports::conformance`) against `SqliteStore`: one
//! named test per check (`check_list_sorts`, …), the state store suite likewise
//! (`state::check_state_ttl_expiry`, …) and the consumer port's
//! (`consume::check_consume_duplicate_applies_nothing`, …), each on a fresh file. Nothing
//! here tests adapter internals (see `src/tests.rs`).

use docket_ports::conformance::consume::ConsumeFixture;
use docket_ports::conformance::{Fixture, StateFixture};
use docket_ports::consume::ConsumerStore;
use docket_ports::{StateStore, Store};

use docket_sqlite::SqliteStore;

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

docket_ports::store_conformance!(fresh().await);

mod state {
    docket_ports::state_conformance!(super::fresh().await);
}

mod consume {
    docket_ports::consume_conformance!(super::fresh().await);
}
