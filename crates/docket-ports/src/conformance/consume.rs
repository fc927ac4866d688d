//! The conformance suite of the consumer port ([`ConsumerStore`], `consume/mod.rs`): one
//! `check_consume_*` function per rule of its contract, stamped per adapter by
//! [`consume_conformance!`](crate::consume_conformance). Each check takes the adapter as both
//! ports: the consumer port it commits through and the [`Store`] it reads the results back
//! with. It does not test what each effect's own table does (the store suite does).

use docket_core::{DeliveryChannel, Task, TaskId, User};
use docket_events::{CloudEvent, types};

use super::{HOUR, LEASE, at, at_trigger, audit_entry, notification, task, unique, user, webhook};
use crate::consume::{
    Consumed, ConsumerStore, DeliveryTemplate, Effect, Position, Recipients, ReminderFailure,
};
use crate::{AuditEntry, AuditPage, Store, StoreError};

/// What a stamped consumer-port test holds: the adapter as both ports, and whatever keeps it
/// alive.
pub trait ConsumeFixture {
    fn store(&self) -> &dyn Store;
    fn consumer(&self) -> &dyn ConsumerStore;

    /// Runs after a check passed (a failed check leaves its data behind for inspection).
    fn teardown(self) -> impl std::future::Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

/// Stamps one `#[tokio::test]` per consumer-port check; `$make` yields `Option<F>` with
/// `F: ConsumeFixture` (`None`: skipped).
#[macro_export]
macro_rules! consume_conformance {
    ($make:expr) => {
        $crate::consume_conformance!(@checks $make;
            check_consume_commits_effects_with_the_key,
            check_consume_duplicate_applies_nothing,
            check_consume_commits_the_position,
            check_consume_failing_effect_rolls_back,
            check_consume_undeliverable_records_one_failure,
        );
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $make else { return };
                $crate::conformance::consume::$check(
                    $crate::conformance::consume::ConsumeFixture::store(&fixture),
                    $crate::conformance::consume::ConsumeFixture::consumer(&fixture),
                )
                .await;
                $crate::conformance::consume::ConsumeFixture::teardown(fixture).await;
            }
        )*
    };
}

const TOPIC: &str = "task-events";

/// An audit entry of `user`'s task `task` caused by event `event_id`.
fn entry(user: &User, task: TaskId, event_id: &str, seq: i64) -> AuditEntry {
    AuditEntry { event_id: event_id.to_owned(), ..audit_entry(user, task.as_uuid(), seq) }
}

async fn history(store: &dyn Store, user: &User, task: TaskId) -> AuditPage {
    store.task_history(user.id, task, None, 10).await.expect("task_history")
}

async fn a_task(store: &dyn Store, user: &User) -> Task {
    store.create_task(user.id, task("consumed"), at(0)).await.expect("create_task")
}

fn template(user: &User, event_id: &str, event_type: &str) -> DeliveryTemplate {
    DeliveryTemplate {
        user_id: user.id,
        reminder_id: None,
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        payload: format!(r#"{{"id":"{event_id}"}}"#),
        created_at: at(5),
    }
}

fn published(key: &str) -> CloudEvent {
    CloudEvent {
        specversion: docket_events::SPEC_VERSION.to_owned(),
        id: unique("published"),
        source: "/docket/test".to_owned(),
        ty: "com.todo.test.happened".to_owned(),
        subject: None,
        time: Some(at(5)),
        datacontenttype: Some(docket_events::JSON_CONTENT_TYPE.to_owned()),
        partitionkey: Some(key.to_owned()),
        sequence: None,
        traceparent: None,
        extensions: Default::default(),
        data: Some(serde_json::json!({ "key": key })),
    }
}

/// The effects commit, and the key with them: the audit entry, the notification, one
/// delivery per subscribed webhook and one to the owner's address are all there afterwards,
/// and the event counts as consumed by that consumer only.
pub async fn check_consume_commits_effects_with_the_key(
    store: &dyn Store,
    consumer: &dyn ConsumerStore,
) {
    let u = user(store, "consume-all").await;
    let t = a_task(store, &u).await;
    let hook = webhook(store, u.id, "https://example.com/consumed").await;
    let event_id = unique("evt");
    let e = entry(&u, t.id, &event_id, 1);
    let n = notification(u.id, "consumed", 2);
    let effects = vec![
        Effect::AppendAudit(e.clone()),
        Effect::AddNotification {
            notification: n.clone(),
            source_event: event_id.clone(),
            source: "/docket/test".to_owned(),
        },
        Effect::Deliver {
            to: Recipients::Webhooks { event_type: types::TASK_CREATED.to_owned() },
            delivery: template(&u, &event_id, types::TASK_CREATED),
            if_none: None,
        },
        Effect::Deliver {
            to: Recipients::OwnerEmail,
            delivery: template(&u, &event_id, types::TASK_CREATED),
            if_none: None,
        },
    ];
    assert!(!consumer.consumed("audit", &event_id, at(5)).await.expect("consumed"));
    let got = consumer.commit_consumed("audit", &event_id, None, effects, at(5)).await;
    assert_eq!(got.expect("commit_consumed"), Consumed::Handled);
    assert!(consumer.consumed("audit", &event_id, at(6)).await.expect("consumed"), "key written");
    assert!(
        !consumer.consumed("notifier", &event_id, at(6)).await.expect("consumed"),
        "the key is the consumer's own"
    );
    assert_eq!(history(store, &u, t.id).await.items, vec![e], "the audit entry committed");
    let listed = store.list_notifications(u.id, false, 10).await.expect("list_notifications");
    assert_eq!(listed, vec![n], "the notification committed");
    let to_hook = store.list_deliveries(u.id, hook.id, 10).await.expect("list_deliveries");
    assert_eq!(
        to_hook.iter().map(|d| (d.event_id.as_str(), d.target.as_str())).collect::<Vec<_>>(),
        vec![(event_id.as_str(), hook.url.as_str())],
        "one delivery to the subscribed webhook"
    );
    let claimed = store.claim_deliveries(at(10), LEASE, 10).await.expect("claim_deliveries");
    let email = u.email.as_ref().expect("test users have an email").as_str();
    let emails: Vec<_> = claimed
        .iter()
        .filter(|c| c.delivery.channel == DeliveryChannel::Email)
        .map(|c| (c.delivery.event_id.as_str(), c.delivery.target.as_str()))
        .collect();
    assert_eq!(emails, vec![(event_id.as_str(), email)], "one email to the owner's address");
}

/// A second commit under an existing key applies nothing (effects, position) and says
/// `Duplicate`; another consumer's commit of the same event is its own.
pub async fn check_consume_duplicate_applies_nothing(
    store: &dyn Store,
    consumer: &dyn ConsumerStore,
) {
    let u = user(store, "consume-dup").await;
    let t = a_task(store, &u).await;
    let event_id = unique("evt");
    let first = entry(&u, t.id, &event_id, 1);
    let got = consumer
        .commit_consumed("audit", &event_id, None, vec![Effect::AppendAudit(first.clone())], at(1))
        .await;
    assert_eq!(got.expect("first commit"), Consumed::Handled);
    let other = entry(&u, t.id, &unique("other"), 2);
    let again = vec![
        Effect::AppendAudit(other.clone()),
        Effect::AddNotification {
            notification: notification(u.id, "twice", 2),
            source_event: event_id.clone(),
            source: "/docket/test".to_owned(),
        },
    ];
    let position = Some(Position { topic: TOPIC.to_owned(), seq: 9 });
    let got = consumer.commit_consumed("audit", &event_id, position, again, at(2)).await;
    assert_eq!(got.expect("second commit"), Consumed::Duplicate);
    assert_eq!(history(store, &u, t.id).await.items, vec![first.clone()], "no second entry");
    assert!(
        store.list_notifications(u.id, false, 10).await.expect("list").is_empty(),
        "no notification from a duplicate"
    );
    assert_eq!(
        store.consumer_position("audit", TOPIC).await.expect("consumer_position"),
        0,
        "a duplicate commits no position"
    );
    let got = consumer
        .commit_consumed("replay", &event_id, None, vec![Effect::AppendAudit(other.clone())], at(3))
        .await;
    assert_eq!(got.expect("another consumer"), Consumed::Handled);
    assert_eq!(history(store, &u, t.id).await.items, vec![first, other]);
}

/// With a position, the consumer group's position in the topic commits with the effects,
/// never moving back; without one it is left alone.
pub async fn check_consume_commits_the_position(store: &dyn Store, consumer: &dyn ConsumerStore) {
    let position = |seq| Some(Position { topic: TOPIC.to_owned(), seq });
    let commit = |p: Option<Position>| async move {
        consumer.commit_consumed("webhooks", &unique("evt"), p, Vec::new(), at(1)).await
    };
    assert_eq!(commit(position(5)).await.expect("commit"), Consumed::Handled);
    assert_eq!(store.consumer_position("webhooks", TOPIC).await.expect("position"), 5);
    assert_eq!(
        store.consumer_position("audit", TOPIC).await.expect("position"),
        0,
        "another group's position is untouched"
    );
    commit(position(3)).await.expect("commit");
    assert_eq!(
        store.consumer_position("webhooks", TOPIC).await.expect("position"),
        5,
        "the position never moves back"
    );
    commit(None).await.expect("commit");
    assert_eq!(store.consumer_position("webhooks", TOPIC).await.expect("position"), 5);
    commit(position(8)).await.expect("commit");
    assert_eq!(store.consumer_position("webhooks", TOPIC).await.expect("position"), 8);
}

/// An effect that fails rolls back the whole commit: the effects before it, the key and the
/// position; the event can then be committed again.
pub async fn check_consume_failing_effect_rolls_back(
    store: &dyn Store,
    consumer: &dyn ConsumerStore,
) {
    let u = user(store, "consume-fail").await;
    let t = a_task(store, &u).await;
    let event_id = unique("evt");
    let e = entry(&u, t.id, &event_id, 1);
    let twice = published(&unique("key"));
    let effects = vec![
        Effect::AppendAudit(e.clone()),
        Effect::Publish { topic: "consume-test".to_owned(), event: twice.clone() },
        // The same event id again: the log refuses it.
        Effect::Publish { topic: "consume-test".to_owned(), event: twice },
    ];
    let position = Some(Position { topic: TOPIC.to_owned(), seq: 7 });
    let got = consumer.commit_consumed("audit", &event_id, position.clone(), effects, at(1)).await;
    assert!(matches!(got, Err(StoreError::Conflict(_))), "the failing effect's error: {got:?}");
    assert!(history(store, &u, t.id).await.items.is_empty(), "the entry before it rolled back");
    assert!(
        !consumer.consumed("audit", &event_id, at(2)).await.expect("consumed"),
        "the key rolled back"
    );
    assert_eq!(
        store.consumer_position("audit", TOPIC).await.expect("position"),
        0,
        "the position rolled back"
    );
    let got = consumer
        .commit_consumed("audit", &event_id, position, vec![Effect::AppendAudit(e.clone())], at(3))
        .await;
    assert_eq!(got.expect("commit after the failure"), Consumed::Handled);
    assert_eq!(history(store, &u, t.id).await.items, vec![e]);
    assert_eq!(store.consumer_position("audit", TOPIC).await.expect("position"), 7);
}

/// A delivery with nobody to go to records its `if_none` failure instead; failures of one
/// commit for the same reminder count one attempt, with the last error. A delivery that
/// finds its recipients records nothing.
pub async fn check_consume_undeliverable_records_one_failure(
    store: &dyn Store,
    consumer: &dyn ConsumerStore,
) {
    let u = user(store, "consume-undeliverable").await;
    let t = a_task(store, &u).await;
    let r = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(1)).await;
    let r = r.expect("create_reminder");
    let failure =
        |error: &str| ReminderFailure { reminder: r.id, error: error.to_owned(), give_up: true };
    let event_id = unique("evt");
    let reminder_template = DeliveryTemplate {
        reminder_id: Some(r.id),
        ..template(&u, &event_id, types::REMINDER_TRIGGERED)
    };
    let effects = vec![
        Effect::Deliver {
            to: Recipients::OwnerEmail,
            delivery: reminder_template.clone(),
            if_none: Some(failure("no email")),
        },
        Effect::RecordReminderFailure(failure("first")),
        Effect::Deliver {
            to: Recipients::Webhooks { event_type: types::REMINDER_TRIGGERED.to_owned() },
            delivery: reminder_template,
            if_none: Some(failure("no webhook")),
        },
    ];
    let got = consumer.commit_consumed("notifier", &event_id, None, effects, at(2)).await;
    assert_eq!(got.expect("commit_consumed"), Consumed::Handled);
    let after = store.get_reminder(u.id, r.id).await.expect("get_reminder");
    assert_eq!(
        (after.attempts, after.last_error.as_deref()),
        (r.attempts + 1, Some("no webhook")),
        "one failed attempt, the last error"
    );
    let claimed = store.claim_deliveries(at(10), LEASE, 10).await.expect("claim_deliveries");
    assert_eq!(
        claimed.iter().map(|c| c.delivery.channel).collect::<Vec<_>>(),
        vec![DeliveryChannel::Email],
        "the email found its recipient"
    );
}
