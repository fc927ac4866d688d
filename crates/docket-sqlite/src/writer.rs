//! The single writer thread and its group commit.
//!
//! Every write of a [`super::SqliteStore`] is a closure sent to one thread that owns the only
//! read-write connection. The thread blocks for the first request, drains whatever else is
//! queued (up to [`MAX_BATCH`]), and runs them all in one `BEGIN IMMEDIATE … COMMIT`, each
//! inside its own `SAVEPOINT` so a failing request is rolled back alone. One commit means one
//! fsync (`synchronous=FULL`) for the whole batch: that is what lets durable writes scale past
//! the ~300 fsyncs/s a disk allows. Replies go out only after the commit, so an `Ok` is durable.
//!
//! After the last request and before `COMMIT` the batch runs one fixed hook outside any
//! savepoint (the store keeps its full-text index in step there). After a commit that
//! appended outbox rows (an append marks its batch with [`note_outbox_append`], a
//! thread-local flag) the writer bumps a `watch` counter, [`SqliteStore::outbox_appended`],
//! before it replies: the embedded event bus wakes on it instead of polling. That is one flag
//! test per batch and one `watch` send per committed batch with events, never per request.
//! This module knows nothing of tasks or users; it runs closures. It does not retry: a batch
//! whose `BEGIN`, hook or `COMMIT` fails fails every request in it with `Unavailable`.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::SqliteStore;
use super::checkpoint::Nudge;
use super::codec::BACKEND;
use docket_ports::StoreError;

/// The most requests one transaction carries. Large enough to amortise an fsync over many
/// writes, small enough that one batch never holds the write lock for long.
pub const MAX_BATCH: usize = 512;

/// Work every batch ends with, after its requests and before its commit.
pub type BeforeCommit = fn(&Transaction<'_>) -> Result<(), rusqlite::Error>;

thread_local! {
    /// Set by an outbox append on the writer thread; taken once per batch.
    static OUTBOX_APPENDED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the batch running on this (the writer) thread as one that appended outbox rows.
pub(crate) fn note_outbox_append() {
    OUTBOX_APPENDED.with(|f| f.set(true));
}

impl SqliteStore {
    /// A counter bumped after every committed batch that appended outbox rows: wait on
    /// `changed()` to learn that new events may be readable (the embedded bus does).
    /// Spurious bumps are possible (a request that appended and was then rolled back); a
    /// missed one is not.
    pub fn outbox_appended(&self) -> watch::Receiver<u64> {
        self.writer.appended.subscribe()
    }

    /// Marks the current write batch as one that appends outbox rows; call it from a
    /// [`SqliteStore::write`] closure that inserts into `outbox` by hand.
    pub fn note_outbox_append() {
        note_outbox_append();
    }
}

/// One queued write: runs inside the batch transaction, then reports after the commit.
trait Request: Send {
    /// Runs the closure; returns whether it succeeded (else its savepoint is rolled back).
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Sends the outcome. `commit` is the batch's commit error, if the commit failed.
    fn finish(self: Box<Self>, commit: Option<&rusqlite::Error>);
}

struct Pending<F, R> {
    f: Option<F>,
    outcome: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Request for Pending<F, R>
where
    F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        // A panicking closure must not take the writer thread (and every later write) with it.
        let outcome = catch_unwind(AssertUnwindSafe(|| f(tx))).unwrap_or_else(|_| {
            Err(StoreError::unavailable(BACKEND, "a write request panicked; it was rolled back"))
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Option<&rusqlite::Error>) {
        let outcome = match (self.outcome, commit) {
            // A request that failed on its own keeps its own error.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Some(e)) => {
                Err(StoreError::unavailable(BACKEND, format!("commit failed: {e}")))
            }
            (Some(Ok(v)), None) => Ok(v),
            (None, _) => Err(StoreError::unavailable(BACKEND, "the write was not run")),
        };
        // The caller may have stopped waiting; the write stands either way.
        let _ = self.reply.send(outcome);
    }
}

/// The sending side of the writer, owned by the store. Dropping it stops and joins the thread.
pub struct Writer {
    tx: Option<crossbeam_channel::Sender<Box<dyn Request>>>,
    thread: Option<JoinHandle<Connection>>,
    commits: Arc<AtomicU64>,
    appended: Arc<watch::Sender<u64>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must already be configured and migrated.
    /// `nudge` is told after each commit (the checkpointer copies the WAL into the file).
    pub fn start(
        conn: Connection,
        before_commit: BeforeCommit,
        nudge: Nudge,
    ) -> Result<Writer, StoreError> {
        // Unbounded: every queued request has a caller awaiting its reply, so the queue is
        // bounded by the callers in flight (HTTP connections), not by this channel.
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn Request>>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        let appended = Arc::new(watch::Sender::new(0u64));
        let signal = Arc::clone(&appended);
        let thread = std::thread::Builder::new()
            .name("docket-sqlite-writer".to_owned())
            .spawn(move || run(conn, &rx, &counter, before_commit, &nudge, &signal))
            .map_err(|e| StoreError::unavailable(BACKEND, e))?;
        Ok(Writer { tx: Some(tx), thread: Some(thread), commits, appended })
    }

    /// Queues `f` now (not when the future is first polled) and resolves after its batch
    /// committed. Dropping the future does not cancel the write.
    pub fn submit<R, F>(&self, f: F) -> oneshot::Receiver<Result<R, StoreError>>
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let request = Box::new(Pending { f: Some(f), outcome: None, reply });
        if let Some(tx) = &self.tx {
            // A send error means the thread is gone; dropping the request drops `reply`,
            // which the caller sees as `Unavailable`.
            let _ = tx.send(request);
        }
        rx
    }

    /// How many batches have been committed (for tests and metrics).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Stops the thread once every queued request has been committed, and closes the
    /// connection; idempotent.
    pub fn shutdown(&mut self) {
        // Closing the channel ends the thread's loop once the queue is empty (a receiver
        // still yields what was sent before the disconnect).
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && let Ok(conn) = thread.join()
        {
            drop(conn);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writer thread's loop; returns the connection for the owner to close.
fn run(
    mut conn: Connection,
    rx: &crossbeam_channel::Receiver<Box<dyn Request>>,
    commits: &AtomicU64,
    before_commit: BeforeCommit,
    nudge: &Nudge,
    appended: &watch::Sender<u64>,
) -> Connection {
    let mut batch: Vec<Box<dyn Request>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let n = batch.len();
        match commit_batch(&mut conn, &mut batch, commits, before_commit, appended) {
            Ok(()) => nudge.committed(),
            Err(e) => tracing::warn!(error = %e, batch.size = n, "sqlite write batch failed"),
        }
    }
    conn
}

/// Runs and commits one batch, replying to every request in it, whatever happens.
fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Box<dyn Request>>,
    commits: &AtomicU64,
    before_commit: BeforeCommit,
    appended: &watch::Sender<u64>,
) -> Result<(), rusqlite::Error> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            for r in batch.drain(..) {
                r.finish(Some(&e));
            }
            return Err(e);
        }
    };
    let mut done: Vec<Box<dyn Request>> = Vec::with_capacity(batch.len());
    let mut lost: Option<rusqlite::Error> = None;
    for mut r in batch.drain(..) {
        if lost.is_some() {
            done.push(r);
            continue;
        }
        match run_in_savepoint(&tx, &mut *r) {
            Ok(()) => {}
            Err(e) => lost = Some(e),
        }
        // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O,
        // out of memory); the batch's earlier work is then gone and nothing may commit.
        if lost.is_none() && tx.is_autocommit() {
            lost = Some(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back by the database".to_owned()),
            ));
        }
        done.push(r);
    }
    let result = match lost {
        Some(e) => Err(e),
        None => before_commit(&tx).and_then(|()| tx.commit()),
    };
    let had_events = OUTBOX_APPENDED.with(|f| f.replace(false));
    if result.is_ok() {
        // Counted before the replies, so a caller that saw its reply sees the count (and the
        // wake-up) too.
        commits.fetch_add(1, Ordering::Relaxed);
        if had_events {
            appended.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
    let err = result.as_ref().err();
    for r in done {
        r.finish(err);
    }
    result
}

/// Runs one request inside `SAVEPOINT request`, rolling back to it when the request failed.
/// An error here means the savepoint machinery itself failed, so the batch cannot commit.
fn run_in_savepoint(tx: &Transaction<'_>, r: &mut dyn Request) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("SAVEPOINT request")?.execute([])?;
    if !r.run(tx) {
        tx.prepare_cached("ROLLBACK TO request")?.execute([])?;
    }
    tx.prepare_cached("RELEASE request")?.execute([])?;
    Ok(())
}

/// Waits for a reply from [`Writer::submit`].
pub async fn reply<R>(rx: oneshot::Receiver<Result<R, StoreError>>) -> Result<R, StoreError> {
    rx.await.map_err(|_| StoreError::unavailable(BACKEND, "the sqlite writer has stopped"))?
}
