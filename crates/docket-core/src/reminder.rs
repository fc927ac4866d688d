//! Reminders (§2.4): when to fire (`Trigger`), where to deliver (`Channels`), and the state
//! machine `pending → fired | canceled | failed`, `failed → pending`, `fired` final.
//!
//! A relative trigger (`before_due`) has a fire time only while its task has a due date; it
//! is computed here, in the task's zone, so "1 day before" is a calendar day across DST.

use std::fmt;

use jiff::{Span, Zoned, tz::TimeZone};

use crate::error::{Invalid, invalid_code};
use crate::names::named;
use crate::{ReminderId, TaskId, Timestamp, UserId, Zone};

/// An ISO 8601 duration of zero or more (`PT15M`, `P1D`, `PT0S`): how long before the due
/// date a relative reminder fires, or how long a snooze lasts.
#[derive(Debug, Clone, Copy)]
pub struct Offset(Span);

impl PartialEq for Offset {
    fn eq(&self, other: &Offset) -> bool {
        self.0.fieldwise() == other.0.fieldwise()
    }
}

impl Eq for Offset {}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetError {
    Malformed(String),
    Negative,
    TooLong,
}

impl fmt::Display for OffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetError::Malformed(v) => {
                write!(f, "'{v}' is not an ISO 8601 duration such as PT15M, PT2H or P1D")
            }
            OffsetError::Negative => f.write_str("the duration must not be negative"),
            OffsetError::TooLong => f.write_str("the duration must be at most 366 days"),
        }
    }
}

impl Invalid for OffsetError {
    fn code(&self) -> &'static str {
        match self {
            OffsetError::Malformed(_) => "invalid_duration",
            OffsetError::Negative => "negative",
            OffsetError::TooLong => "too_long",
        }
    }
}

impl Offset {
    /// The longest accepted offset, in days.
    pub const MAX_DAYS: i64 = 366;

    pub fn parse(text: &str) -> Result<Offset, OffsetError> {
        let t = text.trim();
        // ISO 8601 only (jiff would also take its friendly "15 minutes").
        let body = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !body.starts_with(['P', 'p']) {
            return Err(OffsetError::Malformed(t.to_owned()));
        }
        let span: Span = t.parse().map_err(|_| OffsetError::Malformed(t.to_owned()))?;
        if span.is_negative() {
            return Err(OffsetError::Negative);
        }
        // Years and months have no fixed length and are not offered; weeks and days are
        // calendar days, applied in the task's zone.
        if span.get_years() != 0 || span.get_months() != 0 {
            return Err(OffsetError::Malformed(t.to_owned()));
        }
        let days = span.get_weeks() as i64 * 7 + span.get_days() as i64;
        let clock = span.get_hours() as i64 * 3600
            + span.get_minutes() * 60
            + span.get_seconds()
            + span.get_milliseconds() / 1000;
        if days + clock / 86_400 > Self::MAX_DAYS {
            return Err(OffsetError::TooLong);
        }
        Ok(Offset(span))
    }

    /// The ISO 8601 text (`PT15M`, `P1D`).
    pub fn to_iso(&self) -> String {
        self.0.to_string()
    }

    /// `instant` minus this offset, days counted in `zone`.
    pub fn before(&self, instant: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let local: Zoned = instant.to_zoned(zone.clone());
        local.checked_sub(self.0).ok().map(|z| z.timestamp())
    }

    /// `instant` plus this offset, days counted in `zone`.
    pub fn after(&self, instant: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let local: Zoned = instant.to_zoned(zone.clone());
        local.checked_add(self.0).ok().map(|z| z.timestamp())
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

/// When a reminder fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// At this instant.
    At(Timestamp),
    /// This long before the task's due date (none while the task has no due date).
    BeforeDue(Offset),
}

impl Trigger {
    /// The fire time for a task due at `due` in `zone` (the task's, else the user's, else UTC).
    pub fn fire_at(&self, due: Option<Timestamp>, zone: Option<&Zone>) -> Option<Timestamp> {
        match self {
            Trigger::At(t) => Some(*t),
            Trigger::BeforeDue(offset) => {
                let tz = zone.map_or(TimeZone::UTC, |z| z.tz().clone());
                offset.before(due?, &tz)
            }
        }
    }
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    InApp,
    Email,
    Webhook,
}

/// An unknown channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError(pub String);

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not a channel (in_app, email, webhook)", self.0)
    }
}

invalid_code!(ChannelError, "invalid_channel");

named!(Channel { InApp => "in_app", Email => "email", Webhook => "webhook" });

impl Channel {
    pub fn parse(s: &str) -> Result<Channel, ChannelError> {
        Channel::from_name(s.trim()).ok_or_else(|| ChannelError(s.trim().to_owned()))
    }
}

/// A non-empty set of channels, sorted, without repeats (`in_app` when none is named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(Vec<Channel>);

impl Channels {
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Channels, ChannelError> {
        let mut out =
            names.iter().map(|n| Channel::parse(n.as_ref())).collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        if out.is_empty() {
            out.push(Channel::InApp);
        }
        Ok(Channels(out))
    }

    pub fn as_slice(&self) -> &[Channel] {
        &self.0
    }

    /// The names joined by commas, as stored.
    pub fn to_csv(&self) -> String {
        self.0.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }
}

impl Default for Channels {
    fn default() -> Channels {
        Channels(vec![Channel::InApp])
    }
}

/// Where a reminder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderStatus {
    Pending,
    Fired,
    Canceled,
    Failed,
}

named!(ReminderStatus {
    Pending => "pending",
    Fired => "fired",
    Canceled => "canceled",
    Failed => "failed",
});

impl ReminderStatus {
    /// Parses a stored status; `None` for anything else.
    pub fn from_db(s: &str) -> Option<ReminderStatus> {
        ReminderStatus::from_name(s)
    }
}

/// A reminder of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: ReminderId,
    pub task_id: TaskId,
    pub user_id: UserId,
    pub trigger: Trigger,
    pub channels: Channels,
    pub status: ReminderStatus,
    /// When it fires; `None` for a relative reminder of a task without a due date.
    pub fire_at: Option<Timestamp>,
    pub fired_at: Option<Timestamp>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// What creating a reminder asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReminder {
    pub trigger: Trigger,
    pub channels: Channels,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("instant")
    }

    #[test]
    fn offsets_parse_and_print() {
        for (text, iso) in [
            ("PT15M", "PT15M"),
            ("P1D", "P1D"),
            ("PT0S", "PT0S"),
            ("PT2H30M", "PT2H30M"),
            ("P1W", "P1W"),
        ] {
            assert_eq!(Offset::parse(text).expect(text).to_iso(), iso, "{text}");
        }
        assert_eq!(
            Offset::parse("15 minutes"),
            Err(OffsetError::Malformed("15 minutes".to_owned()))
        );
        assert_eq!(Offset::parse("-PT5M"), Err(OffsetError::Negative));
        assert!(matches!(Offset::parse("P1M"), Err(OffsetError::Malformed(_))));
        assert_eq!(Offset::parse("P400D"), Err(OffsetError::TooLong));
        assert!(matches!(Offset::parse(""), Err(OffsetError::Malformed(_))));
    }

    #[test]
    fn a_day_before_is_a_calendar_day_across_dst() {
        let berlin = Zone::parse("Europe/Berlin").expect("zone");
        // Due Monday 2026-03-30 09:00 CEST (07:00Z); clocks sprang forward on Sunday.
        let due = ts("2026-03-30T07:00:00Z");
        let day = Trigger::BeforeDue(Offset::parse("P1D").expect("P1D"));
        assert_eq!(day.fire_at(Some(due), Some(&berlin)), Some(ts("2026-03-29T07:00:00Z")));
        // Sunday 09:00 CEST is 07:00Z; Saturday 09:00 CET is 08:00Z: 23 hours apart.
        let two = Trigger::BeforeDue(Offset::parse("P2D").expect("P2D"));
        assert_eq!(two.fire_at(Some(due), Some(&berlin)), Some(ts("2026-03-28T08:00:00Z")));
        let quarter = Trigger::BeforeDue(Offset::parse("PT15M").expect("PT15M"));
        assert_eq!(quarter.fire_at(Some(due), None), Some(ts("2026-03-30T06:45:00Z")));
        assert_eq!(quarter.fire_at(None, None), None, "no due date, no fire time");
        let at = Trigger::At(ts("2026-01-01T00:00:00Z"));
        assert_eq!(at.fire_at(None, None), Some(ts("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn channels_are_a_sorted_set_defaulting_to_in_app() {
        let c = Channels::parse(&["webhook", "in_app", "webhook"]).expect("channels");
        assert_eq!(c.as_slice(), [Channel::InApp, Channel::Webhook]);
        assert_eq!(c.to_csv(), "in_app,webhook");
        assert_eq!(Channels::parse::<&str>(&[]).expect("empty").as_slice(), [Channel::InApp]);
        assert_eq!(Channels::parse(&["sms"]), Err(ChannelError("sms".to_owned())));
    }
}
