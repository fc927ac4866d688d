//! `POST /api/recurrence/preview` over HTTP: occurrences in local time and UTC across a DST
//! change, presets and cron, a rule that never matches, 422s naming each bad field, and 401
//! without credentials. One server serves every case (the route stores nothing).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TestServer};

const PREVIEW: &str = "/api/recurrence/preview";

fn fields(r: &Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `local=utc` of each occurrence.
fn pairs(r: &Reply) -> Vec<String> {
    r.body["occurrences"]
        .as_array()
        .unwrap_or_else(|| panic!("no occurrences: {}", r.text))
        .iter()
        .map(|o| format!("{}={}", o["local"].as_str().unwrap(), o["utc"].as_str().unwrap()))
        .collect()
}

async fn ok(s: &TestServer, token: &str, body: Value) -> Vec<String> {
    let r = s.post(PREVIEW, token, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text);
    pairs(&r)
}

#[tokio::test]
async fn preview_recurrence() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("recur@example.com").await;

    // Daily 09:00 in Berlin across the spring-forward change on 2026-03-29: local time stays
    // 09:00, UTC moves from 08:00Z to 07:00Z.
    let berlin = json!({"rule": "FREQ=DAILY", "start": "2026-03-28T09:00:00", "timezone": "Europe/Berlin", "count": 3});
    assert_eq!(
        ok(&s, &t, berlin).await,
        [
            "2026-03-28T09:00:00=2026-03-28T08:00:00Z",
            "2026-03-29T09:00:00=2026-03-29T07:00:00Z",
            "2026-03-30T09:00:00=2026-03-30T07:00:00Z",
        ]
    );
    let preset = json!({"preset": "daily", "start": "2026-03-28T09:00:00", "timezone": "Europe/Berlin", "count": 3});
    assert_eq!(ok(&s, &t, preset).await[1], "2026-03-29T09:00:00=2026-03-29T07:00:00Z");

    // A local time in the gap moves forward: 02:30 on 2026-03-29 is 03:30 CEST.
    let gap = json!({"rule": "RRULE:FREQ=DAILY", "start": "2026-03-29T02:30:00", "timezone": "Europe/Berlin", "count": 1});
    assert_eq!(ok(&s, &t, gap).await, ["2026-03-29T02:30:00=2026-03-29T01:30:00Z"]);

    // Cron, weekdays at 09:00 in New York, from a Friday.
    let cron = json!({"cron": "0 9 * * 1-5", "start": "2026-03-06T00:00:00", "timezone": "America/New_York", "count": 2});
    assert_eq!(
        ok(&s, &t, cron).await,
        ["2026-03-06T09:00:00=2026-03-06T14:00:00Z", "2026-03-09T09:00:00=2026-03-09T13:00:00Z"]
    );

    // Every two weeks; the default count is 10 and the zone defaults to the caller's (UTC).
    let weekly =
        ok(&s, &t, json!({"preset": "weekly", "interval": 2, "start": "2026-01-05T08:00:00"}))
            .await;
    assert_eq!(weekly.len(), 10);
    assert_eq!(weekly[1], "2026-01-19T08:00:00=2026-01-19T08:00:00Z");

    // A rule that never matches answers at once with no occurrences; COUNT ends early.
    let never =
        json!({"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "start": "2026-01-01T00:00:00"});
    assert!(ok(&s, &t, never).await.is_empty());
    let short = json!({"rule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=2", "start": "2026-01-01T17:00:00", "count": 500});
    assert_eq!(
        ok(&s, &t, short).await,
        ["2026-01-30T17:00:00=2026-01-30T17:00:00Z", "2026-02-27T17:00:00=2026-02-27T17:00:00Z"]
    );

    // Bad input: a 422 problem naming each bad field.
    let base =
        json!({"rule": "FREQ=DAILY", "start": "2026-03-28T09:00:00", "timezone": "Europe/Berlin"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let mut cron_instead = base.clone();
    cron_instead.as_object_mut().unwrap().remove("rule");
    cron_instead["cron"] = json!("61 * * * *");
    let cases = [
        (with("rule", json!("FREQ=FORTNIGHTLY")), vec!["rule"]),
        (with("rule", json!("FREQ=WEEKLY;BYDAY=XX")), vec!["rule"]),
        (cron_instead, vec!["cron"]),
        (with("cron", json!("0 9 * * 1-5")), vec!["cron"]),
        (with("timezone", json!("Mars/Olympus")), vec!["timezone"]),
        (with("count", json!(0)), vec!["count"]),
        (with("count", json!(501)), vec!["count"]),
        (with("count", json!("ten")), vec!["count"]),
        (with("start", json!("2026-03-28T09:00:00Z")), vec!["start"]),
        (with("start", json!("soon")), vec!["start"]),
        (with("interval", json!(2)), vec!["interval"]),
        (json!({"start": "2026-03-28T09:00:00"}), vec!["rule"]),
        (
            json!({"preset": "fortnightly", "timezone": "Nowhere"}),
            vec!["timezone", "preset", "start"],
        ),
    ];
    for (body, expect) in cases {
        let r = s.post(PREVIEW, &t, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{}", r.text);
        assert_eq!(fields(&r), expect, "{body}: {}", r.text);
    }
    let r = s.post(PREVIEW, &t, with("rule", json!("FREQ=FORTNIGHTLY"))).await;
    let message = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("'FORTNIGHTLY'") && message.contains("expected"), "{message}");

    // Without credentials: 401.
    let r = s.request(Method::POST, PREVIEW, None, Some(base.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = s.request(Method::POST, PREVIEW, Some("not-a-token"), Some(base)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}
