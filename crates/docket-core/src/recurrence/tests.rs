//! Unit tests of recurrence parsing and expansion: tables of input → result through one
//! `check` helper per feature. The golden comparison with python-dateutil is in
//! `tests/rrule_golden.rs`, the properties in `tests/recurrence_props.rs`.

use super::*;

fn zone(name: &str) -> Zone {
    Zone::parse(name).unwrap()
}

fn local(s: &str) -> DateTime {
    s.parse().unwrap()
}

/// Parses a rule, or returns the error's message.
fn rule(text: &str) -> Result<String, String> {
    Rule::parse(text).map(|r| r.to_string()).map_err(|e| e.to_string())
}

#[test]
fn rules_parse_to_canonical_text() {
    let check = |input: &str, expect: &str| {
        assert_eq!(rule(input).as_deref(), Ok(expect), "input {input:?}");
    };
    check("FREQ=DAILY", "FREQ=DAILY");
    check("RRULE:FREQ=DAILY", "FREQ=DAILY");
    check("rrule:freq=weekly;byday=mo,we;byhour=9;", "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9");
    check("FREQ=WEEKLY;INTERVAL=1;WKST=MO", "FREQ=WEEKLY");
    check("FREQ=WEEKLY;WKST=SU;INTERVAL=2", "FREQ=WEEKLY;INTERVAL=2;WKST=SU");
    check(
        "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO,TU,WE,TH,FR",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    );
    check("FREQ=MONTHLY;BYDAY=+2TU,-1FR", "FREQ=MONTHLY;BYDAY=2TU,-1FR");
    check("FREQ=YEARLY;UNTIL=20261231T235959Z", "FREQ=YEARLY;UNTIL=20261231T235959Z");
    check("FREQ=YEARLY;UNTIL=20261231", "FREQ=YEARLY;UNTIL=20261231T000000");
    check("FREQ=SECONDLY;BYSECOND=0,30;COUNT=3", "FREQ=SECONDLY;COUNT=3;BYSECOND=0,30");
    check("FREQ=YEARLY;BYWEEKNO=20,-1;BYDAY=MO", "FREQ=YEARLY;BYWEEKNO=20,-1;BYDAY=MO");
    check("FREQ=YEARLY;BYYEARDAY=1,-1;BYMONTH=1,12", "FREQ=YEARLY;BYMONTH=1,12;BYYEARDAY=1,-1");
}

#[test]
fn bad_rules_say_what_is_wrong() {
    let check = |input: &str, needle: &str| {
        let err = rule(input).expect_err(input);
        assert!(err.contains(needle), "{input:?}: {err:?} should mention {needle:?}");
    };
    check("", "empty");
    check("FREQ=FORTNIGHTLY", "unknown frequency 'FORTNIGHTLY' (expected SECONDLY");
    check("BYDAY=MO", "FREQ is missing");
    check("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice");
    check("FREQ=DAILY;BYFOO=1", "unknown part 'BYFOO=1'");
    check("FREQ=DAILY;INTERVAL", "not NAME=VALUE");
    check("FREQ=DAILY;INTERVAL=0", "INTERVAL value '0'");
    check("FREQ=DAILY;INTERVAL=x", "INTERVAL value 'X'");
    check("FREQ=DAILY;COUNT=0", "COUNT value '0'");
    check("FREQ=DAILY;COUNT=2;UNTIL=20260101", "COUNT and UNTIL");
    check("FREQ=DAILY;UNTIL=2026-01-01", "UNTIL value");
    check("FREQ=DAILY;BYHOUR=24", "BYHOUR value '24'");
    check("FREQ=DAILY;BYMINUTE=60", "BYMINUTE");
    check("FREQ=DAILY;BYSECOND=-1", "BYSECOND");
    check("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY value '0'");
    check("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY");
    check("FREQ=YEARLY;BYMONTH=13", "BYMONTH value '13'");
    check("FREQ=YEARLY;BYYEARDAY=367", "BYYEARDAY");
    check("FREQ=YEARLY;BYWEEKNO=54", "BYWEEKNO");
    check("FREQ=WEEKLY;BYDAY=XX", "BYDAY value 'XX'");
    check("FREQ=WEEKLY;BYDAY=1MO", "BYDAY ordinals such as '1MO'");
    check("FREQ=MONTHLY;BYDAY=6MO", "'6MO'");
    check("FREQ=MONTHLY;BYWEEKNO=1", "BYWEEKNO cannot be used with FREQ=MONTHLY");
    check("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY cannot be used with FREQ=WEEKLY");
    check("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY cannot be used with FREQ=DAILY");
    check("FREQ=DAILY;BYSETPOS=1", "BYSETPOS needs");
    check("FREQ=DAILY;WKST=XX", "WKST");
    check("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "alone");
    check(&"FREQ=DAILY;".repeat(200), "at most 1000");
}

fn spec(json: serde_json::Value) -> RecurrenceSpec {
    serde_json::from_value(json).unwrap()
}

/// Parses a spec in Europe/Berlin by default; returns the bad fields on failure.
fn parse(json: serde_json::Value) -> Result<Recurrence, Vec<String>> {
    Recurrence::parse(&spec(json), &zone("Europe/Berlin"))
        .map_err(|e| e.0.into_iter().map(|f| f.field).collect())
}

#[test]
fn specs_parse_and_round_trip() {
    use serde_json::json;
    let inputs = [
        json!({"preset": "weekly"}),
        json!({"preset": "Monthly", "interval": 3, "timezone": "America/New_York"}),
        json!({"rule": "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", "mode": "fixed", "count": 5}),
        json!({"cron": " 0  9 * * 1-5 ", "anchor": "completion", "until": "2026-12-31T23:00:00"}),
        json!({"cron": "30 0 9 * * *", "until": "2026-12-31T22:00:00Z"}),
    ];
    for input in inputs {
        let r = parse(input.clone()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        let canonical = r.to_spec();
        let again = Recurrence::parse(&canonical, &Zone::utc()).unwrap();
        assert_eq!(again, r, "{input} round-trips through {canonical:?}");
        let wire = serde_json::to_value(&canonical).unwrap();
        assert_eq!(serde_json::from_value::<RecurrenceSpec>(wire).unwrap(), canonical);
    }
    let r = parse(json!({"preset": "weekly"})).unwrap();
    assert_eq!(r.zone().name(), "Europe/Berlin", "the default zone applies");
    assert_eq!((r.mode(), r.anchor()), (Mode::AfterCompletion, Anchor::Schedule));
    let c = parse(json!({"cron": " 0  9 * * 1-5 ", "until": "2026-12-31T23:00:00"})).unwrap();
    assert_eq!(c.to_spec().cron.as_deref(), Some("0 9 * * 1-5"));
    assert_eq!(c.to_spec().until.as_deref(), Some("2026-12-31T22:00:00Z"), "naive until is local");
    let r = parse(json!({"rule": "rrule:freq=daily;interval=2"})).unwrap();
    assert_eq!(r.to_spec().rule.as_deref(), Some("FREQ=DAILY;INTERVAL=2"));
}

#[test]
fn bad_specs_name_their_fields() {
    use serde_json::json;
    let check = |input: serde_json::Value, fields: &[&str]| {
        assert_eq!(
            parse(input.clone()).err(),
            Some(fields.iter().map(|f| (*f).to_owned()).collect()),
            "{input}"
        );
    };
    check(json!({}), &["recurrence.rule"]);
    check(json!({"preset": "weekly", "cron": "* * * * *"}), &["recurrence.cron"]);
    check(json!({"preset": "fortnightly"}), &["recurrence.preset"]);
    check(json!({"preset": "daily", "interval": 0}), &["recurrence.interval"]);
    check(json!({"preset": "daily", "interval": 10001}), &["recurrence.interval"]);
    check(json!({"rule": "FREQ=DAILY", "interval": 2}), &["recurrence.interval"]);
    check(json!({"rule": "FREQ=SOMETIMES"}), &["recurrence.rule"]);
    check(json!({"cron": "61 * * * *"}), &["recurrence.cron"]);
    check(json!({"cron": "* * * *"}), &["recurrence.cron"]);
    check(json!({"cron": "0 0 * * * * 2026"}), &["recurrence.cron"]);
    check(json!({"preset": "daily", "timezone": "Mars/Olympus"}), &["recurrence.timezone"]);
    check(json!({"preset": "daily", "mode": "sometimes"}), &["recurrence.mode"]);
    check(json!({"preset": "daily", "anchor": "moon"}), &["recurrence.anchor"]);
    check(
        json!({"preset": "daily", "mode": "fixed", "anchor": "completion"}),
        &["recurrence.anchor"],
    );
    check(json!({"preset": "daily", "count": 0}), &["recurrence.count"]);
    check(json!({"preset": "daily", "until": "someday"}), &["recurrence.until"]);
    check(
        json!({"preset": "hourly", "timezone": "Nowhere", "count": -1}),
        &["recurrence.timezone", "recurrence.preset", "recurrence.count"],
    );
    let flat =
        Recurrence::parse_at(&spec(json!({"rule": "FREQ=NEVER"})), &Zone::utc(), "").unwrap_err();
    assert_eq!(flat.0[0].field, "rule");
    assert_eq!(flat.0[0].code, "invalid_rule");
}

#[test]
fn seeds_flat_fields() {
    let berlin = zone("Europe/Berlin");
    let r = Recurrence::from_flat("weekly", Some("2026-12-31"), &berlin).unwrap();
    assert_eq!(r.pattern(), &Pattern::Preset { preset: Preset::Weekly, interval: 1 });
    assert_eq!(r.until().unwrap().to_string(), "2026-12-30T23:00:00Z");
    let r = Recurrence::from_flat("RRULE:FREQ=MONTHLY;BYMONTHDAY=1", None, &berlin).unwrap();
    assert!(matches!(r.pattern(), Pattern::Rule(_)));
    let e = Recurrence::from_flat("biweekly", Some("never"), &berlin).unwrap_err();
    let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["recurring_rule", "recurring_end_date"]);
    for name in ["daily", "weekly", "monthly", "yearly", " Daily "] {
        assert!(Recurrence::from_preset_name(name, &berlin).is_ok(), "{name}");
    }
    assert!(Recurrence::from_preset_name("hourly", &berlin).is_err());
}

/// Expands `r` from `start` and returns `local=utc` pairs, `n` at most.
fn expand(r: &Recurrence, start: &str, n: usize) -> Vec<String> {
    r.occurrences(local(start)).take(n).map(|o| format!("{}={}", o.local, o.at)).collect()
}

fn recurrence(json: serde_json::Value) -> Recurrence {
    parse(json.clone()).unwrap_or_else(|e| panic!("{json}: {e:?}"))
}

#[test]
fn daily_keeps_local_time_across_dst() {
    use serde_json::json;
    let r = recurrence(json!({"preset": "daily"}));
    assert_eq!(
        expand(&r, "2026-03-28T09:00:00", 3),
        [
            "2026-03-28T09:00:00=2026-03-28T08:00:00Z",
            "2026-03-29T09:00:00=2026-03-29T07:00:00Z",
            "2026-03-30T09:00:00=2026-03-30T07:00:00Z",
        ]
    );
    // 02:30 does not exist on 2026-03-29 in Berlin: it moves forward to 03:30 (01:30Z).
    assert_eq!(expand(&r, "2026-03-29T02:30:00", 1), ["2026-03-29T02:30:00=2026-03-29T01:30:00Z"]);
    // 02:30 happens twice on 2026-10-25: the earlier one (CEST, 00:30Z) is taken.
    assert_eq!(expand(&r, "2026-10-25T02:30:00", 1), ["2026-10-25T02:30:00=2026-10-25T00:30:00Z"]);
}

#[test]
fn cron_expands_in_local_time() {
    use serde_json::json;
    let weekdays = recurrence(json!({"cron": "0 9 * * 1-5"}));
    // Friday 2026-03-27 (start matches, so it is included) to Wednesday, across the change.
    assert_eq!(
        expand(&weekdays, "2026-03-27T09:00:00", 4),
        [
            "2026-03-27T09:00:00=2026-03-27T08:00:00Z",
            "2026-03-30T09:00:00=2026-03-30T07:00:00Z",
            "2026-03-31T09:00:00=2026-03-31T07:00:00Z",
            "2026-04-01T09:00:00=2026-04-01T07:00:00Z",
        ]
    );
    let seconds = recurrence(json!({"cron": "*/20 0 9 * * *", "timezone": "UTC"}));
    assert_eq!(
        expand(&seconds, "2026-03-27T08:59:59", 4),
        [
            "2026-03-27T09:00:00=2026-03-27T09:00:00Z",
            "2026-03-27T09:00:20=2026-03-27T09:00:20Z",
            "2026-03-27T09:00:40=2026-03-27T09:00:40Z",
            "2026-03-28T09:00:00=2026-03-28T09:00:00Z",
        ]
    );
    let last_day = recurrence(json!({"cron": "0 18 L * *", "timezone": "UTC"}));
    assert_eq!(
        expand(&last_day, "2026-01-01T00:00:00", 3),
        [
            "2026-01-31T18:00:00=2026-01-31T18:00:00Z",
            "2026-02-28T18:00:00=2026-02-28T18:00:00Z",
            "2026-03-31T18:00:00=2026-03-31T18:00:00Z",
        ]
    );
    let second_tuesday = recurrence(json!({"cron": "0 10 * * 2#2", "timezone": "UTC"}));
    assert_eq!(
        expand(&second_tuesday, "2026-01-01T00:00:00", 2),
        ["2026-01-13T10:00:00=2026-01-13T10:00:00Z", "2026-02-10T10:00:00=2026-02-10T10:00:00Z"]
    );
    // Every 30 minutes across the spring-forward gap: instants stay strictly increasing.
    let half_hourly = recurrence(json!({"cron": "*/30 * * * *"}));
    assert_eq!(
        expand(&half_hourly, "2026-03-29T01:30:00", 4),
        [
            "2026-03-29T01:30:00=2026-03-29T00:30:00Z",
            "2026-03-29T02:00:00=2026-03-29T01:00:00Z",
            "2026-03-29T02:30:00=2026-03-29T01:30:00Z",
            "2026-03-29T04:00:00=2026-03-29T02:00:00Z",
        ]
    );
}

#[test]
fn impossible_rules_end_without_occurrences() {
    use serde_json::json;
    for input in [
        json!({"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}),
        json!({"rule": "FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31"}),
        json!({"rule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31;BYHOUR=1"}),
        json!({"cron": "0 0 30 2 *"}),
    ] {
        let r = recurrence(input.clone());
        assert_eq!(expand(&r, "2026-01-01T00:00:00", 3), Vec::<String>::new(), "{input}");
        assert_eq!(r.next_after(local("2026-01-01T00:00:00"), Timestamp::UNIX_EPOCH), None);
    }
}

#[test]
fn ends_and_next_after() {
    use serde_json::json;
    let r = recurrence(json!({"preset": "daily", "count": 3}));
    assert_eq!(expand(&r, "2026-03-01T09:00:00", 10).len(), 3);
    let r = recurrence(json!({"preset": "daily", "until": "2026-03-03T09:00:00"}));
    assert_eq!(expand(&r, "2026-03-01T09:00:00", 10).len(), 3, "until is inclusive");
    let r = recurrence(json!({"rule": "FREQ=DAILY;UNTIL=20260303T075959Z"}));
    assert_eq!(expand(&r, "2026-03-01T09:00:00", 10).len(), 2, "a UTC UNTIL is an instant");
    let r = recurrence(json!({"rule": "FREQ=DAILY;UNTIL=20260303T090000"}));
    assert_eq!(expand(&r, "2026-03-01T09:00:00", 10).len(), 3, "a floating UNTIL is local");
    let r = recurrence(json!({"rule": "FREQ=DAILY;UNTIL=20250101"}));
    assert_eq!(expand(&r, "2026-03-01T09:00:00", 10).len(), 0, "UNTIL before the start");

    let start = local("2026-03-01T09:00:00");
    for input in [json!({"preset": "daily"}), json!({"cron": "0 9 * * *"})] {
        let r = recurrence(input.clone());
        let after: Timestamp = "2026-03-29T07:00:00Z".parse().unwrap();
        let next = r.next_after(start, after).unwrap();
        assert_eq!(next.local, local("2026-03-30T09:00:00"), "{input}");
        let after: Timestamp = "2026-03-29T06:59:59Z".parse().unwrap();
        assert_eq!(r.next_after(start, after).unwrap().at.to_string(), "2026-03-29T07:00:00Z");
        let before_start: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(r.next_after(start, before_start).unwrap().local, start, "{input}");
    }
    let r = recurrence(json!({"cron": "0 9 * * *", "count": 2}));
    let after: Timestamp = "2026-03-05T00:00:00Z".parse().unwrap();
    assert_eq!(r.next_after(start, after), None, "count is counted from the start");

    let r = recurrence(json!({"preset": "weekly"}));
    let shown = r.preview(start, PreviewCount::parse(500).unwrap());
    assert_eq!(shown.len(), 500);
    assert!(PreviewCount::parse(0).is_err() && PreviewCount::parse(501).is_err());
    assert_eq!(PreviewCount::default().get(), 10);
}

#[test]
fn local_starts() {
    let check = |raw: &str, expect: Option<&str>| {
        let got = parse_local_start(raw).ok().map(|d| d.to_string());
        assert_eq!(got.as_deref(), expect, "{raw:?}");
    };
    check("2026-03-29T09:00:00", Some("2026-03-29T09:00:00"));
    check("2026-03-29T09:00", Some("2026-03-29T09:00:00"));
    check("2026-03-29", Some("2026-03-29T00:00:00"));
    check("2026-03-29T09:00:00Z", None);
    check("2026-03-29T09:00:00+01:00", None);
    check("tomorrow", None);
    check("", None);
    check("0000-01-01T00:00:00", None);
}
