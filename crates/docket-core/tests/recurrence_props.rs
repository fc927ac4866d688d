//! Property tests of recurrence expansion: for generated rules, zones and starts, occurrences
//! are strictly increasing (local and instant), never before the start, within `count` and
//! `until`, and `next_after` agrees with the full expansion.

use docket_core::recurrence::Occurrence;
use docket_core::{PreviewCount, Recurrence, RecurrenceSpec, Timestamp, Zone};
use jiff::civil::DateTime;
use proptest::prelude::*;

const ZONES: [&str; 5] =
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"];

fn rule() -> impl Strategy<Value = String> {
    let freq = prop_oneof![
        Just("HOURLY"),
        Just("DAILY"),
        Just("WEEKLY"),
        Just("MONTHLY"),
        Just("YEARLY"),
        Just("MINUTELY")
    ];
    let extra = prop_oneof![
        Just(""),
        Just(";BYDAY=MO,TH"),
        Just(";BYHOUR=1,2,3;BYMINUTE=0,30"),
        Just(";BYMONTHDAY=-1,15,31"),
        Just(";BYMONTH=3,10"),
        Just(";BYSETPOS=-1;BYHOUR=2,9"),
        Just(";BYSECOND=0,59"),
    ];
    (freq, 1u16..4, extra, prop::option::of(1u32..40)).prop_map(|(f, i, e, c)| {
        let count = c.map(|c| format!(";COUNT={c}")).unwrap_or_default();
        format!("FREQ={f};INTERVAL={i}{e}{count}")
    })
}

fn cron() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0 9 * * 1-5"),
        Just("*/30 * * * *"),
        Just("15 2 * * *"),
        Just("0 0 L * *"),
        Just("30 */7 * * * *"),
        Just("0 3 29 2 *")
    ]
    .prop_map(str::to_owned)
}

fn start() -> impl Strategy<Value = DateTime> {
    (1990i16..2040, 1i8..=12, 1i8..=28, 0i8..24, 0i8..60, 0i8..60)
        .prop_map(|(y, mo, d, h, mi, s)| jiff::civil::datetime(y, mo, d, h, mi, s, 0))
}

fn recurrence() -> impl Strategy<Value = Recurrence> {
    let pattern = prop_oneof![
        rule().prop_map(|r| RecurrenceSpec { rule: Some(r), ..Default::default() }),
        cron().prop_map(|c| RecurrenceSpec { cron: Some(c), ..Default::default() }),
    ];
    (pattern, prop::sample::select(ZONES.to_vec()), prop::option::of(1i64..30)).prop_filter_map(
        "valid recurrence",
        |(mut spec, zone, count)| {
            spec.timezone = Some(zone.to_owned());
            spec.count = count;
            // Some generated combinations are refused (BYSETPOS with BYMONTHDAY on WEEKLY, …).
            Recurrence::parse(&spec, &Zone::utc()).ok()
        },
    )
}

fn take(r: &Recurrence, start: DateTime, n: usize) -> Vec<Occurrence> {
    r.occurrences(start).take(n).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn occurrences_are_ordered_and_bounded(r in recurrence(), start in start()) {
        let all = take(&r, start, 60);
        let start_at = r.zone().tz().to_ambiguous_timestamp(start).compatible().unwrap();
        for pair in all.windows(2) {
            prop_assert!(pair[0].local < pair[1].local, "{:?}", pair);
            prop_assert!(pair[0].at < pair[1].at, "{:?}", pair);
        }
        for o in &all {
            prop_assert!(o.local >= start, "{o:?} before {start}");
            prop_assert!(o.at >= start_at, "{o:?} before {start_at}");
        }
        if let Some(count) = r.count() {
            prop_assert!(all.len() <= usize::try_from(count).unwrap());
        }
    }

    #[test]
    fn until_and_preview_agree(r in recurrence(), start in start(), cut in 0usize..20) {
        let all = take(&r, start, 20);
        if let Some(last) = all.get(cut) {
            let until = r.clone().with_until(Some(last.at));
            prop_assert_eq!(take(&until, start, 40), all[..=cut].to_vec());
        }
        let preview = r.preview(start, PreviewCount::parse(20).unwrap());
        prop_assert_eq!(preview, all);
    }

    #[test]
    fn next_after_is_the_first_later_occurrence(
        r in recurrence(),
        start in start(),
        pick in 0usize..20,
        offset_s in -7200i64..7200,
    ) {
        let all = take(&r, start, 25);
        if let Some(o) = all.get(pick) {
            let after = o.at.checked_add(jiff::SignedDuration::from_secs(offset_s)).unwrap();
            let expected = all.iter().find(|x| x.at > after).copied();
            let got = r.next_after(start, after);
            if let Some(expected) = expected {
                prop_assert_eq!(got, Some(expected));
            } else if let Some(got) = got {
                prop_assert!(got.at > after && got.at > all.last().unwrap().at);
            }
        }
        if all.len() < 25 {
            // The recurrence ended: nothing comes after its last occurrence.
            let last = all.last().map_or(Timestamp::MIN, |o| o.at);
            prop_assert_eq!(r.next_after(start, last), None);
        }
    }
}
