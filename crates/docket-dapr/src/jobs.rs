//! The Dapr job registrar (§6, §7; `--scheduler dapr`): keeps one one-shot Dapr job per
//! deadline that is coming within a look-ahead window, so the sidecar's Scheduler, not our
//! embedded timer, wakes the app when a reminder or a fixed-mode series occurrence is due.
//!
//! Each round reads the deadlines up to `now + look_ahead` from the store's indexes
//! (`Store::upcoming_reminders`, `Store::upcoming_series`) and compares them with what this
//! process registered ([`plan`], pure): a new or moved deadline is scheduled as job
//! `reminder-{id}` / `series-{id}` with `dueTime` = the deadline (an overdue one: now, so
//! everything missed fires at once after a start) and `overwrite: true`, so registering again
//! is harmless; a job whose deadline left the list (canceled, completed, deleted, fired,
//! moved beyond the window) is deleted while its due time is still ahead. Rounds run every
//! `every` and at once when the app says a deadline changed (`App::scheduler_wake`).
//!
//! The registrar decides nothing about firing: a trigger (`POST /job/{name}`) sweeps
//! everything due through the store's exactly-once claims (`scheduler::sweep`), whatever the
//! job's name, so a duplicate, late or stray trigger fires nothing twice, and a job that
//! outlived its deadline (this process restarted and forgot it) fires nothing at all. What
//! the registrar must not do is leave due work without a trigger: a deadline still listed
//! `retrigger_after` past its job's due time (the trigger was lost or came before the app's
//! clock reached the deadline) is scheduled again, due now. A Dapr error is logged and the
//! work retried next round; the loop never stops before shutdown.
//!
//! Not here: the trigger route ([`crate::callbacks`]), and cron or repeating jobs
//! (every job is one-shot; the store says what comes next).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{DaprClient, DaprError, Job};
use docket_core::{ReminderId, SeriesId, Timestamp};
use docket_ports::{Store, StoreError};
use serde_json::json;
use tokio::sync::{Notify, watch};

use docket_app::Clock;

/// Counter: jobs scheduled (or re-scheduled) on the sidecar by this process.
pub const SCHEDULED_METRIC: &str = "docket_dapr_jobs_scheduled_total";
/// Counter: jobs deleted from the sidecar by this process.
pub const DELETED_METRIC: &str = "docket_dapr_jobs_deleted_total";

/// How the registrar behaves.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// How far ahead deadlines get a job; later ones are registered once they come closer.
    pub look_ahead: Duration,
    /// The longest time between rounds (bounds the delay for changes made by another
    /// process, which cannot wake this one).
    pub every: Duration,
    /// Deadlines read per kind per round; beyond it, the earliest first.
    pub limit: usize,
    /// How long past its job's due time a still-pending deadline waits before its job is
    /// scheduled again (due now): the trigger was lost, or arrived before the app's clock
    /// reached the deadline.
    pub retrigger_after: Duration,
}

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig {
            look_ahead: Duration::from_secs(3600),
            every: Duration::from_secs(1),
            limit: 1000,
            retrigger_after: Duration::from_secs(30),
        }
    }
}

/// What a job stands for: its name and `data` follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKey {
    Reminder(ReminderId),
    Series(SeriesId),
}

impl JobKey {
    /// `reminder-{id}` or `series-{id}`: stable, so scheduling again overwrites the same job.
    pub fn name(&self) -> String {
        match self {
            JobKey::Reminder(id) => format!("reminder-{id}"),
            JobKey::Series(id) => format!("series-{id}"),
        }
    }

    /// The job's `data`, sent back with its trigger: `{"kind": "reminder"|"series", "id": …}`.
    pub fn data(&self) -> serde_json::Value {
        match self {
            JobKey::Reminder(id) => json!({"kind": "reminder", "id": id.to_string()}),
            JobKey::Series(id) => json!({"kind": "series", "id": id.to_string()}),
        }
    }

    fn is_reminder(&self) -> bool {
        matches!(self, JobKey::Reminder(_))
    }
}

/// A job this process scheduled: the deadline it stands for and the `dueTime` it was given
/// (later than the deadline when the deadline was already past).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub deadline: Timestamp,
    pub due: Timestamp,
}

/// The deadlines read in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upcoming {
    /// Every listed deadline (both kinds), at most one per key.
    pub deadlines: Vec<(JobKey, Timestamp)>,
    /// When the reminders read hit its `limit`: the last deadline read. Reminders at or after
    /// it may exist unlisted, so their absence says nothing. `None`: the list is complete.
    pub reminders_cut: Option<Timestamp>,
    /// The same for series.
    pub series_cut: Option<Timestamp>,
}

/// What a round does: schedule (key, `dueTime`, deadline), delete, and forget (a job that
/// has fired or is firing, so there is nothing to delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub schedule: Vec<(JobKey, Timestamp, Timestamp)>,
    pub delete: Vec<JobKey>,
    pub forget: Vec<JobKey>,
}

/// The diff between what is registered and what is upcoming at `now` (pure: no IO, no
/// clock). Sorted by key, so a plan is reproducible.
pub fn plan(
    registered: &HashMap<JobKey, Registered>,
    upcoming: &Upcoming,
    now: Timestamp,
    retrigger_after: Duration,
) -> Plan {
    let mut out = Plan::default();
    let stale_before = minus(now, retrigger_after);
    let mut listed = HashMap::with_capacity(upcoming.deadlines.len());
    for &(key, deadline) in &upcoming.deadlines {
        listed.insert(key, deadline);
        let due = deadline.max(now);
        match registered.get(&key) {
            Some(r) if r.deadline == deadline && r.due > stale_before => {}
            // A job whose due time is long past while its work is still pending: trigger
            // again (due now), or the work would never fire.
            Some(r) if r.deadline == deadline => out.schedule.push((key, now, deadline)),
            _ => out.schedule.push((key, due, deadline)),
        }
    }
    for (&key, r) in registered {
        if listed.contains_key(&key) {
            continue;
        }
        let cut = if key.is_reminder() { upcoming.reminders_cut } else { upcoming.series_cut };
        if cut.is_some_and(|cut| r.deadline >= cut) {
            continue; // maybe just beyond what was read: unknown, keep it
        }
        if r.due > now {
            out.delete.push(key);
        } else {
            out.forget.push(key);
        }
    }
    out.schedule.sort();
    out.delete.sort();
    out.forget.sort();
    out
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub scheduled: usize,
    pub deleted: usize,
    /// Dapr calls that failed (their work is retried next round).
    pub failed: usize,
}

/// The registrar's state: what this process scheduled. One per process; several replicas
/// each keep their own (scheduling with `overwrite` and deleting are idempotent).
pub struct JobRegistrar {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: DaprClient,
    config: JobsConfig,
    registered: HashMap<JobKey, Registered>,
}

impl JobRegistrar {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        client: DaprClient,
        config: JobsConfig,
    ) -> JobRegistrar {
        JobRegistrar { store, clock, client, config, registered: HashMap::new() }
    }

    /// What this process has scheduled and not yet seen fire or deleted.
    pub fn registered(&self) -> &HashMap<JobKey, Registered> {
        &self.registered
    }

    async fn upcoming(&self, now: Timestamp) -> Result<Upcoming, StoreError> {
        let until = plus(now, self.config.look_ahead);
        let limit = self.config.limit.max(1);
        let reminders = self.store.upcoming_reminders(until, limit).await?;
        let series = self.store.upcoming_series(until, limit).await?;
        let cut = |n: usize, last: Option<Timestamp>| if n >= limit { last } else { None };
        Ok(Upcoming {
            reminders_cut: cut(reminders.len(), reminders.last().map(|r| r.1)),
            series_cut: cut(series.len(), series.last().map(|s| s.1)),
            deadlines: reminders
                .into_iter()
                .map(|(id, at)| (JobKey::Reminder(id), at))
                .chain(series.into_iter().map(|(id, at)| (JobKey::Series(id), at)))
                .collect(),
        })
    }

    /// One round: read the deadlines, schedule and delete what differs. Never fails: a store
    /// error skips the round, a Dapr error leaves that job for the next round (and a sidecar
    /// that cannot be reached ends the round at once rather than timing out job by job).
    pub async fn round(&mut self) -> Round {
        let now = self.clock.now();
        let upcoming = match self.upcoming(now).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "dapr job registrar cannot read deadlines; retrying");
                return Round { failed: 1, ..Round::default() };
            }
        };
        let plan = plan(&self.registered, &upcoming, now, self.config.retrigger_after);
        let mut round = Round::default();
        for key in plan.forget {
            self.registered.remove(&key);
        }
        for (key, due, deadline) in plan.schedule {
            let (name, job) =
                (key.name(), Job { due_time: due, data: key.data(), overwrite: true });
            match self.client.schedule_job(&name, &job).await {
                Ok(()) => {
                    self.registered.insert(key, Registered { deadline, due });
                    metrics::counter!(SCHEDULED_METRIC).increment(1);
                    round.scheduled += 1;
                }
                Err(e) => {
                    if round.failed_on(&e, "schedule", &name) {
                        return round;
                    }
                }
            }
        }
        for key in plan.delete {
            let name = key.name();
            match self.client.delete_job(&name).await {
                Ok(()) => {
                    self.registered.remove(&key);
                    metrics::counter!(DELETED_METRIC).increment(1);
                    round.deleted += 1;
                }
                Err(e) => {
                    if round.failed_on(&e, "delete", &name) {
                        return round;
                    }
                }
            }
        }
        round
    }
}

impl Round {
    /// Counts and logs a call that failed to `action` job `name` (retried next round); true
    /// when the sidecar did not answer at all, as every other call of the round would then
    /// fail the same way.
    fn failed_on(&mut self, e: &DaprError, action: &str, name: &str) -> bool {
        self.failed += 1;
        tracing::warn!(error = %e, job = %name, "cannot {action} dapr job; retrying");
        unreachable(e)
    }
}

/// The sidecar did not answer at all: every other call of the round would fail the same way.
fn unreachable(e: &DaprError) -> bool {
    matches!(e, DaprError::Unavailable { status: None, .. })
}

/// Runs rounds until `shutdown` turns true: every `config.every`, and at once when `wake` is
/// notified (the app does on every change that may move a deadline).
pub async fn run_job_registrar(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: DaprClient,
    config: JobsConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = config.every.max(Duration::from_millis(10));
    let mut registrar = JobRegistrar::new(store, clock, client, config);
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        registrar.round().await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return; // the sender is gone: nobody can stop us later
                }
            }
        }
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    //! The diff as a table of cases; the registrar over a real SQLite store, a clock the test
    //! moves and the test sidecar (manual clock): jobs follow reminders and series, and a
    //! reminder job triggering a tiny app that sweeps fires the reminder once, however often
    //! the job fires.

    use std::sync::Arc;
    use std::time::Duration;

    use crate::testing::{ManualClock, ScheduledJob, SidecarClock, TestSidecar};
    use docket_core::{
        Channels, Mode, NewReminder, NewTask, Offset, Pattern, Preset, Recurrence, ReminderStatus,
        Status, TaskPatch, Timestamp, Title, Trigger, User, Zone,
    };
    use docket_events::topics;
    use docket_ports::Store;
    use docket_sqlite::SqliteStore;
    use tokio::sync::{Notify, watch};

    use super::*;
    use docket_app::FixedClock;

    const T0: &str = "2026-06-01T08:00:00Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("instant")
    }

    fn mins(t: Timestamp, m: i64) -> Timestamp {
        t + jiff::SignedDuration::from_mins(m)
    }

    // --- the diff

    fn r(n: u128) -> JobKey {
        JobKey::Reminder(ReminderId(uuid::Uuid::from_u128(n)))
    }

    fn s(n: u128) -> JobKey {
        JobKey::Series(SeriesId(uuid::Uuid::from_u128(n)))
    }

    /// One case: what is registered `(key, deadline, due)`, what is listed, the cuts; the
    /// plan expected at T0 (retrigger after 30 s).
    #[allow(clippy::type_complexity)]
    fn check(
        registered: &[(JobKey, i64, i64)],
        listed: &[(JobKey, i64)],
        cuts: (Option<i64>, Option<i64>),
        expect: (&[(JobKey, i64, i64)], &[JobKey], &[JobKey]),
    ) {
        let now = ts(T0);
        let at = |m: i64| mins(now, m);
        let registered: HashMap<JobKey, Registered> = registered
            .iter()
            .map(|&(k, deadline, due)| (k, Registered { deadline: at(deadline), due: at(due) }))
            .collect();
        let upcoming = Upcoming {
            deadlines: listed.iter().map(|&(k, m)| (k, at(m))).collect(),
            reminders_cut: cuts.0.map(at),
            series_cut: cuts.1.map(at),
        };
        let want = Plan {
            schedule: expect.0.iter().map(|&(k, due, dl)| (k, at(due), at(dl))).collect(),
            delete: expect.1.to_vec(),
            forget: expect.2.to_vec(),
        };
        let got = plan(&registered, &upcoming, now, Duration::from_secs(30));
        assert_eq!(got, want, "registered {registered:?}, upcoming {upcoming:?}");
    }

    #[test]
    fn plan_schedules_what_is_new_or_moved_and_deletes_what_is_gone() {
        // New deadlines are scheduled at their time; overdue ones now.
        check(
            &[],
            &[(r(1), 10), (s(2), 20)],
            (None, None),
            (&[(r(1), 10, 10), (s(2), 20, 20)], &[], &[]),
        );
        check(&[], &[(r(1), -5)], (None, None), (&[(r(1), 0, -5)], &[], &[]));
        // Registered at the same deadline: nothing; moved: scheduled again, same key.
        check(&[(r(1), 10, 10)], &[(r(1), 10)], (None, None), (&[], &[], &[]));
        check(&[(r(1), 10, 10)], &[(r(1), 25)], (None, None), (&[(r(1), 25, 25)], &[], &[]));
        check(&[(r(1), 10, 10)], &[(r(1), 5)], (None, None), (&[(r(1), 5, 5)], &[], &[]));
        // An overdue one registered due now is not registered again every round...
        check(&[(r(1), -5, 0)], &[(r(1), -5)], (None, None), (&[], &[], &[]));
        // ...but once its trigger is long past and it is still pending, it is (due now).
        check(&[(r(1), -5, -1)], &[(r(1), -5)], (None, None), (&[(r(1), 0, -5)], &[], &[]));
        // Gone while its job is ahead: deleted; gone after its job's time: just forgotten.
        check(&[(r(1), 10, 10), (s(2), 20, 20)], &[], (None, None), (&[], &[r(1), s(2)], &[]));
        check(&[(r(1), -1, -1), (s(2), 0, 0)], &[], (None, None), (&[], &[], &[r(1), s(2)]));
        // A read cut at its limit says nothing about deadlines at or after the cut, per kind.
        check(
            &[(r(1), 30, 30), (r(2), 10, 10), (s(3), 30, 30)],
            &[(r(4), 20)],
            (Some(20), None),
            (&[(r(4), 20, 20)], &[r(2), s(3)], &[]),
        );
        check(&[(s(3), 30, 30)], &[], (None, Some(30)), (&[], &[], &[]));
    }

    #[test]
    fn job_names_and_data() {
        let id = uuid::Uuid::from_u128(7);
        let key = JobKey::Reminder(ReminderId(id));
        assert_eq!(key.name(), format!("reminder-{id}"));
        assert_eq!(key.data(), json!({"kind": "reminder", "id": id.to_string()}));
        let key = JobKey::Series(SeriesId(id));
        assert_eq!(key.name(), format!("series-{id}"));
        assert_eq!(key.data(), json!({"kind": "series", "id": id.to_string()}));
    }

    // --- over a store and the test sidecar

    struct Rig {
        _dir: tempfile::TempDir,
        store: Arc<SqliteStore>,
        clock: Arc<FixedClock>,
        sidecar_clock: ManualClock,
        sidecar: TestSidecar,
        user: User,
    }

    impl Rig {
        async fn new() -> Rig {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("docket.db");
            let store =
                Arc::new(SqliteStore::open(path.to_str().expect("utf-8")).await.expect("open"));
            let now = ts(T0);
            let user = docket_app::testing::user(store.as_ref(), "Jobs", now).await;
            let sidecar_clock = ManualClock::new(now);
            let sidecar = TestSidecar::builder()
                .clock(SidecarClock::Manual(sidecar_clock.clone()))
                .start()
                .await
                .expect("start the sidecar");
            let clock = Arc::new(FixedClock::new(now));
            Rig { _dir: dir, store, clock, sidecar_clock, sidecar, user }
        }

        fn registrar(&self, config: JobsConfig) -> JobRegistrar {
            JobRegistrar::new(
                Arc::clone(&self.store) as Arc<dyn Store>,
                Arc::clone(&self.clock) as Arc<dyn Clock>,
                self.sidecar.client(),
                config,
            )
        }

        /// Moves the app's and the sidecar's clocks together.
        fn set_time(&self, at: Timestamp) {
            self.clock.set(at);
            self.sidecar_clock.set(at);
        }

        async fn task_due(&self, title: &str, due: Timestamp) -> docket_core::Task {
            let new = NewTask {
                due_date: Some(due),
                ..NewTask::new(Title::parse(title).expect("title"))
            };
            self.store.create_task(self.user.id, new, self.clock.now()).await.expect("task")
        }

        async fn remind(&self, task: docket_core::TaskId, trigger: Trigger) -> ReminderId {
            let new = NewReminder { trigger, channels: Channels::default() };
            let r = self.store.create_reminder(self.user.id, task, new, self.clock.now()).await;
            r.expect("reminder").id
        }

        /// A task due 30 minutes after `T0` with a reminder 10 minutes before it (so firing at
        /// `T0` + 20 minutes): the task and the reminder's id.
        async fn reminded_task(&self, title: &str) -> (docket_core::Task, ReminderId) {
            let task = self.task_due(title, mins(ts(T0), 30)).await;
            let id = self.remind(task.id, before_due("PT10M")).await;
            (task, id)
        }

        fn jobs(&self) -> Vec<ScheduledJob> {
            self.sidecar.jobs()
        }
    }

    fn before_due(iso: &str) -> Trigger {
        Trigger::BeforeDue(Offset::parse(iso).expect("offset"))
    }

    fn reminder_job(id: ReminderId, due: Timestamp) -> ScheduledJob {
        let key = JobKey::Reminder(id);
        ScheduledJob { name: key.name(), due_time: due, data: key.data() }
    }

    #[tokio::test]
    async fn a_reminder_job_follows_its_task() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let (task, id) = rig.reminded_task("Standup").await;
        let beyond = rig.task_due("Later", mins(t0, 180)).await;
        rig.remind(beyond.id, before_due("PT10M")).await;
        let mut registrar = rig.registrar(JobsConfig::default());

        let round = registrar.round().await;
        assert_eq!((round.scheduled, round.deleted, round.failed), (1, 0, 0));
        assert_eq!(rig.jobs(), [reminder_job(id, mins(t0, 20))], "at its fire time, in the hour");

        let moved = TaskPatch { due_date: Some(Some(mins(t0, 45))), ..TaskPatch::default() };
        rig.store.update_task(rig.user.id, task.id, moved, None, t0).await.expect("move");
        let round = registrar.round().await;
        assert_eq!((round.scheduled, round.deleted), (1, 0));
        assert_eq!(rig.jobs(), [reminder_job(id, mins(t0, 35))], "same job, new time");

        let done = TaskPatch { status: Some(Status::Completed), ..TaskPatch::default() };
        rig.store.update_task(rig.user.id, task.id, done, None, t0).await.expect("complete");
        let round = registrar.round().await;
        assert_eq!((round.scheduled, round.deleted), (0, 1));
        assert_eq!(rig.jobs(), [], "completing the task deletes its job");
        assert!(registrar.registered().is_empty());

        // The later reminder gets its job once it comes within the look-ahead.
        rig.set_time(mins(t0, 110));
        assert_eq!(registrar.round().await.scheduled, 1);
        assert_eq!(rig.jobs().len(), 1);
        assert_eq!(rig.jobs()[0].due_time, mins(t0, 170));
    }

    #[tokio::test]
    async fn registering_again_schedules_nothing_new() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let task = rig.task_due("Twice", mins(t0, 30)).await;
        rig.remind(task.id, before_due("PT5M")).await;
        rig.remind(task.id, Trigger::At(mins(t0, 10))).await;
        let mut registrar = rig.registrar(JobsConfig::default());
        assert_eq!(registrar.round().await.scheduled, 2);
        let jobs = rig.jobs();
        for _ in 0..2 {
            assert_eq!(registrar.round().await, Round::default(), "nothing new to do");
        }
        assert_eq!(rig.jobs(), jobs);
        // A restarted registrar (empty memory) overwrites the same jobs: still one each.
        let mut restarted = rig.registrar(JobsConfig::default());
        assert_eq!(restarted.round().await.scheduled, 2);
        assert_eq!(rig.jobs(), jobs, "overwrite: same names, same times");
    }

    #[tokio::test]
    async fn an_overdue_reminder_at_start_gets_a_job_due_now() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        rig.set_time(mins(t0, -120));
        let task = rig.task_due("Missed", mins(t0, 60)).await;
        let id = rig.remind(task.id, Trigger::At(mins(t0, -60))).await;
        rig.set_time(t0);
        let mut registrar = rig.registrar(JobsConfig::default());
        assert_eq!(registrar.round().await.scheduled, 1);
        assert_eq!(rig.jobs(), [reminder_job(id, t0)], "due now, not at its past time");
        assert_eq!(registrar.registered()[&JobKey::Reminder(id)].deadline, mins(t0, -60));
    }

    #[tokio::test]
    async fn a_fixed_series_gets_a_job_at_its_next_occurrence() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let zone = Zone::parse("Europe/Berlin").expect("zone");
        let rule = |mode| {
            Recurrence::new(Pattern::Preset { preset: Preset::Daily, interval: 1 }, zone.clone())
                .with_mode(mode)
        };
        let start = mins(t0, 60).to_zoned(zone.tz().clone()).datetime();
        let mut ids = Vec::new();
        for (title, mode) in [("Fixed", Mode::Fixed), ("On completion", Mode::AfterCompletion)] {
            let series = docket_core::NewSeries::starting(rule(mode), start).expect("series");
            let task = NewTask::new(Title::parse(title).expect("title"));
            let task = rig.store.create_recurring_task(rig.user.id, task, series, t0).await;
            ids.push(task.expect("create").series.expect("instance").series_id);
        }
        let next = rig.store.get_series(rig.user.id, ids[0]).await.expect("get");
        let next = next.next_occurrence.expect("next occurrence");
        let config =
            JobsConfig { look_ahead: Duration::from_secs(2 * 24 * 3600), ..JobsConfig::default() };
        let mut registrar = rig.registrar(config);
        assert_eq!(registrar.round().await.scheduled, 1, "fixed mode only");
        let key = JobKey::Series(ids[0]);
        assert_eq!(
            rig.jobs(),
            [ScheduledJob { name: key.name(), due_time: next, data: key.data() }]
        );

        rig.store.set_series_active(rig.user.id, ids[0], false, t0).await.expect("pause");
        assert_eq!(registrar.round().await.deleted, 1, "a paused series has no job");
        assert_eq!(rig.jobs(), []);
    }

    #[tokio::test]
    async fn an_unreachable_sidecar_is_retried_next_round() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let (_, id) = rig.reminded_task("Offline").await;
        // Nothing listens on the port of a sidecar that has stopped.
        let gone = TestSidecar::builder().start().await.expect("start");
        let dead = gone.client();
        drop(gone);
        tokio::task::yield_now().await;
        let mut registrar = JobRegistrar::new(
            Arc::clone(&rig.store) as Arc<dyn Store>,
            Arc::clone(&rig.clock) as Arc<dyn Clock>,
            dead,
            JobsConfig::default(),
        );
        let round = registrar.round().await;
        assert_eq!((round.scheduled, round.failed), (0, 1), "{round:?}");
        assert!(registrar.registered().is_empty(), "nothing counted as registered");
        // The same registrar state against a live sidecar: the job is scheduled then.
        registrar.client = rig.sidecar.client();
        assert_eq!(registrar.round().await.scheduled, 1);
        assert_eq!(rig.jobs(), [reminder_job(id, mins(t0, 20))]);
    }

    #[tokio::test]
    async fn the_loop_registers_on_wake_and_stops_on_shutdown() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let config = JobsConfig { every: Duration::from_secs(3600), ..JobsConfig::default() };
        let handle = tokio::spawn(run_job_registrar(
            Arc::clone(&rig.store) as Arc<dyn Store>,
            Arc::clone(&rig.clock) as Arc<dyn Clock>,
            rig.sidecar.client(),
            config,
            Arc::clone(&wake),
            stopped,
        ));
        let (_, id) = rig.reminded_task("Woken").await;
        wake.notify_one();
        let mut jobs = Vec::new();
        for _ in 0..2000 {
            jobs = rig.jobs();
            if !jobs.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(jobs, [reminder_job(id, mins(t0, 20))], "registered on the wake-up");
        stop.send(true).expect("the loop listens");
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the loop stops")
            .expect("without panicking");
    }

    /// The trigger side as the HTTP edge does it: `POST /job/{name}` sweeps everything due.
    async fn tiny_app(store: Arc<SqliteStore>, clock: Arc<FixedClock>) -> String {
        use axum::extract::State;
        use axum::http::StatusCode;
        type AppState = (Arc<SqliteStore>, Arc<FixedClock>);
        async fn job(State((store, clock)): State<AppState>) -> StatusCode {
            match docket_app::scheduler::sweep(store.as_ref(), clock.now(), 500).await {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
        let router = axum::Router::new()
            .route("/job/{name}", axum::routing::post(job))
            .with_state((store, clock));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_reminder_job_fires_the_reminder_once_even_when_it_fires_twice() {
        let rig = Rig::new().await;
        let t0 = ts(T0);
        let (task, id) = rig.reminded_task("Fire").await;
        let app = tiny_app(Arc::clone(&rig.store), Arc::clone(&rig.clock)).await;
        rig.sidecar.attach_app(&app).await.expect("attach");
        let start = rig.store.outbox_head(topics::REMINDERS).await.expect("head");
        let mut registrar = rig.registrar(JobsConfig::default());
        assert_eq!(registrar.round().await.scheduled, 1);

        rig.set_time(mins(t0, 19));
        rig.sidecar.run_due_jobs().await;
        assert!(rig.sidecar.job_firings().is_empty(), "never early");

        rig.set_time(mins(t0, 20));
        rig.sidecar.run_due_jobs().await;
        // A duplicate trigger: the same job scheduled and fired again.
        let key = JobKey::Reminder(id);
        let again = Job { due_time: mins(t0, 20), data: key.data(), overwrite: true };
        rig.sidecar.client().schedule_job(&key.name(), &again).await.expect("schedule again");
        rig.sidecar.run_due_jobs().await;

        let firings = rig.sidecar.job_firings();
        assert_eq!(firings.len(), 2, "{firings:?}");
        assert!(firings.iter().all(|f| f.name == key.name() && f.status == Some(200)));
        let reminders = rig.store.list_reminders(rig.user.id, task.id).await.expect("list");
        assert_eq!(
            (reminders[0].status, reminders[0].fired_at),
            (ReminderStatus::Fired, Some(mins(t0, 20)))
        );
        let events = rig.store.read_outbox(start, topics::REMINDERS, 100).await.expect("read");
        assert_eq!(events.len(), 1, "one reminder.triggered for two triggers");
        // Fired: no longer listed, its job's time is past: forgotten, not deleted.
        assert_eq!(registrar.round().await, Round::default());
        assert!(registrar.registered().is_empty());
    }
}
