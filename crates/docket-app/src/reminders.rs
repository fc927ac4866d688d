//! Reminder use cases (§2.4): add, list, delete, snooze. Every change that can move a fire
//! time earlier wakes the scheduler ([`crate::scheduler`]), which otherwise sleeps until the
//! earliest deadline it knows.

use docket_core::{NewReminder, Offset, Reminder, ReminderId, TaskId, Trigger, User};
use jiff::tz::TimeZone;

use crate::App;
use crate::error::AppError;

/// Reminders claimed per transaction by a sweep.
const SWEEP_BATCH: usize = 500;

impl App {
    /// Fires every reminder due now and makes every due fixed-mode instance (the scheduler's
    /// claims: a repeated trigger fires nothing twice); `(instances made, reminders fired)`.
    pub async fn sweep_due(&self) -> Result<(usize, usize), AppError> {
        let now = self.clock.now();
        Ok(crate::scheduler::sweep(self.store.as_ref(), now, SWEEP_BATCH).await?)
    }

    #[tracing::instrument(name = "create_reminder", skip_all, fields(user.id = %user.id, task.id = %task), err(level = "debug"))]
    pub async fn create_reminder(
        &self,
        user: &User,
        task: TaskId,
        new: NewReminder,
    ) -> Result<Reminder, AppError> {
        let reminder = self.store.create_reminder(user.id, task, new, self.clock.now()).await?;
        self.wake_scheduler();
        Ok(reminder)
    }

    pub async fn list_reminders(
        &self,
        user: &User,
        task: TaskId,
    ) -> Result<Vec<Reminder>, AppError> {
        Ok(self.store.list_reminders(user.id, task).await?)
    }

    pub async fn delete_reminder(
        &self,
        user: &User,
        task: TaskId,
        id: ReminderId,
    ) -> Result<(), AppError> {
        Ok(self.store.delete_reminder(user.id, task, id).await?)
    }

    /// A new pending reminder of the same task and channels, `by` from now (§2.4).
    pub async fn snooze_reminder(
        &self,
        user: &User,
        id: ReminderId,
        by: Offset,
    ) -> Result<Reminder, AppError> {
        let original = self.store.get_reminder(user.id, id).await?;
        let now = self.clock.now();
        let zone = user.timezone.as_ref().map_or(TimeZone::UTC, |z| z.tz().clone());
        let at = by.after(now, &zone).ok_or_else(|| {
            AppError::invalid("for", "too_long", "the snooze ends beyond the supported range")
        })?;
        let new = NewReminder { trigger: Trigger::At(at), channels: original.channels };
        self.create_reminder(user, original.task_id, new).await
    }

    /// Retries the caller's failed reminder: pending again, due now (every channel is sent
    /// again by the next firing).
    pub async fn retry_reminder(&self, user: &User, id: ReminderId) -> Result<Reminder, AppError> {
        let r = self.store.retry_reminder(user.id, id, self.clock.now()).await?;
        self.wake_scheduler();
        Ok(r)
    }

    /// Tells the scheduler that a fire time may have moved earlier.
    pub(crate) fn wake_scheduler(&self) {
        self.scheduler_wake.notify_one();
    }
}
