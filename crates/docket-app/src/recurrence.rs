//! The recurrence preview use case (`POST /api/recurrence/preview`, DESIGN §2.3): the next
//! occurrences of a parsed recurrence from a local start.
//!
//! Pure computation over `docket-core`'s `Recurrence`; it touches neither the store nor the
//! clock. It goes through `App` anyway so every edge (HTTP, later MCP) shares one entry point
//! and one span.

use docket_core::recurrence::Occurrence;
use docket_core::{PreviewCount, Recurrence, User};
use jiff::civil::DateTime;

use crate::{App, AppError};

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
