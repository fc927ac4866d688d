//! Instants and time zones.
//!
//! Instants are `jiff::Timestamp`s kept at microsecond precision (what PostgreSQL stores), so
//! a value read back from any store equals the value written. Inputs may carry any offset, or
//! none: a naive date-time is local time in the zone the caller resolves (the task's, else the
//! user's, else UTC). Nothing here reads the clock.

use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use crate::error::{Invalid, invalid_code};
use crate::names::known_by_text;

pub use jiff::Timestamp;

/// Drops sub-microsecond precision, so stored and in-memory instants compare equal.
pub fn truncate_micros(ts: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(ts.as_microsecond())
        .expect("a valid timestamp stays valid when truncated")
}

/// An IANA time zone, kept with its name.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("time zone '{0}' is not a known IANA zone (for example 'Europe/Berlin' or 'UTC')")]
    Unknown(String),
}

invalid_code!(ZoneError, "unknown_timezone");

impl Zone {
    pub fn parse(raw: &str) -> Result<Zone, ZoneError> {
        let name = raw.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(ZoneError::Unknown(raw.to_owned()));
        }
        let tz = TimeZone::get(name).map_err(|_| ZoneError::Unknown(raw.to_owned()))?;
        // Keep the canonical spelling the database uses when it has one.
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { name, tz })
    }

    pub fn utc() -> Zone {
        Zone { name: "UTC".to_owned(), tz: TimeZone::UTC }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

known_by_text!(Zone, name);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstantError {
    #[error(
        "'{0}' is not a date-time (expected RFC 3339 such as '2026-12-01T09:00:00Z', '2026-12-01T10:00:00+01:00', a local '2026-12-01T10:00:00' or a date '2026-12-01')"
    )]
    Malformed(String),
    #[error("'{0}' is out of the supported range")]
    OutOfRange(String),
}

impl Invalid for InstantError {
    fn code(&self) -> &'static str {
        match self {
            InstantError::Malformed(_) => "invalid_datetime",
            InstantError::OutOfRange(_) => "out_of_range",
        }
    }
}

/// Parses an instant from the wire.
///
/// With an offset (`Z`, `+02:00`) the instant is exact. Without one it is local time in
/// `zone`; a local time that falls in a DST gap moves forward, one in an overlap takes the
/// earlier instant (RFC 5545's rule). A bare date means local midnight.
pub fn parse_instant(raw: &str, zone: &Zone) -> Result<Timestamp, InstantError> {
    let s = raw.trim();
    if s.len() > 64 {
        return Err(InstantError::Malformed(raw.chars().take(64).collect()));
    }
    if let Ok(ts) = Timestamp::from_str(s) {
        return check_range(truncate_micros(ts), raw);
    }
    let local = match DateTime::from_str(s) {
        Ok(dt) => dt,
        Err(_) => match Date::from_str(s) {
            Ok(d) => d.to_datetime(jiff::civil::Time::midnight()),
            Err(_) => return Err(InstantError::Malformed(raw.to_owned())),
        },
    };
    let ts = zone
        .tz()
        .to_ambiguous_timestamp(local)
        .compatible()
        .map_err(|_| InstantError::OutOfRange(raw.to_owned()))?;
    check_range(truncate_micros(ts), raw)
}

/// Years 1..=9999 only: what both SQL dialects and RFC 3339 can carry.
fn check_range(ts: Timestamp, raw: &str) -> Result<Timestamp, InstantError> {
    let year = ts.to_zoned(TimeZone::UTC).year();
    if (1..=9999).contains(&year) { Ok(ts) } else { Err(InstantError::OutOfRange(raw.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, zone: &str, expect: Option<&str>) {
        let zone = Zone::parse(zone).unwrap();
        let got = parse_instant(raw, &zone).ok().map(|t| t.to_string());
        assert_eq!(got.as_deref(), expect, "input {raw:?} in {zone}");
    }

    #[test]
    fn instants() {
        check("2026-12-01T09:00:00Z", "UTC", Some("2026-12-01T09:00:00Z"));
        check("2026-12-01T10:00:00+01:00", "America/New_York", Some("2026-12-01T09:00:00Z"));
        check("2026-12-01T10:00:00", "Europe/Berlin", Some("2026-12-01T09:00:00Z"));
        check("2026-07-01T10:00:00", "Europe/Berlin", Some("2026-07-01T08:00:00Z"));
        check("2026-12-01", "UTC", Some("2026-12-01T00:00:00Z"));
        // Spring-forward gap: 02:30 does not exist in Berlin on 2026-03-29, moves to 03:30.
        check("2026-03-29T02:30:00", "Europe/Berlin", Some("2026-03-29T01:30:00Z"));
        // Fall-back overlap: 02:30 happens twice on 2026-10-25, the earlier one is taken.
        check("2026-10-25T02:30:00", "Europe/Berlin", Some("2026-10-25T00:30:00Z"));
        check("2026-12-01T09:00:00.1234567Z", "UTC", Some("2026-12-01T09:00:00.123456Z"));
        check("tomorrow", "UTC", None);
        check("2026-13-01T00:00:00Z", "UTC", None);
        check("", "UTC", None);
    }

    #[test]
    fn zones() {
        assert!(Zone::parse("Europe/Berlin").is_ok());
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("").is_err());
        assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
    }
}
