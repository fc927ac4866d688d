//! Series use cases (§2.3): list, get, pause, resume and delete the caller's recurring
//! series. Creating one is `create_task` with a recurrence (or an update with one, see
//! `TaskChanges::recurrence`); making instances is the store's
//! (the `recurrence` consumer and the scheduler call it), not these use cases'.

use docket_core::{Series, SeriesId, User};

use crate::{App, AppError};

impl App {
    pub async fn list_series(&self, user: &User) -> Result<Vec<Series>, AppError> {
        Ok(self.store.list_series(user.id).await?)
    }

    pub async fn get_series(&self, user: &User, id: SeriesId) -> Result<Series, AppError> {
        Ok(self.store.get_series(user.id, id).await?)
    }

    /// Pauses (`active = false`) or resumes the series; idempotent.
    #[tracing::instrument(name = "set_series_active", skip_all, fields(user.id = %user.id, series.id = %id), err(level = "debug"))]
    pub async fn set_series_active(
        &self,
        user: &User,
        id: SeriesId,
        active: bool,
    ) -> Result<Series, AppError> {
        let series = self.store.set_series_active(user.id, id, active, self.clock.now()).await?;
        self.wake_scheduler();
        Ok(series)
    }

    /// Deletes the series: no more instances; the existing ones stay, detached from it (no
    /// series link, version bumped, a `task.updated` event each).
    #[tracing::instrument(name = "delete_series", skip_all, fields(user.id = %user.id, series.id = %id), err(level = "debug"))]
    pub async fn delete_series(&self, user: &User, id: SeriesId) -> Result<(), AppError> {
        Ok(self.store.delete_series(user.id, id, self.clock.now()).await?)
    }
}
