//! Conversion tests: every rule of a task, category, signup or token body becomes a 422
//! naming its field; PATCH bodies tell absent from `null`; JSON errors split into 400 and 422.

use docket_app::{TaskChanges, TaskInput};
use docket_core::{CategoryRef, Priority, Status};
use serde_json::{Value, json};

use super::*;
use crate::extract::parse_json;
use crate::problem::ApiError;

fn task(body: Value) -> Result<TaskInput, Vec<String>> {
    let body: TaskBody = serde_json::from_value(body).unwrap();
    TaskInput::try_from(body).map_err(|e| e.0.into_iter().map(|f| f.field).collect())
}

fn patch(body: Value) -> Result<TaskChanges, Vec<String>> {
    let body: TaskPatchBody = serde_json::from_value(body).unwrap();
    TaskChanges::try_from(body).map_err(|e| e.0.into_iter().map(|f| f.field).collect())
}

#[track_caller]
fn check_task(body: Value, field: &str) {
    assert_eq!(task(body.clone()).err(), Some(vec![field.to_owned()]), "{body}");
}

#[test]
fn every_task_rule_names_its_field() {
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    check_task(json!({}), "title");
    check_task(json!({"title": ""}), "title");
    check_task(json!({"title": "   "}), "title");
    check_task(json!({"title": "x".repeat(256)}), "title");
    check_task(json!({"title": "bell\u{7}"}), "title");
    check_task(json!({"title": "ok", "description": "x".repeat(4001)}), "description");
    check_task(json!({"title": "ok", "description": "bell\u{7}"}), "description");
    check_task(json!({"title": "ok", "priority": "critical"}), "priority");
    check_task(json!({"title": "ok", "status": "done"}), "status");
    check_task(json!({"title": "ok", "status": "pending", "completed": true}), "completed");
    check_task(json!({"title": "ok", "tags": eleven}), "tags");
    check_task(json!({"title": "ok", "tags": ["x".repeat(51)]}), "tags");
    check_task(json!({"title": "ok", "tags": [""]}), "tags");
    check_task(json!({"title": "ok", "tags": ["a,b"]}), "tags");
    check_task(json!({"title": "ok", "due_date": "tomorrow"}), "due_date");
    check_task(json!({"title": "ok", "due_date": "2026-02-30T10:00:00Z"}), "due_date");
    check_task(json!({"title": "ok", "timezone": "Mars/Olympus"}), "timezone");
    check_task(json!({"title": "ok", "category_id": "not-a-uuid"}), "category_id");
    check_task(json!({"title": "ok", "category": ""}), "category");
    check_task(json!({"title": "ok", "category": "x".repeat(101)}), "category");
    check_task(
        json!({"title": "ok", "category": "a", "category_id": uuid::Uuid::now_v7().to_string()}),
        "category",
    );
    // Several bad fields are reported together, in input order.
    assert_eq!(
        task(json!({"title": "", "priority": "x", "due_date": "y"})).err(),
        Some(vec!["title".to_owned(), "priority".to_owned(), "due_date".to_owned()])
    );
}

#[test]
fn task_bodies_convert_with_defaults_and_aliases() {
    let t = task(json!({"title": " Pay ", "completed": true, "category": "Bills", "tags": ["A", "a"], "extra": {"x": 1}})).unwrap();
    assert_eq!(t.title.as_str(), "Pay");
    assert_eq!((t.status, t.priority), (Status::Completed, Priority::Medium));
    assert!(matches!(t.category, Some(CategoryRef::Name(n)) if n.as_str() == "Bills"));
    assert_eq!(t.tags.len(), 1);
    let t =
        task(json!({"title": "x", "status": "completed", "completed": true, "description": "  "}))
            .unwrap();
    assert_eq!((t.status, t.description), (Status::Completed, None));
    let id = uuid::Uuid::now_v7();
    let t = task(
        json!({"title": "x", "category_id": id.to_string(), "due_date": "2026-12-01T10:00:00"}),
    )
    .unwrap();
    assert!(matches!(t.category, Some(CategoryRef::Id(c)) if c.as_uuid() == id));
    assert!(t.due_date.is_some_and(|d| !d.is_exact()));
}

#[test]
fn patch_tells_absent_from_null() {
    let p = patch(json!({})).unwrap();
    assert_eq!(p, TaskChanges::default());
    let p = patch(json!({"description": null, "due_date": null, "tags": null, "category_id": null, "timezone": null})).unwrap();
    assert_eq!(p.description, Some(None));
    assert_eq!(p.due_date, Some(None));
    assert_eq!(p.tags.map(|t| t.len()), Some(0));
    assert_eq!(p.category, Some(None));
    assert_eq!(p.timezone, Some(None));
    assert_eq!((p.title, p.priority, p.status), (None, None, None));
    let p = patch(json!({"category": null, "category_id": null})).unwrap();
    assert_eq!(p.category, Some(None));
    let p = patch(json!({"category_id": null, "category": "Home"})).unwrap();
    assert!(matches!(p.category, Some(Some(CategoryRef::Name(_)))));
    let p = patch(json!({"completed": false})).unwrap();
    assert_eq!(p.status, Some(Status::Pending));

    for field in ["title", "priority", "status", "completed"] {
        assert_eq!(patch(json!({ field: null })).err(), Some(vec![field.to_owned()]));
    }
    assert_eq!(
        patch(json!({"title": "", "due_date": "nope", "timezone": "Nowhere/Land"})).err(),
        Some(vec!["title".to_owned(), "due_date".to_owned(), "timezone".to_owned()])
    );
    assert_eq!(
        patch(json!({"status": "completed", "completed": false})).err(),
        Some(vec!["completed".to_owned()])
    );
}

#[test]
fn category_signup_and_token_bodies() {
    let c: CategoryBody =
        serde_json::from_value(json!({"name": " Work ", "color": "#ABCDEF"})).unwrap();
    let c = NewCategory::try_from(c).unwrap();
    assert_eq!((c.name.as_str(), c.color.as_str()), ("Work", "#abcdef"));
    let c: CategoryBody = serde_json::from_value(json!({"name": "Work"})).unwrap();
    assert_eq!(NewCategory::try_from(c).unwrap().color.as_str(), "#3b82f6");
    let c: CategoryBody = serde_json::from_value(json!({"color": "red"})).unwrap();
    let fields: Vec<String> =
        NewCategory::try_from(c).unwrap_err().0.into_iter().map(|f| f.field).collect();
    assert_eq!(fields, ["name", "color"]);
    let p: CategoryPatchBody = serde_json::from_value(json!({"name": null})).unwrap();
    assert_eq!(CategoryPatch::try_from(p).unwrap_err().0[0].code, "not_nullable");

    for (body, fields) in [
        (json!({}), vec!["email", "password"]),
        (json!({"email": "x", "password": "short"}), vec!["email", "password"]),
        (
            json!({"email": "a@example.com", "password": "long enough", "name": "", "timezone": "Mars/Base"}),
            vec!["name", "timezone"],
        ),
    ] {
        let b: SignupBody = serde_json::from_value(body.clone()).unwrap();
        let got: Vec<String> =
            docket_app::Signup::try_from(b).unwrap_err().0.into_iter().map(|f| f.field).collect();
        assert_eq!(got, fields, "{body}");
    }
    let b: SignupBody =
        serde_json::from_value(json!({"email": "A@Example.com", "password": "long enough"}))
            .unwrap();
    assert_eq!(docket_app::Signup::try_from(b).unwrap().email.as_str(), "a@example.com");
}

fn json_error(text: &str) -> (u16, Vec<String>) {
    match parse_json::<TaskBody>(text.as_bytes()) {
        Ok(_) => (200, vec![]),
        Err(ApiError::BadRequest(_)) => (400, vec![]),
        Err(ApiError::App(docket_app::AppError::Validation(e))) => {
            (422, e.0.into_iter().map(|f| f.field).collect())
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn json_errors_split_into_malformed_and_wrong_shape() {
    assert_eq!(json_error(r#"{"title": "x"}"#).0, 200);
    assert_eq!(json_error(r#"{"title": "#).0, 400);
    assert_eq!(json_error("").0, 400);
    assert_eq!(json_error(r#"{"title": "x"} {}"#).0, 400);
    assert_eq!(json_error(r#"{"title": 5}"#), (422, vec!["title".to_owned()]));
    assert_eq!(json_error(r#"{"title": "x", "tags": [1]}"#), (422, vec!["tags[0]".to_owned()]));
    assert_eq!(json_error(r#""text""#), (422, vec!["body".to_owned()]));
    assert_eq!(
        parse_json::<LoginBody>(br#"{"email": "a@b.io"}"#).err().map(|e| e.to_string()),
        Some("invalid input: password: password is required".to_owned())
    );
}

#[test]
fn tasks_serialise_with_utc_instants_and_the_status_mirror() {
    let now = docket_core::Timestamp::from_second(1_800_000_000).unwrap();
    let mut t = docket_core::NewTask::new(docket_core::Title::parse("x").unwrap()).into_task(
        docket_ports::ids::new_id(),
        docket_ports::ids::new_id(),
        None,
        now,
    );
    t.status = Status::Completed;
    t.completed_at = Some(now);
    let v = serde_json::to_value(TaskDto::from(&t)).unwrap();
    assert_eq!(v["completed"], true);
    assert_eq!(v["completed_at"], "2027-01-15T08:00:00Z");
    assert_eq!(v["created_at"], v["completed_at"]);
    assert!(v["category"].is_null() && v["due_date"].is_null());
    assert_eq!(v["tags"], json!([]));
}
