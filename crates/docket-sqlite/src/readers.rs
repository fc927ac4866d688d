//! The pool of reader threads, each owning one `query_only` connection.
//!
//! In WAL mode readers see the last committed state and never wait for the writer, so reads
//! go to their own threads instead of queueing behind write batches. Jobs are closures taken
//! from one shared queue by whichever reader is free. This module does not retry and does not
//! open transactions: a single statement is already a consistent snapshot.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::codec::BACKEND;
use docket_ports::StoreError;

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// The job queue of the readers. Dropping it stops and joins the threads.
pub struct Readers {
    tx: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<JoinHandle<Connection>>,
}

impl Readers {
    /// Starts one thread per connection; the connections must already be configured.
    pub fn start(conns: Vec<Connection>) -> Result<Readers, StoreError> {
        // Unbounded for the same reason as the writer's queue: each job has a waiting caller.
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut threads = Vec::with_capacity(conns.len());
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("docket-sqlite-reader-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        // A panicking job drops its reply sender, which its caller sees as
                        // `Unavailable`; the thread lives on for the next job.
                        let _ = catch_unwind(AssertUnwindSafe(|| job(&conn)));
                    }
                    conn
                })
                .map_err(|e| StoreError::unavailable(BACKEND, e))?;
            threads.push(thread);
        }
        Ok(Readers { tx: Some(tx), threads })
    }

    /// Runs `f` on a free reader connection.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        if let Some(tx) = &self.tx {
            // On a send error the job (and its reply sender) is dropped: handled below.
            let _ = tx.send(job);
        }
        rx.await.map_err(|_| {
            StoreError::unavailable(BACKEND, "a sqlite reader failed or has stopped")
        })?
    }
}

impl Readers {
    /// Stops the threads and closes their connections one after the other: connections
    /// closing at the same moment each fail to take the lock that checkpointing needs.
    pub fn shutdown(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            if let Ok(conn) = t.join() {
                drop(conn);
            }
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.shutdown();
    }
}
