//! The scheduler over a real SQLite store with a clock the test moves: a due reminder fires
//! once when the clock reaches it (woken, not polled), overdue ones fire at start in batches,
//! and shutdown ends the loop.

use std::sync::Arc;
use std::time::Duration;

use docket_core::{
    Channels, NewReminder, NewTask, ReminderStatus, Timestamp, Title, Trigger, User,
};
use docket_events::topics;
use docket_ports::Store;
use docket_sqlite::SqliteStore;
use tokio::sync::{Notify, watch};

use super::*;
use crate::clock::FixedClock;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("instant")
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    clock: Arc<FixedClock>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    user: User,
    task_id: docket_core::TaskId,
}

async fn rig(start: &str, reminders: &[&str]) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("docket.db");
    let store = Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
    let now = ts(start);
    let user = crate::testing::user(store.as_ref(), "Sched", now).await;
    let task = NewTask::new(Title::parse("Remind me").expect("title"));
    let task = store.create_task(user.id, task, now).await.expect("task");
    for at in reminders {
        let r = NewReminder { trigger: Trigger::At(ts(at)), channels: Channels::default() };
        store.create_reminder(user.id, task.id, r, now).await.expect("reminder");
    }
    let clock = Arc::new(FixedClock::new(now));
    let wake = Arc::new(Notify::new());
    let (stop, stopped) = watch::channel(false);
    let config = SchedulerConfig { batch: 2, max_sleep: Duration::from_secs(3600) };
    let task_handle = tokio::spawn(run_scheduler(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&clock) as Arc<dyn crate::Clock>,
        Arc::clone(&wake),
        config,
        stopped,
    ));
    Rig { _dir: dir, store, clock, wake, stop, task: task_handle, user, task_id: task.id }
}

/// Waits (bounded) until `n` reminders have fired; returns their fire times.
async fn fired(r: &Rig, n: usize) -> Vec<Option<Timestamp>> {
    for _ in 0..3000 {
        let list = r.store.list_reminders(r.user.id, r.task_id).await.expect("list");
        let done: Vec<_> =
            list.iter().filter(|x| x.status == ReminderStatus::Fired).map(|x| x.fired_at).collect();
        if done.len() >= n {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} reminders did not fire");
}

async fn pending(r: &Rig) -> usize {
    let list = r.store.list_reminders(r.user.id, r.task_id).await.expect("list");
    list.iter().filter(|x| x.status == ReminderStatus::Pending).count()
}

#[tokio::test]
async fn fires_when_woken_at_the_reminder_time() {
    let r = rig("2026-06-01T08:00:00Z", &["2026-06-01T09:00:00Z"]).await;
    // The store never hands out a reminder before its time (store conformance); here the
    // point is that a scheduler sleeping for the hour (max_sleep is an hour too) fires when
    // woken at the new time, without polling.
    r.clock.set(ts("2026-06-01T09:00:00Z"));
    r.wake.notify_one();
    assert_eq!(fired(&r, 1).await, vec![Some(ts("2026-06-01T09:00:00Z"))]);
    let events = r.store.read_outbox(0, topics::REMINDERS, 10).await.expect("read");
    assert_eq!(events.len(), 1, "one event");
    let _ = r.stop.send(true);
    r.task.await.expect("the scheduler stops");
}

#[tokio::test]
async fn overdue_reminders_fire_at_start_in_batches() {
    // Five overdue (batch size 2: three claims back to back) and one in the future.
    let r = rig(
        "2026-06-01T12:00:00Z",
        &[
            "2026-06-01T07:00:00Z",
            "2026-06-01T08:00:00Z",
            "2026-06-01T09:00:00Z",
            "2026-06-01T10:00:00Z",
            "2026-06-01T11:00:00Z",
            "2026-06-02T00:00:00Z",
        ],
    )
    .await;
    let done = fired(&r, 5).await;
    assert!(done.iter().all(|at| *at == Some(ts("2026-06-01T12:00:00Z"))));
    assert_eq!(pending(&r).await, 1, "the future one waits");
    let events = r.store.read_outbox(0, topics::REMINDERS, 10).await.expect("read");
    assert_eq!(events.len(), 5);
    let _ = r.stop.send(true);
    r.task.await.expect("the scheduler stops");
}
