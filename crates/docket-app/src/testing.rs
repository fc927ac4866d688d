//! Test support for this crate and the HTTP edge (feature `test-support`): [`FaultyStore`],
//! a real store (the tests use a `SqliteStore` in a temporary directory of its own) behind
//! switches that make calls fail as `Unavailable` or make `ping` panic, for the "database
//! down" cases. Every rule the tests check is the real adapter's: this module re-implements
//! none, and is no adapter (never use it to serve).
//!
//! Each `Store` method is delegated by one line of `faulty_delegation!`: a method added to the
//! trait is one more line there, a new port trait one more `impl Port { … }` block in it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use docket_core::{
    Category, CategoryId, CategoryPatch, Delivery, DeliveryId, DeliveryOutcome, NewCategory,
    NewDelivery, NewReminder, NewSeries, NewTask, NewUser, NewWebhook, Notification,
    NotificationId, Page, Reminder, ReminderId, Series, SeriesId, Task, TaskId, TaskPatch,
    TaskQuery, Timestamp, TokenId, User, UserId, Webhook, WebhookId, WebhookPatch,
};
use docket_events::CloudEvent;
use docket_ports::webhooks::ClaimedDelivery;
use docket_ports::{AuditEntry, AuditPage, Store, StoreError, TagCount, TokenInfo, UserRecord};

/// A store whose calls fail on demand, in front of a real one (`S`).
///
/// `set_down(true)` makes every call fail as `Unavailable` (the database is unreachable);
/// `fail(call, true)` makes only the named method fail; `set_panicking(true)` makes `ping`
/// panic, to test that a panic never reaches a client as such. With no switch on it is the
/// inner store exactly: same rows, same errors, same backend name.
pub struct FaultyStore<S> {
    inner: S,
    down: AtomicBool,
    panicking: AtomicBool,
    failing: Mutex<HashSet<&'static str>>,
    /// What must outlive `inner` (e.g. the temporary directory of its file), dropped after
    /// it (fields drop in declaration order).
    _guard: Option<Box<dyn Send + Sync>>,
}

/// Why a call failed: a test switched it off. Never shown to a client (only logged).
#[derive(Debug, thiserror::Error)]
#[error("the store was switched off by the test ({call})")]
struct SwitchedOff {
    call: &'static str,
}

/// A fresh SQLite store in a temporary directory that lives as long as the returned value;
/// migrations applied, nothing else in it. For this crate's own tests.
#[cfg(test)]
pub(crate) async fn sqlite() -> FaultyStore<docket_sqlite::SqliteStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docket.db");
    let store = docket_sqlite::SqliteStore::open(path.to_str().expect("a utf-8 temporary path"))
        .await
        .expect("a fresh SQLite store opens");
    FaultyStore::new(store).holding(dir)
}

/// Creates the user `{name}@example.com` (display name `name`) in `store` at `now`.
pub async fn user(store: &dyn Store, name: &str, now: Timestamp) -> User {
    let email = docket_core::Email::parse(&format!("{name}@example.com")).expect("a test email");
    let name = docket_core::DisplayName::parse(name).expect("a test display name");
    store.create_user(NewUser::with_email(email, name), now).await.expect("create the test user")
}

impl<S> FaultyStore<S> {
    /// Wraps `inner` with every switch off.
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            panicking: AtomicBool::new(false),
            failing: Mutex::new(HashSet::new()),
            _guard: None,
        }
    }

    /// Keeps `guard` alive until after the inner store is dropped (e.g. the temporary
    /// directory its file lives in).
    pub fn holding(mut self, guard: impl Send + Sync + 'static) -> FaultyStore<S> {
        self._guard = Some(Box::new(guard));
        self
    }

    /// The real store behind the switches (for what only it offers, e.g. raw reads).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes every call fail as `Unavailable` while `down` is true.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes `ping` panic while `on` is true.
    pub fn set_panicking(&self, on: bool) {
        self.panicking.store(on, Ordering::SeqCst);
    }

    /// Makes the method named `call` (e.g. `"create_task"`) fail as `Unavailable` while `on`
    /// is true. Panics on a name that is no delegated method, so a typo cannot make a test
    /// that never fails.
    pub fn fail(&self, call: &'static str, on: bool) {
        assert!(CALLS.contains(&call), "'{call}' is not a method FaultyStore delegates");
        let mut failing = self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            failing.insert(call);
        } else {
            failing.remove(call);
        }
    }

    /// What the switches say about `call`: `Err` when it must fail.
    fn check(&self, backend: &'static str, call: &'static str) -> Result<(), StoreError> {
        if call == "ping" {
            assert!(!self.panicking.load(Ordering::SeqCst), "the store was told to panic");
        }
        let failing =
            self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(call);
        if failing || self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(backend, SwitchedOff { call }));
        }
        Ok(())
    }
}

/// Implements each `$port` for `FaultyStore<S>` over any `S: $port`: each listed `async fn`
/// consults the switches, then calls the inner store with the same arguments; each plain
/// `fn` is delegated as is. Also lists every delegated `async fn` name in `CALLS`.
macro_rules! faulty_delegation {
    ($(
        impl $port:ident {
            $(fn $sync:ident(&self) -> $sync_ret:ty;)*
            $(async fn $call:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*
        }
    )+) => {
        const CALLS: &[&str] = &[$($(stringify!($call),)*)+];

        $(
            #[async_trait]
            impl<S: $port> $port for FaultyStore<S> {
                $(fn $sync(&self) -> $sync_ret {
                    self.inner.$sync()
                })*
                $(async fn $call(&self $(, $arg: $ty)*) -> $ret {
                    self.check(self.inner.backend(), stringify!($call))?;
                    self.inner.$call($($arg),*).await
                })*
            }
        )+
    };
}

faulty_delegation! {
    impl Store {
        fn backend(&self) -> &'static str;
        async fn ping(&self) -> Result<(), StoreError>;
        async fn create_user(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError>;
        async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
        async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
        async fn user_for_subject(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError>;
        async fn create_token(&self, info: TokenInfo, token_hash: String) -> Result<(), StoreError>;
        async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError>;
        async fn delete_token(&self, user: UserId, id: TokenId) -> Result<(), StoreError>;
        async fn user_by_token_hash(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>, StoreError>;
        async fn create_task(&self, user: UserId, new: NewTask, now: Timestamp) -> Result<Task, StoreError>;
        async fn get_task(&self, user: UserId, id: TaskId) -> Result<Task, StoreError>;
        async fn update_task(&self, user: UserId, id: TaskId, patch: TaskPatch, expected_version: Option<i64>, now: Timestamp) -> Result<Task, StoreError>;
        async fn delete_task(&self, user: UserId, id: TaskId, expected_version: Option<i64>, now: Timestamp) -> Result<Task, StoreError>;
        async fn list_tasks(&self, user: UserId, query: &TaskQuery, now: Timestamp) -> Result<Page<Task>, StoreError>;
        async fn list_tags(&self, user: UserId) -> Result<Vec<TagCount>, StoreError>;
        async fn create_category(&self, user: UserId, new: NewCategory, now: Timestamp) -> Result<Category, StoreError>;
        async fn list_categories(&self, user: UserId) -> Result<Vec<Category>, StoreError>;
        async fn get_category(&self, user: UserId, id: CategoryId) -> Result<Category, StoreError>;
        async fn update_category(&self, user: UserId, id: CategoryId, patch: CategoryPatch) -> Result<Category, StoreError>;
        async fn delete_category(&self, user: UserId, id: CategoryId, now: Timestamp) -> Result<(), StoreError>;
        async fn read_outbox(&self, after_seq: i64, topic: &str, limit: usize) -> Result<Vec<(i64, CloudEvent)>, StoreError>;
        async fn outbox_head(&self, topic: &str) -> Result<i64, StoreError>;
        async fn outbox_tail(&self, topic: &str) -> Result<i64, StoreError>;
        async fn prune_outbox(&self, older_than: Timestamp, limit: u32) -> Result<u64, StoreError>;
        async fn save_consumer_position(&self, group: &str, topic: &str, position: i64, now: Timestamp) -> Result<(), StoreError>;
        async fn consumer_position(&self, group: &str, topic: &str) -> Result<i64, StoreError>;
        async fn read_outbox_for(&self, topic: &str, key: &str, after_seq: i64, until: i64, limit: usize) -> Result<Vec<(i64, CloudEvent)>, StoreError>;
        async fn create_reminder(&self, user: UserId, task: TaskId, new: NewReminder, now: Timestamp) -> Result<Reminder, StoreError>;
        async fn list_reminders(&self, user: UserId, task: TaskId) -> Result<Vec<Reminder>, StoreError>;
        async fn get_reminder(&self, user: UserId, id: ReminderId) -> Result<Reminder, StoreError>;
        async fn delete_reminder(&self, user: UserId, task: TaskId, id: ReminderId) -> Result<(), StoreError>;
        async fn fire_due_reminders(&self, now: Timestamp, limit: usize) -> Result<Vec<Reminder>, StoreError>;
        async fn next_reminder_at(&self) -> Result<Option<Timestamp>, StoreError>;
        async fn retry_reminder(&self, user: UserId, id: ReminderId, now: Timestamp) -> Result<Reminder, StoreError>;
        async fn upcoming_reminders(&self, until: Timestamp, limit: usize) -> Result<Vec<(ReminderId, Timestamp)>, StoreError>;
        async fn append_notification(&self, n: Notification, source_event: String) -> Result<bool, StoreError>;
        async fn list_notifications(&self, user: UserId, unread_only: bool, limit: usize) -> Result<Vec<Notification>, StoreError>;
        async fn mark_notification_read(&self, user: UserId, id: NotificationId, now: Timestamp) -> Result<Notification, StoreError>;
        async fn mark_all_notifications_read(&self, user: UserId, now: Timestamp) -> Result<u64, StoreError>;
        async fn append_audit(&self, entry: AuditEntry) -> Result<bool, StoreError>;
        async fn task_history(&self, user: UserId, task: TaskId, after: Option<i64>, limit: usize) -> Result<AuditPage, StoreError>;
        async fn activity(&self, user: UserId, after: Option<i64>, limit: usize) -> Result<AuditPage, StoreError>;
        async fn create_recurring_task(&self, user: UserId, new: NewTask, series: NewSeries, now: Timestamp) -> Result<Task, StoreError>;
        async fn list_series(&self, user: UserId) -> Result<Vec<Series>, StoreError>;
        async fn get_series(&self, user: UserId, id: SeriesId) -> Result<Series, StoreError>;
        async fn set_series_active(&self, user: UserId, id: SeriesId, active: bool, now: Timestamp) -> Result<Series, StoreError>;
        async fn delete_series(&self, user: UserId, id: SeriesId, now: Timestamp) -> Result<(), StoreError>;
        async fn spawn_due_instances(&self, now: Timestamp, limit: usize) -> Result<Vec<Task>, StoreError>;
        async fn next_series_at(&self) -> Result<Option<Timestamp>, StoreError>;
        async fn upcoming_series(&self, until: Timestamp, limit: usize) -> Result<Vec<(SeriesId, Timestamp)>, StoreError>;
        async fn create_webhook(&self, user: UserId, new: NewWebhook, now: Timestamp) -> Result<Webhook, StoreError>;
        async fn list_webhooks(&self, user: UserId) -> Result<Vec<Webhook>, StoreError>;
        async fn get_webhook(&self, user: UserId, id: WebhookId) -> Result<Webhook, StoreError>;
        async fn update_webhook(&self, user: UserId, id: WebhookId, patch: WebhookPatch, now: Timestamp) -> Result<Webhook, StoreError>;
        async fn delete_webhook(&self, user: UserId, id: WebhookId) -> Result<(), StoreError>;
        async fn webhook_secrets(&self, after: Option<WebhookId>, limit: usize) -> Result<Vec<(WebhookId, String)>, StoreError>;
        async fn replace_webhook_secret(&self, id: WebhookId, old: String, new: String) -> Result<bool, StoreError>;
        async fn list_deliveries(&self, user: UserId, webhook: WebhookId, limit: usize) -> Result<Vec<Delivery>, StoreError>;
        async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>) -> Result<u64, StoreError>;
        async fn claim_deliveries(&self, now: Timestamp, lease: std::time::Duration, limit: usize) -> Result<Vec<ClaimedDelivery>, StoreError>;
        async fn settle_delivery(&self, id: DeliveryId, outcome: DeliveryOutcome, now: Timestamp) -> Result<bool, StoreError>;
        async fn retry_delivery(&self, user: UserId, webhook: WebhookId, id: DeliveryId, now: Timestamp) -> Result<Delivery, StoreError>;
        async fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError>;
    }
}

#[cfg(test)]
mod tests {
    use docket_core::{DisplayName, Email, Title};

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("instant")
    }

    async fn user(store: &dyn Store) -> Result<User, StoreError> {
        let email = Email::parse("faulty@example.com").expect("email");
        let new = NewUser::with_email(email, DisplayName::parse("faulty").expect("name"));
        store.create_user(new, now()).await
    }

    fn unavailable<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
        match r {
            Err(StoreError::Unavailable { backend, source }) => format!("{backend}: {source}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn switches_fail_what_they_name_and_nothing_else() {
        let store = crate::testing::sqlite().await;
        assert_eq!(store.backend(), "sqlite");
        store.ping().await.expect("up");

        store.set_down(true);
        assert!(unavailable(store.ping().await).contains("switched off"));
        assert!(unavailable(user(&store).await).starts_with("sqlite: "));
        store.set_down(false);
        let u = user(&store).await.expect("up again, and the failed call wrote nothing");

        store.fail("create_task", true);
        let new = || NewTask::new(Title::parse("t").expect("title"));
        unavailable(store.create_task(u.id, new(), now()).await);
        assert!(store.list_tasks(u.id, &TaskQuery::default(), now()).await.is_ok());
        store.fail("create_task", false);
        let task = store.create_task(u.id, new(), now()).await.expect("healed");
        assert_eq!(store.inner().get_task(u.id, task.id).await.expect("stored").id, task.id);
    }

    #[tokio::test]
    #[should_panic(expected = "told to panic")]
    async fn a_panicking_store_panics_on_ping() {
        let store = crate::testing::sqlite().await;
        store.set_panicking(true);
        let _ = store.ping().await;
    }

    #[test]
    #[should_panic(expected = "not a method")]
    fn an_unknown_call_name_is_refused() {
        FaultyStore::new(()).fail("crate_task", true);
    }
}
