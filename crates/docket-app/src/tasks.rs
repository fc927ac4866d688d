//! Task use cases: create, read, update (PATCH and PUT), delete, complete, reopen, toggle,
//! list, and the tag summary.
//!
//! Inputs arrive parsed (`TaskInput`, `TaskChanges`) except for one thing the edge cannot
//! finish alone: an instant written without an offset is local time in the task's zone, else
//! the user's, else UTC, and for a PATCH the task's zone may be the stored one. So a due date
//! travels as an [`InstantInput`] (checked for shape at the edge) and is resolved here.
//! `If-Match` versions are passed through to the store, which checks them atomically.

use docket_core::time::InstantError;
use docket_core::{
    CategoryRef, Description, FieldError, NewSeries, NewTask, Page, Priority, Recurrence,
    RecurrenceSpec, Status, Tags, Task, TaskId, TaskPatch, TaskQuery, Timestamp, Title, User,
    ValidationErrors, Zone, parse_instant,
};
use docket_ports::TagCount;

use crate::App;
use crate::error::AppError;

/// An instant as the client wrote it: exact (with an offset) or local, resolved against a
/// zone once the zone is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstantInput {
    raw: String,
    exact: bool,
}

impl InstantInput {
    /// Checks the shape (any zone would do; UTC is used); the zone comes later.
    pub fn parse(raw: &str) -> Result<InstantInput, InstantError> {
        parse_instant(raw, &Zone::utc())?;
        let exact = raw.trim().parse::<Timestamp>().is_ok();
        Ok(InstantInput { raw: raw.to_owned(), exact })
    }

    /// True when the input carried an offset, so no zone is needed.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    pub fn resolve(&self, zone: &Zone) -> Result<Timestamp, InstantError> {
        parse_instant(&self.raw, zone)
    }
}

/// A full task as a create or a replace (PUT) gives it; what is left out takes its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInput {
    pub title: Title,
    pub description: Option<Description>,
    pub priority: Priority,
    pub category: Option<CategoryRef>,
    pub tags: Tags,
    pub due_date: Option<InstantInput>,
    /// `None`: the user's zone, else UTC.
    pub timezone: Option<Zone>,
    pub status: Status,
    /// The wire's recurrence in object form (§2.3), parsed here once the zone is known.
    /// `None`: not given (a create makes a one-off task, a replace (PUT) leaves the task's
    /// series as it is); `Some(None)`: `null` (a replace ends the task's series); else the
    /// rule (see [`TaskChanges::recurrence`] for what a replace does with it).
    pub recurrence: Option<Option<RecurrenceSpec>>,
}

impl TaskInput {
    pub fn new(title: Title) -> TaskInput {
        TaskInput {
            title,
            description: None,
            priority: Priority::default(),
            category: None,
            tags: Tags::default(),
            due_date: None,
            timezone: None,
            status: Status::Pending,
            recurrence: None,
        }
    }
}

/// What a PATCH changes. `None` leaves a field alone; `Some(None)` clears a nullable one
/// (a cleared timezone goes back to the user's zone, else UTC).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskChanges {
    pub title: Option<Title>,
    pub description: Option<Option<Description>>,
    pub priority: Option<Priority>,
    pub category: Option<Option<CategoryRef>>,
    pub tags: Option<Tags>,
    pub due_date: Option<Option<InstantInput>>,
    pub timezone: Option<Option<Zone>>,
    pub status: Option<Status>,
    /// `Some(Some(spec))` on a one-off task makes it the first instance of a new series (as a
    /// create with `recurrence` does: the due date moves to the rule's first occurrence); on
    /// an instance it replaces its series' rule for the instances after this one. `Some(None)`
    /// ends the task's series, as deleting the series does (§2.3).
    pub recurrence: Option<Option<RecurrenceSpec>>,
}

/// How long completing a recurring instance waits for its next instance to report it, by
/// default (`App::with_next_instance_wait`).
pub const NEXT_INSTANCE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What completing a task gives: the task, and the next instance of its series when the
/// recurrence consumer made it within the wait (`App::with_next_instance_wait`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub task: Task,
    pub next: Option<Task>,
}

fn default_zone(user: &User) -> Zone {
    user.timezone.clone().unwrap_or_else(Zone::utc)
}

fn resolve_due(input: &InstantInput, zone: &Zone) -> Result<Timestamp, AppError> {
    input.resolve(zone).map_err(|e| {
        AppError::Validation(ValidationErrors::single(FieldError::new("due_date", &e)))
    })
}

impl TaskInput {
    fn into_new_task(self, user: &User) -> Result<NewTask, AppError> {
        let zone = self.timezone.unwrap_or_else(|| default_zone(user));
        let due_date = self.due_date.as_ref().map(|d| resolve_due(d, &zone)).transpose()?;
        Ok(NewTask {
            title: self.title,
            description: self.description,
            priority: self.priority,
            category: self.category,
            tags: self.tags,
            due_date,
            timezone: Some(zone),
            status: self.status,
        })
    }
}

/// The series a recurring task starts: the recurrence parsed in the task's zone, first due at
/// the task's due date (local time in the recurrence's zone), else now.
fn new_series(spec: &RecurrenceSpec, new: &NewTask, now: Timestamp) -> Result<NewSeries, AppError> {
    let zone = new.timezone.clone().unwrap_or_else(Zone::utc);
    let recurrence = Recurrence::parse(spec, &zone)?;
    let start = new.due_date.unwrap_or(now).to_zoned(recurrence.zone().tz().clone()).datetime();
    NewSeries::starting(recurrence, start).ok_or_else(never_matches)
}

fn never_matches() -> AppError {
    AppError::Validation(ValidationErrors::single(FieldError::custom(
        "recurrence",
        "never_matches",
        "the recurrence has no occurrence from the task's due date on",
    )))
}

/// The rule of an update's `recurrence` for `task` (as stored), parsed in `zone` (the zone
/// the task has after the update); `due` is its due date after the update. A one-off task
/// becomes the first instance of a series, so the rule must match from its due date on.
fn update_recurrence(
    spec: &RecurrenceSpec,
    zone: &Zone,
    task: &Task,
    due: Option<Timestamp>,
    now: Timestamp,
) -> Result<Recurrence, AppError> {
    let recurrence = Recurrence::parse(spec, zone)?;
    if task.series.is_none() {
        let start = due.unwrap_or(now).to_zoned(recurrence.zone().tz().clone()).datetime();
        NewSeries::starting(recurrence.clone(), start).ok_or_else(never_matches)?;
    }
    Ok(recurrence)
}

/// How many times a toggle without `If-Match` retries when a concurrent write moved the task
/// between its read and its write.
const TOGGLE_ATTEMPTS: usize = 3;

impl App {
    #[tracing::instrument(name = "create_task", skip_all, fields(user.id = %user.id, task.id), err(level = "debug"))]
    pub async fn create_task(&self, user: &User, mut input: TaskInput) -> Result<Task, AppError> {
        let spec = input.recurrence.take().flatten();
        let new = input.into_new_task(user)?;
        let now = self.clock.now();
        let task = match spec {
            None => self.store.create_task(user.id, new, now).await?,
            Some(spec) => {
                let series = new_series(&spec, &new, now)?;
                let task = self.store.create_recurring_task(user.id, new, series, now).await?;
                // Its reminders, if any come later, and fixed-mode series need the scheduler.
                self.wake_scheduler();
                task
            }
        };
        tracing::Span::current().record("task.id", tracing::field::display(task.id));
        Ok(task)
    }

    pub async fn get_task(&self, user: &User, id: TaskId) -> Result<Task, AppError> {
        Ok(self.store.get_task(user.id, id).await?)
    }

    #[tracing::instrument(name = "update_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn update_task(
        &self,
        user: &User,
        id: TaskId,
        changes: TaskChanges,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        // A local due date is read in the zone the task will have after the change.
        let zone = match &changes.timezone {
            Some(Some(z)) => Some(z.clone()),
            Some(None) => Some(default_zone(user)),
            None => None,
        };
        let due_date = match &changes.due_date {
            None => None,
            Some(None) => Some(None),
            Some(Some(input)) => {
                let zone = match zone.clone() {
                    Some(z) => z,
                    None if input.is_exact() => Zone::utc(),
                    None => {
                        let task = self.store.get_task(user.id, id).await?;
                        task.timezone.unwrap_or_else(|| default_zone(user))
                    }
                };
                Some(Some(resolve_due(input, &zone)?))
            }
        };
        let now = self.clock.now();
        let recurrence = match &changes.recurrence {
            None => None,
            Some(None) => Some(None),
            Some(Some(spec)) => {
                // Read for its zone, due date and series; the store re-checks in its write.
                let task = self.store.get_task(user.id, id).await?;
                let zone = zone
                    .clone()
                    .or_else(|| task.timezone.clone())
                    .unwrap_or_else(|| default_zone(user));
                let due = due_date.unwrap_or(task.due_date);
                Some(Some(update_recurrence(spec, &zone, &task, due, now)?))
            }
        };
        let patch = TaskPatch {
            title: changes.title,
            description: changes.description,
            priority: changes.priority,
            category: changes.category,
            tags: changes.tags,
            due_date,
            timezone: zone.map(Some),
            status: changes.status,
            recurrence,
        };
        let task = self.store.update_task(user.id, id, patch, if_match, now).await?;
        // A due date (or reopen) may have moved a reminder earlier.
        self.wake_scheduler();
        Ok(task)
    }

    #[tracing::instrument(name = "replace_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn replace_task(
        &self,
        user: &User,
        id: TaskId,
        mut input: TaskInput,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        let spec = input.recurrence.take();
        let new = input.into_new_task(user)?;
        let now = self.clock.now();
        let recurrence = match spec {
            None => None,
            Some(None) => Some(None),
            Some(Some(spec)) => {
                let task = self.store.get_task(user.id, id).await?;
                let zone = new.timezone.clone().unwrap_or_else(|| default_zone(user));
                Some(Some(update_recurrence(&spec, &zone, &task, new.due_date, now)?))
            }
        };
        let patch = TaskPatch { recurrence, ..TaskPatch::replace_with(new) };
        let task = self.store.update_task(user.id, id, patch, if_match, now).await?;
        // A due date (or reopen) may have moved a reminder earlier.
        self.wake_scheduler();
        Ok(task)
    }

    /// Deletes the task; returns it as it was.
    #[tracing::instrument(name = "delete_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn delete_task(
        &self,
        user: &User,
        id: TaskId,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        Ok(self.store.delete_task(user.id, id, if_match, self.now()).await?)
    }

    #[tracing::instrument(name = "complete_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn complete_task(
        &self,
        user: &User,
        id: TaskId,
        if_match: Option<i64>,
    ) -> Result<Completion, AppError> {
        let mark = self.log_position();
        let task = self.set_status(user, id, Status::Completed, if_match).await?;
        let next = self.next_instance(user, &task, mark).await;
        Ok(Completion { task, next })
    }

    #[tracing::instrument(name = "reopen_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn reopen_task(
        &self,
        user: &User,
        id: TaskId,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        self.set_status(user, id, Status::Pending, if_match).await
    }

    /// Completes a pending task and reopens a completed one (the seeds' `PATCH …/complete`).
    #[tracing::instrument(name = "toggle_task", skip_all, fields(user.id = %user.id, task.id = %id), err(level = "debug"))]
    pub async fn toggle_task(
        &self,
        user: &User,
        id: TaskId,
        if_match: Option<i64>,
    ) -> Result<Completion, AppError> {
        let mut attempt = 0;
        let mark = self.log_position();
        loop {
            attempt += 1;
            let current = self.store.get_task(user.id, id).await?;
            if let Some(v) = if_match
                && v != current.version
            {
                return Err(AppError::PreconditionFailed { current_version: current.version });
            }
            let target = match current.status {
                Status::Pending => Status::Completed,
                Status::Completed => Status::Pending,
            };
            // The write is conditional on the version read, so the toggle flips exactly
            // the state it looked at.
            match self.set_status(user, id, target, Some(current.version)).await {
                Err(AppError::PreconditionFailed { .. })
                    if if_match.is_none() && attempt < TOGGLE_ATTEMPTS => {}
                Err(e) => return Err(e),
                Ok(task) => {
                    let next = match task.status {
                        Status::Completed => self.next_instance(user, &task, mark).await,
                        Status::Pending => None,
                    };
                    return Ok(Completion { task, next });
                }
            }
        }
    }

    /// Where the real-time log stood before a write (`None` without a hub).
    fn log_position(&self) -> Option<i64> {
        self.hub.as_ref().map(crate::realtime::Hub::position)
    }

    /// The next instance the recurrence consumer makes for the completed series instance
    /// `task`, when it shows up on the user's log within the configured wait
    /// (`App::with_next_instance_wait`, [`NEXT_INSTANCE_WAIT`] by default) of the completion
    /// (typically a few milliseconds); `None` for a one-off task, without a hub, when no
    /// recurrence consumer runs (no wait configured), for a series that makes no instance on
    /// completion (paused, `fixed` mode, deleted), or when it is later (clients then see it
    /// on `/api/stream`). The wait replays the log from `mark`, taken before the write, so
    /// the instance cannot slip past unseen.
    async fn next_instance(&self, user: &User, task: &Task, mark: Option<i64>) -> Option<Task> {
        let wait = self.next_instance_wait?;
        let link = task.series.as_ref()?;
        let mark = mark?;
        let s = self.store.get_series(user.id, link.series_id).await.ok()?;
        if !s.active || s.recurrence.mode() != docket_core::Mode::AfterCompletion {
            return None;
        }
        let series = link.series_id.to_string();
        let mut sub = self.subscribe(user, Some(mark)).ok()?;
        let deadline = tokio::time::Instant::now() + wait;
        let own = task.id.to_string();
        loop {
            let item = tokio::time::timeout_at(deadline, sub.next()).await.ok()??;
            let crate::realtime::Item::Event(m) = item else { continue };
            if m.event_type != docket_events::types::TASK_CREATED {
                continue;
            }
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&m.json) else { continue };
            let subject = event["subject"].as_str().unwrap_or_default();
            if event["data"]["task"]["series_id"] == series.as_str() && subject != own {
                let id: TaskId = subject.parse().ok()?;
                return self.store.get_task(user.id, id).await.ok();
            }
        }
    }

    async fn set_status(
        &self,
        user: &User,
        id: TaskId,
        status: Status,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        let patch = TaskPatch { status: Some(status), ..TaskPatch::default() };
        let task = self.store.update_task(user.id, id, patch, if_match, self.clock.now()).await?;
        // A due date (or reopen) may have moved a reminder earlier.
        self.wake_scheduler();
        Ok(task)
    }

    pub async fn list_tasks(&self, user: &User, query: TaskQuery) -> Result<Page<Task>, AppError> {
        Ok(self.store.list_tasks(user.id, &query, self.clock.now()).await?)
    }

    pub async fn list_tags(&self, user: &User) -> Result<Vec<TagCount>, AppError> {
        Ok(self.store.list_tags(user.id).await?)
    }
}

#[cfg(test)]
mod tests;
