//! Recurring series (§2.3) in both stores: the `series` rows, the link columns of their
//! instances, and the two ways an instance is made.
//!
//! Rules (each store applies them inside one transaction):
//! * creating a recurring task inserts its series (template from the task, `instances = 1`,
//!   `next_occurrence` = the occurrence after the first) and the task as its first instance;
//! * an instance is a pending task with the template's fields, due at its occurrence, linked
//!   by `(series_id, instance_date)`; a unique index on that pair means at most one task per
//!   occurrence, whatever races or redeliveries happen; making one appends its
//!   `com.todo.task.created` event and bumps `instances` and `next_occurrence`;
//! * after completion (`after_completion` mode, the `recurrence` consumer): nothing is made
//!   when the series is paused or gone, when an instance later than the completed one exists
//!   (a second completion of the same instance), or when the series has ended; the completed
//!   task's relative (`before_due`) reminders are copied to the new instance;
//! * fixed mode (the scheduler): a due series (active, `next_occurrence <= now`) is claimed by
//!   moving `next_occurrence` on in the transaction that inserts the instance (`FOR UPDATE
//!   SKIP LOCKED` on PostgreSQL), so one process makes it; a series that fell behind makes one
//!   catch-up instance and moves on to the first occurrence after `now`;
//! * pausing and resuming flip `active`; resuming an `after_completion` series whose latest
//!   instance was completed while paused makes the next instance then;
//! * deleting removes the series row and detaches its instances in the same transaction: they
//!   stay, with `series_id`, `instance_date` and `recurrence` cleared (a one-off task has
//!   none, and NULLs never collide in the unique index), each with its version bumped and a
//!   `com.todo.task.updated` event whose `changes` name `series_id` and `instance_date`;
//! * a task update with a `recurrence` (`TaskPatch::recurrence`, applied after the rest of the
//!   patch, in the update's transaction): on a one-off task it creates a series with the task
//!   as its first instance, as creating a recurring task does (the due date moves to the
//!   first occurrence); on an instance it replaces the series' rule for the instances after
//!   this one (`Series::replace_rule`; the same rule changes nothing); `null` ends the
//!   task's series as deleting it does, the task's own detachment folded into its update.
//!   When the task is completed afterwards, the next instance is made at once, as resuming
//!   does (no completion event will come for it).

pub mod sqlite;
// The PostgreSQL side lives in `crate::postgres::series` (it needs that adapter's codec).

use docket_core::{
    Category, NewSeries, NewTask, Occurrence, Recurrence, RecurrenceSpec, Series, SeriesId,
    SeriesLink, Status, Task, TaskId, Timestamp, UserId, Zone,
};

use crate::StoreError;

/// The canonical JSON of a recurrence, as the `recurrence` columns hold it.
pub(crate) fn spec_json(r: &Recurrence) -> String {
    serde_json::to_string(&r.to_spec()).expect("a recurrence spec serialises")
}

/// A stored recurrence back from its JSON (its zone is in the spec).
pub(crate) fn recurrence_from_json(json: &str) -> Result<Recurrence, StoreError> {
    let spec: RecurrenceSpec = serde_json::from_str(json).map_err(|e| {
        StoreError::unavailable("store", format!("stored recurrence does not parse: {e}"))
    })?;
    Recurrence::parse(&spec, &Zone::utc())
        .map_err(|_| StoreError::unavailable("store", "stored recurrence is not valid"))
}

/// The link an instance of `series` at `occurrence` carries.
pub(crate) fn link(series: &Series, occurrence: &Occurrence) -> SeriesLink {
    SeriesLink {
        series_id: series.id,
        instance_date: occurrence.local,
        recurrence: series.recurrence.to_spec(),
    }
}

/// A new recurring task as its series and first instance (due at the first occurrence),
/// for the stores to insert in one transaction; `category` is already resolved.
pub(crate) fn first_instance(
    mut new: NewTask,
    series: NewSeries,
    user: UserId,
    category: Option<Category>,
    now: Timestamp,
) -> (Series, Task) {
    new.due_date = Some(docket_core::time::truncate_micros(series.first.at));
    let first = series.first;
    let s = series.into_series(
        SeriesId::new(),
        user,
        new.title.clone(),
        new.description.clone(),
        new.priority,
        category.clone(),
        new.tags.clone(),
        now,
    );
    let mut task = new.into_task(TaskId::new(), user, category, now);
    task.series = Some(link(&s, &first));
    (s, task)
}

/// The instance of `series` due at `occurrence`, made at `now`.
pub(crate) fn instance(series: &Series, occurrence: &Occurrence, now: Timestamp) -> Task {
    Task {
        id: TaskId::new(),
        user_id: series.user_id,
        title: series.title.clone(),
        description: series.description.clone(),
        status: Status::Pending,
        completed_at: None,
        priority: series.priority,
        category: series.category.clone(),
        tags: series.tags.clone(),
        due_date: Some(docket_core::time::truncate_micros(occurrence.at)),
        timezone: Some(series.zone().clone()),
        series: Some(link(series, occurrence)),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// `task` detached from its series at `now`: no link, version bumped.
pub(crate) fn detached(task: &Task, now: Timestamp) -> Task {
    Task { series: None, version: task.version + 1, updated_at: now, ..task.clone() }
}

/// Makes `task` (after the rest of its update) the first instance of a new series with rule
/// `recurrence`, due at the rule's first occurrence from its due date (else `now`), and
/// returns the series to insert; as `first_instance` does for a created task.
pub(crate) fn attach(
    task: &mut Task,
    recurrence: Recurrence,
    now: Timestamp,
) -> Result<Series, StoreError> {
    let start = task.due_date.unwrap_or(now).to_zoned(recurrence.zone().tz().clone()).datetime();
    let new =
        NewSeries::starting(recurrence, start).ok_or_else(|| StoreError::InvalidReference {
            field: "recurrence",
            message: "the recurrence has no occurrence from the task's due date on".to_owned(),
        })?;
    let first = new.first;
    let series = new.into_series(
        SeriesId::new(),
        task.user_id,
        task.title.clone(),
        task.description.clone(),
        task.priority,
        task.category.clone(),
        task.tags.clone(),
        now,
    );
    task.due_date = Some(docket_core::time::truncate_micros(first.at));
    task.series = Some(link(&series, &first));
    Ok(series)
}

/// Replaces the rule of `series` (the series of instance `task`) from `task` on; true when it
/// changed, and then the task's link shows the new rule. The rule restarts at the task's due
/// date, and never before the task's own occurrence, so later instances sort after it.
pub(crate) fn replace_rule(
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

/// After an update of `before` into `task`: true when anything changed, and then the version
/// is bumped once (`TaskPatch::apply` may have bumped it already) and `updated_at` is `now`.
pub(crate) fn touch(task: &mut Task, before: &Task, now: Timestamp) -> bool {
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
pub(crate) fn advance(series: &mut Series, made: Timestamp, now: Timestamp) {
    series.instances += 1;
    series.next_occurrence = series.following(made.max(now)).map(|o| o.at);
    series.updated_at = now;
}
