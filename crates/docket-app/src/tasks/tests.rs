//! Tests of the task use cases: where local due dates are resolved, status changes, versions,
//! and that one user cannot reach another's tasks.

use std::sync::Arc;

use docket_core::{Email, Password, Status, Tags, Timestamp, Title, User, Zone};

use super::*;
use crate::{App, AuthConfig, FixedClock, Signup};

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

async fn app() -> App {
    let store = Arc::new(crate::testing::sqlite().await);
    App::new(store, AuthConfig::new("secret-secret-secret-secret-secret"))
        .with_clock(Arc::new(FixedClock::new(now())))
}

async fn user(app: &App, email: &str, zone: Option<&str>) -> User {
    app.signup(Signup {
        email: Email::parse(email).unwrap(),
        password: Password::parse("password1").unwrap(),
        name: None,
        timezone: zone.map(|z| Zone::parse(z).unwrap()),
    })
    .await
    .unwrap()
    .user
}

fn input(title: &str) -> TaskInput {
    TaskInput::new(Title::parse(title).unwrap())
}

fn due(raw: &str) -> Option<InstantInput> {
    Some(InstantInput::parse(raw).unwrap())
}

#[tokio::test]
async fn local_due_dates_use_task_then_user_zone_then_utc() {
    let app = app().await;
    let berlin = user(&app, "b@example.com", Some("Europe/Berlin")).await;
    let plain = user(&app, "u@example.com", None).await;

    // A due date for `user` given as `raw` in the task's zone `zone`: the instant it is and the
    // zone the task keeps.
    let check = async |user: &User, raw: &str, zone: Option<&str>, expect: (&str, &str)| {
        let timezone = zone.map(|z| Zone::parse(z).unwrap());
        let task = TaskInput { due_date: due(raw), timezone, ..input("t") };
        let t = app.create_task(user, task).await.unwrap();
        let got = (t.due_date.unwrap().to_string(), t.timezone.as_ref().map(Zone::name));
        assert_eq!(got, (expect.0.to_owned(), Some(expect.1)), "{raw} in {zone:?}");
    };
    let local = "2026-12-01T10:00:00";
    check(&berlin, local, None, ("2026-12-01T09:00:00Z", "Europe/Berlin")).await;
    check(&berlin, local, Some("Asia/Tokyo"), ("2026-12-01T01:00:00Z", "Asia/Tokyo")).await;
    check(&plain, local, None, ("2026-12-01T10:00:00Z", "UTC")).await;
    // Aware inputs are exact whatever the zone.
    let aware = "2026-12-01T10:00:00+05:00";
    check(&berlin, aware, None, ("2026-12-01T05:00:00Z", "Europe/Berlin")).await;
}

#[tokio::test]
async fn patch_reads_local_due_dates_in_the_tasks_zone() {
    let app = app().await;
    let u = user(&app, "b@example.com", Some("Europe/Berlin")).await;
    let tokyo = Zone::parse("Asia/Tokyo").unwrap();
    let t = app.create_task(&u, TaskInput { timezone: Some(tokyo), ..input("a") }).await.unwrap();
    let changes = TaskChanges { due_date: Some(due("2026-12-01T10:00:00")), ..Default::default() };
    let t = app.update_task(&u, t.id, changes, None).await.unwrap();
    assert_eq!(t.due_date.unwrap().to_string(), "2026-12-01T01:00:00Z");
    // Clearing the zone goes back to the user's, and a due date in the same patch follows it.
    let changes = TaskChanges {
        due_date: Some(due("2026-12-01T10:00:00")),
        timezone: Some(None),
        ..Default::default()
    };
    let t = app.update_task(&u, t.id, changes, None).await.unwrap();
    assert_eq!(t.timezone.as_ref().map(Zone::name), Some("Europe/Berlin"));
    assert_eq!(t.due_date.unwrap().to_string(), "2026-12-01T09:00:00Z");
    let cleared = app
        .update_task(&u, t.id, TaskChanges { due_date: Some(None), ..Default::default() }, None)
        .await
        .unwrap();
    assert_eq!(cleared.due_date, None);
}

#[tokio::test]
async fn complete_reopen_toggle_and_versions() {
    let app = app().await;
    let u = user(&app, "a@example.com", None).await;
    let t = app.create_task(&u, input("a")).await.unwrap();
    assert_eq!(t.version, 1);
    let done = app.complete_task(&u, t.id, Some(1)).await.unwrap();
    assert_eq!((done.task.status, done.task.version, done.next), (Status::Completed, 2, None));
    assert_eq!(done.task.completed_at, Some(now()));
    // Completing again changes nothing and keeps the version.
    assert_eq!(app.complete_task(&u, t.id, None).await.unwrap().task.version, 2);
    let stale = app.reopen_task(&u, t.id, Some(1)).await.unwrap_err();
    assert!(matches!(stale, AppError::PreconditionFailed { current_version: 2 }));
    let open = app.reopen_task(&u, t.id, Some(2)).await.unwrap();
    assert_eq!((open.status, open.completed_at, open.version), (Status::Pending, None, 3));
    let flipped = app.toggle_task(&u, t.id, None).await.unwrap();
    assert_eq!(flipped.task.status, Status::Completed);
    let back = app.toggle_task(&u, t.id, Some(4)).await.unwrap();
    assert_eq!((back.task.status, back.task.version), (Status::Pending, 5));
    assert!(matches!(
        app.toggle_task(&u, t.id, Some(4)).await,
        Err(AppError::PreconditionFailed { current_version: 5 })
    ));
    assert!(matches!(
        app.delete_task(&u, t.id, Some(4)).await,
        Err(AppError::PreconditionFailed { .. })
    ));
    app.delete_task(&u, t.id, Some(5)).await.unwrap();
    assert!(matches!(app.get_task(&u, t.id).await, Err(AppError::NotFound("task"))));
}

#[tokio::test]
async fn replace_resets_what_it_leaves_out() {
    let app = app().await;
    let u = user(&app, "a@example.com", None).await;
    let tags = Tags::parse(&["home"]).unwrap();
    let t = app
        .create_task(&u, TaskInput { tags, due_date: due("2026-12-01"), ..input("a") })
        .await
        .unwrap();
    let t = app.replace_task(&u, t.id, input("b"), None).await.unwrap();
    assert_eq!((t.title.as_str(), t.tags.len(), t.due_date, t.version), ("b", 0, None, 2));
}

#[tokio::test]
async fn another_users_tasks_are_not_found() {
    let app = app().await;
    let a = user(&app, "a@example.com", None).await;
    let b = user(&app, "b@example.com", None).await;
    let t = app.create_task(&a, input("mine")).await.unwrap();
    assert!(matches!(app.get_task(&b, t.id).await, Err(AppError::NotFound("task"))));
    assert!(matches!(app.complete_task(&b, t.id, None).await, Err(AppError::NotFound("task"))));
    assert!(matches!(app.toggle_task(&b, t.id, None).await, Err(AppError::NotFound("task"))));
    assert!(matches!(app.delete_task(&b, t.id, None).await, Err(AppError::NotFound("task"))));
    let local = TaskChanges { due_date: Some(due("2026-12-01T10:00:00")), ..Default::default() };
    assert!(matches!(
        app.update_task(&b, t.id, local, None).await,
        Err(AppError::NotFound("task"))
    ));
    assert!(app.list_tasks(&b, docket_core::TaskQuery::default()).await.unwrap().items.is_empty());
}

#[test]
fn instant_inputs_check_shape_and_know_if_they_are_exact() {
    assert!(InstantInput::parse("2026-12-01T10:00:00Z").unwrap().is_exact());
    assert!(!InstantInput::parse("2026-12-01T10:00:00").unwrap().is_exact());
    assert!(!InstantInput::parse("2026-12-01").unwrap().is_exact());
    assert!(InstantInput::parse("tomorrow").is_err());
}
