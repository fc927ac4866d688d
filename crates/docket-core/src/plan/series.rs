//! Series rules (DESIGN §2.3) a task write applies, decided here once for every store: how
//! an instance is made, what an update's `recurrence` does to the task's series, what
//! deleting a series does to its instances, and what making the next instance writes.
//!
//! The stores keep what needs their tables: the unique `(series_id, instance_date)` index
//! (at most one task per occurrence), the queries that say whether an instance exists, and
//! their lock order.

use jiff::civil::DateTime;

use crate::category::Category;
use crate::ids::{SeriesId, TaskId, UserId};
use crate::plan::reminders::carried_over;
use crate::plan::{PlanError, TaskChanged};
use crate::recurrence::{Mode, Occurrence, Recurrence};
use crate::reminder::{NewReminder, Reminder};
use crate::series::{NewSeries, Series, SeriesLink};
use crate::task::{NewTask, Status, Task};
use crate::time::{Timestamp, truncate_micros};

/// What a task update writes to the series rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesWrite {
    /// Nothing.
    Keep,
    /// Insert this new series (the task became its first instance).
    Insert(Series),
    /// Save the rule of this series (`recurrence`, `mode`, `start`, `next_occurrence`,
    /// `updated_at`).
    ReplaceRule(Series),
    /// Delete series `id` and detach its other instances ([`plan_series_detach`]).
    End(SeriesId),
}

impl SeriesWrite {
    /// The series whose next instance the store must check for once the task's row is
    /// saved (`catch_up`): a completed task joining an active `after_completion` series
    /// gets no completion event that would make it.
    pub fn catch_up(&self) -> Option<SeriesId> {
        match self {
            SeriesWrite::Insert(s) | SeriesWrite::ReplaceRule(s) => follows_completion(s),
            SeriesWrite::Keep | SeriesWrite::End(_) => None,
        }
    }
}

fn follows_completion(series: &Series) -> Option<SeriesId> {
    (series.active && series.recurrence.mode() == Mode::AfterCompletion).then_some(series.id)
}

/// The link an instance of `series` at `occurrence` carries.
pub fn link(series: &Series, occurrence: &Occurrence) -> SeriesLink {
    SeriesLink {
        series_id: series.id,
        instance_date: occurrence.local,
        recurrence: series.recurrence.to_spec(),
    }
}

/// A new recurring task as its series and first instance (due at the first occurrence),
/// for the stores to insert in one transaction; `category` is already resolved, `ids` are
/// the new series' and the new task's.
pub fn first_instance(
    ids: (SeriesId, TaskId),
    mut new: NewTask,
    series: NewSeries,
    user: UserId,
    category: Option<Category>,
    now: Timestamp,
) -> (Series, Task) {
    new.due_date = Some(truncate_micros(series.first.at));
    let first = series.first;
    let s = series.into_series(
        ids.0,
        user,
        new.title.clone(),
        new.description.clone(),
        new.priority,
        category.clone(),
        new.tags.clone(),
        now,
    );
    let mut task = new.into_task(ids.1, user, category, now);
    task.series = Some(link(&s, &first));
    (s, task)
}

/// The instance `id` of `series` due at `occurrence`, made at `now`.
pub fn instance(id: TaskId, series: &Series, occurrence: &Occurrence, now: Timestamp) -> Task {
    Task {
        id,
        user_id: series.user_id,
        title: series.title.clone(),
        description: series.description.clone(),
        status: Status::Pending,
        completed_at: None,
        priority: series.priority,
        category: series.category.clone(),
        tags: series.tags.clone(),
        due_date: Some(truncate_micros(occurrence.at)),
        timezone: Some(series.zone().clone()),
        series: Some(link(series, occurrence)),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// `task` detached from its series at `now`: no link, version bumped.
pub fn detached(task: &Task, now: Timestamp) -> Task {
    Task { series: None, version: task.version + 1, updated_at: now, ..task.clone() }
}

/// Deleting series (or ending it by an update of instance `except`): every instance but
/// `except` stays, detached, each with its version bumped and an update event whose changes
/// name the link. `instances` are the series' instances as loaded, in the order to write.
pub fn plan_series_detach(
    instances: Vec<Task>,
    except: Option<TaskId>,
    now: Timestamp,
) -> Vec<TaskChanged> {
    instances
        .into_iter()
        .filter(|t| Some(t.id) != except)
        .map(|before| TaskChanged { after: detached(&before, now), before })
        .collect()
}

/// Makes `task` (after the rest of its update) the first instance of a new series with rule
/// `recurrence`, due at the rule's first occurrence from its due date (else `now`), and
/// returns the series to insert, with id `id`; as `first_instance` does for a created task.
pub fn attach(
    task: &mut Task,
    recurrence: Recurrence,
    id: SeriesId,
    now: Timestamp,
) -> Result<Series, PlanError> {
    let start = task.due_date.unwrap_or(now).to_zoned(recurrence.zone().tz().clone()).datetime();
    let new =
        NewSeries::starting(recurrence, start).ok_or_else(|| PlanError::InvalidReference {
            field: "recurrence",
            message: "the recurrence has no occurrence from the task's due date on".to_owned(),
        })?;
    let first = new.first;
    let series = new.into_series(
        id,
        task.user_id,
        task.title.clone(),
        task.description.clone(),
        task.priority,
        task.category.clone(),
        task.tags.clone(),
        now,
    );
    task.due_date = Some(truncate_micros(first.at));
    task.series = Some(link(&series, &first));
    Ok(series)
}

/// Replaces the rule of `series` (the series of instance `task`) from `task` on; true when it
/// changed, and then the task's link shows the new rule. The rule restarts at the task's due
/// date, and never before the task's own occurrence, so later instances sort after it.
pub fn replace_rule(
    series: &mut Series,
    task: &mut Task,
    recurrence: Recurrence,
    now: Timestamp,
) -> bool {
    let Some(link) = task.series.as_mut() else { return false };
    let occurrence = link
        .instance_date
        .to_zoned(series.zone().tz().clone())
        .map(|z| z.timestamp())
        .unwrap_or(now);
    let current = task.due_date.map_or(occurrence, |d| d.max(occurrence));
    if !series.replace_rule(recurrence, current, now) {
        return false;
    }
    link.recurrence = series.recurrence.to_spec();
    true
}

/// What an update's `recurrence` does to `task` (after the rest of the patch) and its series
/// `current` (the series it links to, `None` when it links to none or to one deleted): a
/// one-off task becomes the first instance of a new series; an instance's rule is replaced
/// for the later instances (the same rule changes nothing); `None` ends the series as
/// deleting it does, the task's own detachment folded into its update. A new series gets id
/// `new_series`.
pub fn relink(
    task: &mut Task,
    recurrence: Option<Recurrence>,
    current: Option<Series>,
    new_series: SeriesId,
    now: Timestamp,
) -> Result<SeriesWrite, PlanError> {
    Ok(match (recurrence, current) {
        (None, None) => {
            task.series = None;
            SeriesWrite::Keep
        }
        (None, Some(series)) => {
            task.series = None;
            SeriesWrite::End(series.id)
        }
        (Some(recurrence), None) => SeriesWrite::Insert(attach(task, recurrence, new_series, now)?),
        (Some(recurrence), Some(mut series)) => {
            if replace_rule(&mut series, task, recurrence, now) {
                SeriesWrite::ReplaceRule(series)
            } else {
                SeriesWrite::Keep
            }
        }
    })
}

/// After an update of `before` into `task`: true when anything changed, and then the version
/// is bumped once (`TaskPatch::apply` may have bumped it already) and `updated_at` is `now`.
pub fn touch(task: &mut Task, before: &Task, now: Timestamp) -> bool {
    if task == before {
        return false;
    }
    if task.version == before.version {
        task.version += 1;
        task.updated_at = now;
    }
    true
}

/// Records on `series` that an instance at `made` was made: one more instance, and the
/// next occurrence after `made` (or after `now`, when the series fell behind).
pub fn advance(series: &mut Series, made: Timestamp, now: Timestamp) {
    series.instances += 1;
    series.next_occurrence = series.following(made.max(now)).map(|o| o.at);
    series.updated_at = now;
}

/// Pausing (`active` false) or resuming `series` at `now`: `None` when it already is so;
/// else the series to save (`active`, `updated_at`) and whether the store then catches up
/// ([`catch_up`]): resuming an `after_completion` series whose latest instance was completed
/// while paused makes the next instance then.
pub fn set_active(series: &Series, active: bool, now: Timestamp) -> Option<(Series, bool)> {
    if series.active == active {
        return None;
    }
    let s = Series { active, updated_at: now, ..series.clone() };
    let catch_up = follows_completion(&s).is_some();
    Some((s, catch_up))
}

/// The occurrence of the next instance after an instance (due at `due`) of `series` was
/// completed at `completed_at` (`after_completion` mode): none when the series is paused,
/// when an instance later than the completed one exists (`later_exists`: a second
/// completion of the same instance), or when the series has ended.
pub fn after_completion(
    series: &Series,
    later_exists: bool,
    due: Option<Timestamp>,
    completed_at: Timestamp,
) -> Option<Occurrence> {
    if !series.active || later_exists {
        return None;
    }
    series.next_after_completion(due, completed_at)
}

/// A completed instance, as the next instance after it is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub task: TaskId,
    pub instance_date: DateTime,
    pub due: Option<Timestamp>,
    pub completed_at: Timestamp,
}

/// The completion a series catches up on (on resume, or after an update linked a completed
/// task): its latest instance `latest`, when that one is completed (while the series was
/// paused, or before the task joined it, so no next instance was made); an open one will be
/// completed in its turn. A completion without its time counts as at `now`.
pub fn catch_up(latest: &Task, now: Timestamp) -> Option<Completion> {
    if latest.status != Status::Completed {
        return None;
    }
    Some(Completion {
        task: latest.id,
        instance_date: latest.series.as_ref()?.instance_date,
        due: latest.due_date,
        completed_at: latest.completed_at.unwrap_or(now),
    })
}

/// The occurrence a due fixed-mode series (the scheduler's claim) makes an instance for:
/// the one at its `next_occurrence`; `None` when there is none (the rule ended), and then
/// the store saves `ended(series, now)`.
pub fn due_occurrence(series: &Series) -> Option<Occurrence> {
    let at = series.next_occurrence?;
    let before = at.checked_sub(jiff::SignedDuration::from_micros(1)).unwrap_or(at);
    series.recurrence.clone().with_count(None).next_after(series.start, before)
}

/// `series` with no next occurrence: a claimed series whose rule has none.
pub fn ended(mut series: Series, now: Timestamp) -> Series {
    series.next_occurrence = None;
    series.updated_at = now;
    series
}

/// What making the instance of a series at an occurrence writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextInstance {
    /// The series with its progress to save (`next_occurrence`, `instances`, `updated_at`).
    pub series: Series,
    /// The instance to insert, with its link and its created event; `None` when one exists
    /// at that occurrence already (a redelivery, or a race the unique index settles).
    pub instance: Option<Task>,
    /// The reminders the instance carries over from the previous instance.
    pub reminders: Vec<NewReminder>,
}

/// Makes the instance of `series` at `occurrence`, made at `now`: `exists` says whether the
/// series has one at that occurrence (then only `next_occurrence` moves on, and `id` is not
/// used); `carry_from` are the reminders of the instance it follows (loaded only when none
/// exists), whose relative ones the new instance gets; the new instance's id is `id`.
pub fn plan_next_instance(
    mut series: Series,
    occurrence: &Occurrence,
    exists: bool,
    carry_from: &[Reminder],
    id: TaskId,
    now: Timestamp,
) -> NextInstance {
    if exists {
        series.next_occurrence = series.following(occurrence.at.max(now)).map(|o| o.at);
        return NextInstance { series, instance: None, reminders: Vec::new() };
    }
    advance(&mut series, occurrence.at, now);
    let task = instance(id, &series, occurrence, now);
    NextInstance { series, instance: Some(task), reminders: carried_over(carry_from) }
}
