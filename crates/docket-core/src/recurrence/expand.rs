//! Expanding a recurrence into occurrences: local civil date-times first, instants second.
//!
//! Occurrences are computed in local civil time in the recurrence's zone, with no zone at all
//! (the `rrule` crate expands in UTC, which has no DST; `croner` walks `jiff::civil::DateTime`),
//! so "09:00 every day" stays 09:00 across DST changes and the result equals
//! python-dateutil's `rrulestr(rule, dtstart=naive_start)`. Each local date-time is then
//! mapped to an instant with jiff's compatible disambiguation: a local time in a
//! spring-forward gap moves forward by the gap, one in a fall-back overlap takes the earlier
//! instant. Expanding in floating time also sidesteps the `rrule` crate's own DST handling
//! (its bug #115 repeats 02:00 for FREQ=HOURLY across a gap in a real zone).
//!
//! Sub-daily rules can map two local times onto one instant across a gap (02:00, moved to
//! 03:00, and 03:00 itself). The iterator yields instants strictly increasing: an occurrence
//! whose instant is not after the previous one's is dropped, so such a pair yields once.
//! Every search is bounded: the `rrule` crate stops after 100 000 periods without a match
//! (`limit()`), croner at its own search limit, so a rule that never matches
//! (`FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30`) ends with no occurrence instead of looping.

use chrono::{Datelike as _, TimeZone as _, Timelike as _};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::cron::CronExpr;
use super::rule::{Rule, Until};
use super::{Pattern, Recurrence};

/// One occurrence: the local date-time the rule produced and the instant it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub local: DateTime,
    pub at: Timestamp,
}

/// The occurrences of a recurrence from its start, in order; see the module doc.
pub struct Occurrences {
    source: Source,
    tz: TimeZone,
    until_local: Option<DateTime>,
    until_at: Option<Timestamp>,
    remaining: Option<u32>,
    last: Option<Timestamp>,
}

/// Where a cron search stands: the next search starts at `from`, including it or not.
struct CronWalk {
    expr: CronExpr,
    from: DateTime,
    inclusive: bool,
}

enum Source {
    Rule(Box<rrule::RRuleSetIter>),
    Cron(Box<CronWalk>),
    Done,
}

fn to_chrono(dt: DateTime) -> Option<chrono::DateTime<rrule::Tz>> {
    rrule::Tz::UTC
        .with_ymd_and_hms(
            i32::from(dt.year()),
            u32::try_from(dt.month()).ok()?,
            u32::try_from(dt.day()).ok()?,
            u32::try_from(dt.hour()).ok()?,
            u32::try_from(dt.minute()).ok()?,
            u32::try_from(dt.second()).ok()?,
        )
        .single()
}

fn from_chrono(dt: &chrono::DateTime<rrule::Tz>) -> Option<DateTime> {
    jiff::civil::DateTime::new(
        i16::try_from(dt.year()).ok()?,
        i8::try_from(dt.month()).ok()?,
        i8::try_from(dt.day()).ok()?,
        i8::try_from(dt.hour()).ok()?,
        i8::try_from(dt.minute()).ok()?,
        i8::try_from(dt.second()).ok()?,
        0,
    )
    .ok()
}

/// The `rrule` crate's expansion of `rule` from `start`, in floating time.
pub(super) fn crate_iter(rule: &Rule, start: DateTime) -> Option<rrule::RRuleSetIter> {
    let dt_start = to_chrono(start)?;
    let set = rule.to_crate().build(dt_start).ok()?.limit();
    Some((&set).into_iter())
}

impl Source {
    fn next_local(&mut self) -> Option<DateTime> {
        let next = match self {
            Source::Rule(iter) => iter.next().and_then(|dt| from_chrono(&dt)),
            Source::Cron(walk) => {
                let found = walk.expr.next_local(walk.from, walk.inclusive);
                if let Some(found) = found {
                    walk.from = found;
                    walk.inclusive = false;
                }
                found
            }
            Source::Done => None,
        };
        if next.is_none() {
            *self = Source::Done;
        }
        next
    }
}

impl Iterator for Occurrences {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        loop {
            if self.remaining == Some(0) {
                self.source = Source::Done;
                return None;
            }
            let local = self.source.next_local()?;
            let at = match self.tz.to_ambiguous_timestamp(local).compatible() {
                Ok(at) => at,
                Err(_) => break,
            };
            if self.until_local.is_some_and(|u| local > u) || self.until_at.is_some_and(|u| at > u)
            {
                break;
            }
            if self.last.is_some_and(|last| at <= last) {
                continue;
            }
            self.last = Some(at);
            if let Some(n) = self.remaining.as_mut() {
                *n -= 1;
            }
            return Some(Occurrence { local, at });
        }
        self.source = Source::Done;
        None
    }
}

/// Sub-second parts are dropped: rules and cron expressions work in whole seconds.
fn whole_seconds(dt: DateTime) -> DateTime {
    dt.with().subsec_nanosecond(0).build().expect("dropping sub-seconds keeps a valid date-time")
}

impl Recurrence {
    /// The occurrences of the series whose first local date-time is `start`. `start` itself
    /// is the first occurrence when the rule matches it (as dateutil's `dtstart`), not
    /// otherwise. `count` and `until` (the recurrence's and the rule's) end the sequence.
    pub fn occurrences(&self, start: DateTime) -> Occurrences {
        self.occurrences_from(start, start)
    }

    /// Like [`occurrences`](Self::occurrences), but a cron search begins at `from` (≥ start):
    /// cron has no period anchored at the start, so only `count` needs the walk from `start`.
    fn occurrences_from(&self, start: DateTime, from: DateTime) -> Occurrences {
        let start = whole_seconds(start);
        let mut until_local = None;
        let mut until_at = self.until;
        let source = match &self.pattern {
            Pattern::Preset { preset, interval } => {
                let rule = Rule::every(preset.frequency(), *interval);
                crate_iter(&rule, start).map_or(Source::Done, |i| Source::Rule(Box::new(i)))
            }
            Pattern::Rule(rule) => {
                match rule.until() {
                    Some(Until::Local(u)) => until_local = Some(u),
                    Some(Until::Utc(u)) => until_at = Some(until_at.map_or(u, |a| a.min(u))),
                    None => {}
                }
                crate_iter(rule, start).map_or(Source::Done, |i| Source::Rule(Box::new(i)))
            }
            Pattern::Cron(expr) => Source::Cron(Box::new(CronWalk {
                expr: expr.clone(),
                from: whole_seconds(from.max(start)),
                inclusive: true,
            })),
        };
        Occurrences {
            source,
            tz: self.zone.tz().clone(),
            until_local,
            until_at,
            remaining: self.count,
            last: None,
        }
    }

    /// The first occurrence strictly after the instant `after`, if any. A rule is walked from
    /// `start` (its periods and COUNT are anchored there), so the cost grows with the number
    /// of occurrences before `after`; a cron expression without `count` starts near `after`.
    pub fn next_after(&self, start: DateTime, after: Timestamp) -> Option<Occurrence> {
        let from = match self.pattern {
            // Two days before `after`'s local time covers any gap a zone has had, so no
            // occurrence after `after` is skipped by starting the search there.
            Pattern::Cron(_) if self.count.is_none() => after
                .to_zoned(self.zone.tz().clone())
                .datetime()
                .checked_sub(SignedDuration::from_hours(48))
                .unwrap_or(start),
            _ => start,
        };
        self.occurrences_from(start, from).find(|o| o.at > after)
    }

    /// The first `count` occurrences from `start` (fewer when the recurrence ends sooner).
    pub fn preview(&self, start: DateTime, count: super::PreviewCount) -> Vec<Occurrence> {
        self.occurrences(start).take(count.get()).collect()
    }
}
