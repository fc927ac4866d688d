//! Golden test: our RRULE expansion against python-dateutil.
//!
//! `tests/data/rrule_golden.json` holds, per case, the first occurrences of
//! `dateutil.rrule.rrulestr(rule, dtstart=start)` (floating local time) and the UTC instant
//! each maps to with `zoneinfo` and `fold=0` (the compatible disambiguation). It is written by
//! `tests/data/gen_rrule_golden.py` and committed, so this test needs no Python.
//!
//! One deliberate difference: where two local times map to the same instant (a sub-daily rule
//! across a spring-forward gap), we yield the first one only, so the expected list here drops
//! any entry whose instant is not after the previous one's.

use docket_core::{PreviewCount, Recurrence, RecurrenceSpec, Zone, parse_local_start};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    rule: String,
    start: String,
    timezone: String,
    count: i64,
    expected: Vec<Expected>,
}

#[derive(Deserialize, Debug, PartialEq, Eq, Clone)]
struct Expected {
    local: String,
    utc: String,
}

fn fixture() -> Fixture {
    let text = include_str!("data/rrule_golden.json");
    serde_json::from_str(text).expect("the golden fixture parses")
}

#[test]
fn rrule_expansion_matches_dateutil() {
    let fixture = fixture();
    assert!(fixture.cases.len() >= 40, "the fixture has its cases");
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let spec = RecurrenceSpec {
            rule: Some(case.rule.clone()),
            timezone: Some(case.timezone.clone()),
            ..RecurrenceSpec::default()
        };
        let recurrence = Recurrence::parse(&spec, &Zone::utc())
            .unwrap_or_else(|e| panic!("{}: {} does not parse: {e}", case.name, case.rule));
        let start = parse_local_start(&case.start).expect("fixture starts are local");
        let got: Vec<Expected> = recurrence
            .preview(start, PreviewCount::parse(case.count).expect("fixture counts are small"))
            .into_iter()
            .map(|o| Expected {
                local: o.local.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                utc: o.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            })
            .collect();
        let mut expected: Vec<Expected> = Vec::new();
        for e in &case.expected {
            if expected.last().is_none_or(|last| e.utc > last.utc) {
                expected.push(e.clone());
            }
        }
        // A collapsed pair makes room for one more occurrence than dateutil's list shows, so
        // only a finite rule (dateutil gave fewer than asked for) must match in length.
        let finite = case.expected.len() < usize::try_from(case.count).unwrap();
        let matches = got.len() >= expected.len()
            && got[..expected.len()] == expected[..]
            && (!finite || got.len() == expected.len());
        if !matches {
            failures.push(format!(
                "{} ({} from {} in {}):\n  expected {:?}\n  got      {:?}",
                case.name, case.rule, case.start, case.timezone, expected, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ from dateutil:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The cases DESIGN names, spelled out, so a regenerated fixture cannot quietly drop them.
#[test]
fn fixture_covers_the_dst_cases() {
    let fixture = fixture();
    let case = |name: &str| {
        fixture.cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("case {name}"))
    };
    let spring = case("daily_0900_berlin_spring");
    let utc: Vec<&str> = spring.expected.iter().map(|e| e.utc.as_str()).collect();
    assert_eq!(utc[1..4], ["2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]);
    let gap = case("daily_0230_berlin_gap");
    assert_eq!(
        gap.expected[1],
        Expected { local: "2026-03-29T02:30:00".into(), utc: "2026-03-29T01:30:00Z".into() },
        "02:30 in the gap is 03:30 CEST"
    );
    let overlap = case("daily_0230_berlin_overlap");
    assert_eq!(overlap.expected[1].utc, "2026-10-25T00:30:00Z", "the earlier 02:30");
    assert!(case("yearly_feb_30_never").expected.is_empty());
}
