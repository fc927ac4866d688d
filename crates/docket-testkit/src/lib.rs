//! Fixtures the tests of several crates share, over the real stores: a SQLite store on a
//! fresh file ([`TempSqlite`]), a PostgreSQL store in a fresh schema when the environment
//! names a server ([`postgres`]), and outbox appends held open in a transaction for the bus
//! conformance suite ([`begin_sqlite_append`], [`begin_postgres_append`]).
//!
//! A dev-dependency only: no crate that ships depends on it, so what it opens up (the
//! stores' raw write paths) is never reachable from the product.

use std::sync::Arc;

use async_trait::async_trait;
use docket_bus::conformance::OpenAppend;
use docket_core::Timestamp;
use docket_events::CloudEvent;
use docket_ports::StoreError;
use docket_postgres::PostgresStore;
use docket_sqlite::SqliteStore;

/// A SQLite store on a fresh file in a temporary directory, removed after the store closes.
pub struct TempSqlite {
    pub store: Arc<SqliteStore>,
    /// Dropped after `store` (fields drop in declaration order).
    pub dir: tempfile::TempDir,
}

impl TempSqlite {
    /// Opens a fresh store (migrations applied, nothing else in it).
    pub async fn open() -> TempSqlite {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("docket.db");
        let path = path.to_str().expect("temporary paths are UTF-8");
        let store = Arc::new(SqliteStore::open(path).await.expect("open a fresh sqlite store"));
        TempSqlite { store, dir }
    }
}

/// The URL of the test PostgreSQL server (`DOCKET_TEST_POSTGRES_URL`), or `None` after
/// printing that `what` is skipped. Under `CI` a missing URL fails the test instead.
pub fn postgres_url(what: &str) -> Option<String> {
    match std::env::var("DOCKET_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => Some(url),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "DOCKET_TEST_POSTGRES_URL must be set when CI is set ({what} cannot be skipped in CI)"
            );
            println!("skipped {what}: DOCKET_TEST_POSTGRES_URL not set");
            None
        }
    }
}

/// A store in a fresh schema of the test server, or `None` (skipped) as [`postgres_url`] says.
/// An unreachable server is a failure.
pub async fn postgres(what: &str) -> Option<PostgresStore> {
    let url = postgres_url(what)?;
    match PostgresStore::connect_isolated(&url).await {
        Ok(store) => Some(store),
        Err(e) => panic!("DOCKET_TEST_POSTGRES_URL is set but the store cannot connect: {e}"),
    }
}

/// Events appended inside a SQLite write that the check commits or rolls back: the writer
/// thread holds the transaction open until told.
struct SqliteOpenWrite {
    decide: std::sync::mpsc::Sender<bool>,
    done: tokio::task::JoinHandle<Result<(), StoreError>>,
}

#[async_trait]
impl OpenAppend for SqliteOpenWrite {
    async fn commit(self: Box<Self>) {
        self.decide.send(true).expect("the write is waiting");
        let r = self.done.await.expect("the write task");
        r.expect("the write commits");
    }

    async fn roll_back(self: Box<Self>) {
        self.decide.send(false).expect("the write is waiting");
        let r = self.done.await.expect("the write task");
        assert!(r.is_err(), "the closure failed, so its savepoint rolled back");
    }
}

/// Appends `events` to `topic`'s outbox in a write of `store` and returns with it still open
/// (a `BusFixture::begin_append` for fixtures over SQLite).
pub async fn begin_sqlite_append(
    store: &SqliteStore,
    topic: &str,
    events: Vec<CloudEvent>,
) -> Box<dyn OpenAppend> {
    let (decide, wait) = std::sync::mpsc::channel::<bool>();
    let (appended, is_appended) = tokio::sync::oneshot::channel::<()>();
    let topic = topic.to_owned();
    let write = store.raw_write(move |tx| {
        for e in &events {
            docket_sqlite::bus::append_event(tx, &topic, e, Timestamp::now())?;
        }
        let _ = appended.send(());
        // Holds the writer thread, inside the open transaction, until decided.
        match wait.recv() {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Conflict("rolled back on purpose".to_owned())),
        }
    });
    let done = tokio::spawn(write);
    is_appended.await.expect("the closure appended");
    Box::new(SqliteOpenWrite { decide, done })
}

/// An open PostgreSQL transaction holding appended events.
struct PostgresOpenTx(sqlx::Transaction<'static, sqlx::Postgres>);

#[async_trait]
impl OpenAppend for PostgresOpenTx {
    async fn commit(self: Box<Self>) {
        self.0.commit().await.expect("commit");
    }

    async fn roll_back(self: Box<Self>) {
        self.0.rollback().await.expect("roll back");
    }
}

/// Appends `events` to `topic`'s outbox in a transaction of `store` and returns with it still
/// open (a `BusFixture::begin_append` for fixtures over PostgreSQL).
pub async fn begin_postgres_append(
    store: &PostgresStore,
    topic: &str,
    events: Vec<CloudEvent>,
) -> Box<dyn OpenAppend> {
    let mut tx = store.raw_pool().begin().await.expect("begin");
    docket_postgres::bus::hold_xid(&mut tx).await.expect("hold an xid");
    for e in &events {
        docket_postgres::bus::append_event(&mut tx, topic, e, Timestamp::now())
            .await
            .expect("append");
    }
    Box::new(PostgresOpenTx(tx))
}
