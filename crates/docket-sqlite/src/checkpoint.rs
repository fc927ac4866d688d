//! The background checkpointer: copies committed WAL frames into the database file on a
//! thread and connection of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, on the
//! writer thread, and ends with an fsync of the database file: every few batches a whole
//! batch of callers would wait for it, and the writer (the one thread every write goes
//! through) would spend its time copying pages. Here the writer only nudges this thread after
//! each commit; checkpoints are `PASSIVE` (they never block the writer or readers) and at most
//! one per [`PACE`]. The writer keeps a far larger automatic threshold as a backstop should
//! this thread fall behind. This module does not decide durability: the WAL fsync at commit
//! already made every acknowledged write durable.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::Connection;

use super::codec::BACKEND;
use docket_ports::StoreError;

/// The shortest time between two checkpoints: long enough that pages rewritten by many
/// batches are copied once, short enough to keep the WAL to tens of megabytes.
pub const PACE: Duration = Duration::from_millis(100);

/// The checkpointer thread. It stops when every [`Nudge`] is gone; `shutdown` then joins it.
pub struct Checkpointer {
    thread: Option<JoinHandle<Connection>>,
}

/// Tells the checkpointer that a batch committed; cheap and never blocks.
#[derive(Clone)]
pub struct Nudge(Sender<()>);

impl Nudge {
    pub fn committed(&self) {
        // A full channel already holds a nudge the thread has not seen yet: that is enough.
        if let Err(TrySendError::Disconnected(())) = self.0.try_send(()) {
            tracing::debug!("sqlite checkpointer has stopped");
        }
    }
}

impl Checkpointer {
    /// Starts the thread on `conn` (configured, on the store's file); returns the nudge the
    /// writer calls after each commit.
    pub fn start(conn: Connection) -> Result<(Checkpointer, Nudge), StoreError> {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("docket-sqlite-checkpoint".to_owned())
            .spawn(move || run(conn, &rx))
            .map_err(|e| StoreError::unavailable(BACKEND, e))?;
        Ok((Checkpointer { thread: Some(thread) }, Nudge(tx)))
    }

    /// Waits for the thread (which ends once every nudge is dropped) and closes its
    /// connection; idempotent.
    pub fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take()
            && let Ok(conn) = thread.join()
        {
            drop(conn);
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(conn: Connection, rx: &Receiver<()>) -> Connection {
    let mut nudged = false;
    loop {
        if !nudged && rx.recv().is_err() {
            return conn;
        }
        // PASSIVE: copies what no reader still needs and never waits for a lock; what it
        // leaves is taken by the next round. Failures are logged and retried next round.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "sqlite checkpoint failed");
        }
        nudged = false;
        let until = Instant::now() + PACE;
        loop {
            match rx.recv_deadline(until) {
                Ok(()) => nudged = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return conn,
            }
        }
    }
}
