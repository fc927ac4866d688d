//! Unit tests of the write decisions over plain values: an update's change set (version,
//! series, reminders, event), a series' detachment and next instance, a category delete.
//! Each table runs through one `check` helper per decision.

use super::*;
use crate::ids::test_id;
use crate::plan::series::{due_occurrence, relink};
use crate::plan::task::series_to_load;
use crate::recurrence::{Mode, Pattern, Preset, Recurrence};
use crate::reminder::{Channel, Channels, NewReminder, Offset, Reminder, ReminderStatus, Trigger};
use crate::series::Series;
use crate::task::{Priority, Status, Task, TaskPatch, Title};
use crate::time::{Timestamp, Zone};
use crate::{CategoryName, Color, NewTask, TaskId};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("instant")
}

fn now() -> Timestamp {
    ts("2026-03-10T12:00:00Z")
}

fn task() -> Task {
    let mut new = NewTask::new(Title::parse("water the plants").unwrap());
    new.due_date = Some(ts("2026-03-12T09:00:00Z"));
    new.into_task(test_id(), test_id(), None, ts("2026-03-01T00:00:00Z"))
}

fn daily() -> Recurrence {
    Recurrence::new(Pattern::Preset { preset: Preset::Daily, interval: 1 }, Zone::utc())
}

fn series_of(task: &mut Task, recurrence: Recurrence) -> Series {
    series::attach(task, recurrence, test_id(), ts("2026-03-01T00:00:00Z"))
        .expect("the rule matches")
}

fn reminder(task: &Task, trigger: Trigger, status: ReminderStatus) -> Reminder {
    let new = NewReminder { trigger, channels: Channels::parse(&["email"]).unwrap() };
    Reminder { status, ..planned(test_id(), task, new, None, now()) }
}

fn before_due(iso: &str) -> Trigger {
    Trigger::BeforeDue(Offset::parse(iso).unwrap())
}

#[test]
fn version_is_checked_only_when_named() {
    let t = task();
    for (expected, ok) in [(None, true), (Some(t.version), true), (Some(t.version + 1), false)] {
        let got = check_version(&t, expected);
        assert_eq!(got.is_ok(), ok, "expected {expected:?}");
        if !ok {
            assert_eq!(got, Err(PlanError::VersionMismatch { current: t.version }));
        }
    }
}

/// An update of `before` by `patch` (no series): whether it changed, the version after, and
/// the event it asks for.
fn check_update(before: &Task, patch: TaskPatch, changed: bool) -> TaskUpdate {
    let plan =
        plan_task_update(before.clone(), patch, None, None, test_id(), now()).expect("plans");
    assert_eq!(plan.changed, changed);
    assert_eq!(plan.series, SeriesWrite::Keep);
    if changed {
        assert_eq!(plan.task.version, before.version + 1, "one bump per update");
        assert_eq!(plan.task.updated_at, now());
        assert_ne!(plan.task, *before, "an event is appended for the pair");
    } else {
        assert_eq!(plan.task, *before);
    }
    plan
}

#[test]
fn updates_change_set() {
    let t = task();
    check_update(&t, TaskPatch::default(), false);
    check_update(&t, TaskPatch { priority: Some(t.priority), ..TaskPatch::default() }, false);
    check_update(&t, TaskPatch { priority: Some(Priority::High), ..TaskPatch::default() }, true);
    let done =
        check_update(&t, TaskPatch { status: Some(Status::Completed), ..Default::default() }, true);
    assert_eq!(done.task.completed_at, Some(now()));
    // A category the store resolved is set only when the patch names one.
    let category = crate::Category {
        id: test_id(),
        user_id: t.user_id,
        name: CategoryName::parse("home").unwrap(),
        color: Color::default(),
        created_at: now(),
    };
    let plan = plan_task_update(
        t.clone(),
        TaskPatch::default(),
        Some(category.clone()),
        None,
        test_id(),
        now(),
    )
    .unwrap();
    assert!(!plan.changed);
    let patch = TaskPatch { category: Some(None), ..TaskPatch::default() };
    assert!(!plan_task_update(t.clone(), patch, None, None, test_id(), now()).unwrap().changed);
    let patch = TaskPatch {
        category: Some(Some(crate::CategoryRef::Id(category.id))),
        ..TaskPatch::default()
    };
    let plan = plan_task_update(t, patch, Some(category.clone()), None, test_id(), now()).unwrap();
    assert_eq!(plan.task.category, Some(category));
}

#[test]
fn an_update_with_a_recurrence_relinks_the_series() {
    let one_off = task();
    let with = |r| TaskPatch { recurrence: Some(r), ..TaskPatch::default() };
    assert_eq!(series_to_load(&one_off, &with(Some(daily()))), None);
    assert_eq!(series_to_load(&one_off, &TaskPatch::default()), None);

    // A one-off task becomes the first instance of a new series, due at its first occurrence.
    let new_series = test_id();
    let plan =
        plan_task_update(one_off.clone(), with(Some(daily())), None, None, new_series, now())
            .unwrap();
    let SeriesWrite::Insert(s) = &plan.series else {
        panic!("inserts a series: {:?}", plan.series)
    };
    assert_eq!(s.id, new_series, "the series gets the id it is given");
    assert_eq!(plan.task.series.as_ref().map(|l| l.series_id), Some(s.id));
    assert_eq!(plan.catch_up(), Some(s.id), "an after-completion series may owe an instance");
    assert!(plan.changed);
    let fixed = with(Some(daily().with_mode(Mode::Fixed)));
    let plan = plan_task_update(one_off.clone(), fixed, None, None, test_id(), now()).unwrap();
    assert_eq!(plan.catch_up(), None, "the scheduler makes fixed-mode instances");

    // An instance: the same rule changes nothing; `None` ends the series.
    let mut instance = one_off.clone();
    let s = series_of(&mut instance, daily());
    assert_eq!(series_to_load(&instance, &with(None)), Some(s.id));
    let plan = plan_task_update(
        instance.clone(),
        with(Some(daily())),
        None,
        Some(s.clone()),
        test_id(),
        now(),
    )
    .unwrap();
    assert_eq!((plan.changed, plan.series), (false, SeriesWrite::Keep));
    let plan =
        plan_task_update(instance.clone(), with(None), None, Some(s.clone()), test_id(), now())
            .unwrap();
    assert_eq!(plan.series, SeriesWrite::End(s.id));
    assert_eq!(plan.task.series, None);
    assert_eq!(plan.task.version, instance.version + 1);
    // A link to a series deleted meanwhile is cleared.
    let plan =
        plan_task_update(instance.clone(), with(None), None, None, test_id(), now()).unwrap();
    assert_eq!((plan.changed, plan.series, plan.task.series), (true, SeriesWrite::Keep, None));
}

#[test]
fn a_rule_without_occurrence_is_refused() {
    let mut t = task();
    let before = t.clone();
    let over = daily().with_until(Some(ts("2026-03-01T00:00:00Z")));
    let got = relink(&mut t, Some(over), None, test_id(), now());
    assert!(matches!(got, Err(PlanError::InvalidReference { field: "recurrence", .. })), "{got:?}");
    assert_eq!(t, before, "the task is left as it was");
}

/// The reminder writes of `before → after`, given the task's reminders.
fn check_reminders(before: &Task, after: &Task, reminders: &[Reminder], expect: &[ReminderWrite]) {
    let got = plan_reminders_on_task_change(before, after, reminders, None, now());
    assert_eq!(got, expect);
}

#[test]
fn reminders_follow_the_task() {
    let t = task();
    let relative = reminder(&t, before_due("PT1H"), ReminderStatus::Pending);
    let canceled = reminder(&t, before_due("P1D"), ReminderStatus::Canceled);
    let fired = reminder(&t, before_due("PT2H"), ReminderStatus::Fired);
    let absolute = reminder(&t, Trigger::At(ts("2026-03-11T00:00:00Z")), ReminderStatus::Pending);
    let all = [relative.clone(), canceled.clone(), fired, absolute];
    assert_eq!(relative.fire_at, Some(ts("2026-03-12T08:00:00Z")));

    // Nothing that moves fire times: nothing to load, nothing written.
    let renamed = Task { title: Title::parse("other").unwrap(), ..t.clone() };
    assert!(!reminders_must_follow(&t, &renamed));
    check_reminders(&t, &renamed, &[], &[]);

    // A new due date moves the open relative reminders only.
    let later = Task { due_date: Some(ts("2026-03-13T09:00:00Z")), ..t.clone() };
    assert!(reminders_must_follow(&t, &later));
    check_reminders(
        &t,
        &later,
        &all,
        &[
            ReminderWrite::FireAt { id: relative.id, fire_at: Some(ts("2026-03-13T08:00:00Z")) },
            ReminderWrite::FireAt { id: canceled.id, fire_at: Some(ts("2026-03-12T09:00:00Z")) },
        ],
    );
    // No due date: relative reminders have no fire time.
    let undated = Task { due_date: None, ..t.clone() };
    check_reminders(
        &t,
        &undated,
        &all[..1],
        &[ReminderWrite::FireAt { id: relative.id, fire_at: None }],
    );
    // A zone change with the same instant moves nothing for hour offsets.
    let zoned = Task { timezone: Some(Zone::parse("Europe/Berlin").unwrap()), ..t.clone() };
    check_reminders(&t, &zoned, &all[..1], &[]);

    // Completing cancels, reopening re-arms what is still ahead of now.
    let done = Task { status: Status::Completed, completed_at: Some(now()), ..t.clone() };
    check_reminders(&t, &done, &[], &[ReminderWrite::CancelPending { task: t.id }]);
    check_reminders(&done, &t, &[], &[ReminderWrite::RearmCanceled { task: t.id, after: now() }]);
    // Fire times move before the re-arm reads them.
    let reopened_later = Task { due_date: Some(ts("2026-03-13T09:00:00Z")), ..t.clone() };
    check_reminders(
        &done,
        &reopened_later,
        &all[..1],
        &[
            ReminderWrite::FireAt { id: relative.id, fire_at: Some(ts("2026-03-13T08:00:00Z")) },
            ReminderWrite::RearmCanceled { task: t.id, after: now() },
        ],
    );
}

#[test]
fn new_reminders_are_planned_from_the_task() {
    let t = task();
    let new =
        NewReminder { trigger: before_due("P1D"), channels: Channels::parse(&["email"]).unwrap() };
    let r = planned(test_id(), &t, new.clone(), None, now());
    assert_eq!((r.status, r.fire_at), (ReminderStatus::Pending, Some(ts("2026-03-11T09:00:00Z"))));
    let done = Task { status: Status::Completed, ..t.clone() };
    assert_eq!(
        planned(test_id(), &done, new.clone(), None, now()).status,
        ReminderStatus::Canceled
    );
    // Days count in the task's zone, else the owner's: across a DST change they differ.
    let zone = Zone::parse("Europe/Berlin").unwrap();
    let dst = Task { due_date: Some(ts("2026-03-29T09:00:00Z")), ..t.clone() };
    let utc = planned(test_id(), &dst, new.clone(), None, now()).fire_at;
    let berlin = planned(test_id(), &dst, new, Some(zone.clone()), now()).fire_at;
    assert_eq!(utc, Some(ts("2026-03-28T09:00:00Z")));
    assert_eq!(berlin, Some(ts("2026-03-28T10:00:00Z")));
    assert_eq!(effective_zone(&dst, Some(zone.clone())), Some(zone));
    assert_eq!(Channels::parse(&["email"]).unwrap().as_slice(), &[Channel::Email]);
}

#[test]
fn deleting_a_series_detaches_every_instance_but_one() {
    let mut first = task();
    let s = series_of(&mut first, daily());
    let second =
        series::instance(test_id(), &s, &s.following(first.due_date.unwrap()).unwrap(), now());
    let check = |except: Option<TaskId>, expect: &[&Task]| {
        let facts = plan_series_detach(vec![first.clone(), second.clone()], except, now());
        assert_eq!(facts.len(), expect.len());
        for (fact, before) in facts.iter().zip(expect) {
            let TaskChanged { before: b, after } = fact;
            assert_eq!(b, *before);
            assert_eq!(after.series, None);
            assert_eq!((after.version, after.updated_at), (before.version + 1, now()));
            assert_eq!(
                Task {
                    series: None,
                    version: b.version,
                    updated_at: b.updated_at,
                    ..after.clone()
                },
                Task { series: None, ..b.clone() }
            );
        }
    };
    check(None, &[&first, &second]);
    check(Some(first.id), &[&second]);
}

#[test]
fn deleting_a_category_clears_it_without_a_bump() {
    let t = task();
    let facts = plan_category_delete(vec![t.clone()]);
    assert_eq!(facts, vec![TaskChanged { before: t.clone(), after: Task { category: None, ..t } }]);
}

#[test]
fn the_next_instance_is_made_once() {
    let mut first = task();
    let s = series_of(&mut first, daily());
    let occurrence = due_occurrence(&s).expect("a daily series goes on");
    assert_eq!(Some(occurrence.at), s.next_occurrence);
    let carried = [
        reminder(&first, before_due("PT1H"), ReminderStatus::Fired),
        reminder(&first, Trigger::At(ts("2026-03-02T00:00:00Z")), ReminderStatus::Fired),
    ];
    let next_id: TaskId = test_id();
    let check = |exists: bool| {
        let next = plan_next_instance(s.clone(), &occurrence, exists, &carried, next_id, now());
        assert_eq!(
            next.series.next_occurrence,
            s.following(occurrence.at.max(now())).map(|o| o.at)
        );
        match &next.instance {
            None => {
                assert!(exists);
                assert_eq!(next.series.instances, s.instances);
                assert!(next.reminders.is_empty());
            }
            Some(t) => {
                assert!(!exists);
                assert_eq!(next.series.instances, s.instances + 1);
                assert_eq!(t.series.as_ref().map(|l| l.instance_date), Some(occurrence.local));
                assert_eq!(t.due_date, Some(occurrence.at));
                assert_eq!(next.reminders.len(), 1, "only relative reminders carry over");
                assert_eq!((t.status, t.version), (Status::Pending, 1));
                assert_eq!(t.id, next_id, "the instance gets the id it is given");
            }
        }
    };
    check(true);
    check(false);
    let over = series::ended(s.clone(), now());
    assert_eq!((over.next_occurrence, over.updated_at), (None, now()));
    let next = series::after_completion(&s, false, first.due_date, now());
    let due = first.due_date.unwrap();
    assert_eq!(next.map(|o| o.at), s.following(due.max(now())).map(|o| o.at), "after the due date");
    assert!(series::after_completion(&s, true, first.due_date, now()).is_none(), "made already");
    let fixed = Series { recurrence: daily().with_mode(Mode::Fixed), ..s.clone() };
    assert!(series::after_completion(&fixed, false, first.due_date, now()).is_none());
    let paused = Series { active: false, ..s.clone() };
    assert!(series::after_completion(&paused, false, first.due_date, now()).is_none());
}

#[test]
fn pausing_and_resuming() {
    let mut first = task();
    let s = series_of(&mut first, daily());
    let check = |series: &Series, active: bool, expect: Option<bool>| {
        let got = series::set_active(series, active, now());
        assert_eq!(got.as_ref().map(|(_, c)| *c), expect, "active {active}");
        if let Some((after, _)) = got {
            assert_eq!((after.active, after.updated_at), (active, now()));
        }
    };
    check(&s, true, None);
    check(&s, false, Some(false));
    let paused = Series { active: false, ..s.clone() };
    check(&paused, false, None);
    check(&paused, true, Some(true));
    let fixed = Series { recurrence: daily().with_mode(Mode::Fixed), ..paused };
    check(&fixed, true, Some(false));
}
