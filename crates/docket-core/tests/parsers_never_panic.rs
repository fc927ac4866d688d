//! Every parser that takes user input returns `Ok` or a typed error for any input — never a
//! panic (DESIGN §10: bad input anywhere is a clear 4xx). Arbitrary strings, and strings built
//! from each grammar's own pieces so the generator reaches deep into the parsers. Accepted
//! values are also checked to be what the parser promises (trimmed, bounded).

use docket_core::recurrence::{CronExpr, Rule};
use docket_core::{
    CategoryName, Channels, Color, Cursor, Description, DisplayName, Email, Limit, Offset,
    PreviewCount, Priority, Recurrence, RecurrenceSpec, SearchText, SortField, Status, Tag, Tags,
    Title, Zone, parse_instant, parse_local_start,
};
use proptest::prelude::*;

/// Pieces of RRULE, cron, duration and instant syntax, glued into strings.
fn grammar_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FREQ="),
        Just("DAILY"),
        Just("YEARLY"),
        Just("HOURLY"),
        Just("SECONDLY"),
        Just(";"),
        Just("BYDAY="),
        Just("MO"),
        Just("-1FR"),
        Just("+53SU"),
        Just(","),
        Just("BYMONTHDAY="),
        Just("-31"),
        Just("0"),
        Just("BYSETPOS="),
        Just("-366"),
        Just("BYWEEKNO="),
        Just("53"),
        Just("BYYEARDAY="),
        Just("INTERVAL="),
        Just("COUNT="),
        Just("UNTIL="),
        Just("20261231T235959Z"),
        Just("WKST="),
        Just("RRULE:"),
        Just("*"),
        Just("/"),
        Just("-"),
        Just(" "),
        Just("L"),
        Just("#"),
        Just("W"),
        Just("?"),
        Just("59"),
        Just("99999999999999999999"),
        Just("P"),
        Just("T"),
        Just("D"),
        Just("H"),
        Just("M"),
        Just("S"),
        Just("W"),
        Just("Y"),
        Just("."),
        Just("+"),
        Just(":"),
        Just("2026-03-29T02:30:00"),
        Just("Z"),
        Just("+01:00"),
        Just("\u{0}"),
        Just("é"),
        Just("\u{202e}"),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), grammar_soup(), "\\PC{0,300}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_values(s in input()) {
        if let Ok(t) = Title::parse(&s) {
            prop_assert!(!t.as_str().is_empty());
            prop_assert_eq!(t.as_str(), t.as_str().trim());
        }
        let _ = Description::parse(&s);
        let _ = Tag::parse(&s);
        let _ = Tags::parse(&[s.as_str(), "x"]);
        let _ = CategoryName::parse(&s);
        let _ = Color::parse(&s);
        let _ = Email::parse(&s);
        let _ = DisplayName::parse(&s);
        let _ = SearchText::parse(&s);
        let _ = Limit::parse(&s);
        let _ = Cursor::decode(&s);
        let _ = s.parse::<Priority>();
        let _ = s.parse::<Status>();
        let _ = s.parse::<SortField>();
        let _ = Channels::parse(&[s.as_str()]);
    }

    #[test]
    fn time_values(s in input()) {
        let zone = Zone::parse("Europe/Berlin").expect("zone");
        let _ = Zone::parse(&s);
        let _ = parse_instant(&s, &zone);
        let _ = parse_local_start(&s);
        if let Ok(o) = Offset::parse(&s) {
            // What is accepted prints back as ISO 8601 and parses again to the same offset.
            prop_assert_eq!(Offset::parse(&o.to_iso()), Ok(o));
        }
    }

    #[test]
    fn recurrence_values(s in input(), n in any::<i64>()) {
        let _ = s.parse::<Rule>();
        let _ = CronExpr::parse(&s);
        let _ = PreviewCount::parse(n);
        let spec = RecurrenceSpec {
            rule: Some(s.clone()),
            count: Some(n),
            until: Some(s.clone()),
            ..RecurrenceSpec::default()
        };
        let utc = Zone::utc();
        if let Ok(r) = Recurrence::parse(&spec, &utc) {
            // An accepted rule expands without panicking, boundedly.
            let start = jiff::civil::date(2026, 3, 29).at(1, 30, 0, 0);
            let _ = r.occurrences(start).take(20).count();
        }
        let cron = RecurrenceSpec { cron: Some(s.clone()), ..RecurrenceSpec::default() };
        let _ = Recurrence::parse(&cron, &utc);
        let preset = RecurrenceSpec { preset: Some(s), interval: Some(n), ..RecurrenceSpec::default() };
        let _ = Recurrence::parse(&preset, &utc);
    }
}
