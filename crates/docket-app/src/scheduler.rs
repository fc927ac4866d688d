//! The embedded scheduler (§6): fires due reminders, durably and exactly once, and makes the
//! instances of `fixed`-mode series when their occurrence comes.
//!
//! It sleeps until the earliest pending fire time (one probe of the store's partial index of
//! pending reminders, however many there are), until told of a change that may be earlier
//! (`App::wake_scheduler`, a `Notify`), or at most `max_sleep` (changes made by other
//! processes on a shared PostgreSQL). Firing is the store's claim: each due reminder moves to
//! `fired` together with its `reminder.triggered` event in one transaction, so a crash never
//! loses or doubles one, several schedulers on one PostgreSQL share the work, and at start
//! everything overdue fires at once (there is no window of missed reminders).
//!
//! Not an in-memory heap: the index answers "what is next" in O(log n), which keeps restart
//! instant with a million pending reminders (nothing to load) at the cost of one small query
//! per wake-up.

use std::sync::Arc;
use std::time::Duration;

use docket_ports::Store;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;

/// Counter: reminders fired by this process.
pub const FIRED_METRIC: &str = "docket_reminders_fired_total";
/// Histogram: seconds between a reminder's fire time and its firing.
pub const LATENESS_METRIC: &str = "docket_reminder_lateness_seconds";

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Reminders claimed per transaction.
    pub batch: usize,
    /// The longest sleep without looking at the store (bounds the delay for changes made
    /// by another process).
    pub max_sleep: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig { batch: 500, max_sleep: Duration::from_secs(1) }
    }
}

/// Everything due at `now`, at once: makes the due fixed-mode instances and fires the due
/// reminders, batch after batch, through the same claims as [`run_scheduler`] (so a repeated
/// or concurrent sweep fires nothing twice). What a Dapr job or cron-binding trigger runs.
/// Returns `(instances made, reminders fired)`.
pub async fn sweep(
    store: &dyn Store,
    now: docket_core::Timestamp,
    batch: usize,
) -> Result<(usize, usize), docket_ports::StoreError> {
    let batch = batch.max(1);
    let mut spawned = 0;
    loop {
        let made = store.spawn_due_instances(now, batch).await?.len();
        spawned += made;
        if made < batch {
            break;
        }
    }
    let mut fired = 0;
    loop {
        let done = fire_batch(store, now, batch).await?;
        fired += done;
        if done < batch {
            break;
        }
    }
    Ok((spawned, fired))
}

/// Fires up to `batch` reminders due at `now` through the store's claim and records them
/// (count and lateness); returns how many fired.
async fn fire_batch(
    store: &dyn Store,
    now: docket_core::Timestamp,
    batch: usize,
) -> Result<usize, docket_ports::StoreError> {
    let fired = store.fire_due_reminders(now, batch).await?;
    metrics::counter!(FIRED_METRIC).increment(fired.len() as u64);
    let lateness = metrics::histogram!(LATENESS_METRIC);
    for r in &fired {
        if let Some(at) = r.fire_at {
            lateness.record(now.duration_since(at).as_secs_f64().max(0.0));
        }
    }
    Ok(fired.len())
}

/// Runs until `shutdown` turns true (finishing the batch in hand).
pub async fn run_scheduler(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    config: SchedulerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let now = clock.now();
        // Fixed-mode series whose next occurrence has come get their instance (the store's
        // claim moves `next_occurrence` in the same transaction; replicas are safe).
        let spawned = match store.spawn_due_instances(now, config.batch).await {
            Ok(made) => made.len(),
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot make series instances; retrying");
                0
            }
        };
        if spawned == config.batch {
            continue; // more are due
        }
        let sleep = match fire_batch(store.as_ref(), now, config.batch).await {
            Ok(fired) => {
                failures = 0;
                if fired == config.batch {
                    continue; // more are due
                }
                let next = match (store.next_reminder_at().await, store.next_series_at().await) {
                    (Ok(a), Ok(b)) => Ok(match (a, b) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                match next {
                    Ok(Some(next)) => {
                        let wait = next.duration_since(clock.now()).as_secs_f64().max(0.0);
                        Duration::from_secs_f64(wait).min(config.max_sleep)
                    }
                    Ok(None) => config.max_sleep,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler cannot read the next deadline");
                        config.max_sleep
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "scheduler cannot fire reminders; retrying");
                Duration::from_millis(100 << failures.min(5))
                    .min(config.max_sleep.max(Duration::from_millis(100)))
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests;
