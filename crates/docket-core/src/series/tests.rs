//! Unit tests of the next-instance rules: anchors, DST, until and count, through one `check`
//! helper that turns a series and a completion into the next instance's local date-time.

use super::*;
use crate::Rule;
use crate::recurrence::{Pattern, Preset};

fn zone(name: &str) -> Zone {
    Zone::parse(name).unwrap()
}

fn local(s: &str) -> DateTime {
    s.parse().unwrap()
}

fn at(s: &str, z: &str) -> Timestamp {
    local(s).to_zoned(zone(z).tz().clone()).unwrap().timestamp()
}

fn series(recurrence: Recurrence, start: &str) -> Series {
    let new = NewSeries::starting(recurrence, local(start)).expect("the rule matches");
    new.into_series(
        crate::ids::test_id(),
        crate::ids::test_id(),
        Title::parse("t").unwrap(),
        None,
        Priority::Medium,
        None,
        Tags::default(),
        Timestamp::UNIX_EPOCH,
    )
}

fn daily(z: &str) -> Recurrence {
    Recurrence::new(Pattern::Preset { preset: Preset::Daily, interval: 1 }, zone(z))
}

/// The next instance's local date-time after the instance due at local `due` was completed
/// at local `done` (both in the series' zone), or `None`.
fn check(s: &Series, due: &str, done: &str, expect: Option<&str>) {
    let z = s.zone().name().to_owned();
    let next = s.next_after_completion(Some(at(due, &z)), at(done, &z));
    assert_eq!(next.map(|o| o.local), expect.map(local), "due {due}, done {done}");
    if let Some(o) = next {
        assert_eq!(o.at, o.local.to_zoned(s.zone().tz().clone()).unwrap().timestamp());
    }
}

#[test]
fn schedule_anchor_takes_the_next_occurrence_not_yet_past() {
    let s = series(daily("Europe/Berlin"), "2026-03-10T09:00:00");
    // Completed early or on the day: the next day.
    check(&s, "2026-03-10T09:00:00", "2026-03-10T08:00:00", Some("2026-03-11T09:00:00"));
    check(&s, "2026-03-10T09:00:00", "2026-03-10T18:00:00", Some("2026-03-11T09:00:00"));
    // Completed three days late: occurrences already past are skipped.
    check(&s, "2026-03-10T09:00:00", "2026-03-13T10:00:00", Some("2026-03-14T09:00:00"));
    let weekly = Recurrence::new(
        Pattern::Rule(Rule::parse("FREQ=WEEKLY;BYDAY=MO,WE").unwrap()),
        zone("Europe/Berlin"),
    );
    let s = series(weekly, "2026-03-09T09:00:00");
    check(&s, "2026-03-09T09:00:00", "2026-03-09T10:00:00", Some("2026-03-11T09:00:00"));
}

#[test]
fn completion_anchor_restarts_the_rule_at_the_completion_time() {
    let r = daily("UTC").with_anchor(Anchor::Completion);
    let s = series(r, "2026-03-10T09:00:00");
    check(&s, "2026-03-10T09:00:00", "2026-03-12T17:30:00", Some("2026-03-13T17:30:00"));
    let r = Recurrence::new(
        Pattern::Rule(Rule::parse("FREQ=DAILY;INTERVAL=3;BYHOUR=9;BYMINUTE=0;BYSECOND=0").unwrap()),
        zone("UTC"),
    )
    .with_anchor(Anchor::Completion);
    let s = series(r, "2026-03-10T09:00:00");
    check(&s, "2026-03-10T09:00:00", "2026-03-12T17:30:00", Some("2026-03-15T09:00:00"));
}

#[test]
fn local_time_is_kept_across_dst() {
    // Europe/Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
    let s = series(daily("Europe/Berlin"), "2026-03-28T09:00:00");
    check(&s, "2026-03-28T09:00:00", "2026-03-28T09:30:00", Some("2026-03-29T09:00:00"));
    let next = s
        .next_after_completion(
            Some(at("2026-03-28T09:00:00", "Europe/Berlin")),
            at("2026-03-28T09:30:00", "Europe/Berlin"),
        )
        .unwrap();
    // 09:00 CEST is 07:00 UTC, the day before 09:00 CET was 08:00 UTC.
    assert_eq!(next.at.to_string(), "2026-03-29T07:00:00Z");
    let s = series(daily("Europe/Berlin"), "2026-10-24T09:00:00");
    check(&s, "2026-10-24T09:00:00", "2026-10-24T09:30:00", Some("2026-10-25T09:00:00"));
}

#[test]
fn until_and_count_end_the_series() {
    let until = at("2026-03-12T12:00:00", "UTC");
    let s = series(daily("UTC").with_until(Some(until)), "2026-03-10T09:00:00");
    check(&s, "2026-03-11T09:00:00", "2026-03-11T10:00:00", Some("2026-03-12T09:00:00"));
    check(&s, "2026-03-12T09:00:00", "2026-03-12T10:00:00", None);

    let mut s = series(daily("UTC").with_count(Some(2)), "2026-03-10T09:00:00");
    assert_eq!(s.instances, 1);
    check(&s, "2026-03-10T09:00:00", "2026-03-10T10:00:00", Some("2026-03-11T09:00:00"));
    s.instances = 2;
    check(&s, "2026-03-11T09:00:00", "2026-03-11T10:00:00", None);
    assert_eq!(s.following(at("2026-03-11T09:00:00", "UTC")), None);
}

#[test]
fn fixed_mode_is_not_driven_by_completion() {
    let s = series(daily("UTC").with_mode(Mode::Fixed), "2026-03-10T09:00:00");
    check(&s, "2026-03-10T09:00:00", "2026-03-10T10:00:00", None);
    assert_eq!(s.next_occurrence, Some(at("2026-03-11T09:00:00", "UTC")));
    let after = s.following(at("2026-03-11T09:00:00", "UTC")).unwrap();
    assert_eq!(after.local, local("2026-03-12T09:00:00"));
}

#[test]
fn the_first_occurrence_is_the_start_or_the_next_match() {
    let mondays =
        Recurrence::new(Pattern::Rule(Rule::parse("FREQ=WEEKLY;BYDAY=MO").unwrap()), zone("UTC"));
    // 2026-03-10 is a Tuesday.
    let new = NewSeries::starting(mondays, local("2026-03-10T09:00:00")).unwrap();
    assert_eq!(new.first.local, local("2026-03-16T09:00:00"));
    assert_eq!(new.instance_date().to_string(), "2026-03-16T09:00:00");
}

#[test]
fn replacing_the_rule_restarts_it_at_the_current_instance() {
    let mut s = series(daily("Europe/Berlin"), "2026-03-10T09:00:00");
    let made = s.instances;
    let every_two_weeks = Recurrence::new(
        Pattern::Preset { preset: Preset::Weekly, interval: 2 },
        zone("Europe/Berlin"),
    );
    // The current instance is due Thursday 12 March at 09:00; it is Wednesday 11th now.
    let current = at("2026-03-12T09:00:00", "Europe/Berlin");
    let now = at("2026-03-11T12:00:00", "Europe/Berlin");
    assert!(s.replace_rule(every_two_weeks.clone(), current, now));
    assert_eq!(s.start, local("2026-03-12T09:00:00"));
    assert_eq!(s.next_occurrence, Some(at("2026-03-26T09:00:00", "Europe/Berlin")));
    assert_eq!(s.instances, made, "the count of instances made stays");
    check(&s, "2026-03-12T09:00:00", "2026-03-12T10:00:00", Some("2026-03-26T09:00:00"));
    // The same rule again changes nothing.
    let before = s.clone();
    assert!(!s.replace_rule(every_two_weeks, current, now));
    assert_eq!(s, before);
    // An overdue current instance: the next occurrence is after now, not in the past.
    let mut s = series(daily("Europe/Berlin"), "2026-03-10T09:00:00");
    let weekly = Recurrence::new(
        Pattern::Preset { preset: Preset::Weekly, interval: 1 },
        zone("Europe/Berlin"),
    );
    let now = at("2026-03-20T12:00:00", "Europe/Berlin");
    assert!(s.replace_rule(weekly, at("2026-03-10T09:00:00", "Europe/Berlin"), now));
    assert_eq!(s.next_occurrence, Some(at("2026-03-24T09:00:00", "Europe/Berlin")));
}
