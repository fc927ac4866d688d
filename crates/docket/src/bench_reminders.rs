//! `docket bench` phase 0: a million pending reminders (§9). In this process, on a fresh
//! SQLite database: seed `--reminders` pending reminders due over a window (so they come due at
//! `--reminder-rate` per second), close and reopen the store and time restart-to-ready (until
//! the scheduler's first question, "what is next?", is answered), then run the real scheduler
//! with the system clock until every reminder fired, and read back each one's lateness
//! (`fired_at - fire_at`). Reported: restart-to-ready, lateness p50/p95/p99/max, fire
//! throughput, and this process's peak RSS (the phase runs before any other, so the peak is
//! its own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use docket_app::clock::SystemClock;
use docket_app::scheduler::{SchedulerConfig, run_scheduler};
use docket_core::{
    Channels, DisplayName, Email, NewReminder, NewTask, NewUser, Timestamp, Title, Trigger,
};
use docket_ports::Store as _;
use docket_sqlite::SqliteStore;
use hdrhistogram::Histogram;
use jiff::SignedDuration;
use tokio::sync::{Notify, watch};

/// Reminders inserted per write transaction while seeding.
const SEED_BATCH: usize = 20_000;
/// Reminders per task.
const PER_TASK: usize = 1_000;

/// The figures of the reminder phase.
#[derive(Debug, serde::Serialize)]
pub struct ReminderResult {
    pub reminders: usize,
    pub seed_seconds: f64,
    pub restart_to_ready_ms: f64,
    pub fired_per_second: f64,
    pub lateness_p50_ms: f64,
    pub lateness_p95_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    pub peak_rss_mib: Option<f64>,
}

fn parsed<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("bench {what}: {e}")
}

pub async fn run(count: usize, rate: usize) -> anyhow::Result<ReminderResult> {
    let dir = tempfile::tempdir().context("cannot make a temp directory")?;
    let path = dir.path().join("reminders.db");
    let path = path.to_str().ok_or_else(|| anyhow!("temp path is not UTF-8"))?.to_owned();
    let store = SqliteStore::open(&path).await.context("cannot open the reminder database")?;
    let now = Timestamp::now();
    let user = NewUser::with_email(
        Email::parse("bench-reminders@example.com").map_err(parsed("email"))?,
        DisplayName::parse("bench").map_err(parsed("name"))?,
    );
    let user = store.create_user(user, now).await.context("cannot create the bench user")?;

    // Due from `start` on, `rate` per second; the seeding time is added so none is overdue.
    let seed_started = Instant::now();
    let estimated_seed = Duration::from_secs_f64(count as f64 / 150_000.0 + 3.0);
    let start = now + SignedDuration::try_from(estimated_seed).context("seed window")?;
    let step_nanos = 1_000_000_000i64 / i64::try_from(rate.max(1)).unwrap_or(1);
    let mut seeded = 0usize;
    let mut tasks = Vec::new();
    while seeded < count {
        let task = NewTask::new(Title::parse("bench reminders").map_err(parsed("title"))?);
        let task = store.create_task(user.id, task, now).await.context("cannot create a task")?;
        tasks.push(task.id);
        let mut left_in_task = PER_TASK.min(count - seeded);
        while left_in_task > 0 {
            let n = SEED_BATCH.min(left_in_task);
            let reminders = (seeded..seeded + n)
                .map(|i| NewReminder {
                    trigger: Trigger::At(start + SignedDuration::from_nanos(step_nanos * i as i64)),
                    channels: Channels::default(),
                })
                .collect();
            store.add_reminders(&task, reminders, now).await.context("cannot seed reminders")?;
            seeded += n;
            left_in_task -= n;
        }
    }
    let seed_seconds = seed_started.elapsed().as_secs_f64();
    drop(store);

    // Restart: open the database again and ask what is next, as the scheduler does first.
    let reopened = Instant::now();
    let store = Arc::new(SqliteStore::open(&path).await.context("cannot reopen")?);
    let next = store.next_reminder_at().await.context("next reminder")?;
    let restart_to_ready_ms = reopened.elapsed().as_secs_f64() * 1000.0;
    if next.is_none() {
        return Err(anyhow!("no pending reminder after seeding"));
    }

    let (stop, stopped) = watch::channel(false);
    let scheduler = tokio::spawn(run_scheduler(
        Arc::clone(&store) as Arc<dyn docket_ports::Store>,
        Arc::new(SystemClock),
        Arc::new(Notify::new()),
        SchedulerConfig::default(),
        stopped,
    ));
    let deadline = Instant::now()
        + Duration::from_secs_f64(count as f64 / rate.max(1) as f64)
        + estimated_seed
        + Duration::from_secs(120);
    while store.next_reminder_at().await.context("next reminder")?.is_some() {
        if Instant::now() > deadline {
            let _ = stop.send(true);
            return Err(anyhow!("reminders were still pending two minutes after the last was due"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(true);
    scheduler.await.context("the scheduler panicked")?;

    // Lateness of every firing, read back through the store as a client would.
    let mut late = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut first_due, mut last_fired) = (i64::MAX, i64::MIN);
    for task in tasks {
        let reminders = store.list_reminders(user.id, task).await.context("read reminders")?;
        for r in reminders {
            let (Some(due), Some(fired)) = (r.fire_at, r.fired_at) else { continue };
            let (due, fired) = (due.as_microsecond(), fired.as_microsecond());
            first_due = first_due.min(due);
            last_fired = last_fired.max(fired);
            let _ = late.record(u64::try_from(fired - due).unwrap_or(0).max(1));
        }
    }
    if late.len() as usize != count {
        return Err(anyhow!("{} of {count} reminders fired", late.len()));
    }
    let [lateness_p50_ms, lateness_p95_ms, lateness_p99_ms, lateness_max_ms] =
        crate::bench::quantiles_ms(&late);
    let span_seconds = (last_fired - first_due).max(1) as f64 / 1e6;
    Ok(ReminderResult {
        reminders: count,
        seed_seconds,
        restart_to_ready_ms,
        fired_per_second: count as f64 / span_seconds,
        lateness_p50_ms,
        lateness_p95_ms,
        lateness_p99_ms,
        lateness_max_ms,
        peak_rss_mib: crate::bench::rss_mib(std::process::id()).map(|(_, hwm)| hwm),
    })
}
