//! Recurring series (DESIGN §2.3): the template a recurring task's instances are made from,
//! and the pure rules that say when the next instance is due.
//!
//! A series holds its parsed [`Recurrence`], the local date-time it started at (rules are
//! anchored there) and how many instances it has made (`count` is checked against that, so
//! a rule restarted at a completion time still ends after `count` instances). Nothing here
//! reads the clock or stores anything: the stores persist a `Series` and call
//! [`Series::next_after_completion`] and [`Series::following`] inside their transactions.

use jiff::civil::DateTime;

use crate::category::Category;
use crate::ids::{SeriesId, UserId};
use crate::recurrence::{Anchor, Mode, Occurrence, Recurrence, RecurrenceSpec};
use crate::task::{Description, Priority, Tags, Title};
use crate::time::{Timestamp, Zone};

/// What a task that is an instance of a series carries: the series, which occurrence it is,
/// and the series' recurrence in canonical object form (for responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLink {
    pub series_id: SeriesId,
    /// The local date-time of the occurrence in the series' zone (`2026-03-16T09:00:00`);
    /// unique per series. A date-time, not a date, so a sub-daily rule (hourly, every 30
    /// minutes) has one instance per occurrence. Its text sorts like the occurrences.
    pub instance_date: DateTime,
    pub recurrence: RecurrenceSpec,
}

/// A series as stored: the template of its instances and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub id: SeriesId,
    pub user_id: UserId,
    pub title: Title,
    pub description: Option<Description>,
    pub priority: Priority,
    pub category: Option<Category>,
    pub tags: Tags,
    pub recurrence: Recurrence,
    /// The local date-time of the first occurrence; the rule's periods are anchored here.
    pub start: DateTime,
    /// False while paused: no instance is made.
    pub active: bool,
    /// When the next instance is due (`fixed` mode: when the scheduler makes it; for
    /// `after_completion` the expected next one), `None` once the series has ended.
    pub next_occurrence: Option<Timestamp>,
    /// How many instances the series has made.
    pub instances: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What creating a recurring task adds to the task: its series' recurrence and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSeries {
    pub recurrence: Recurrence,
    /// The first occurrence (the task's due date).
    pub first: Occurrence,
}

impl NewSeries {
    /// The series of a task first due at the local date-time `start` in the recurrence's
    /// zone (the first occurrence is `start` when the rule matches it, else the next one);
    /// `None` when the rule never matches.
    pub fn starting(recurrence: Recurrence, start: DateTime) -> Option<NewSeries> {
        let first = recurrence.occurrences(start).next()?;
        Some(NewSeries { recurrence, first })
    }

    /// The first instance's `instance_date`.
    pub fn instance_date(&self) -> DateTime {
        self.first.local
    }

    /// The series (with one instance made) for `id`, its template taken from the task.
    #[allow(clippy::too_many_arguments)]
    pub fn into_series(
        self,
        id: SeriesId,
        user_id: UserId,
        title: Title,
        description: Option<Description>,
        priority: Priority,
        category: Option<Category>,
        tags: Tags,
        now: Timestamp,
    ) -> Series {
        let mut series = Series {
            id,
            user_id,
            title,
            description,
            priority,
            category,
            tags,
            recurrence: self.recurrence,
            start: self.first.local,
            active: true,
            next_occurrence: None,
            instances: 1,
            created_at: now,
            updated_at: now,
        };
        series.next_occurrence = series.following(self.first.at).map(|o| o.at);
        series
    }
}

impl Series {
    pub fn zone(&self) -> &Zone {
        self.recurrence.zone()
    }

    /// True when `count` allows another instance.
    fn has_room(&self) -> bool {
        self.recurrence.count().is_none_or(|c| self.instances < c)
    }

    /// The recurrence without its `count`: the count is of instances made, checked apart.
    fn uncounted(&self) -> Recurrence {
        self.recurrence.clone().with_count(None)
    }

    /// The occurrence after the one at `at` on the series' schedule, if the series has not
    /// ended (until, count). Used by `fixed` mode and for `next_occurrence`.
    pub fn following(&self, at: Timestamp) -> Option<Occurrence> {
        if !self.has_room() {
            return None;
        }
        self.uncounted().next_after(self.start, at)
    }

    /// Replaces the rule for the instances after the current one, due at `current` (§2.3, a
    /// task update with a new `recurrence`): the rule restarts at `current` (its local
    /// date-time in the new rule's zone, so "every 2 weeks" counts from this instance) and
    /// `next_occurrence` becomes its first occurrence after `current` and `now`. The count of
    /// instances made stays, so a `count` still counts every instance of the series. False,
    /// and nothing changes, when `recurrence` is the rule the series already has.
    pub fn replace_rule(
        &mut self,
        recurrence: Recurrence,
        current: Timestamp,
        now: Timestamp,
    ) -> bool {
        if recurrence == self.recurrence {
            return false;
        }
        self.start = current.to_zoned(recurrence.zone().tz().clone()).datetime();
        self.recurrence = recurrence;
        self.next_occurrence = self.following(current.max(now)).map(|o| o.at);
        self.updated_at = now;
        true
    }

    /// The next instance after the one due at `current_due` was completed at `completed_at`
    /// (`after_completion` mode, §2.3): anchor `schedule` takes the next occurrence after
    /// the current one that is not already past at completion; anchor `completion` restarts
    /// the rule at the completion time (in the series' zone) and takes its first occurrence
    /// after it. `None` when the series has ended, or for `fixed` mode.
    pub fn next_after_completion(
        &self,
        current_due: Option<Timestamp>,
        completed_at: Timestamp,
    ) -> Option<Occurrence> {
        if self.recurrence.mode() != Mode::AfterCompletion || !self.has_room() {
            return None;
        }
        match self.recurrence.anchor() {
            Anchor::Schedule => {
                let after = current_due.map_or(completed_at, |d| d.max(completed_at));
                self.uncounted().next_after(self.start, after)
            }
            Anchor::Completion => {
                let restart = completed_at.to_zoned(self.zone().tz().clone()).datetime();
                let restart = restart
                    .with()
                    .subsec_nanosecond(0)
                    .build()
                    .expect("dropping sub-seconds keeps a valid date-time");
                self.uncounted().next_after(restart, completed_at)
            }
        }
    }
}

#[cfg(test)]
mod tests;
