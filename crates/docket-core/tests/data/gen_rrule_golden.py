#!/usr/bin/env python3
"""Writes rrule_golden.json: the reference occurrences Docket's recurrence expansion must match.

The reference is python-dateutil's `rrulestr(rule, dtstart=naive_start)`: RRULE expansion in
floating (local civil) time, which is what DESIGN §2.3 asks for. Each local date-time is then
mapped to UTC with `zoneinfo` and `fold=0`, which is RFC 5545's and jiff's "compatible"
disambiguation: a local time in a spring-forward gap moves forward by the gap, one in a
fall-back overlap takes the earlier instant.

Run from anywhere; it rewrites the fixture beside this file:

    python3 crates/docket-core/tests/data/gen_rrule_golden.py

The fixture is committed, so `cargo test` needs no Python.
"""

import datetime as dt
import itertools
import json
import pathlib
import zoneinfo

import dateutil
from dateutil.rrule import rrulestr

UTC = dt.timezone.utc

# (name, rule, local start, zone, how many occurrences to take)
CASES = [
    # Daily 09:00 across both DST changes, in Europe and America.
    ("daily_0900_berlin_spring", "FREQ=DAILY", "2026-03-27T09:00:00", "Europe/Berlin", 5),
    ("daily_0900_berlin_fall", "FREQ=DAILY", "2026-10-23T09:00:00", "Europe/Berlin", 5),
    ("daily_0900_new_york_spring", "FREQ=DAILY", "2026-03-06T09:00:00", "America/New_York", 5),
    ("daily_0900_new_york_fall", "FREQ=DAILY", "2026-10-30T09:00:00", "America/New_York", 5),
    # A local time inside the gap moves forward; inside the overlap it takes the earlier instant.
    ("daily_0230_berlin_gap", "FREQ=DAILY", "2026-03-28T02:30:00", "Europe/Berlin", 3),
    ("daily_0230_berlin_overlap", "FREQ=DAILY", "2026-10-24T02:30:00", "Europe/Berlin", 3),
    ("daily_0230_new_york_gap", "FREQ=DAILY", "2026-03-07T02:30:00", "America/New_York", 3),
    ("daily_0130_new_york_overlap", "FREQ=DAILY", "2026-10-31T01:30:00", "America/New_York", 3),
    # Sub-daily rules across a change: local civil steps, mapped one by one.
    ("hourly_berlin_gap", "FREQ=HOURLY", "2026-03-29T00:00:00", "Europe/Berlin", 5),
    ("hourly_berlin_overlap", "FREQ=HOURLY", "2026-10-25T00:00:00", "Europe/Berlin", 5),
    ("hourly_new_york_gap", "FREQ=HOURLY;INTERVAL=1", "2026-03-08T00:30:00", "America/New_York", 4),
    ("minutely_every_15_at_9_and_10", "FREQ=MINUTELY;INTERVAL=15;BYHOUR=9,10", "2026-05-04T09:00:00", "UTC", 10),
    ("secondly_every_10", "FREQ=SECONDLY;INTERVAL=10;COUNT=4", "2026-05-04T09:00:00", "UTC", 10),
    # Months and years that do not have the day.
    ("monthly_on_31st", "FREQ=MONTHLY;BYMONTHDAY=31", "2026-01-31T09:00:00", "Europe/Berlin", 7),
    ("monthly_from_31st", "FREQ=MONTHLY", "2026-01-31T09:00:00", "Europe/Berlin", 5),
    ("yearly_feb_29", "FREQ=YEARLY", "2024-02-29T08:00:00", "UTC", 4),
    ("yearly_feb_30_never", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "2026-01-01T00:00:00", "UTC", 3),
    ("monthly_last_day", "FREQ=MONTHLY;BYMONTHDAY=-1", "2026-01-15T18:00:00", "Europe/Berlin", 6),
    ("monthly_third_last_day", "FREQ=MONTHLY;BYMONTHDAY=-3", "2026-01-01T18:00:00", "UTC", 4),
    # BYSETPOS.
    ("last_weekday_of_month", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "2026-01-01T17:00:00", "Europe/Berlin", 12),
    ("third_tue_wed_thu", "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3", "1997-09-04T09:00:00", "America/New_York", 10),
    # Weekly.
    ("every_2_weeks_mo_th", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", "2026-03-02T09:00:00", "Europe/Berlin", 10),
    ("weekly_start_not_matching", "FREQ=WEEKLY;BYDAY=MO", "2026-03-04T09:00:00", "UTC", 3),
    ("weekly_times", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,17;BYMINUTE=0,30", "2026-03-02T09:00:00", "UTC", 6),
    ("wkst_mo", "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO", "1997-08-05T09:00:00", "America/New_York", 10),
    ("wkst_su", "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU", "1997-08-05T09:00:00", "America/New_York", 10),
    ("wkst_su_byweekno", "FREQ=YEARLY;BYWEEKNO=1;BYDAY=SU;WKST=SU", "2026-01-01T09:00:00", "UTC", 4),
    # Ends.
    ("count_ends", "FREQ=DAILY;COUNT=5", "2026-03-27T09:00:00", "Europe/Berlin", 10),
    ("until_ends", "FREQ=WEEKLY;UNTIL=20260501T090000", "2026-03-27T09:00:00", "Europe/Berlin", 10),
    ("until_date_ends", "FREQ=DAILY;UNTIL=20260330", "2026-03-27T09:00:00", "Europe/Berlin", 10),
    ("rrule_prefix", "RRULE:FREQ=DAILY;INTERVAL=3;COUNT=3", "2026-03-27T09:00:00", "UTC", 10),
    # Year-level BY rules.
    ("byweekno_20_monday", "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO", "1997-05-12T09:00:00", "UTC", 3),
    ("byweekno_53", "FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO", "2026-01-01T09:00:00", "UTC", 3),
    ("byweekno_negative", "FREQ=YEARLY;BYWEEKNO=-1;BYDAY=FR", "2026-01-01T09:00:00", "UTC", 3),
    ("byyearday", "FREQ=YEARLY;BYYEARDAY=1,100,-1", "2026-01-01T09:00:00", "Europe/Berlin", 6),
    ("byyearday_leap", "FREQ=YEARLY;BYYEARDAY=366", "2026-01-01T09:00:00", "UTC", 2),
    # BYDAY with ordinals.
    ("second_tuesday", "FREQ=MONTHLY;BYDAY=2TU", "2026-01-01T10:00:00", "UTC", 4),
    ("last_friday", "FREQ=MONTHLY;BYDAY=-1FR", "2026-01-01T10:00:00", "UTC", 4),
    ("first_and_last_sunday_every_2_months", "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU", "1997-09-07T09:00:00", "America/New_York", 10),
    ("yearly_20th_monday", "FREQ=YEARLY;BYDAY=20MO", "1997-05-19T09:00:00", "UTC", 3),
    ("friday_13th", "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", "2026-01-01T09:00:00", "UTC", 4),
    ("us_election_day", "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8", "1996-11-05T09:00:00", "America/New_York", 3),
    ("january_sundays_mondays", "FREQ=YEARLY;BYMONTH=1;BYDAY=SU,MO", "2026-01-01T09:00:00", "UTC", 6),
]


def iso(d):
    return d.strftime("%Y-%m-%dT%H:%M:%S")


def main():
    cases = []
    for name, rule, start, zone, count in CASES:
        naive = dt.datetime.fromisoformat(start)
        tz = zoneinfo.ZoneInfo(zone)
        expected = []
        for local in itertools.islice(rrulestr(rule, dtstart=naive), count):
            utc = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
            expected.append({"local": iso(local), "utc": iso(utc) + "Z"})
        cases.append(
            {
                "name": name,
                "rule": rule,
                "start": start,
                "timezone": zone,
                "count": count,
                "expected": expected,
            }
        )
    out = {
        "generator": "crates/docket-core/tests/data/gen_rrule_golden.py",
        "reference": f"python-dateutil {dateutil.__version__} rrulestr(rule, dtstart=start)",
        "cases": cases,
    }
    path = pathlib.Path(__file__).with_name("rrule_golden.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
