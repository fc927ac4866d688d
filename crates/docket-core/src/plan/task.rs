//! Task write decisions, decided here once for every store: an update with its category,
//! series and reminder consequences, and what deleting a category does to its tasks.

use crate::category::Category;
use crate::ids::SeriesId;
use crate::plan::series::{SeriesWrite, relink, touch};
use crate::plan::{PlanError, TaskChanged};
use crate::series::Series;
use crate::task::{Task, TaskPatch};
use crate::time::Timestamp;

/// The change set of one task update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUpdate {
    /// The task as loaded.
    pub before: Task,
    /// The task after the update (`before` when nothing changed).
    pub task: Task,
    /// Whether the task's row (and its link columns when they differ from `before`) must be
    /// written, with its reminders re-planned and the event of `before → task` appended:
    /// false when the update changed nothing.
    pub changed: bool,
    /// What happens to the series rows, written before the task's row.
    pub series: SeriesWrite,
}

impl TaskUpdate {
    /// The series whose next instance the store checks for after writing the task.
    pub fn catch_up(&self) -> Option<SeriesId> {
        self.series.catch_up()
    }
}

/// The series the store loads for an update of `task` by `patch`: the one the task links to,
/// when the patch carries a `recurrence` (PostgreSQL locks it before the task).
pub fn series_to_load(task: &Task, patch: &TaskPatch) -> Option<SeriesId> {
    patch.recurrence.as_ref()?;
    task.series.as_ref().map(|l| l.series_id)
}

/// Applies `patch` to `before` (version already checked, `category` resolved when the patch
/// names one) with its series consequences: `series` is the task's linked series as loaded
/// when [`series_to_load`] named one (`None` when it no longer exists); a series the update
/// starts (a one-off task made recurring) gets id `new_series`.
pub fn plan_task_update(
    before: Task,
    mut patch: TaskPatch,
    category: Option<Category>,
    series: Option<Series>,
    new_series: SeriesId,
    now: Timestamp,
) -> Result<TaskUpdate, PlanError> {
    let mut task = before.clone();
    let recurrence = patch.recurrence.take();
    patch.apply(&mut task, category, now);
    let series = match recurrence {
        Some(r) => relink(&mut task, r, series, new_series, now)?,
        None => SeriesWrite::Keep,
    };
    let changed = touch(&mut task, &before, now);
    Ok(TaskUpdate { before, task, changed, series })
}

/// Deleting a category keeps its tasks, their category cleared (the database's `ON DELETE SET
/// NULL`) without a version bump; each gets an update event. `tasks` are the user's tasks in
/// the category as loaded, in the order to append.
pub fn plan_category_delete(tasks: Vec<Task>) -> Vec<TaskChanged> {
    tasks
        .into_iter()
        .map(|before| TaskChanged { after: Task { category: None, ..before.clone() }, before })
        .collect()
}
