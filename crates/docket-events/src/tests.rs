//! Unit tests: the JSON of every task event type (snapshots as `json!` literals), the change
//! classification, and `CloudEvent::parse` on good and bad envelopes.

use docket_core::{
    Category, CategoryId, CategoryName, Color, Description, NewTask, Priority, Status, Tags,
    TaskId, TaskPatch, Title, UserId, Zone,
};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::trace::TraceContext;
use crate::{CloudEvent, Origin, TaskChange, TaskEventDataV1, task_events, topics, types};

const TASK: &str = "0192f000-0000-7000-8000-000000000001";
const USER: &str = "0192f000-0000-7000-8000-0000000000aa";
const CAT: &str = "0192f000-0000-7000-8000-0000000000cc";
const EVENT: &str = "0192f000-0000-7000-8000-0000000000ef";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test instants are valid")
}

/// What the API role stamps on an event made at `at` outside any trace, with id `EVENT`.
fn origin(at: &str) -> Origin<'static> {
    Origin {
        id: EVENT.parse().expect("valid id"),
        time: ts(at),
        source: "/docket/api",
        trace: None,
    }
}

fn task() -> docket_core::Task {
    let mut new = NewTask::new(Title::parse("Buy milk").expect("valid title"));
    new.description = Description::parse("2 litres").expect("valid description");
    new.priority = Priority::High;
    new.tags = Tags::parse(&["home"]).expect("valid tags");
    new.due_date = Some(ts("2026-11-20T09:00:00Z"));
    new.timezone = Some(Zone::parse("Europe/Paris").expect("valid zone"));
    let category = Category {
        id: CAT.parse::<CategoryId>().expect("valid id"),
        user_id: USER.parse().expect("valid id"),
        name: CategoryName::parse("Errands").expect("valid name"),
        color: Color::default(),
        created_at: ts("2026-11-18T08:00:00Z"),
    };
    new.into_task(
        TASK.parse::<TaskId>().expect("valid id"),
        USER.parse::<UserId>().expect("valid id"),
        Some(category),
        ts("2026-11-18T09:30:00.123456Z"),
    )
}

/// Runs `task_events` at a fixed instant and compares the JSON of its events (ids masked,
/// after checking they are the one given) with `expect`.
fn check(change: TaskChange<'_>, expect: Value) {
    let events = task_events(change, origin("2026-11-18T10:00:00Z"));
    let got: Vec<Value> = events
        .iter()
        .map(|e| {
            assert_eq!(e.topic, topics::TASK_EVENTS);
            assert_eq!(e.event.id, EVENT, "the event carries the id of its origin");
            let mut v: Value =
                serde_json::from_str(&e.event.to_json()).expect("events serialize to json");
            v["id"] = json!("<id>");
            // What we write, we read back unchanged.
            assert_eq!(CloudEvent::parse(e.event.to_json().as_bytes()).as_ref(), Ok(&e.event));
            v
        })
        .collect();
    assert_eq!(Value::Array(got), expect);
}

fn task_json(status: &str, completed_at: Value, updated_at: &str, version: i64) -> Value {
    json!({
        "id": TASK, "user_id": USER, "title": "Buy milk", "description": "2 litres",
        "status": status, "completed_at": completed_at, "priority": "high",
        "category": {"id": CAT, "name": "Errands", "color": Color::default().as_str()},
        "tags": ["home"], "due_date": "2026-11-20T09:00:00Z", "timezone": "Europe/Paris",
        "created_at": "2026-11-18T09:30:00.123456Z", "updated_at": updated_at, "version": version
    })
}

fn envelope(ty: &str, data: Value) -> Value {
    json!([{
        "specversion": "1.0", "id": "<id>", "source": "/docket/api", "type": ty,
        "subject": TASK, "time": "2026-11-18T10:00:00Z", "datacontenttype": "application/json",
        "partitionkey": USER, "data": data
    }])
}

#[test]
fn created() {
    let t = task();
    check(
        TaskChange::Created(&t),
        envelope(
            types::TASK_CREATED,
            json!({"task": task_json("pending", Value::Null, "2026-11-18T09:30:00.123456Z", 1)}),
        ),
    );
}

fn patched(before: &docket_core::Task, patch: TaskPatch) -> docket_core::Task {
    let mut after = before.clone();
    assert!(patch.apply(&mut after, None, ts("2026-11-18T10:00:00Z")));
    after
}

#[test]
fn updated_carries_changes() {
    let before = task();
    let after = patched(
        &before,
        TaskPatch {
            title: Some(Title::parse("Buy oat milk").expect("valid title")),
            priority: Some(Priority::Low),
            category: Some(None),
            ..Default::default()
        },
    );
    let change = TaskChange::update(&before, &after).expect("something changed");
    let mut image = task_json("pending", Value::Null, "2026-11-18T10:00:00Z", 2);
    image["title"] = json!("Buy oat milk");
    image["priority"] = json!("low");
    image["category"] = Value::Null;
    check(
        change,
        envelope(
            types::TASK_UPDATED,
            json!({"task": image, "changes": {
                "category": {"old": {"id": CAT, "name": "Errands", "color": Color::default().as_str()}, "new": null},
                "priority": {"old": "high", "new": "low"},
                "title": {"old": "Buy milk", "new": "Buy oat milk"},
            }}),
        ),
    );
}

#[test]
fn completed_and_reopened() {
    let before = task();
    let done =
        patched(&before, TaskPatch { status: Some(Status::Completed), ..Default::default() });
    check(
        TaskChange::update(&before, &done).expect("completed"),
        envelope(
            types::TASK_COMPLETED,
            json!({
                "task": task_json("completed", json!("2026-11-18T10:00:00Z"), "2026-11-18T10:00:00Z", 2),
                "changes": {
                    "completed_at": {"old": null, "new": "2026-11-18T10:00:00Z"},
                    "status": {"old": "pending", "new": "completed"},
                }
            }),
        ),
    );
    let reopened = TaskChange::update(&done, &before).expect("reopened");
    assert_eq!(reopened.event_type(), types::TASK_REOPENED);
    let data: TaskEventDataV1 = task_events(reopened, origin("2026-11-18T11:00:00Z"))[0]
        .event
        .data_as()
        .expect("task event data");
    let changes = data.changes.expect("reopened carries changes");
    assert_eq!(changes["status"].new, json!("pending"));
}

#[test]
fn no_change_is_no_event() {
    let t = task();
    assert_eq!(TaskChange::update(&t, &t.clone()), None);
}

#[test]
fn a_detached_series_link_is_a_change_to_null() {
    let mut before = task();
    before.series = Some(docket_core::SeriesLink {
        series_id: "0192f000-0000-7000-8000-0000000000ee".parse().expect("valid id"),
        instance_date: "2026-11-20T10:00:00".parse().expect("valid date-time"),
        recurrence: docket_core::RecurrenceSpec::default(),
    });
    let after = docket_core::Task { series: None, version: 2, ..before.clone() };
    let change = TaskChange::update(&before, &after).expect("the link changed");
    let events = task_events(change, origin("2026-11-18T10:00:00Z"));
    let data: TaskEventDataV1 = events[0].event.data_as().expect("task event data");
    let changes = data.changes.expect("an update carries changes");
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["instance_date", "series_id"]);
    assert_eq!(changes["series_id"].old, json!("0192f000-0000-7000-8000-0000000000ee"));
    assert_eq!(changes["series_id"].new, Value::Null);
    assert_eq!(changes["instance_date"].old, json!("2026-11-20T10:00:00"));
    assert_eq!(data.task.series_id, None);
}

#[test]
fn deleted() {
    let t = task();
    check(
        TaskChange::Deleted(&t),
        envelope(
            types::TASK_DELETED,
            json!({"task_id": TASK, "user_id": USER, "title": "Buy milk"}),
        ),
    );
}

#[test]
fn topics_and_logs() {
    assert_eq!(topics::dlq(topics::REMINDERS), "reminders.dlq");
    assert_eq!(
        topics::log_topics(topics::TASK_UPDATES),
        [topics::TASK_EVENTS, topics::TASK_UPDATES]
    );
    assert_eq!(topics::log_topics(topics::REMINDERS), [topics::REMINDERS, topics::REMINDERS]);
    assert_eq!(
        topics::published_to(topics::TASK_EVENTS),
        [topics::TASK_EVENTS, topics::TASK_UPDATES]
    );
    assert_eq!(crate::sequence_string(42), "00000000000000000042");
    assert!(crate::sequence_string(9) < crate::sequence_string(10));
}

/// Parses `input` and compares the outcome with `expect`: `Ok(())` or the error message.
fn check_parse(input: Value, expect: Result<(), &str>) {
    let got =
        CloudEvent::parse(input.to_string().as_bytes()).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(got, expect.map_err(str::to_owned), "input: {input}");
}

fn minimal() -> Value {
    json!({"specversion": "1.0", "id": "e1", "source": "/docket/api", "type": "com.todo.task.created"})
}

fn with(key: &str, value: Value) -> Value {
    let mut v = minimal();
    v[key] = value;
    v
}

fn without(key: &str) -> Value {
    let mut v = minimal();
    v.as_object_mut().expect("an object").remove(key);
    v
}

#[test]
fn parse_accepts_good_envelopes() {
    check_parse(minimal(), Ok(()));
    check_parse(
        with("traceparent", json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
        Ok(()),
    );
    check_parse(with("pubsubname", json!("pubsub")), Ok(()));
    check_parse(with("datacontenttype", json!("application/json; charset=utf-8")), Ok(()));
    check_parse(with("time", json!("2026-11-18T10:00:00+01:00")), Ok(()));

    let e = CloudEvent::parse(with("topic", json!("task-events")).to_string().as_bytes())
        .expect("valid");
    assert_eq!(e.extensions["topic"], json!("task-events"));
    assert!(e.to_json().contains("\"topic\":\"task-events\""), "extensions pass through");
    let e =
        CloudEvent::parse(with("sequence", json!("00000000000000000007")).to_string().as_bytes())
            .expect("valid");
    assert_eq!(e.seq(), Some(7));
}

#[test]
fn parse_rejects_bad_envelopes() {
    check_parse(
        json!([1]),
        Err(
            "cloudevent is not a json object: invalid type: sequence, expected a map at line 1 column 0",
        ),
    );
    check_parse(
        with("specversion", json!("0.3")),
        Err("cloudevent specversion '0.3' is not supported (expected 1.0)"),
    );
    check_parse(without("id"), Err("cloudevent attribute 'id' is required"));
    check_parse(without("type"), Err("cloudevent attribute 'type' is required"));
    check_parse(with("source", json!("")), Err("cloudevent attribute 'source' must not be empty"));
    check_parse(
        with("id", json!(7)),
        Err("cloudevent attribute 'id' must be a string, got the number 7"),
    );
    check_parse(
        with("sequence", json!(7)),
        Err("cloudevent attribute 'sequence' must be a string, got the number 7"),
    );
    check_parse(
        with("time", json!("yesterday")),
        Err(
            "cloudevent time 'yesterday' is not an RFC 3339 timestamp (expected e.g. 2026-11-18T09:30:00Z)",
        ),
    );
    check_parse(
        with("traceparent", json!("00-abc-def-01")),
        Err(
            "cloudevent traceparent '00-abc-def-01' is not W3C trace context (expected 00-<32 hex>-<16 hex>-<2 hex>)",
        ),
    );
    check_parse(
        with("datacontenttype", json!("text/plain")),
        Err("cloudevent datacontenttype 'text/plain' is not json (expected application/json)"),
    );
    check_parse(
        with("data_base64", json!("AA==")),
        Err("cloudevent data_base64 is not supported (expected json data)"),
    );
    check_parse(
        with("Bad-Name", json!("x")),
        Err(
            "cloudevent attribute name 'Bad-Name' is invalid (expected lower-case letters and digits)",
        ),
    );
    check_parse(
        with("meta", json!({"a": 1})),
        Err("cloudevent attribute 'meta' must be a string, number or boolean, got an object"),
    );
}

#[test]
fn trace_context_parses_only_valid_w3c_values() {
    let v = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let t = TraceContext::parse(v).expect("valid");
    assert_eq!(t.to_string(), v);
    assert_eq!(t.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    let child = t.child(7).expect("a nonzero span id");
    assert_eq!(child.trace_id(), t.trace_id());
    assert_ne!(child, t);
    assert_eq!(child.to_string(), "00-0af7651916cd43dd8448eb211c80319c-0000000000000007-01");
    assert_eq!(t.child(0), None, "the all-zero span id is reserved");
    for bad in [
        "",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-00",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    ] {
        assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
    }
    let a = TraceContext::root(0x0af7, 0xb7ad).expect("nonzero ids");
    assert_eq!(a.to_string(), "00-00000000000000000000000000000af7-000000000000b7ad-01");
    assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    assert_eq!(TraceContext::root(0, 1), None);
    assert_eq!(TraceContext::root(1, 0), None);
}

#[test]
fn events_carry_the_trace_they_are_given() {
    let t = task();
    let at = "2026-11-18T10:00:00Z";
    let outside = task_events(TaskChange::Created(&t), origin(at));
    assert_eq!(outside[0].event.traceparent, None);
    let ctx = TraceContext::root(1, 2).expect("nonzero ids");
    let inside = task_events(TaskChange::Created(&t), Origin { trace: Some(ctx), ..origin(at) });
    assert_eq!(inside[0].event.traceparent, Some(ctx.to_string()));
}
