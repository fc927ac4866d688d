//! Series use cases (§2.3): list, get, pause, resume and delete the caller's recurring
//! series, and preview a recurrence (`POST /api/recurrence/preview`: the next occurrences of
//! a parsed recurrence from a local start, pure computation over `docket-core`'s
//! `Recurrence`, through `App` so every edge shares one entry point and one span). Creating a
//! series is `create_task` with a recurrence (or an update with one, see
//! `TaskChanges::recurrence`); making instances is the store's (the next-instance consumer,
//! `crate::next_instance`, and the scheduler call it), not these use cases'.

use docket_core::recurrence::Occurrence;
use docket_core::{PreviewCount, Recurrence, Series, SeriesId, User};
use jiff::civil::DateTime;

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

impl App {
    /// The first `count` occurrences of `recurrence` whose series starts at the local
    /// date-time `start` (fewer when the recurrence ends sooner, none when it never matches).
    #[tracing::instrument(name = "preview_recurrence", skip_all, fields(user.id = %user.id))]
    pub fn preview_recurrence(
        &self,
        user: &User,
        recurrence: &Recurrence,
        start: DateTime,
        count: PreviewCount,
    ) -> Result<Vec<Occurrence>, AppError> {
        Ok(recurrence.preview(start, count))
    }
}
