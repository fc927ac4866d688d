//! RFC 5545 `RRULE` text: our own parser into a typed [`Rule`], its canonical text, and the
//! hand-over to the `rrule` crate's expander.
//!
//! We parse the grammar ourselves rather than with `rrule`'s `FromStr` so that every mistake
//! gets a message in our style naming the part that is wrong, and so that `UNTIL` stays ours:
//! `UNTIL` is applied by the expansion in `expand.rs` (floating or UTC, against the
//! recurrence's zone), never handed to the crate, whose `UNTIL` rules (same zone as the start,
//! not before it) do not fit a rule expanded in floating time. The checks here are RFC 5545's
//! (which BY parts go with which FREQ, value ranges); the crate's own validation runs after
//! them and catches the rest.

use std::fmt;
use std::str::FromStr;

use chrono::TimeZone as _;
use jiff::civil::{Date, DateTime, Weekday};

use crate::error::Invalid;
use crate::names::named;
use crate::time::Timestamp;

/// How often a rule repeats (RFC 5545 `FREQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    Secondly,
    Minutely,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

named!(Frequency {
    Secondly => "SECONDLY",
    Minutely => "MINUTELY",
    Hourly => "HOURLY",
    Daily => "DAILY",
    Weekly => "WEEKLY",
    Monthly => "MONTHLY",
    Yearly => "YEARLY",
});

impl Frequency {
    fn to_crate(self) -> rrule::Frequency {
        match self {
            Frequency::Secondly => rrule::Frequency::Secondly,
            Frequency::Minutely => rrule::Frequency::Minutely,
            Frequency::Hourly => rrule::Frequency::Hourly,
            Frequency::Daily => rrule::Frequency::Daily,
            Frequency::Weekly => rrule::Frequency::Weekly,
            Frequency::Monthly => rrule::Frequency::Monthly,
            Frequency::Yearly => rrule::Frequency::Yearly,
        }
    }
}

/// The end a rule's `UNTIL` names: floating (local time in the recurrence's zone, compared
/// with each occurrence's local date-time, as dateutil does) or UTC (an instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Local(DateTime),
    Utc(Timestamp),
}

/// One `BYDAY` entry: a weekday, with an ordinal in MONTHLY/YEARLY rules (`-1FR`, `2TU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByDay {
    pub nth: Option<i16>,
    pub weekday: Weekday,
}

/// A parsed `RRULE`, checked against RFC 5545's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    freq: Frequency,
    interval: u16,
    count: Option<u32>,
    until: Option<Until>,
    by_second: Vec<u8>,
    by_minute: Vec<u8>,
    by_hour: Vec<u8>,
    by_day: Vec<ByDay>,
    by_month_day: Vec<i8>,
    by_year_day: Vec<i16>,
    by_week_no: Vec<i8>,
    by_month: Vec<u8>,
    by_set_pos: Vec<i32>,
    week_start: Weekday,
}

/// Why a rule's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recurrence rule '{rule}': {problem}")]
pub struct RuleError {
    pub rule: String,
    pub problem: RuleProblem,
}

const FREQS: &str = "SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    #[error("the rule is empty (expected for example 'FREQ=WEEKLY;BYDAY=MO,WE')")]
    Empty,
    #[error("the rule is {0} characters long (at most 1000)")]
    TooLong(usize),
    #[error("give the rule alone, on one line, without DTSTART (the start is given separately)")]
    NotOneRule,
    #[error("part '{0}' is not NAME=VALUE")]
    Malformed(String),
    #[error(
        "unknown part '{0}' (expected FREQ, INTERVAL, COUNT, UNTIL, BYSECOND, BYMINUTE, BYHOUR, BYDAY, BYMONTHDAY, BYYEARDAY, BYWEEKNO, BYMONTH, BYSETPOS or WKST)"
    )]
    UnknownPart(String),
    #[error("{0} is given twice")]
    Duplicate(&'static str),
    #[error("FREQ is missing (expected {FREQS})")]
    MissingFreq,
    #[error("unknown frequency '{0}' (expected {FREQS})")]
    UnknownFreq(String),
    #[error("{part} value '{value}' is not valid (expected {expected})")]
    BadValue { part: &'static str, value: String, expected: &'static str },
    #[error("COUNT and UNTIL must not both be given")]
    CountAndUntil,
    #[error("{part} cannot be used with FREQ={freq}")]
    NotWithFreq { part: &'static str, freq: Frequency },
    #[error("BYDAY ordinals such as '{0}' need FREQ=MONTHLY or FREQ=YEARLY (without BYWEEKNO)")]
    OrdinalNotAllowed(String),
    #[error("BYSETPOS needs another BY part to pick from")]
    SetPosAlone,
    #[error("{0}")]
    Refused(String),
}

impl Invalid for RuleError {
    fn code(&self) -> &'static str {
        match self.problem {
            RuleProblem::Empty => "required",
            RuleProblem::TooLong(_) => "too_long",
            _ => "invalid_rule",
        }
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Monday),
    ("TU", Weekday::Tuesday),
    ("WE", Weekday::Wednesday),
    ("TH", Weekday::Thursday),
    ("FR", Weekday::Friday),
    ("SA", Weekday::Saturday),
    ("SU", Weekday::Sunday),
];

fn weekday_code(w: Weekday) -> &'static str {
    WEEKDAYS.iter().find(|(_, d)| *d == w).map(|(c, _)| *c).expect("every weekday has a code")
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    WEEKDAYS.iter().find(|(c, _)| *c == s).map(|(_, d)| *d)
}

/// Parses a comma list of integers, each within `range` and not zero when `nonzero`.
fn int_list<T>(
    part: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
    nonzero: bool,
    expected: &'static str,
) -> Result<Vec<T>, RuleProblem>
where
    T: TryFrom<i64>,
{
    let bad = || RuleProblem::BadValue { part, value: value.to_owned(), expected };
    let mut out = Vec::new();
    for item in value.split(',') {
        let n: i64 = item.trim().parse().map_err(|_| bad())?;
        if !range.contains(&n) || (nonzero && n == 0) {
            return Err(bad());
        }
        out.push(T::try_from(n).map_err(|_| bad())?);
    }
    Ok(out)
}

/// Parses one integer within `range`.
fn one<T: TryFrom<i64>>(
    part: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
    expected: &'static str,
) -> Result<T, RuleProblem> {
    let bad = || RuleProblem::BadValue { part, value: value.to_owned(), expected };
    let n: i64 = value.parse().map_err(|_| bad())?;
    if !range.contains(&n) {
        return Err(bad());
    }
    T::try_from(n).map_err(|_| bad())
}

fn parse_until(value: &str) -> Result<Until, RuleProblem> {
    let bad = || RuleProblem::BadValue {
        part: "UNTIL",
        value: value.to_owned(),
        expected: "a date 'YYYYMMDD', a local 'YYYYMMDDTHHMMSS' or UTC 'YYYYMMDDTHHMMSSZ'",
    };
    if let Some(utc) = value.strip_suffix('Z') {
        let local = DateTime::strptime("%Y%m%dT%H%M%S", utc).map_err(|_| bad())?;
        let ts = jiff::tz::TimeZone::UTC.to_timestamp(local).map_err(|_| bad())?;
        return Ok(Until::Utc(ts));
    }
    if value.contains('T') {
        return DateTime::strptime("%Y%m%dT%H%M%S", value).map(Until::Local).map_err(|_| bad());
    }
    // dateutil reads a bare date as midnight of that day.
    Date::strptime("%Y%m%d", value)
        .map(|d| Until::Local(d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|_| bad())
}

fn parse_by_day(value: &str) -> Result<Vec<ByDay>, RuleProblem> {
    let bad = || RuleProblem::BadValue {
        part: "BYDAY",
        value: value.to_owned(),
        expected: "weekdays MO,TU,WE,TH,FR,SA,SU, optionally with an ordinal such as 1MO or -1FR",
    };
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.len() < 2 || !item.is_char_boundary(item.len() - 2) {
            return Err(bad());
        }
        let (ord, day) = item.split_at(item.len() - 2);
        let weekday = parse_weekday(day).ok_or_else(bad)?;
        let nth = if ord.is_empty() {
            None
        } else {
            let n: i16 = ord.parse().map_err(|_| bad())?;
            if n == 0 || !(-53..=53).contains(&n) {
                return Err(bad());
            }
            Some(n)
        };
        out.push(ByDay { nth, weekday });
    }
    Ok(out)
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(raw: &str) -> Result<Rule, RuleError> {
        Rule::parse(raw)
    }
}

impl Rule {
    pub const MAX_LEN: usize = 1000;

    /// Parses RRULE text, with or without the `RRULE:` prefix; names and values are read
    /// case-insensitively and a trailing `;` is allowed.
    pub fn parse(raw: &str) -> Result<Rule, RuleError> {
        let shown: String = raw.trim().chars().take(200).collect();
        let err = |problem| RuleError { rule: shown.clone(), problem };
        let text = raw.trim();
        if text.is_empty() {
            return Err(err(RuleProblem::Empty));
        }
        let n = text.chars().count();
        if n > Self::MAX_LEN {
            return Err(err(RuleProblem::TooLong(n)));
        }
        let upper = text.to_ascii_uppercase();
        let body = upper.strip_prefix("RRULE:").unwrap_or(&upper).trim();
        if body.contains(['\n', '\r', ':']) {
            return Err(err(RuleProblem::NotOneRule));
        }
        let rule = Rule::parse_parts(body).map_err(err)?;
        // The crate's own checks (ranges it cannot expand, such as BYDAY=-5FR monthly) do
        // not depend on the start but for UNTIL, which it never gets.
        let any_start = rrule::Tz::UTC
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("2000-01-01 exists in UTC");
        if let Err(e) = rule.to_crate().validate(any_start) {
            let why = e.to_string().trim_end_matches('.').to_owned();
            return Err(err(RuleProblem::Refused(why)));
        }
        Ok(rule)
    }

    fn parse_parts(body: &str) -> Result<Rule, RuleProblem> {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut freq = None;
        let mut rule = Rule::every(Frequency::Daily, 1);
        for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(RuleProblem::Malformed(part.to_owned()));
            };
            let (name, value) = (name.trim(), value.trim());
            let name: &'static str = match name {
                "FREQ" => "FREQ",
                "INTERVAL" => "INTERVAL",
                "COUNT" => "COUNT",
                "UNTIL" => "UNTIL",
                "BYSECOND" => "BYSECOND",
                "BYMINUTE" => "BYMINUTE",
                "BYHOUR" => "BYHOUR",
                "BYDAY" => "BYDAY",
                "BYMONTHDAY" => "BYMONTHDAY",
                "BYYEARDAY" => "BYYEARDAY",
                "BYWEEKNO" => "BYWEEKNO",
                "BYMONTH" => "BYMONTH",
                "BYSETPOS" => "BYSETPOS",
                "WKST" => "WKST",
                _ => return Err(RuleProblem::UnknownPart(part.to_owned())),
            };
            if seen.contains(&name) {
                return Err(RuleProblem::Duplicate(name));
            }
            seen.push(name);
            match name {
                "FREQ" => {
                    freq = Some(
                        Frequency::from_name(value)
                            .ok_or_else(|| RuleProblem::UnknownFreq(value.to_owned()))?,
                    );
                }
                "INTERVAL" => rule.interval = one(name, value, 1..=10_000, "1 to 10000")?,
                "COUNT" => rule.count = Some(one(name, value, 1..=1_000_000, "1 to 1000000")?),
                "UNTIL" => rule.until = Some(parse_until(value)?),
                "BYSECOND" => rule.by_second = int_list(name, value, 0..=59, false, "0 to 59")?,
                "BYMINUTE" => rule.by_minute = int_list(name, value, 0..=59, false, "0 to 59")?,
                "BYHOUR" => rule.by_hour = int_list(name, value, 0..=23, false, "0 to 23")?,
                "BYDAY" => rule.by_day = parse_by_day(value)?,
                "BYMONTHDAY" => {
                    rule.by_month_day =
                        int_list(name, value, -31..=31, true, "1 to 31 or -31 to -1")?;
                }
                "BYYEARDAY" => {
                    rule.by_year_day =
                        int_list(name, value, -366..=366, true, "1 to 366 or -366 to -1")?;
                }
                "BYWEEKNO" => {
                    rule.by_week_no =
                        int_list(name, value, -53..=53, true, "1 to 53 or -53 to -1")?;
                }
                "BYMONTH" => rule.by_month = int_list(name, value, 1..=12, false, "1 to 12")?,
                "BYSETPOS" => {
                    rule.by_set_pos =
                        int_list(name, value, -366..=366, true, "1 to 366 or -366 to -1")?;
                }
                "WKST" => {
                    rule.week_start =
                        parse_weekday(value).ok_or_else(|| RuleProblem::BadValue {
                            part: name,
                            value: value.to_owned(),
                            expected: "one of MO, TU, WE, TH, FR, SA, SU",
                        })?;
                }
                _ => unreachable!("every accepted name is matched above"),
            }
        }
        rule.freq = freq.ok_or(RuleProblem::MissingFreq)?;
        rule.check()?;
        Ok(rule)
    }

    /// RFC 5545's rules on which parts go together.
    fn check(&self) -> Result<(), RuleProblem> {
        use Frequency::*;
        let freq = self.freq;
        if self.count.is_some() && self.until.is_some() {
            return Err(RuleProblem::CountAndUntil);
        }
        if !self.by_week_no.is_empty() && freq != Yearly {
            return Err(RuleProblem::NotWithFreq { part: "BYWEEKNO", freq });
        }
        if !self.by_year_day.is_empty() && matches!(freq, Daily | Weekly | Monthly) {
            return Err(RuleProblem::NotWithFreq { part: "BYYEARDAY", freq });
        }
        if !self.by_month_day.is_empty() && freq == Weekly {
            return Err(RuleProblem::NotWithFreq { part: "BYMONTHDAY", freq });
        }
        let ordinals_allowed = freq == Monthly || (freq == Yearly && self.by_week_no.is_empty());
        if let Some(d) = self.by_day.iter().find(|d| d.nth.is_some()) {
            let n = d.nth.expect("found by its ordinal");
            if !ordinals_allowed || (freq == Monthly && !(-5..=5).contains(&n)) {
                return Err(RuleProblem::OrdinalNotAllowed(format!(
                    "{n}{}",
                    weekday_code(d.weekday)
                )));
            }
        }
        let has_other_by = !(self.by_second.is_empty()
            && self.by_minute.is_empty()
            && self.by_hour.is_empty()
            && self.by_day.is_empty()
            && self.by_month_day.is_empty()
            && self.by_year_day.is_empty()
            && self.by_week_no.is_empty()
            && self.by_month.is_empty());
        if !self.by_set_pos.is_empty() && !has_other_by {
            return Err(RuleProblem::SetPosAlone);
        }
        Ok(())
    }

    /// A rule that repeats every `interval` periods of `freq`, with no BY parts.
    pub fn every(freq: Frequency, interval: u16) -> Rule {
        Rule {
            freq,
            interval: interval.max(1),
            count: None,
            until: None,
            by_second: Vec::new(),
            by_minute: Vec::new(),
            by_hour: Vec::new(),
            by_day: Vec::new(),
            by_month_day: Vec::new(),
            by_year_day: Vec::new(),
            by_week_no: Vec::new(),
            by_month: Vec::new(),
            by_set_pos: Vec::new(),
            week_start: Weekday::Monday,
        }
    }

    pub fn freq(&self) -> Frequency {
        self.freq
    }

    pub fn interval(&self) -> u16 {
        self.interval
    }

    pub fn count(&self) -> Option<u32> {
        self.count
    }

    pub fn until(&self) -> Option<Until> {
        self.until
    }

    /// The `rrule` crate's rule for this one, without `UNTIL` (the expansion applies it).
    pub(crate) fn to_crate(&self) -> rrule::RRule<rrule::Unvalidated> {
        let weekday = |w: Weekday| match w {
            Weekday::Monday => chrono::Weekday::Mon,
            Weekday::Tuesday => chrono::Weekday::Tue,
            Weekday::Wednesday => chrono::Weekday::Wed,
            Weekday::Thursday => chrono::Weekday::Thu,
            Weekday::Friday => chrono::Weekday::Fri,
            Weekday::Saturday => chrono::Weekday::Sat,
            Weekday::Sunday => chrono::Weekday::Sun,
        };
        let months: Vec<chrono::Month> = self
            .by_month
            .iter()
            .map(|m| chrono::Month::try_from(*m).expect("BYMONTH is checked to be 1 to 12"))
            .collect();
        let mut r = rrule::RRule::new(self.freq.to_crate())
            .interval(self.interval)
            .week_start(weekday(self.week_start))
            .by_set_pos(self.by_set_pos.clone())
            .by_month(&months)
            .by_month_day(self.by_month_day.clone())
            .by_year_day(self.by_year_day.clone())
            .by_week_no(self.by_week_no.clone())
            .by_weekday(
                self.by_day
                    .iter()
                    .map(|d| rrule::NWeekday::new(d.nth, weekday(d.weekday)))
                    .collect(),
            )
            .by_hour(self.by_hour.clone())
            .by_minute(self.by_minute.clone())
            .by_second(self.by_second.clone());
        if let Some(count) = self.count {
            r = r.count(count);
        }
        r
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The canonical text: upper case, no `RRULE:` prefix, parts in a fixed order, defaults
/// (`INTERVAL=1`, `WKST=MO`) left out.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FREQ={}", self.freq)?;
        if self.interval != 1 {
            write!(f, ";INTERVAL={}", self.interval)?;
        }
        if let Some(count) = self.count {
            write!(f, ";COUNT={count}")?;
        }
        match self.until {
            Some(Until::Local(dt)) => write!(f, ";UNTIL={}", dt.strftime("%Y%m%dT%H%M%S"))?,
            Some(Until::Utc(ts)) => write!(f, ";UNTIL={}", ts.strftime("%Y%m%dT%H%M%SZ"))?,
            None => {}
        }
        let lists: [(&str, String); 8] = [
            ("BYMONTH", join(&self.by_month)),
            ("BYWEEKNO", join(&self.by_week_no)),
            ("BYYEARDAY", join(&self.by_year_day)),
            ("BYMONTHDAY", join(&self.by_month_day)),
            (
                "BYDAY",
                self.by_day
                    .iter()
                    .map(|d| {
                        let n = d.nth.map(|n| n.to_string()).unwrap_or_default();
                        format!("{n}{}", weekday_code(d.weekday))
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("BYHOUR", join(&self.by_hour)),
            ("BYMINUTE", join(&self.by_minute)),
            ("BYSECOND", join(&self.by_second)),
        ];
        for (name, value) in lists {
            if !value.is_empty() {
                write!(f, ";{name}={value}")?;
            }
        }
        if !self.by_set_pos.is_empty() {
            write!(f, ";BYSETPOS={}", join(&self.by_set_pos))?;
        }
        if self.week_start != Weekday::Monday {
            write!(f, ";WKST={}", weekday_code(self.week_start))?;
        }
        Ok(())
    }
}
