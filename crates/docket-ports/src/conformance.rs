//! The conformance suite of the [`Store`] contract: one `check_*` function per rule of the
//! contract in `store.rs`, run against every adapter through [`store_conformance!`].
//!
//! Each check takes a `&dyn Store`, makes its own users (unique emails), and panics with a
//! message naming the rule when the store breaks it. Checks assert exact values (ids, orders,
//! versions, instants), so they can fail. They do not measure speed and do not look at SQL:
//! adapter-specific properties (query plans, group commit) are tested beside each adapter.
//!
//! Adapters stamp the suite into their test binary:
//!
//! ```text
//! mod sqlite {
//!     docket_ports::store_conformance!(crate::fresh_sqlite().await);
//! }
//! ```
//!
//! where the expression evaluates to `Option<impl Fixture>` (`None` = skipped, after printing
//! why). The consuming crate needs `tokio` with the `macros` and `rt-multi-thread` features.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use docket_core::{
    Category, CategoryName, CategoryPatch, CategoryRef, Channel, Channels, Color, Cursor,
    Description, DisplayName, Email, Limit, NewCategory, NewReminder, NewTask, NewUser,
    Notification, Offset, Order, Page, Priority, Reminder, ReminderId, ReminderStatus, SearchText,
    SortField, Status, StatusFilter, Tags, Task, TaskId, TaskPatch, TaskQuery, Timestamp, Title,
    Trigger, User, UserId, Zone,
};
use docket_events::{
    CategoryV1, CloudEvent, TaskDeletedV1, TaskEventDataV1, TaskV1, topics, types,
};
use futures::future::join_all;

use crate::ids::new_id;
use crate::{
    AuditEntry, AuditPage, StateEntry, StateError, StateStore, Store, StoreError, TagCount,
    TokenInfo,
};

pub mod consume;

/// What a stamped test holds for its duration: the store, and whatever keeps it alive
/// (a temporary directory, a database schema).
pub trait Fixture {
    fn store(&self) -> &dyn Store;

    /// Runs after a check passed (a failed check leaves its data behind for inspection).
    fn teardown(self) -> impl std::future::Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

impl Fixture for Box<dyn Store> {
    fn store(&self) -> &dyn Store {
        self.as_ref()
    }
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> &dyn Store {
        self.as_ref()
    }
}

/// Stamps one `#[tokio::test]` per conformance check. `$make` is evaluated inside each test
/// and must yield `Option<F>` with `F: Fixture`; `None` means the adapter is not available
/// here and the test returns (the constructor prints why, or panics under CI).
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@checks $make;
            check_ping,
            check_create_user_and_lookup,
            check_duplicate_email_conflicts,
            check_user_for_subject_provisions_once,
            check_user_for_subject_concurrent,
            check_tokens_create_list_delete,
            check_token_lookup_by_hash_and_expiry,
            check_token_of_other_user_not_deletable,
            check_task_round_trip,
            check_instants_truncated_to_microseconds,
            check_tasks_scoped_by_user,
            check_update_bumps_version_only_on_change,
            check_update_keeps_search_and_tags_in_step,
            check_version_mismatch_changes_nothing,
            check_delete_task,
            check_category_by_name_created_and_reused,
            check_invalid_category_reference,
            check_delete_category_clears_tasks,
            check_categories_crud,
            check_category_names_unique_per_user,
            check_list_filter_status,
            check_list_filter_priorities,
            check_list_filter_tags,
            check_list_filter_category,
            check_list_filter_due_range,
            check_list_filter_overdue,
            check_list_filters_combined,
            check_list_search,
            check_list_search_ranked,
            check_list_sorts,
            check_list_limit,
            check_list_paging_matches_one_page,
            check_list_paging_with_inserts,
            check_list_tags_counts,
            check_outbox_task_writes_append_events,
            check_outbox_noop_and_failed_writes_append_nothing,
            check_outbox_delete_category_updates_tasks,
            check_outbox_partition_keys,
            check_outbox_read_for_key,
            check_outbox_concurrent_readers_miss_nothing,
            check_outbox_prune_deletes_old_rows_every_group_passed,
            check_consumer_positions_read_back_and_never_move_back,
            check_outbox_prune_keeps_rows_a_group_has_not_passed,
            check_outbox_prune_keeps_young_rows,
            check_outbox_prune_ignores_groups_stopped_before_the_cut_off,
            check_outbox_prune_task_updates_group_holds_task_events,
            check_outbox_prune_in_batches,
            check_outbox_reads_after_pruning,
            check_reminders_scoped_to_the_owner,
            check_reminders_follow_due_date_and_status,
            check_reminders_fire_once_with_their_event,
            check_reminders_fire_exactly_once_under_concurrency,
            check_reminders_go_with_their_task,
            check_moved_reminders_fire_at_their_new_time_only,
            check_upcoming_reminders_are_the_pending_ones_earliest_first,
            check_notifications_append_once_with_their_event,
            check_notifications_scoped_newest_first_and_read,
            check_audit_append_idempotent,
            check_audit_scoped_by_user,
            check_audit_paging_without_skips,
            check_series_created_with_first_instance_scoped_pause_resume_delete,
            check_series_fixed_instance_made_once,
            check_series_instances_get_the_relative_reminders,
            check_series_instances_follow_the_preview,
            check_series_delete_detaches_instances,
            check_series_update_makes_recurring_replaces_rule_and_ends,
            check_upcoming_series_are_the_active_fixed_ones_earliest_first,
            check_webhooks_crud_scoped_to_the_owner,
            check_webhook_secrets_listed_and_replaced_conditionally,
            check_deliveries_enqueued_once,
            check_deliveries_claimed_due_first_and_leased,
            check_deliveries_claimed_once_under_concurrency,
            check_deliveries_settled,
            check_deliveries_drive_their_reminder,
            check_failed_reminders_are_retried,
            check_next_delivery_at_is_the_earliest_pending,
        );
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $make else { return };
                $crate::conformance::$check($crate::conformance::Fixture::store(&fixture)).await;
                $crate::conformance::Fixture::teardown(fixture).await;
            }
        )*
    };
}

// --- fixtures and helpers

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18T…Z with a non-zero microsecond part, so precision loss shows.
const BASE: i64 = 1_795_000_000_123_456;

/// The instant `offset` microseconds after the suite's base instant.
fn at(offset: i64) -> Timestamp {
    Timestamp::from_microsecond(BASE + offset).expect("test instants are in range")
}

fn unique(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::now_v7().simple())
}

fn new_user(label: &str) -> NewUser {
    let email = Email::parse(&format!("{}@example.com", unique(label))).expect("valid email");
    NewUser {
        email: Some(email),
        name: DisplayName::parse(label).expect("valid name"),
        timezone: None,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned()),
        external_subject: None,
    }
}

async fn user(store: &dyn Store, label: &str) -> User {
    store.create_user(new_user(label), at(0)).await.expect("create_user")
}

fn title(s: &str) -> Title {
    Title::parse(s).expect("valid title")
}

fn tags(names: &[&str]) -> Tags {
    Tags::parse(names).expect("valid tags")
}

fn cat_name(s: &str) -> CategoryName {
    CategoryName::parse(s).expect("valid category name")
}

fn zone(s: &str) -> Zone {
    Zone::parse(s).expect("valid zone")
}

fn task(t: &str) -> NewTask {
    NewTask::new(title(t))
}

fn search(s: &str) -> SearchText {
    SearchText::parse(s).expect("valid search text")
}

/// A query over everything, newest first, one big page.
fn all() -> TaskQuery {
    TaskQuery { limit: Limit::new(Limit::MAX), ..TaskQuery::default() }
}

fn sorted(sort: SortField, order: Order) -> TaskQuery {
    TaskQuery { sort, order, ..all() }
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

#[track_caller]
fn expect_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) -> String {
    match r {
        Err(StoreError::Conflict(msg)) => msg,
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn expect_invalid_category<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::InvalidReference { field: "category_id", .. }) => {}
        other => {
            panic!("{what}: expected InvalidReference {{ field: \"category_id\" }}, got {other:?}")
        }
    }
}

#[track_caller]
fn expect_mismatch<T: std::fmt::Debug>(r: Result<T, StoreError>, current: i64, what: &str) {
    match r {
        Err(StoreError::VersionMismatch { current: c }) if c == current => {}
        other => panic!("{what}: expected VersionMismatch {{ current: {current} }}, got {other:?}"),
    }
}

/// Pages through `q` with `next_cursor` (sent through its text form, as a client would) and
/// returns every item, checking the page-size rules on the way.
async fn list_all(store: &dyn Store, user: UserId, mut q: TaskQuery, now: Timestamp) -> Vec<Task> {
    let limit = q.limit.get() as usize;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Page { items, next_cursor } =
            store.list_tasks(user, &q, now).await.expect("list_tasks");
        assert!(
            items.len() <= limit,
            "a page holds at most `limit` items ({} > {limit})",
            items.len()
        );
        out.extend(items.iter().cloned());
        match next_cursor {
            None => return out,
            Some(c) => {
                assert_eq!(items.len(), limit, "a page with a next_cursor must be full");
                q.cursor = Some(
                    Cursor::decode(&c.encode())
                        .expect("a cursor round-trips through its text form"),
                );
            }
        }
    }
    panic!("paging did not end after 10000 pages: the cursor does not advance")
}

/// `a` before `b` in the contract's order for `sort`/`order`: `(key, id)` in the query's
/// order, undated tasks after every dated one in both orders.
fn contract_order(a: &Task, b: &Task, sort: SortField, order: Order) -> Ordering {
    let key = match sort {
        SortField::DueDate => match (a.due_date, b.due_date) {
            (Some(x), Some(y)) => x.cmp(&y),
            (None, None) => Ordering::Equal,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
        },
        SortField::Priority => a.priority.rank().cmp(&b.priority.rank()),
        SortField::Title => a.title.sort_key().cmp(&b.title.sort_key()),
        SortField::CreatedAt => a.created_at.cmp(&b.created_at),
        SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortField::Rank => Ordering::Equal,
    };
    let both = key.then(a.id.cmp(&b.id));
    match order {
        Order::Asc => both,
        Order::Desc => both.reverse(),
    }
}

/// The ids of `tasks` matching `keep`, in the contract's order.
fn expected(
    tasks: &[Task],
    sort: SortField,
    order: Order,
    keep: impl Fn(&Task) -> bool,
) -> Vec<TaskId> {
    let mut v: Vec<&Task> = tasks.iter().filter(|t| keep(t)).collect();
    v.sort_by(|a, b| contract_order(a, b, sort, order));
    v.into_iter().map(|t| t.id).collect()
}

const SORTS: [SortField; 5] = [
    SortField::DueDate,
    SortField::Priority,
    SortField::Title,
    SortField::CreatedAt,
    SortField::UpdatedAt,
];

const SEED_TITLES: [&str; 9] = [
    "Alpha report",
    "beta review",
    "Gamma call",
    "alpha Report",
    "Écrire la lettre",
    "zeta",
    "Milk run",
    "milk Run",
    "Delta",
];

const SEED_SIZE: usize = 120;

/// The due date of seed task `i`: undated every sixth, else one of 40 days (many ties; task
/// 70 falls exactly on day 10, a filter boundary).
fn seed_due(i: usize) -> Option<Timestamp> {
    if i.is_multiple_of(6) { None } else { Some(at((i as i64 * 7 % 40) * DAY)) }
}

/// Creates `SEED_SIZE` varied tasks for `user` (and a few look-alikes for another user, which
/// no list of `user` may show), then updates some; returns `user`'s tasks as stored.
async fn seed(store: &dyn Store, user: UserId) -> Vec<Task> {
    let other = self::user(store, "other").await;
    let creates = (0..SEED_SIZE).map(|i| {
        let mut t = task(SEED_TITLES[i % SEED_TITLES.len()]);
        t.description = if i % 4 == 0 {
            Description::parse(&format!("notes about item {i}")).expect("valid")
        } else {
            None
        };
        t.priority = Priority::ALL[(i / 2) % 4];
        t.tags = match i % 5 {
            0 => tags(&[]),
            1 => tags(&["home"]),
            2 => tags(&["work"]),
            3 => tags(&["home", "work"]),
            _ => tags(&["shop", "work"]),
        };
        t.category = match i % 7 {
            0 | 1 => Some(CategoryRef::Name(cat_name("Work"))),
            2 => Some(CategoryRef::Name(cat_name("Home"))),
            _ => None,
        };
        t.due_date = seed_due(i);
        t.status = if i % 3 == 0 { Status::Completed } else { Status::Pending };
        t.timezone = (i % 8 == 0).then(|| zone("Europe/Berlin"));
        // Three tasks per instant: created_at ties are broken by id.
        store.create_task(user, t, at((i / 3) as i64 * MIN))
    });
    let mut tasks: Vec<Task> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create_task while seeding"))
        .collect();
    let others = (0..6).map(|i| {
        let mut t = task(SEED_TITLES[i]);
        t.tags = tags(&["home", "work"]);
        t.due_date = seed_due(i + 1);
        t.category = Some(CategoryRef::Name(cat_name("Work")));
        store.create_task(other.id, t, at(i as i64 * MIN))
    });
    for r in join_all(others).await {
        r.expect("create_task for the other user");
    }
    // Updates scramble updated_at against created_at.
    let updates = tasks.iter().enumerate().filter(|(i, _)| i % 5 == 0).map(|(i, t)| {
        let patch = TaskPatch {
            description: Some(Description::parse(&format!("updated {i}")).expect("valid")),
            ..TaskPatch::default()
        };
        store.update_task(user, t.id, patch, None, at(50 * DAY - i as i64 * MIN))
    });
    for updated in join_all(updates).await {
        let updated = updated.expect("update_task while seeding");
        let slot = tasks.iter_mut().find(|t| t.id == updated.id).expect("updated a seeded task");
        *slot = updated;
    }
    tasks
}

/// Lists with `q` (all pages) and compares with the seeded tasks that `keep` selects, in the
/// contract's order for `q`'s sort.
async fn check_filter(
    store: &dyn Store,
    user: UserId,
    seeded: &[Task],
    q: TaskQuery,
    now: Timestamp,
    keep: impl Fn(&Task) -> bool,
    what: &str,
) {
    let (sort, order) = (q.sort, q.order);
    let got = list_all(store, user, q, now).await;
    let want = expected(seeded, sort, order, keep);
    assert_eq!(ids(&got), want, "{what}: wrong tasks or order");
    for t in &got {
        let seeded = seeded.iter().find(|s| s.id == t.id).expect("listed task was seeded");
        assert_eq!(t, seeded, "{what}: a listed task differs from the stored one");
    }
}

// --- ping, users

/// `ping` answers on a working store.
pub async fn check_ping(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert!(!store.backend().is_empty(), "backend() names the backend");
}

/// A created user reads back equal by id and by email (case-insensitively), with its hash.
pub async fn check_create_user_and_lookup(store: &dyn Store) {
    let local = unique("Ada.Lovelace");
    let email = Email::parse(&format!("{local}@Example.COM")).expect("valid email");
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2g$MTIzNDU2Nzg5MA".to_owned();
    let new = NewUser {
        email: Some(email.clone()),
        name: DisplayName::parse("Ada Lovelace").expect("valid"),
        timezone: Some(zone("Europe/Berlin")),
        password_hash: Some(hash.clone()),
        external_subject: None,
    };
    let now = at(5 * SEC + 7);
    let u = store.create_user(new, now).await.expect("create_user");
    assert_eq!(u.email.as_ref(), Some(&email));
    assert_eq!(u.name.as_str(), "Ada Lovelace");
    assert_eq!(u.timezone, Some(zone("Europe/Berlin")));
    assert_eq!(u.external_subject, None);
    assert_eq!(u.created_at, now);

    assert_eq!(store.user_by_id(u.id).await.expect("user_by_id"), Some(u.clone()));
    assert_eq!(store.user_by_id(new_id()).await.expect("user_by_id"), None, "unknown id");

    let shouted = format!("  {}@EXAMPLE.com ", local.to_uppercase());
    let rec = store
        .user_by_email(&shouted)
        .await
        .expect("user_by_email")
        .expect("found case-insensitively");
    assert_eq!(rec.user, u);
    assert_eq!(rec.password_hash, Some(hash));
    assert!(store.user_by_email("nobody@example.com").await.expect("user_by_email").is_none());

    let external = NewUser { password_hash: None, email: None, ..new_user("ext") };
    let e = store.create_user(external, now).await.expect("create_user without email or password");
    let back = store.user_by_id(e.id).await.expect("user_by_id").expect("found");
    assert_eq!(back, e);
    assert_eq!(back.email, None);
}

/// A second account with the same email is a `Conflict` naming the email; the first stays.
pub async fn check_duplicate_email_conflicts(store: &dyn Store) {
    let first = store.create_user(new_user("first"), at(0)).await.expect("create_user");
    let email = first.email.clone().expect("has email");
    let dup = NewUser { email: Some(email.clone()), ..new_user("second") };
    let msg = expect_conflict(store.create_user(dup, at(SEC)).await, "duplicate email");
    assert!(msg.contains(email.as_str()), "the conflict names the email: {msg:?}");
    let rec =
        store.user_by_email(email.as_str()).await.expect("user_by_email").expect("still there");
    assert_eq!(rec.user, first);
}

fn subject_user(subject: &str, name: &str) -> NewUser {
    NewUser {
        email: None,
        name: DisplayName::parse(name).expect("valid"),
        timezone: Some(zone("America/New_York")),
        password_hash: None,
        external_subject: Some(subject.to_owned()),
    }
}

/// `user_for_subject` creates the user on first sight and returns the same one afterwards.
pub async fn check_user_for_subject_provisions_once(store: &dyn Store) {
    let subject = unique("auth0|sub");
    let first =
        store.user_for_subject(subject_user(&subject, "First"), at(0)).await.expect("provision");
    assert_eq!(first.external_subject.as_deref(), Some(subject.as_str()));
    assert_eq!(first.name.as_str(), "First");
    assert_eq!(first.timezone, Some(zone("America/New_York")));
    assert_eq!(first.created_at, at(0));
    let again = store
        .user_for_subject(subject_user(&subject, "Renamed"), at(DAY))
        .await
        .expect("provision again");
    assert_eq!(again, first, "a known subject yields the stored user, unchanged");
    assert_eq!(store.user_by_id(first.id).await.expect("user_by_id"), Some(first.clone()));
    let other = store
        .user_for_subject(subject_user(&unique("auth0|sub"), "Other"), at(0))
        .await
        .expect("provision");
    assert_ne!(other.id, first.id, "another subject is another user");
}

/// Concurrent first sightings of one subject yield one user.
pub async fn check_user_for_subject_concurrent(store: &dyn Store) {
    let subject = unique("oidc|concurrent");
    let calls =
        (0..16).map(|i| store.user_for_subject(subject_user(&subject, &format!("n{i}")), at(i)));
    let users: Vec<User> =
        join_all(calls).await.into_iter().map(|r| r.expect("provision")).collect();
    let distinct: HashSet<UserId> = users.iter().map(|u| u.id).collect();
    assert_eq!(
        distinct.len(),
        1,
        "16 concurrent provisions of one subject made {} users",
        distinct.len()
    );
    assert!(users.iter().all(|u| *u == users[0]), "every caller sees the same user");
}

// --- tokens

fn token(user: UserId, name: &str, created: i64, expires: Option<i64>) -> TokenInfo {
    TokenInfo {
        id: new_id(),
        user_id: user,
        name: name.to_owned(),
        prefix: format!("dkt_{}", &uuid::Uuid::now_v7().simple().to_string()[24..]),
        created_at: at(created),
        expires_at: expires.map(at),
    }
}

fn by_id(mut v: Vec<TokenInfo>) -> Vec<TokenInfo> {
    v.sort_by_key(|t| t.id);
    v
}

/// Tokens list back exactly per user and are deleted by their owner.
pub async fn check_tokens_create_list_delete(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let a1 = token(a.id, "laptop", SEC, None);
    let a2 = token(a.id, "ci", 2 * SEC + 1, Some(30 * DAY + 9));
    let b1 = token(b.id, "phone", 3 * SEC, None);
    for (t, h) in [(&a1, "hash-a1"), (&a2, "hash-a2"), (&b1, "hash-b1")] {
        store.create_token(t.clone(), unique(h)).await.expect("create_token");
    }
    assert_eq!(
        by_id(store.list_tokens(a.id).await.expect("list")),
        by_id(vec![a1.clone(), a2.clone()])
    );
    assert_eq!(store.list_tokens(b.id).await.expect("list"), vec![b1.clone()]);
    store.delete_token(a.id, a1.id).await.expect("delete own token");
    assert_eq!(store.list_tokens(a.id).await.expect("list"), vec![a2.clone()]);
    expect_not_found(store.delete_token(a.id, a1.id).await, "deleting a deleted token");
    expect_not_found(store.delete_token(a.id, new_id()).await, "deleting an unknown token");
}

/// A token hash finds its owner while the token is unexpired, and nothing once it is deleted.
pub async fn check_token_lookup_by_hash_and_expiry(store: &dyn Store) {
    let a = user(store, "a").await;
    let forever = token(a.id, "forever", 0, None);
    let short = token(a.id, "short", 0, Some(10 * MIN));
    let (h_forever, h_short) = (unique("hash-forever"), unique("hash-short"));
    store.create_token(forever.clone(), h_forever.clone()).await.expect("create_token");
    store.create_token(short.clone(), h_short.clone()).await.expect("create_token");

    let now = at(5 * MIN);
    assert_eq!(store.user_by_token_hash(&h_forever, now).await.expect("lookup"), Some(a.clone()));
    assert_eq!(
        store.user_by_token_hash(&h_short, now).await.expect("lookup"),
        Some(a.clone()),
        "not yet expired"
    );
    assert_eq!(
        store.user_by_token_hash(&h_short, at(10 * MIN + 1)).await.expect("lookup"),
        None,
        "expired"
    );
    assert_eq!(
        store.user_by_token_hash(&h_forever, at(400 * DAY)).await.expect("lookup"),
        Some(a.clone())
    );
    assert_eq!(store.user_by_token_hash("no-such-hash", now).await.expect("lookup"), None);

    store.delete_token(a.id, forever.id).await.expect("delete_token");
    assert_eq!(store.user_by_token_hash(&h_forever, now).await.expect("lookup"), None, "revoked");
}

/// Another user's token is `NotFound` to delete, and stays usable.
pub async fn check_token_of_other_user_not_deletable(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let t = token(a.id, "mine", 0, None);
    let hash = unique("hash");
    store.create_token(t.clone(), hash.clone()).await.expect("create_token");
    expect_not_found(store.delete_token(b.id, t.id).await, "deleting another user's token");
    assert_eq!(store.list_tokens(a.id).await.expect("list"), vec![t]);
    assert_eq!(store.list_tokens(b.id).await.expect("list"), vec![]);
    assert_eq!(store.user_by_token_hash(&hash, at(0)).await.expect("lookup"), Some(a));
}

// --- tasks

/// A task created with every field reads back exactly, by get and by list.
pub async fn check_task_round_trip(store: &dyn Store) {
    let a = user(store, "a").await;
    let now = at(17);
    let due = at(3 * DAY + 654_321);
    let new = NewTask {
        title: title("Write the quarterly report"),
        description: Description::parse("Numbers for Q4\n\twith a tab and ünïcödé").expect("valid"),
        priority: Priority::Urgent,
        category: Some(CategoryRef::Name(cat_name("Work"))),
        tags: tags(&["Work", "q4"]),
        due_date: Some(due),
        timezone: Some(zone("America/New_York")),
        status: Status::Pending,
    };
    let t = store.create_task(a.id, new.clone(), now).await.expect("create_task");
    assert_eq!(t.user_id, a.id);
    assert_eq!(t.title, new.title);
    assert_eq!(t.description, new.description);
    assert_eq!(t.status, Status::Pending);
    assert_eq!(t.completed_at, None);
    assert_eq!(t.priority, Priority::Urgent);
    let cat = t.category.clone().expect("category set by name");
    assert_eq!(
        (cat.name.as_str(), cat.color.as_str(), cat.user_id, cat.created_at),
        ("Work", "#3b82f6", a.id, now)
    );
    assert_eq!(t.tags, tags(&["work", "q4"]));
    assert_eq!(t.due_date, Some(due));
    assert_eq!(t.timezone, Some(zone("America/New_York")));
    assert_eq!((t.created_at, t.updated_at, t.version), (now, now, 1));
    assert_eq!(
        store.get_task(a.id, t.id).await.expect("get_task"),
        t,
        "get_task returns what create returned"
    );

    let done = NewTask { status: Status::Completed, ..task("Already done") };
    let d = store.create_task(a.id, done, at(20)).await.expect("create_task");
    assert_eq!((d.status, d.completed_at), (Status::Completed, Some(at(20))));
    assert_eq!(
        (d.description.clone(), d.category.clone(), d.due_date, d.timezone.clone()),
        (None, None, None, None)
    );
    assert!(d.tags.is_empty());
    assert_eq!(store.get_task(a.id, d.id).await.expect("get_task"), d);

    let listed = store.list_tasks(a.id, &all(), at(0)).await.expect("list_tasks");
    assert_eq!(listed.items, vec![d, t], "list returns the stored tasks, newest first");
    assert_eq!(listed.next_cursor, None);
}

/// Instants keep microseconds and drop what is finer, and what a write returns is what a
/// read returns.
pub async fn check_instants_truncated_to_microseconds(store: &dyn Store) {
    let a = user(store, "a").await;
    let fine = |micros: i64, nanos: i64| {
        Timestamp::from_nanosecond(i128::from(BASE + micros) * 1000 + i128::from(nanos))
            .expect("in range")
    };
    let mut new = task("precise");
    new.due_date = Some(fine(DAY, 999));
    let t = store.create_task(a.id, new, fine(1, 500)).await.expect("create_task");
    assert_eq!(t.created_at, at(1), "created_at keeps microseconds, drops nanoseconds");
    assert_eq!(t.due_date, Some(at(DAY)));
    assert_eq!(store.get_task(a.id, t.id).await.expect("get_task"), t);
    let patch = TaskPatch { due_date: Some(Some(fine(2 * DAY + 3, 1))), ..TaskPatch::default() };
    let u = store.update_task(a.id, t.id, patch, None, fine(9, 9)).await.expect("update_task");
    assert_eq!((u.due_date, u.updated_at), (Some(at(2 * DAY + 3)), at(9)));
    assert_eq!(store.get_task(a.id, t.id).await.expect("get_task"), u);
}

/// Another user's task behaves exactly as a missing one for get, update, delete and list.
pub async fn check_tasks_scoped_by_user(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let mut new = task("private");
    new.tags = tags(&["secret"]);
    let t = store.create_task(a.id, new, at(0)).await.expect("create_task");
    expect_not_found(store.get_task(b.id, t.id).await, "get another user's task");
    let patch = TaskPatch { title: Some(title("hijacked")), ..TaskPatch::default() };
    expect_not_found(
        store.update_task(b.id, t.id, patch.clone(), None, at(1)).await,
        "update another user's task",
    );
    expect_not_found(
        store.update_task(b.id, t.id, patch, Some(1), at(1)).await,
        "conditional update, other user",
    );
    expect_not_found(
        store.delete_task(b.id, t.id, None, at(9 * MIN)).await,
        "delete another user's task",
    );
    expect_not_found(
        store.delete_task(b.id, t.id, Some(1), at(9 * MIN)).await,
        "conditional delete, other user",
    );
    expect_not_found(store.get_task(a.id, new_id()).await, "get an unknown task");
    expect_not_found(
        store.update_task(a.id, new_id(), TaskPatch::default(), None, at(1)).await,
        "update an unknown task",
    );
    expect_not_found(
        store.delete_task(a.id, new_id(), None, at(9 * MIN)).await,
        "delete an unknown task",
    );
    assert_eq!(store.get_task(a.id, t.id).await.expect("owner still sees it"), t, "unchanged");
    let q = TaskQuery { text: Some(search("private")), ..all() };
    assert!(store.list_tasks(b.id, &q, at(0)).await.expect("list").items.is_empty());
    assert!(store.list_tasks(b.id, &all(), at(0)).await.expect("list").items.is_empty());
    assert_eq!(store.list_tags(b.id).await.expect("list_tags"), vec![]);
}

/// `version` and `updated_at` move exactly when a patch changes something.
pub async fn check_update_bumps_version_only_on_change(store: &dyn Store) {
    let a = user(store, "a").await;
    let mut new = task("stable");
    new.priority = Priority::Low;
    new.due_date = Some(at(DAY));
    let t = store.create_task(a.id, new, at(0)).await.expect("create_task");

    let same = TaskPatch {
        title: Some(title(" stable ")),
        priority: Some(Priority::Low),
        ..TaskPatch::default()
    };
    let u = store.update_task(a.id, t.id, same, None, at(MIN)).await.expect("no-op update");
    assert_eq!(u, t, "a patch equal to the stored values changes nothing");
    let u = store
        .update_task(a.id, t.id, TaskPatch::default(), Some(1), at(MIN))
        .await
        .expect("empty patch");
    assert_eq!(u, t);
    assert_eq!(store.get_task(a.id, t.id).await.expect("get"), t);

    let p = TaskPatch { priority: Some(Priority::High), ..TaskPatch::default() };
    let u = store.update_task(a.id, t.id, p, Some(1), at(2 * MIN)).await.expect("update");
    assert_eq!((u.version, u.updated_at, u.priority), (2, at(2 * MIN), Priority::High));
    assert_eq!(
        Task { version: 1, updated_at: at(0), priority: Priority::Low, ..u.clone() },
        t,
        "only those moved"
    );

    let done = TaskPatch { status: Some(Status::Completed), ..TaskPatch::default() };
    let u = store.update_task(a.id, t.id, done.clone(), None, at(3 * MIN)).await.expect("complete");
    assert_eq!((u.version, u.status, u.completed_at), (3, Status::Completed, Some(at(3 * MIN))));
    let again =
        store.update_task(a.id, t.id, done, None, at(4 * MIN)).await.expect("complete again");
    assert_eq!(again, u, "completing a completed task changes nothing");

    let reopen =
        TaskPatch { status: Some(Status::Pending), due_date: Some(None), ..TaskPatch::default() };
    let u = store.update_task(a.id, t.id, reopen, None, at(5 * MIN)).await.expect("reopen");
    assert_eq!((u.version, u.status, u.completed_at, u.due_date), (4, Status::Pending, None, None));
    assert_eq!(store.get_task(a.id, t.id).await.expect("get"), u, "the update was stored");
}

/// Updates keep search and tag filters in step with the task's current text and tags.
pub async fn check_update_keeps_search_and_tags_in_step(store: &dyn Store) {
    let a = user(store, "a").await;
    let mut new = task("Pay rent");
    new.description = Description::parse("landlord wants cash").expect("valid");
    new.tags = tags(&["home"]);
    let t = store.create_task(a.id, new, at(0)).await.expect("create_task");
    let find = |text: &str| TaskQuery { text: Some(search(text)), ..all() };
    let tagged =
        |tag: &str| TaskQuery { tags: vec![docket_core::Tag::parse(tag).expect("valid")], ..all() };
    assert_eq!(
        ids(&store.list_tasks(a.id, &find("rent"), at(0)).await.expect("list").items),
        vec![t.id]
    );

    let patch = TaskPatch {
        title: Some(title("Buy oat milk")),
        description: Some(Description::parse("from the corner shop").expect("valid")),
        tags: Some(tags(&["errands"])),
        ..TaskPatch::default()
    };
    let u = store.update_task(a.id, t.id, patch, None, at(MIN)).await.expect("update");
    for (word, hit) in [
        ("rent", false),
        ("landlord", false),
        ("home", false),
        ("oat", true),
        ("corner", true),
        ("errand", true),
    ] {
        let got = ids(&store.list_tasks(a.id, &find(word), at(0)).await.expect("list").items);
        assert_eq!(
            got,
            if hit { vec![u.id] } else { vec![] },
            "search for {word:?} after the update"
        );
    }
    assert!(
        store.list_tasks(a.id, &tagged("home"), at(0)).await.expect("list").items.is_empty(),
        "old tag gone"
    );
    assert_eq!(
        ids(&store.list_tasks(a.id, &tagged("errands"), at(0)).await.expect("list").items),
        vec![u.id]
    );
    assert_eq!(
        store.list_tags(a.id).await.expect("list_tags"),
        vec![TagCount { name: "errands".into(), count: 1 }]
    );
}

/// A stale `expected_version` fails with the current version and changes nothing.
pub async fn check_version_mismatch_changes_nothing(store: &dyn Store) {
    let a = user(store, "a").await;
    let t = store.create_task(a.id, task("v1"), at(0)).await.expect("create_task");
    let p = TaskPatch { title: Some(title("v2")), ..TaskPatch::default() };
    let v2 = store.update_task(a.id, t.id, p, Some(1), at(MIN)).await.expect("matching version");
    assert_eq!(v2.version, 2);

    let stale = TaskPatch {
        title: Some(title("lost update")),
        category: Some(Some(CategoryRef::Name(cat_name("Created by a stale write")))),
        ..TaskPatch::default()
    };
    expect_mismatch(
        store.update_task(a.id, t.id, stale, Some(1), at(2 * MIN)).await,
        2,
        "stale update",
    );
    assert_eq!(
        store.get_task(a.id, t.id).await.expect("get"),
        v2,
        "the stale update changed the task"
    );
    assert_eq!(
        store.list_categories(a.id).await.expect("list_categories"),
        vec![],
        "nor created a category"
    );
    expect_mismatch(store.delete_task(a.id, t.id, Some(1), at(9 * MIN)).await, 2, "stale delete");
    assert_eq!(store.get_task(a.id, t.id).await.expect("still there"), v2);
    expect_mismatch(
        store.update_task(a.id, t.id, TaskPatch::default(), Some(3), at(2 * MIN)).await,
        2,
        "a future version is a mismatch too",
    );
    assert_eq!(
        store.delete_task(a.id, t.id, Some(2), at(9 * MIN)).await.expect("current version"),
        v2
    );
}

/// Delete returns the task as it was; afterwards it is gone from get, list, search and tags.
pub async fn check_delete_task(store: &dyn Store) {
    let a = user(store, "a").await;
    let mut new = task("Throw away");
    new.tags = tags(&["trash"]);
    new.category = Some(CategoryRef::Name(cat_name("Bin")));
    let t = store.create_task(a.id, new, at(0)).await.expect("create_task");
    let keep = store.create_task(a.id, task("Keep me"), at(1)).await.expect("create_task");
    assert_eq!(store.delete_task(a.id, t.id, None, at(9 * MIN)).await.expect("delete"), t);
    expect_not_found(store.get_task(a.id, t.id).await, "get a deleted task");
    expect_not_found(store.delete_task(a.id, t.id, None, at(9 * MIN)).await, "delete twice");
    assert_eq!(
        ids(&store.list_tasks(a.id, &all(), at(0)).await.expect("list").items),
        vec![keep.id]
    );
    let q = TaskQuery { text: Some(search("throw")), ..all() };
    assert!(
        store.list_tasks(a.id, &q, at(0)).await.expect("list").items.is_empty(),
        "deleted task searchable"
    );
    assert_eq!(
        store.list_tags(a.id).await.expect("list_tags"),
        vec![],
        "deleted task's tags still counted"
    );
    assert_eq!(store.list_categories(a.id).await.expect("list").len(), 1, "its category stays");
}

// --- categories on tasks

/// A category named on a task resolves case-insensitively to the user's, created once.
pub async fn check_category_by_name_created_and_reused(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let mut first = task("one");
    first.category = Some(CategoryRef::Name(cat_name("Work")));
    let t1 = store.create_task(a.id, first, at(7)).await.expect("create_task");
    let c = t1.category.clone().expect("category created");
    assert_eq!(
        (c.name.as_str(), c.color.as_str(), c.user_id, c.created_at),
        ("Work", "#3b82f6", a.id, at(7))
    );
    assert_eq!(store.list_categories(a.id).await.expect("list"), vec![c.clone()]);
    assert_eq!(store.get_category(a.id, c.id).await.expect("get_category"), c);

    let mut second = task("two");
    second.category = Some(CategoryRef::Name(cat_name("wORK")));
    let t2 = store.create_task(a.id, second, at(8)).await.expect("create_task");
    assert_eq!(t2.category, Some(c.clone()), "the existing category is reused, its name kept");

    let t3 = store.create_task(a.id, task("three"), at(9)).await.expect("create_task");
    let p = TaskPatch {
        category: Some(Some(CategoryRef::Name(cat_name("WORK")))),
        ..TaskPatch::default()
    };
    let t3 = store.update_task(a.id, t3.id, p, None, at(10)).await.expect("update");
    assert_eq!((t3.category.clone(), t3.version), (Some(c.clone()), 2));
    let mut by_id = task("four");
    by_id.category = Some(CategoryRef::Id(c.id));
    assert_eq!(
        store.create_task(a.id, by_id, at(11)).await.expect("create").category,
        Some(c.clone())
    );
    assert_eq!(
        store.list_categories(a.id).await.expect("list"),
        vec![c.clone()],
        "still one category"
    );

    let clear = TaskPatch { category: Some(None), ..TaskPatch::default() };
    let t3 = store.update_task(a.id, t3.id, clear, None, at(12)).await.expect("clear category");
    assert_eq!((t3.category, t3.version), (None, 3));

    let mut theirs = task("theirs");
    theirs.category = Some(CategoryRef::Name(cat_name("Work")));
    let tb = store.create_task(b.id, theirs, at(0)).await.expect("create_task");
    let cb = tb.category.expect("created for b");
    assert_ne!(cb.id, c.id, "category names are per user");
    assert_eq!(cb.user_id, b.id);
}

/// A category id the user does not own is `InvalidReference { field: "category_id" }`.
pub async fn check_invalid_category_reference(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let new_cat = NewCategory { name: cat_name("Theirs"), color: Color::default() };
    let cb = store.create_category(b.id, new_cat, at(0)).await.expect("create_category");
    for id in [new_id(), cb.id] {
        let mut new = task("bad ref");
        new.category = Some(CategoryRef::Id(id));
        expect_invalid_category(
            store.create_task(a.id, new, at(0)).await,
            "create with a foreign category id",
        );
    }
    assert!(
        store.list_tasks(a.id, &all(), at(0)).await.expect("list").items.is_empty(),
        "nothing was created"
    );
    let t = store.create_task(a.id, task("good"), at(0)).await.expect("create_task");
    let p = TaskPatch { category: Some(Some(CategoryRef::Id(cb.id))), ..TaskPatch::default() };
    expect_invalid_category(
        store.update_task(a.id, t.id, p, None, at(1)).await,
        "update with a foreign category id",
    );
    assert_eq!(store.get_task(a.id, t.id).await.expect("get"), t, "unchanged");
    assert_eq!(store.list_categories(a.id).await.expect("list"), vec![]);
}

/// Deleting a category clears it from the user's tasks without versioning them.
pub async fn check_delete_category_clears_tasks(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let c = store
        .create_category(
            a.id,
            NewCategory { name: cat_name("Errands"), color: Color::parse("#aa00ff").expect("ok") },
            at(0),
        )
        .await
        .expect("create_category");
    let mut with = task("with");
    with.category = Some(CategoryRef::Id(c.id));
    let t1 = store.create_task(a.id, with.clone(), at(1)).await.expect("create_task");
    let t2 = store.create_task(a.id, with, at(2)).await.expect("create_task");
    let t3 = store.create_task(a.id, task("without"), at(3)).await.expect("create_task");
    assert_eq!(t1.category, Some(c.clone()));

    expect_not_found(
        store.delete_category(b.id, c.id, at(9 * MIN)).await,
        "delete another user's category",
    );
    assert_eq!(
        store.get_task(a.id, t1.id).await.expect("get").category,
        Some(c.clone()),
        "untouched"
    );

    store.delete_category(a.id, c.id, at(9 * MIN)).await.expect("delete_category");
    for t in [&t1, &t2] {
        let now = store.get_task(a.id, t.id).await.expect("task kept");
        assert_eq!(
            now,
            Task { category: None, ..t.clone() },
            "category cleared, version and updated_at kept"
        );
    }
    assert_eq!(store.get_task(a.id, t3.id).await.expect("get"), t3);
    let q = TaskQuery { category: Some(CategoryRef::Id(c.id)), ..all() };
    assert!(store.list_tasks(a.id, &q, at(0)).await.expect("list").items.is_empty());
    expect_not_found(store.get_category(a.id, c.id).await, "get a deleted category");
    expect_not_found(
        store.delete_category(a.id, c.id, at(9 * MIN)).await,
        "delete a deleted category",
    );
    assert_eq!(store.list_categories(a.id).await.expect("list"), vec![]);
}

/// Categories: create, get, list (case-insensitive name order), update, delete, all per user.
pub async fn check_categories_crud(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let mk = |name: &str, color: &str| NewCategory {
        name: cat_name(name),
        color: Color::parse(color).expect("ok"),
    };
    let work = store.create_category(a.id, mk("Work", "#FF0000"), at(1)).await.expect("create");
    assert_eq!(
        (work.name.as_str(), work.color.as_str(), work.user_id, work.created_at),
        ("Work", "#ff0000", a.id, at(1))
    );
    let errands =
        store.create_category(a.id, mk("errands", "#00ff00"), at(2)).await.expect("create");
    let home = store.create_category(a.id, mk("Home", "#0000ff"), at(3)).await.expect("create");
    assert_eq!(store.get_category(a.id, work.id).await.expect("get"), work);
    assert_eq!(
        store.list_categories(a.id).await.expect("list"),
        vec![errands.clone(), home.clone(), work.clone()]
    );
    assert_eq!(store.list_categories(b.id).await.expect("list"), vec![]);

    let patch = CategoryPatch {
        name: Some(cat_name("Office")),
        color: Some(Color::parse("#123456").expect("ok")),
    };
    let office = store.update_category(a.id, work.id, patch.clone()).await.expect("update");
    assert_eq!(
        office,
        Category {
            name: cat_name("Office"),
            color: Color::parse("#123456").expect("ok"),
            ..work.clone()
        }
    );
    assert_eq!(store.get_category(a.id, work.id).await.expect("get"), office);
    assert_eq!(
        store.update_category(a.id, work.id, CategoryPatch::default()).await.expect("no-op"),
        office
    );

    expect_not_found(store.get_category(b.id, work.id).await, "get another user's category");
    expect_not_found(
        store.update_category(b.id, work.id, patch).await,
        "update another user's category",
    );
    expect_not_found(
        store.delete_category(b.id, work.id, at(9 * MIN)).await,
        "delete another user's category",
    );
    expect_not_found(store.get_category(a.id, new_id()).await, "get an unknown category");
    assert_eq!(store.get_category(a.id, work.id).await.expect("get"), office, "untouched by b");

    store.delete_category(a.id, home.id, at(9 * MIN)).await.expect("delete");
    expect_not_found(store.get_category(a.id, home.id).await, "get a deleted category");
    assert_eq!(store.list_categories(a.id).await.expect("list"), vec![errands, office]);
}

/// Category names are unique per user, ignoring case; other users may reuse them.
pub async fn check_category_names_unique_per_user(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let mk = |name: &str| NewCategory { name: cat_name(name), color: Color::default() };
    let work = store.create_category(a.id, mk("Work"), at(0)).await.expect("create");
    let msg = expect_conflict(
        store.create_category(a.id, mk("WORK"), at(1)).await,
        "same name, other case",
    );
    assert!(msg.to_lowercase().contains("work"), "the conflict names the category: {msg:?}");
    store.create_category(b.id, mk("work"), at(0)).await.expect("another user may use the name");
    let home = store.create_category(a.id, mk("Home"), at(2)).await.expect("create");
    let rename = CategoryPatch { name: Some(cat_name("wOrK")), color: None };
    expect_conflict(
        store.update_category(a.id, home.id, rename.clone()).await,
        "rename onto a taken name",
    );
    assert_eq!(store.get_category(a.id, home.id).await.expect("get"), home, "unchanged");
    let recased =
        store.update_category(a.id, work.id, rename).await.expect("re-casing its own name");
    assert_eq!(recased.name.as_str(), "wOrK");
    assert_eq!(store.list_categories(a.id).await.expect("list").len(), 2);
}

// --- list: filters

/// `status` selects pending, completed or all tasks.
pub async fn check_list_filter_status(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for (status, want) in [
        (StatusFilter::Pending, Some(Status::Pending)),
        (StatusFilter::Completed, Some(Status::Completed)),
        (StatusFilter::All, None),
    ] {
        let q = TaskQuery { status, ..all() };
        check_filter(
            store,
            a.id,
            &s,
            q,
            at(0),
            |t| want.is_none_or(|w| t.status == w),
            &format!("status {status:?}"),
        )
        .await;
    }
}

/// `priorities` selects any of the listed priorities.
pub async fn check_list_filter_priorities(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for ps in [vec![Priority::High, Priority::Urgent], vec![Priority::Low], Priority::ALL.to_vec()]
    {
        let q = TaskQuery { priorities: ps.clone(), ..sorted(SortField::Priority, Order::Desc) };
        check_filter(
            store,
            a.id,
            &s,
            q,
            at(0),
            |t| ps.contains(&t.priority),
            &format!("priorities {ps:?}"),
        )
        .await;
    }
}

/// `tags` selects tasks carrying every listed tag.
pub async fn check_list_filter_tags(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for names in [vec!["work"], vec!["home", "work"], vec!["shop", "home"], vec!["nowhere"]] {
        let wanted: Vec<docket_core::Tag> =
            names.iter().map(|n| docket_core::Tag::parse(n).expect("valid")).collect();
        let q = TaskQuery { tags: wanted.clone(), ..all() };
        let keep = |t: &Task| wanted.iter().all(|w| t.tags.as_slice().contains(w));
        check_filter(store, a.id, &s, q, at(0), keep, &format!("tags {names:?}")).await;
    }
}

/// `category` selects by the user's category id, or by name case-insensitively; an unknown
/// name matches nothing and creates nothing.
pub async fn check_list_filter_category(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    let work = s
        .iter()
        .find_map(|t| t.category.clone().filter(|c| c.name.as_str() == "Work"))
        .expect("seeded");
    let is_work = |t: &Task| t.category.as_ref().is_some_and(|c| c.id == work.id);
    let q = TaskQuery { category: Some(CategoryRef::Id(work.id)), ..all() };
    check_filter(store, a.id, &s, q, at(0), is_work, "category by id").await;
    let q = TaskQuery { category: Some(CategoryRef::Name(cat_name("wORk"))), ..all() };
    check_filter(store, a.id, &s, q, at(0), is_work, "category by name").await;
    let before = store.list_categories(a.id).await.expect("list_categories");
    let q = TaskQuery { category: Some(CategoryRef::Name(cat_name("Nope"))), ..all() };
    check_filter(store, a.id, &s, q, at(0), |_| false, "unknown category name").await;
    assert_eq!(
        store.list_categories(a.id).await.expect("list_categories"),
        before,
        "a filter creates nothing"
    );
}

/// `due_before` is strict, `due_after` inclusive; undated tasks match neither.
pub async fn check_list_filter_due_range(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    let edge = at(10 * DAY);
    assert!(
        s.iter().any(|t| t.due_date == Some(edge)),
        "the seed has a task due exactly on the edge"
    );
    let q = TaskQuery { due_before: Some(edge), ..sorted(SortField::DueDate, Order::Asc) };
    check_filter(store, a.id, &s, q, at(0), |t| t.due_date.is_some_and(|d| d < edge), "due_before")
        .await;
    let q = TaskQuery { due_after: Some(edge), ..sorted(SortField::DueDate, Order::Desc) };
    check_filter(store, a.id, &s, q, at(0), |t| t.due_date.is_some_and(|d| d >= edge), "due_after")
        .await;
    let (from, to) = (at(5 * DAY), at(20 * DAY));
    let q = TaskQuery { due_after: Some(from), due_before: Some(to), ..all() };
    check_filter(
        store,
        a.id,
        &s,
        q,
        at(0),
        |t| t.due_date.is_some_and(|d| d >= from && d < to),
        "due range",
    )
    .await;
}

/// `overdue` selects pending tasks due before the query's `now`.
pub async fn check_list_filter_overdue(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for now in [at(15 * DAY), at(10 * DAY), at(-DAY)] {
        let q = TaskQuery { overdue: true, ..sorted(SortField::DueDate, Order::Asc) };
        check_filter(store, a.id, &s, q, now, |t| t.is_overdue(now), &format!("overdue at {now}"))
            .await;
    }
}

/// Filters combine with AND, under any sort.
pub async fn check_list_filters_combined(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    let work = docket_core::Tag::parse("work").expect("valid");
    let q = TaskQuery {
        status: StatusFilter::Pending,
        priorities: vec![Priority::High, Priority::Medium],
        tags: vec![work.clone()],
        due_after: Some(at(2 * DAY)),
        category: Some(CategoryRef::Name(cat_name("work"))),
        limit: Limit::new(3),
        ..sorted(SortField::Title, Order::Asc)
    };
    let keep = |t: &Task| {
        t.status == Status::Pending
            && matches!(t.priority, Priority::High | Priority::Medium)
            && t.tags.as_slice().contains(&work)
            && t.due_date.is_some_and(|d| d >= at(2 * DAY))
            && t.category.as_ref().is_some_and(|c| c.name.as_str() == "Work")
    };
    assert!(s.iter().filter(|t| keep(t)).count() > 3, "the combination spans several pages");
    check_filter(store, a.id, &s, q, at(0), keep, "combined filters").await;
}

// --- list: search

/// Full-text search matches every word as a prefix of a word of title, description or tags.
pub async fn check_list_search(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let mk = |t: &str, d: Option<&str>, tg: &[&str], p: Priority| NewTask {
        description: d.map(|d| Description::parse(d).expect("valid").expect("not blank")),
        tags: tags(tg),
        priority: p,
        ..task(t)
    };
    let inputs = [
        mk("Buy milk and eggs", None, &[], Priority::High),
        mk("Call mom", Some("ask about the milkshake recipe"), &[], Priority::Low),
        mk("Dentist", None, &["health"], Priority::Medium),
        mk("Milkman invoice", None, &["bills"], Priority::High),
        mk("Pay rent", Some("the landlord, again"), &[], Priority::Medium),
        mk("Café visit", None, &[], Priority::Medium),
    ];
    let mut tasks = Vec::new();
    for (i, new) in inputs.into_iter().enumerate() {
        tasks.push(store.create_task(a.id, new, at(i as i64 * SEC)).await.expect("create_task"));
    }
    store.create_task(b.id, task("milk for b"), at(0)).await.expect("create_task");
    let id = |i: usize| tasks[i].id;
    let cases: [(&str, Vec<TaskId>); 10] = [
        ("milk", vec![id(0), id(1), id(3)]),
        ("MILK eggs", vec![id(0)]),
        ("eggs milk", vec![id(0)]),
        ("heal", vec![id(2)]),
        ("land", vec![id(4)]),
        ("milk zebra", vec![]),
        ("ilk", vec![]),
        ("bills milkm", vec![id(3)]),
        ("the", vec![id(1), id(4)]),
        ("CAFÉ", vec![id(5)]),
    ];
    for (text, want) in cases {
        let q = TaskQuery { text: Some(search(text)), ..sorted(SortField::CreatedAt, Order::Asc) };
        let got = ids(&list_all(store, a.id, q, at(0)).await);
        assert_eq!(got, want, "search {text:?}");
    }
    let q = TaskQuery { text: Some(search("milk")), ..sorted(SortField::Title, Order::Desc) };
    assert_eq!(
        ids(&list_all(store, a.id, q, at(0)).await),
        vec![id(3), id(1), id(0)],
        "search sorted by title"
    );
    let q = TaskQuery {
        text: Some(search("milk")),
        priorities: vec![Priority::High],
        limit: Limit::new(1),
        ..sorted(SortField::CreatedAt, Order::Desc)
    };
    assert_eq!(
        ids(&list_all(store, a.id, q, at(0)).await),
        vec![id(3), id(0)],
        "search with a filter, paged"
    );
}

/// A search without an explicit sort ranks by relevance, best first, and pages stably.
pub async fn check_list_search_ranked(store: &dyn Store) {
    let a = user(store, "a").await;
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore \
                  et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut \
                  aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse";
    let mut weak = task("Shopping list");
    weak.description = Description::parse(&format!("{filler} garden")).expect("valid");
    let weak = store.create_task(a.id, weak, at(0)).await.expect("create_task");
    let strong = store.create_task(a.id, task("Garden"), at(1)).await.expect("create_task");
    let mut mid = task("Water the garden plants");
    mid.tags = tags(&["garden"]);
    let mid = store.create_task(a.id, mid, at(2)).await.expect("create_task");
    store.create_task(a.id, task("Unrelated"), at(3)).await.expect("create_task");

    let q =
        TaskQuery { text: Some(search("garden")), ..all() }.settle(None, None).expect("settles");
    assert_eq!((q.sort, q.order), (SortField::Rank, Order::Asc));
    let page = store.list_tasks(a.id, &q, at(0)).await.expect("list");
    let got = ids(&page.items);
    assert_eq!(got.len(), 3, "every match, once: {got:?}");
    let all_ids: HashSet<TaskId> = got.iter().copied().collect();
    assert_eq!(all_ids, HashSet::from([weak.id, strong.id, mid.id]));
    assert_eq!(got.last(), Some(&weak.id), "a passing mention in a long description ranks last");
    let paged = ids(&list_all(store, a.id, TaskQuery { limit: Limit::new(1), ..q }, at(0)).await);
    assert_eq!(paged, got, "paging by rank yields the one-page order");
}

// --- list: sorts and paging

/// Every sort field in both orders: `(key, id)` order, undated tasks last in both orders,
/// titles by `Title::sort_key`, priorities by rank.
pub async fn check_list_sorts(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for sort in SORTS {
        for order in [Order::Asc, Order::Desc] {
            let page = store.list_tasks(a.id, &sorted(sort, order), at(0)).await.expect("list");
            assert_eq!(page.next_cursor, None, "{sort:?} {order:?}: everything fits one page");
            let want = expected(&s, sort, order, |_| true);
            assert_eq!(ids(&page.items), want, "{sort:?} {order:?}: wrong order");
            if sort == SortField::DueDate {
                let undated = page.items.iter().skip_while(|t| t.due_date.is_some()).count();
                assert_eq!(
                    undated,
                    s.iter().filter(|t| t.due_date.is_none()).count(),
                    "undated tasks come last"
                );
            }
        }
    }
}

/// At most `limit` items, and `next_cursor` exactly when more follow.
pub async fn check_list_limit(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    let n = s.len() as u32;
    let page = |limit: u32, q: TaskQuery| TaskQuery { limit: Limit::new(limit), ..q };
    let p = store.list_tasks(a.id, &page(5, all()), at(0)).await.expect("list");
    assert_eq!(
        ids(&p.items),
        expected(&s, SortField::CreatedAt, Order::Desc, |_| true)[..5].to_vec()
    );
    assert!(p.next_cursor.is_some(), "more follow after 5");
    let p = store.list_tasks(a.id, &page(n, all()), at(0)).await.expect("list");
    assert_eq!(
        (p.items.len(), p.next_cursor.is_none()),
        (s.len(), true),
        "a page ending exactly at the end has no cursor"
    );
    let p = store.list_tasks(a.id, &page(n - 1, all()), at(0)).await.expect("list");
    let cursor = p.next_cursor.expect("one more follows");
    let last = store
        .list_tasks(a.id, &TaskQuery { cursor: Some(cursor), ..page(n - 1, all()) }, at(0))
        .await
        .expect("list");
    assert_eq!((last.items.len(), last.next_cursor.is_none()), (1, true));
    let p = store
        .list_tasks(a.id, &TaskQuery { status: StatusFilter::Pending, ..page(1, all()) }, at(0))
        .await
        .expect("list");
    assert_eq!(p.items.len(), 1);
}

/// Paging with a small limit yields exactly the sequence of one big page, for every sort.
pub async fn check_list_paging_matches_one_page(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    for sort in SORTS {
        for order in [Order::Asc, Order::Desc] {
            let one =
                store.list_tasks(a.id, &sorted(sort, order), at(0)).await.expect("list").items;
            assert_eq!(one.len(), s.len());
            let q = TaskQuery { limit: Limit::new(7), ..sorted(sort, order) };
            let paged = list_all(store, a.id, q, at(0)).await;
            assert_eq!(
                ids(&paged),
                ids(&one),
                "{sort:?} {order:?}: paging skipped, repeated or reordered items"
            );
        }
    }
}

/// Tasks inserted between pages never make an original item skip or repeat.
pub async fn check_list_paging_with_inserts(store: &dyn Store) {
    let a = user(store, "a").await;
    let s = seed(store, a.id).await;
    let originals: HashSet<TaskId> = s.iter().map(|t| t.id).collect();
    let shapes = [
        (SortField::CreatedAt, Order::Desc),
        (SortField::CreatedAt, Order::Asc),
        (SortField::DueDate, Order::Asc),
        (SortField::DueDate, Order::Desc),
        (SortField::Title, Order::Asc),
        (SortField::Priority, Order::Desc),
    ];
    let mut inserted = 0i64;
    for (sort, order) in shapes {
        let mut q = TaskQuery { limit: Limit::new(7), ..sorted(sort, order) };
        let mut seen: Vec<TaskId> = Vec::new();
        loop {
            let page = store.list_tasks(a.id, &q, at(0)).await.expect("list");
            seen.extend(page.items.iter().map(|t| t.id));
            let Some(c) = page.next_cursor else { break };
            q.cursor = Some(Cursor::decode(&c.encode()).expect("round-trips"));
            // One task sorting before the cursor and one after it, in every sort.
            inserted += 1;
            let mut early = task(&format!("aaa inserted {inserted}"));
            early.due_date = Some(at(-DAY - inserted));
            early.priority = Priority::Urgent;
            let mut late = task(&format!("zzz inserted {inserted}"));
            late.priority = Priority::Low;
            store
                .create_task(a.id, early, at(-DAY - inserted))
                .await
                .expect("insert between pages");
            store
                .create_task(a.id, late, at(100 * DAY + inserted))
                .await
                .expect("insert between pages");
            assert!(seen.len() < 10 * s.len(), "{sort:?} {order:?}: paging does not end");
        }
        let mut counts: HashMap<TaskId, usize> = HashMap::new();
        for id in &seen {
            *counts.entry(*id).or_default() += 1;
        }
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "{sort:?} {order:?}: repeated items {repeated:?}");
        let missing = originals.iter().filter(|id| !counts.contains_key(id)).count();
        assert_eq!(missing, 0, "{sort:?} {order:?}: {missing} original items skipped");
    }
}

/// `list_tags` counts the user's tags, most used first, then by name.
pub async fn check_list_tags_counts(store: &dyn Store) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let with = |tg: &[&str]| NewTask { tags: tags(tg), ..task("tagged") };
    let mut made = Vec::new();
    for tg in [&["home", "work"][..], &["work"], &["work", "shop"], &[], &["zoo"]] {
        made.push(store.create_task(a.id, with(tg), at(0)).await.expect("create_task"));
    }
    store.create_task(b.id, with(&["home", "theirs"]), at(0)).await.expect("create_task");
    let tc = |name: &str, count: i64| TagCount { name: name.to_owned(), count };
    assert_eq!(
        store.list_tags(a.id).await.expect("list_tags"),
        vec![tc("work", 3), tc("home", 1), tc("shop", 1), tc("zoo", 1)]
    );
    assert_eq!(
        store.list_tags(b.id).await.expect("list_tags"),
        vec![tc("home", 1), tc("theirs", 1)]
    );
    store.delete_task(a.id, made[0].id, None, at(9 * MIN)).await.expect("delete");
    let p = TaskPatch { tags: Some(tags(&["shop"])), ..TaskPatch::default() };
    store.update_task(a.id, made[1].id, p, None, at(1)).await.expect("update");
    assert_eq!(
        store.list_tags(a.id).await.expect("list_tags"),
        vec![tc("shop", 2), tc("work", 1), tc("zoo", 1)]
    );
}

// --- outbox

/// Reads `topic` after `after` until at least `want` events came back (a PostgreSQL read may
/// stop at a horizon that settles a moment later), then once more to catch extras; returns
/// everything read, checking positions grow and `sequence` names them.
async fn read_events(
    store: &dyn Store,
    topic: &str,
    mut after: i64,
    want: usize,
) -> Vec<(i64, CloudEvent)> {
    let mut out: Vec<(i64, CloudEvent)> = Vec::new();
    let mut settled_rounds = 0;
    for _ in 0..200 {
        let batch = store.read_outbox(after, topic, 1000).await.expect("read_outbox");
        if batch.is_empty() {
            if out.len() >= want {
                settled_rounds += 1;
                if settled_rounds >= 2 {
                    return out;
                }
            }
            tokio::task::yield_now().await;
            continue;
        }
        for (seq, event) in batch {
            assert!(seq > after, "read_outbox returned position {seq} after asking for > {after}");
            assert_eq!(event.seq(), Some(seq), "an event's sequence is its position");
            after = seq;
            out.push((seq, event));
        }
    }
    assert!(out.len() >= want, "read {} events of {topic}, expected at least {want}", out.len());
    out
}

#[track_caller]
fn expect_event(event: &CloudEvent, ty: &str, task: &Task) {
    assert_eq!(event.ty, ty, "event type");
    assert_eq!(event.specversion, "1.0");
    assert_eq!(event.source, "/docket/api");
    assert_eq!(
        event.subject.as_deref(),
        Some(task.id.to_string().as_str()),
        "subject is the task id"
    );
    assert_eq!(
        event.partitionkey.as_deref(),
        Some(task.user_id.to_string().as_str()),
        "partitionkey is the task's user"
    );
    assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
    let id: uuid::Uuid = event.id.parse().expect("event ids are uuids");
    assert_eq!(id.get_version_num(), 7, "event ids are UUIDv7");
}

fn task_data(event: &CloudEvent) -> TaskEventDataV1 {
    event.data_as().expect("task event data")
}

/// Each task write appends exactly its event, with the right type, subject, partition key and
/// data; `task-updates` reads the same events as `task-events`.
pub async fn check_outbox_task_writes_append_events(store: &dyn Store) {
    let u = user(store, "outbox").await;
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("outbox_head");

    let mut new = task("Write report");
    new.category = Some(CategoryRef::Name(cat_name("Work")));
    let created = store.create_task(u.id, new, at(0)).await.expect("create_task");
    let renamed = TaskPatch { title: Some(title("Write the report")), ..TaskPatch::default() };
    let updated =
        store.update_task(u.id, created.id, renamed, None, at(MIN)).await.expect("update");
    let done = TaskPatch { status: Some(Status::Completed), ..TaskPatch::default() };
    let completed =
        store.update_task(u.id, created.id, done, None, at(2 * MIN)).await.expect("complete");
    let reopen = TaskPatch { status: Some(Status::Pending), ..TaskPatch::default() };
    let reopened =
        store.update_task(u.id, created.id, reopen, None, at(3 * MIN)).await.expect("reopen");
    let deleted =
        store.delete_task(u.id, created.id, None, at(9 * MIN)).await.expect("delete_task");

    let events = read_events(store, topics::TASK_EVENTS, start, 5).await;
    let types: Vec<&str> = events.iter().map(|(_, e)| e.ty.as_str()).collect();
    assert_eq!(
        types,
        [
            types::TASK_CREATED,
            types::TASK_UPDATED,
            types::TASK_COMPLETED,
            types::TASK_REOPENED,
            types::TASK_DELETED
        ],
        "one event per write, in write order"
    );
    assert_eq!(events[4].1.time, Some(at(9 * MIN)), "a delete's event is stamped with its `now`");
    let e = &events[0].1;
    expect_event(e, types::TASK_CREATED, &created);
    assert_eq!(e.time, Some(at(0)), "event time is the write's now");
    assert_eq!(task_data(e), TaskEventDataV1 { task: TaskV1::from(&created), changes: None });

    let e = &events[1].1;
    expect_event(e, types::TASK_UPDATED, &updated);
    let data = task_data(e);
    assert_eq!(data.task, TaskV1::from(&updated), "updated carries the after-image");
    let changes = data.changes.expect("updated carries changes");
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["title"], "only the title changed");
    assert_eq!(changes["title"].old, serde_json::json!("Write report"));
    assert_eq!(changes["title"].new, serde_json::json!("Write the report"));

    let e = &events[2].1;
    expect_event(e, types::TASK_COMPLETED, &completed);
    let data = task_data(e);
    assert_eq!(data.task, TaskV1::from(&completed));
    let changes = data.changes.expect("completed carries changes");
    assert_eq!(changes["status"].new, serde_json::json!("completed"));

    let e = &events[3].1;
    expect_event(e, types::TASK_REOPENED, &reopened);
    assert_eq!(task_data(e).task, TaskV1::from(&reopened));

    let e = &events[4].1;
    expect_event(e, types::TASK_DELETED, &deleted);
    let data: TaskDeletedV1 = e.data_as().expect("deleted data");
    assert_eq!(
        data,
        TaskDeletedV1 { task_id: deleted.id.0, user_id: u.id.0, title: "Write the report".into() }
    );

    let ids: HashSet<&str> = events.iter().map(|(_, e)| e.id.as_str()).collect();
    assert_eq!(ids.len(), 5, "event ids are unique");
    let updates = read_events(store, topics::TASK_UPDATES, start, 5).await;
    assert_eq!(updates, events, "task-updates reads the task lifecycle events");
    assert!(
        store.outbox_head(topics::TASK_EVENTS).await.expect("outbox_head") >= events[4].0,
        "outbox_head reaches the last event read"
    );
    assert_eq!(
        store.read_outbox(start, topics::REMINDERS, 100).await.expect("read_outbox"),
        [],
        "task writes append nothing to other topics"
    );
}

/// Writes that change nothing and writes that fail append nothing.
pub async fn check_outbox_noop_and_failed_writes_append_nothing(store: &dyn Store) {
    let u = user(store, "outbox-noop").await;
    let other = user(store, "outbox-other").await;
    let mut new = task("Same");
    new.status = Status::Completed;
    let t = store.create_task(u.id, new, at(0)).await.expect("create_task");
    let start = read_events(store, topics::TASK_EVENTS, 0, 1).await.last().expect("created").0;

    let same = TaskPatch { title: Some(title("Same")), ..TaskPatch::default() };
    store.update_task(u.id, t.id, same, None, at(MIN)).await.expect("no-op update");
    let done = TaskPatch { status: Some(Status::Completed), ..TaskPatch::default() };
    store.update_task(u.id, t.id, done, None, at(MIN)).await.expect("complete a completed task");
    let renamed = TaskPatch { title: Some(title("Other")), ..TaskPatch::default() };
    expect_mismatch(
        store.update_task(u.id, t.id, renamed.clone(), Some(7), at(MIN)).await,
        1,
        "update with a stale version",
    );
    expect_mismatch(
        store.delete_task(u.id, t.id, Some(7), at(9 * MIN)).await,
        1,
        "delete with a stale version",
    );
    expect_not_found(
        store.update_task(other.id, t.id, renamed, None, at(MIN)).await,
        "update of another user's task",
    );
    expect_not_found(
        store.delete_task(other.id, t.id, None, at(9 * MIN)).await,
        "delete of another user's task",
    );
    let mut bad = task("Bad");
    bad.category = Some(CategoryRef::Id(new_id()));
    expect_invalid_category(
        store.create_task(u.id, bad, at(MIN)).await,
        "create, unknown category",
    );
    expect_not_found(
        store.delete_category(u.id, new_id(), at(9 * MIN)).await,
        "delete of an unknown category",
    );

    // A marker write: once its event is readable, anything the writes above appended would be.
    let marker = store.create_task(other.id, task("Marker"), at(2 * MIN)).await.expect("marker");
    let events = read_events(store, topics::TASK_EVENTS, start, 1).await;
    assert_eq!(events.len(), 1, "only the marker's event was appended: {events:?}");
    expect_event(&events[0].1, types::TASK_CREATED, &marker);
}

/// Deleting a category appends an updated event (category cleared, version kept) for each
/// task it clears, and none for the user's other tasks.
pub async fn check_outbox_delete_category_updates_tasks(store: &dyn Store) {
    let u = user(store, "outbox-cat").await;
    let cat = store
        .create_category(
            u.id,
            NewCategory { name: cat_name("Errands"), color: Color::default() },
            at(0),
        )
        .await
        .expect("create_category");
    let mut in_cat = Vec::new();
    for name in ["One", "Two"] {
        let mut new = task(name);
        new.category = Some(CategoryRef::Id(cat.id));
        in_cat.push(store.create_task(u.id, new, at(0)).await.expect("create_task"));
    }
    store.create_task(u.id, task("Loose"), at(0)).await.expect("create_task");
    let start = read_events(store, topics::TASK_EVENTS, 0, 3).await.last().expect("created").0;

    store.delete_category(u.id, cat.id, at(9 * MIN)).await.expect("delete_category");
    let events = read_events(store, topics::TASK_EVENTS, start, 2).await;
    assert_eq!(events.len(), 2, "one event per cleared task");
    let mut seen: Vec<TaskId> = Vec::new();
    for (_, e) in &events {
        let before = in_cat
            .iter()
            .find(|t| Some(t.id.to_string().as_str()) == e.subject.as_deref())
            .expect("an event of a task that was in the category");
        let after = Task { category: None, ..before.clone() };
        expect_event(e, types::TASK_UPDATED, &after);
        assert_eq!(e.time, Some(at(9 * MIN)), "stamped with the delete's `now`");
        let data = task_data(e);
        assert_eq!(
            data.task,
            TaskV1::from(&after),
            "after-image without the category, same version"
        );
        let changes = data.changes.expect("updated carries changes");
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["category"]);
        assert_eq!(changes["category"].new, serde_json::Value::Null);
        assert_eq!(
            changes["category"].old,
            serde_json::to_value(CategoryV1::from(&cat)).expect("json")
        );
        seen.push(before.id);
    }
    seen.sort();
    let mut want = ids(&in_cat);
    want.sort();
    assert_eq!(seen, want);
}

/// Every event of a user's task carries that user's id as its partition key.
pub async fn check_outbox_partition_keys(store: &dyn Store) {
    let a = user(store, "outbox-a").await;
    let b = user(store, "outbox-b").await;
    let writes = (0..6).map(|i| {
        let owner = if i % 2 == 0 { a.id } else { b.id };
        store.create_task(owner, task(&format!("task {i}")), at(i))
    });
    let created: Vec<Task> =
        join_all(writes).await.into_iter().map(|r| r.expect("create_task")).collect();
    let events = read_events(store, topics::TASK_EVENTS, 0, 6).await;
    assert_eq!(events.len(), 6);
    for (_, e) in &events {
        let t = created
            .iter()
            .find(|t| Some(t.id.to_string().as_str()) == e.subject.as_deref())
            .expect("an event of a created task");
        assert_eq!(e.partitionkey.as_deref(), Some(t.user_id.to_string().as_str()));
        assert_eq!(task_data(e).task.user_id, t.user_id.0);
    }
}

/// `read_outbox_for` reads one key's events, in order, strictly inside `(after, until]`, and
/// pages through them with no event skipped or repeated.
pub async fn check_outbox_read_for_key(store: &dyn Store) {
    let a = user(store, "replay-a").await;
    let b = user(store, "replay-b").await;
    for i in 0..9 {
        let owner = if i % 3 == 0 { b.id } else { a.id };
        store.create_task(owner, task(&format!("task {i}")), at(i)).await.expect("create_task");
        if i % 4 == 1 {
            // Rows of the task-updates topic itself, between task-events rows of the key.
            let n = notification(a.id, &format!("note {i}"), i);
            store.append_notification(n, format!("note-{i}-{}", a.id)).await.expect("append");
        }
    }
    let all = read_events(store, topics::TASK_UPDATES, 0, 11).await;
    let until = all.last().expect("eleven events").0;
    let key = a.id.to_string();
    let mine: Vec<i64> = all
        .iter()
        .filter(|(_, e)| e.partitionkey.as_deref() == Some(key.as_str()))
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(mine.len(), 8, "six task events and two notifications of the key");

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_outbox_for(topics::TASK_UPDATES, &key, after, until, 4)
            .await
            .expect("read_outbox_for");
        assert!(page.len() <= 4);
        let Some(&(last, _)) = page.last() else { break };
        for (seq, e) in &page {
            assert_eq!(e.partitionkey.as_deref(), Some(key.as_str()), "another key's event");
            assert_eq!(e.seq(), Some(*seq), "an event's sequence is its position");
        }
        paged.extend(page.iter().map(|(seq, _)| *seq));
        after = last;
    }
    assert_eq!(paged, mine);

    // The bounds are exclusive below and inclusive above.
    let (lo, hi) = (mine[1], mine[4]);
    let inside: Vec<i64> = store
        .read_outbox_for(topics::TASK_UPDATES, &key, lo, hi, 100)
        .await
        .expect("read_outbox_for")
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(inside, mine[2..=4]);
    assert!(
        store
            .read_outbox_for(topics::TASK_UPDATES, &key, hi, lo, 100)
            .await
            .expect("an empty range")
            .is_empty()
    );
    assert!(
        store
            .read_outbox_for(topics::TASK_UPDATES, "no-such-user", 0, until, 100)
            .await
            .expect("an unknown key")
            .is_empty()
    );
}

/// Readers interleaved with concurrent writers, each advancing to the last position it read,
/// miss no event that committed: what they read equals a full read at the end.
pub async fn check_outbox_concurrent_readers_miss_nothing(store: &dyn Store) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let u = user(store, "outbox-race").await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let writers = async {
        let writers = (0..WRITERS).map(|w| async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let t = store
                    .create_task(u.id, task(&format!("w{w} t{i}")), at(i as i64))
                    .await
                    .expect("create_task");
                ids.push(t.id.to_string());
            }
            ids
        });
        let ids: Vec<String> = join_all(writers).await.into_iter().flatten().collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        ids
    };
    let reader = async {
        let mut after = 0;
        let mut seen: Vec<String> = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            for (seq, e) in store.read_outbox(after, topics::TASK_EVENTS, 7).await.expect("read") {
                assert!(seq > after, "positions only grow");
                after = seq;
                seen.extend(e.subject);
            }
            tokio::task::yield_now().await;
        }
        (after, seen)
    };
    let (written, (after, mut seen)) = futures::join!(writers, reader);
    // The interleaved reader carries on from where it stopped.
    let rest = read_events(store, topics::TASK_EVENTS, after, WRITERS * EACH - seen.len()).await;
    seen.extend(rest.into_iter().filter_map(|(_, e)| e.subject));
    let full: Vec<String> = read_events(store, topics::TASK_EVENTS, 0, WRITERS * EACH)
        .await
        .into_iter()
        .filter_map(|(_, e)| e.subject)
        .collect();
    assert_eq!(full.len(), WRITERS * EACH, "one event per create");
    assert_eq!(seen, full, "the interleaved reader saw every event, in log order");
    let mut written = written;
    written.sort();
    let mut full = full;
    full.sort();
    assert_eq!(full, written, "the log holds exactly the committed writes");
}

// --- outbox pruning

/// Appends one `task-events` row per `ages` entry (a task created at `at(age)`) for a fresh
/// user, and returns the user and the rows' positions, read back once readable.
async fn aged_rows(store: &dyn Store, label: &str, ages: &[i64]) -> (User, Vec<i64>) {
    let u = user(store, label).await;
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("outbox_head");
    for (i, age) in ages.iter().enumerate() {
        store.create_task(u.id, task(&format!("{label} {i}")), at(*age)).await.expect("create");
    }
    let rows = read_events(store, topics::TASK_EVENTS, start, ages.len()).await;
    assert_eq!(rows.len(), ages.len(), "one event per task created");
    (u, rows.iter().map(|(seq, _)| *seq).collect())
}

/// The positions of `topic`'s log still stored.
async fn kept(store: &dyn Store, topic: &str) -> Vec<i64> {
    store
        .read_outbox(0, topic, 10_000)
        .await
        .expect("read_outbox")
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

/// A group's committed position reads back as saved, per topic, never moves back, and is
/// 0 for a group that never committed one.
pub async fn check_consumer_positions_read_back_and_never_move_back(store: &dyn Store) {
    let group = format!("relay-{}", unique("positions"));
    let read = |topic| store.consumer_position(&group, topic);
    assert_eq!(read(topics::TASK_EVENTS).await.expect("read"), 0, "none yet");
    store.save_consumer_position(&group, topics::TASK_EVENTS, 7, at(0)).await.expect("save");
    assert_eq!(read(topics::TASK_EVENTS).await.expect("read"), 7);
    assert_eq!(read(topics::REMINDERS).await.expect("read"), 0, "per topic");
    store.save_consumer_position(&group, topics::TASK_EVENTS, 3, at(1)).await.expect("save");
    assert_eq!(read(topics::TASK_EVENTS).await.expect("read"), 7, "never moves back");
    store.save_consumer_position(&group, topics::TASK_EVENTS, 9, at(2)).await.expect("save");
    assert_eq!(read(topics::TASK_EVENTS).await.expect("read"), 9);
}

/// When the groups of the pruning checks save their positions: after the cut-off `at(DAY)`
/// they prune at, as a live group's are (one saved before it no longer holds the log, see
/// [`check_outbox_prune_ignores_groups_stopped_before_the_cut_off`]).
const SAVED: i64 = 2 * DAY;

/// Rows appended before the cut-off that every group has passed are pruned, oldest first; the
/// tail names the last one and the head does not move; a second prune finds nothing.
pub async fn check_outbox_prune_deletes_old_rows_every_group_passed(store: &dyn Store) {
    let (_, seqs) = aged_rows(store, "prune-old", &[0, SEC, 2 * SEC, 2 * DAY]).await;
    let head = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), 0, "nothing pruned");
    store
        .save_consumer_position("audit", topics::TASK_EVENTS, head, at(SAVED))
        .await
        .expect("save");
    store
        .save_consumer_position("live", topics::TASK_UPDATES, head, at(SAVED))
        .await
        .expect("save");

    let pruned = store.prune_outbox(at(DAY), 100).await.expect("prune_outbox");
    assert_eq!(pruned, 3, "the three rows older than a day are pruned");
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[3..], "the young row stays");
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), seqs[2]);
    assert_eq!(store.outbox_tail(topics::TASK_UPDATES).await.expect("tail"), seqs[2]);
    assert_eq!(store.outbox_tail(topics::REMINDERS).await.expect("tail"), 0);
    assert_eq!(store.outbox_head(topics::TASK_EVENTS).await.expect("head"), head);
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune again"), 0);

    // Pruning the whole log keeps its head, and positions are not reused.
    assert_eq!(store.prune_outbox(at(3 * DAY), 100).await.expect("prune all"), 1);
    assert!(kept(store, topics::TASK_EVENTS).await.is_empty());
    assert_eq!(store.outbox_head(topics::TASK_EVENTS).await.expect("head"), head);
    assert_eq!(store.outbox_head(topics::TASK_UPDATES).await.expect("head"), head);
    assert_eq!(store.outbox_tail(topics::TASK_UPDATES).await.expect("tail"), head);
    let (_, next) = aged_rows(store, "prune-old-after", &[4 * DAY]).await;
    assert!(next[0] > head, "position {} reused after pruning up to {head}", next[0]);
}

/// A row one group has not passed stays, and so does every row after it in its topic.
pub async fn check_outbox_prune_keeps_rows_a_group_has_not_passed(store: &dyn Store) {
    let (_, seqs) = aged_rows(store, "prune-held", &[0, SEC, 2 * SEC, 3 * SEC]).await;
    let head = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    store
        .save_consumer_position("audit", topics::TASK_EVENTS, head, at(SAVED))
        .await
        .expect("save");
    store
        .save_consumer_position("slow", topics::TASK_EVENTS, seqs[1], at(SAVED))
        .await
        .expect("save");
    // Positions never move back: this changes nothing.
    store.save_consumer_position("slow", topics::TASK_EVENTS, 0, at(SAVED)).await.expect("save");

    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 2);
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[2..], "the slow group holds the rest");
    store.save_consumer_position("slow", topics::TASK_EVENTS, head, at(SAVED)).await.expect("save");
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 2);
    assert!(kept(store, topics::TASK_EVENTS).await.is_empty());
}

/// Rows appended at or after the cut-off stay, and pruning stops at the first one: an older
/// row after it in the log waits (a topic is pruned from its oldest position, never with
/// holes).
pub async fn check_outbox_prune_keeps_young_rows(store: &dyn Store) {
    let (_, seqs) = aged_rows(store, "prune-young", &[0, 2 * DAY, SEC, DAY]).await;
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 1);
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[1..]);
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), seqs[0]);
}

/// A group whose position was last saved before the cut-off (it stopped: a database switched
/// to Dapr mode keeps its embedded groups' positions) no longer holds rows back, on its own
/// topic or through a log that reads it; a group saved at or after the cut-off still does,
/// and a row appended at or after the cut-off stays whoever has passed it. The stopped
/// group's position is kept, and once it saves again it holds the log again.
pub async fn check_outbox_prune_ignores_groups_stopped_before_the_cut_off(store: &dyn Store) {
    let (_, seqs) = aged_rows(store, "prune-stopped", &[0, SEC, 2 * SEC, 3 * SEC, 2 * DAY]).await;
    let head = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    let save = |group: &'static str, topic, position, when| async move {
        store.save_consumer_position(group, topic, position, at(when)).await.expect("save");
    };
    save("audit", topics::TASK_EVENTS, seqs[0], 0).await;
    save("live", topics::TASK_UPDATES, seqs[0], DAY - 1).await;
    save("webhooks", topics::TASK_EVENTS, seqs[2], DAY).await;

    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 3);
    assert_eq!(
        kept(store, topics::TASK_EVENTS).await,
        seqs[3..],
        "the groups saved before the cut-off hold nothing; the one saved at it holds the rest"
    );
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), seqs[2]);
    assert_eq!(store.outbox_tail(topics::TASK_UPDATES).await.expect("tail"), seqs[2]);
    assert_eq!(store.consumer_position("audit", topics::TASK_EVENTS).await.expect("read"), seqs[0]);

    // The stopped group comes back: its position holds again from the moment it is saved.
    save("audit", topics::TASK_EVENTS, seqs[0], SAVED).await;
    save("webhooks", topics::TASK_EVENTS, head, SAVED).await;
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 0);
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[3..]);

    // Every group has passed everything or stopped: the row younger than the cut-off stays.
    save("audit", topics::TASK_EVENTS, head, SAVED).await;
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 1);
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[4..], "the young row stays");
    assert_eq!(store.prune_outbox(at(3 * DAY), 100).await.expect("prune_outbox"), 1);
    assert!(kept(store, topics::TASK_EVENTS).await.is_empty());
    assert_eq!(store.outbox_tail(topics::TASK_UPDATES).await.expect("tail"), head);
}

/// A group on `task-updates` reads the `task-events` rows (its log is both topics'), so it
/// holds them even when every `task-events` group has passed them; rows of `task-updates`
/// itself are held by it too, and a topic no group reads goes by age alone.
pub async fn check_outbox_prune_task_updates_group_holds_task_events(store: &dyn Store) {
    let (u, seqs) = aged_rows(store, "prune-log", &[0, SEC, 2 * SEC]).await;
    let n = notification(u.id, "prune-log note", 3 * SEC);
    store.append_notification(n, format!("prune-note-{}", u.id)).await.expect("append");
    let log = read_events(store, topics::TASK_UPDATES, seqs[2], 1).await;
    let note = log[0].0;
    let head = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    store
        .save_consumer_position("audit", topics::TASK_EVENTS, head, at(SAVED))
        .await
        .expect("save");
    store
        .save_consumer_position("live", topics::TASK_UPDATES, seqs[0], at(SAVED))
        .await
        .expect("save");

    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 1);
    assert_eq!(kept(store, topics::TASK_EVENTS).await, seqs[1..]);
    assert_eq!(kept(store, topics::TASK_UPDATES).await, [seqs[1], seqs[2], note]);

    store
        .save_consumer_position("live", topics::TASK_UPDATES, note, at(SAVED))
        .await
        .expect("save");
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 3);
    assert!(kept(store, topics::TASK_UPDATES).await.is_empty());
    assert_eq!(store.outbox_tail(topics::TASK_UPDATES).await.expect("tail"), note);
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), seqs[2]);
}

/// One call prunes at most `limit` rows; calling again while it returns `limit` prunes the
/// rest.
pub async fn check_outbox_prune_in_batches(store: &dyn Store) {
    let ages: Vec<i64> = (0..5).map(|i| i * SEC).collect();
    let (_, seqs) = aged_rows(store, "prune-batch", &ages).await;
    let mut batches = Vec::new();
    loop {
        let n = store.prune_outbox(at(DAY), 2).await.expect("prune_outbox");
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1], "batches of at most two, then the rest");
    assert!(kept(store, topics::TASK_EVENTS).await.is_empty());
    assert_eq!(store.outbox_tail(topics::TASK_EVENTS).await.expect("tail"), seqs[4]);
}

/// After a prune, the kept rows read exactly as before (`read_outbox`, `read_outbox_for`),
/// the head is unchanged, and new events are appended and read after it.
pub async fn check_outbox_reads_after_pruning(store: &dyn Store) {
    let (u, seqs) = aged_rows(store, "prune-read", &[0, SEC, 2 * DAY, 2 * DAY + SEC]).await;
    let key = u.id.to_string();
    let before = store.read_outbox(0, topics::TASK_UPDATES, 100).await.expect("read_outbox");
    let head = store.outbox_head(topics::TASK_UPDATES).await.expect("head");
    assert_eq!(store.prune_outbox(at(DAY), 100).await.expect("prune_outbox"), 2);

    let after = store.read_outbox(0, topics::TASK_UPDATES, 100).await.expect("read_outbox");
    let ids =
        |v: &[(i64, CloudEvent)]| v.iter().map(|(s, e)| (*s, e.id.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before[2..]), "the kept rows, unchanged");
    assert_eq!(store.outbox_head(topics::TASK_UPDATES).await.expect("head"), head);
    let replay = store
        .read_outbox_for(topics::TASK_UPDATES, &key, 0, head, 100)
        .await
        .expect("read_outbox_for");
    assert_eq!(ids(&replay), ids(&before[2..]), "a key's replay reads the kept rows");
    let from_middle = store
        .read_outbox_for(topics::TASK_UPDATES, &key, seqs[2], head, 100)
        .await
        .expect("read_outbox_for");
    assert_eq!(ids(&from_middle), ids(&before[3..]));

    // A reader at the head (where a consumer stands) goes on reading new events.
    store.create_task(u.id, task("prune-read new"), at(3 * DAY)).await.expect("create");
    let new = read_events(store, topics::TASK_UPDATES, head, 1).await;
    assert_eq!(new.len(), 1);
    assert!(new[0].0 > head);
    assert_eq!(store.outbox_head(topics::TASK_UPDATES).await.expect("head"), new[0].0);
}

// --- state store

/// What a stamped state test holds: the state store and whatever keeps it alive.
pub trait StateFixture {
    fn state(&self) -> &dyn StateStore;

    /// Runs after a check passed.
    fn teardown(self) -> impl std::future::Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

/// Stamps one `#[tokio::test]` per state store check, like [`store_conformance!`]; `$make`
/// yields `Option<F>` with `F: StateFixture`.
#[macro_export]
macro_rules! state_conformance {
    ($make:expr) => {
        $crate::state_conformance!(@checks $make;
            check_state_round_trip,
            check_state_etag_changes_on_every_write,
            check_state_stale_etag_conflicts,
            check_state_etag_on_missing_key_conflicts,
            check_state_delete_with_stale_etag_conflicts,
            check_state_ttl_expiry,
            check_state_create_only_when_missing_or_expired,
            check_state_purge_expired,
            check_state_invalid_keys,
        );
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $make else { return };
                $crate::conformance::$check($crate::conformance::StateFixture::state(&fixture)).await;
                $crate::conformance::StateFixture::teardown(fixture).await;
            }
        )*
    };
}

fn state_key(label: &str) -> String {
    format!("test:{}", unique(label))
}

#[track_caller]
fn expect_state_conflict<T: std::fmt::Debug>(r: Result<T, StateError>, what: &str) {
    match r {
        Err(StateError::Conflict { .. }) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

async fn value_of(state: &dyn StateStore, key: &str, now: Timestamp) -> Option<Vec<u8>> {
    state.get(key, now).await.expect("get").map(|e| e.value)
}

/// `set` then `get` returns the value and the ETag `set` returned; missing keys are `None`;
/// `delete` removes; deleting a missing key without an ETag succeeds.
pub async fn check_state_round_trip(state: &dyn StateStore) {
    let key = state_key("round-trip");
    assert_eq!(state.get(&key, at(0)).await.expect("get"), None, "a missing key is None");
    let value = br#"{"a":1}"#.to_vec();
    let etag = state.set(&key, value.clone(), None, None, at(0)).await.expect("set");
    let got = state.get(&key, at(0)).await.expect("get").expect("the value just set");
    assert_eq!(got, StateEntry { value, etag, expires_at: None });
    let binary = vec![0u8, 255, 10, 13];
    state.set(&key, binary.clone(), None, None, at(1)).await.expect("overwrite without etag");
    assert_eq!(value_of(state, &key, at(1)).await, Some(binary), "bytes round-trip exactly");
    state.delete(&key, None, at(2)).await.expect("delete");
    assert_eq!(value_of(state, &key, at(2)).await, None, "deleted");
    state.delete(&key, None, at(2)).await.expect("deleting a missing key is idempotent");
    let other = state_key("other");
    assert_eq!(value_of(state, &other, at(2)).await, None, "keys are independent");
}

/// Every write returns a new ETag, different from all earlier ones of the key, also after a
/// delete and re-create.
pub async fn check_state_etag_changes_on_every_write(state: &dyn StateStore) {
    let key = state_key("etags");
    let mut seen = HashSet::new();
    let mut etag = state.set(&key, b"0".to_vec(), None, None, at(0)).await.expect("set");
    seen.insert(etag.clone());
    for i in 1..5 {
        etag = state
            .set(&key, b"same".to_vec(), Some(&etag), None, at(i))
            .await
            .expect("set with the current etag");
        assert!(seen.insert(etag.clone()), "etag '{etag}' was returned before");
        let got = state.get(&key, at(i)).await.expect("get").expect("present");
        assert_eq!(got.etag, etag, "get returns the etag of the last write");
    }
    state.delete(&key, Some(&etag), at(9)).await.expect("delete with the current etag");
    let again = state.set(&key, b"0".to_vec(), None, None, at(10)).await.expect("re-create");
    assert!(!seen.contains(&again), "a re-created key gets an etag never seen before");
    expect_state_conflict(
        state.set(&key, b"x".to_vec(), Some(&etag), None, at(11)).await,
        "an etag from before a delete",
    );
}

/// A stale ETag is a `Conflict` and changes nothing (first write wins).
pub async fn check_state_stale_etag_conflicts(state: &dyn StateStore) {
    let key = state_key("stale");
    let first = state.set(&key, b"v1".to_vec(), None, None, at(0)).await.expect("set");
    let second =
        state.set(&key, b"v2".to_vec(), Some(&first), None, at(1)).await.expect("first writer");
    expect_state_conflict(
        state.set(&key, b"v3".to_vec(), Some(&first), None, at(2)).await,
        "second writer with the stale etag",
    );
    let got = state.get(&key, at(2)).await.expect("get").expect("present");
    assert_eq!((got.value, got.etag), (b"v2".to_vec(), second), "the conflict changed nothing");
    expect_state_conflict(
        state.set(&key, b"v3".to_vec(), Some("not-an-etag"), None, at(2)).await,
        "a made-up etag",
    );
}

/// `set` with an ETag on a key that does not exist is a `Conflict` and creates nothing.
pub async fn check_state_etag_on_missing_key_conflicts(state: &dyn StateStore) {
    let key = state_key("missing");
    expect_state_conflict(
        state.set(&key, b"v".to_vec(), Some("abc"), None, at(0)).await,
        "set with an etag on a missing key",
    );
    assert_eq!(value_of(state, &key, at(0)).await, None, "nothing was created");
    expect_state_conflict(
        state.delete(&key, Some("abc"), at(0)).await,
        "delete with an etag on a missing key",
    );
}

/// `delete` with a stale ETag is a `Conflict` and keeps the entry.
pub async fn check_state_delete_with_stale_etag_conflicts(state: &dyn StateStore) {
    let key = state_key("delete");
    let first = state.set(&key, b"v1".to_vec(), None, None, at(0)).await.expect("set");
    let second = state.set(&key, b"v2".to_vec(), None, None, at(1)).await.expect("set");
    expect_state_conflict(state.delete(&key, Some(&first), at(2)).await, "stale delete");
    assert_eq!(value_of(state, &key, at(2)).await, Some(b"v2".to_vec()), "still there");
    state.delete(&key, Some(&second), at(3)).await.expect("delete with the current etag");
    assert_eq!(value_of(state, &key, at(3)).await, None);
}

/// An entry with a ttl is live before `now + ttl` and behaves as missing from then on, for
/// `get`, `set` with an ETag and `delete` with an ETag; a `set` without ttl clears it.
pub async fn check_state_ttl_expiry(state: &dyn StateStore) {
    let key = state_key("ttl");
    let ttl = std::time::Duration::from_secs(60);
    let etag = state.set(&key, b"v".to_vec(), None, Some(ttl), at(0)).await.expect("set");
    let got = state.get(&key, at(59 * SEC)).await.expect("get").expect("live before expiry");
    assert_eq!(got.expires_at, Some(at(60 * SEC)), "expires at now + ttl");
    assert_eq!(value_of(state, &key, at(60 * SEC)).await, None, "expired at now + ttl");
    assert_eq!(value_of(state, &key, at(DAY)).await, None, "expired later");
    expect_state_conflict(
        state.set(&key, b"w".to_vec(), Some(&etag), None, at(61 * SEC)).await,
        "set with the etag of an expired entry",
    );
    expect_state_conflict(
        state.delete(&key, Some(&etag), at(61 * SEC)).await,
        "delete with the etag of an expired entry",
    );
    state.set(&key, b"w".to_vec(), None, None, at(62 * SEC)).await.expect("set over expired");
    let got = state.get(&key, at(DAY)).await.expect("get").expect("no ttl now");
    assert_eq!((got.value, got.expires_at), (b"w".to_vec(), None), "a set without ttl clears it");
}

/// `create` writes only a missing or expired key; of concurrent creates exactly one wins.
pub async fn check_state_create_only_when_missing_or_expired(state: &dyn StateStore) {
    let key = state_key("create");
    let ttl = Some(std::time::Duration::from_secs(10));
    let etag = state.create(&key, b"a".to_vec(), ttl, at(0)).await.expect("create");
    let etag = etag.expect("a missing key is created");
    let got = state.get(&key, at(SEC)).await.expect("get").expect("live");
    assert_eq!((got.value, got.etag), (b"a".to_vec(), etag), "read back with its etag");
    assert_eq!(
        state.create(&key, b"b".to_vec(), ttl, at(5 * SEC)).await.expect("create"),
        None,
        "a live key is not replaced"
    );
    assert_eq!(value_of(state, &key, at(6 * SEC)).await.as_deref(), Some(&b"a"[..]));
    let again = state.create(&key, b"c".to_vec(), ttl, at(10 * SEC)).await.expect("create");
    assert!(again.is_some(), "an expired key is created again");
    assert_eq!(value_of(state, &key, at(11 * SEC)).await.as_deref(), Some(&b"c"[..]));

    let race = state_key("create-race");
    let tries = (0..8u8).map(|i| state.create(&race, vec![i], None, at(0)));
    let won = futures::future::join_all(tries)
        .await
        .into_iter()
        .map(|r| r.expect("create"))
        .filter(Option::is_some)
        .count();
    assert_eq!(won, 1, "exactly one concurrent create wins");
}

/// `purge_expired` removes exactly the entries expired at `now`.
pub async fn check_state_purge_expired(state: &dyn StateStore) {
    let short = state_key("short");
    let long = state_key("long");
    let forever = state_key("forever");
    let ttl = |s: u64| Some(std::time::Duration::from_secs(s));
    state.set(&short, b"s".to_vec(), None, ttl(10), at(0)).await.expect("set");
    state.set(&long, b"l".to_vec(), None, ttl(100), at(0)).await.expect("set");
    state.set(&forever, b"f".to_vec(), None, None, at(0)).await.expect("set");
    assert_eq!(state.purge_expired(at(5 * SEC)).await.expect("purge"), 0, "nothing expired yet");
    assert_eq!(state.purge_expired(at(10 * SEC)).await.expect("purge"), 1, "the short one");
    assert_eq!(state.purge_expired(at(10 * SEC)).await.expect("purge"), 0, "already purged");
    assert_eq!(value_of(state, &long, at(10 * SEC)).await, Some(b"l".to_vec()));
    assert_eq!(state.purge_expired(at(DAY)).await.expect("purge"), 1, "the long one");
    assert_eq!(value_of(state, &forever, at(DAY)).await, Some(b"f".to_vec()), "no ttl, kept");
}

/// Invalid keys fail every operation with `InvalidKey`, naming the key and the rule.
pub async fn check_state_invalid_keys(state: &dyn StateStore) {
    let long = format!("test:{}", "x".repeat(251));
    let cases: [(&str, &str); 8] = [
        ("", "must not be empty"),
        (&long, "is longer than 255 characters"),
        ("no-namespace", "has no namespace"),
        (":id", "has an invalid namespace"),
        ("Test:id", "has an invalid namespace"),
        ("dapr:id", "reserved namespace 'dapr'"),
        ("test:a\u{7}b", "printable ASCII"),
        ("test:a b", "printable ASCII"),
    ];
    for (key, rule) in cases {
        let results = [
            state.get(key, at(0)).await.map(|_| ()),
            state.set(key, b"v".to_vec(), None, None, at(0)).await.map(|_| ()),
            state.delete(key, None, at(0)).await,
        ];
        for r in results {
            match r {
                Err(e @ StateError::InvalidKey { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(rule), "message '{msg}' names the rule '{rule}'");
                    let shown: String =
                        key.chars().take(20).flat_map(char::escape_default).collect();
                    assert!(msg.contains(&shown), "message '{msg}' names the key");
                }
                other => panic!("key {key:?}: expected InvalidKey, got {other:?}"),
            }
        }
    }
    let longest = format!("test:{}", "x".repeat(250));
    state.set(&longest, b"v".to_vec(), None, None, at(0)).await.expect("255 characters is fine");
    state
        .set("processed:audit:0192f000-aaaa", b"1".to_vec(), None, None, at(0))
        .await
        .expect("a consumer key");
}

// --- audit log

/// An audit entry of `user`'s task `task` at position `seq`.
fn audit_entry(user: &User, task: uuid::Uuid, seq: i64) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::now_v7(),
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: "com.todo.task.updated".into(),
        entity_type: crate::audit::ENTITY_TASK.into(),
        entity_id: task,
        user_id: user.id,
        actor: user.id.to_string(),
        at: at(seq),
        data: serde_json::json!({ "seq": seq, "changes": { "title": ["a", "b"] } }),
        seq,
    }
}

/// Appending an event twice keeps one entry, the first; what is read back equals what was
/// appended.
pub async fn check_audit_append_idempotent(store: &dyn Store) {
    let u = user(store, "audit-once").await;
    let task = uuid::Uuid::now_v7();
    let first = audit_entry(&u, task, 1);
    assert!(store.append_audit(first.clone()).await.expect("append_audit"), "first append is new");
    let again = AuditEntry { id: uuid::Uuid::now_v7(), seq: 2, ..first.clone() };
    assert!(!store.append_audit(again).await.expect("append_audit"), "second append is a no-op");
    let page = store.task_history(u.id, TaskId(task), None, 10).await.expect("task_history");
    assert_eq!(page, AuditPage { items: vec![first.clone()], next_cursor: None });
    let page = store.activity(u.id, None, 10).await.expect("activity");
    assert_eq!(page.items, vec![first]);
}

/// Another user's entries are never returned: their task's history is empty, their activity
/// their own.
pub async fn check_audit_scoped_by_user(store: &dyn Store) {
    let a = user(store, "audit-a").await;
    let b = user(store, "audit-b").await;
    let task_a = uuid::Uuid::now_v7();
    let task_b = uuid::Uuid::now_v7();
    let ea = audit_entry(&a, task_a, 1);
    let eb = audit_entry(&b, task_b, 2);
    let ea2 = audit_entry(&a, uuid::Uuid::now_v7(), 3);
    for e in [&ea, &eb, &ea2] {
        store.append_audit(e.clone()).await.expect("append_audit");
    }
    let page = store.task_history(b.id, TaskId(task_a), None, 10).await.expect("task_history");
    assert!(page.items.is_empty(), "another user's task history is empty");
    let page = store.task_history(a.id, TaskId(task_a), None, 10).await.expect("task_history");
    assert_eq!(page.items, vec![ea.clone()], "a task's history holds only its entries");
    let page = store.activity(a.id, None, 10).await.expect("activity");
    assert_eq!(page.items, vec![ea, ea2], "activity is the user's own, oldest first");
    let page = store.activity(b.id, None, 10).await.expect("activity");
    assert_eq!(page.items, vec![eb]);
}

/// Paging by `next_cursor` returns every entry once, oldest first, `next_cursor` exactly
/// when more follow, even when entries are appended between pages.
pub async fn check_audit_paging_without_skips(store: &dyn Store) {
    let u = user(store, "audit-pages").await;
    let task = uuid::Uuid::now_v7();
    let mut all = Vec::new();
    for seq in [10, 20, 30, 40, 50] {
        let e = audit_entry(&u, task, seq);
        store.append_audit(e.clone()).await.expect("append_audit");
        all.push(e);
    }
    for by_task in [true, false] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut appended = false;
        loop {
            let page = if by_task {
                store.task_history(u.id, TaskId(task), after, 2).await.expect("task_history")
            } else {
                store.activity(u.id, after, 2).await.expect("activity")
            };
            assert!(page.items.len() <= 2, "at most limit entries");
            seen.extend(page.items);
            if !appended {
                let seq = 60 + i64::from(by_task);
                let e = audit_entry(&u, task, seq);
                store.append_audit(e.clone()).await.expect("append_audit");
                all.push(e);
                appended = true;
            }
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        let mut expected = all.clone();
        expected.sort_by_key(|e| e.seq);
        assert_eq!(seen, expected, "every entry once, oldest first (by task: {by_task})");
    }
    let page = store.activity(u.id, None, all.len()).await.expect("activity");
    assert_eq!(page.next_cursor, None, "no cursor when nothing follows");
}

// --- reminders

fn at_trigger(offset: i64) -> NewReminder {
    NewReminder { trigger: Trigger::At(at(offset)), channels: Channels::default() }
}

fn before_due(iso: &str) -> NewReminder {
    NewReminder {
        trigger: Trigger::BeforeDue(Offset::parse(iso).expect("valid offset")),
        channels: Channels::parse(&["email", "in_app"]).expect("channels"),
    }
}

fn due_task(t: &str, due: i64) -> NewTask {
    NewTask { due_date: Some(at(due)), ..task(t) }
}

fn patch_status(status: Status) -> TaskPatch {
    TaskPatch { status: Some(status), ..TaskPatch::default() }
}

/// Reminders are created, listed, read and deleted only through their owner's task.
pub async fn check_reminders_scoped_to_the_owner(store: &dyn Store) {
    let a = user(store, "remind-a").await;
    let b = user(store, "remind-b").await;
    let t = store.create_task(a.id, due_task("Dentist", DAY), at(0)).await.expect("create");
    let abs = store.create_reminder(a.id, t.id, at_trigger(HOUR), at(1)).await.expect("absolute");
    let rel =
        store.create_reminder(a.id, t.id, before_due("PT15M"), at(2)).await.expect("relative");
    assert_eq!(abs.status, ReminderStatus::Pending);
    assert_eq!(abs.fire_at, Some(at(HOUR)));
    assert_eq!(rel.fire_at, Some(at(DAY - 15 * MIN)), "15 minutes before the due date");
    assert_eq!(rel.channels.as_slice(), [Channel::InApp, Channel::Email]);
    assert_eq!(
        store.list_reminders(a.id, t.id).await.expect("list"),
        vec![abs.clone(), rel.clone()],
        "oldest first, read back as written"
    );
    assert_eq!(store.get_reminder(a.id, rel.id).await.expect("get"), rel);

    expect_not_found(store.list_reminders(b.id, t.id).await, "list another user's reminders");
    expect_not_found(store.get_reminder(b.id, rel.id).await, "get another user's reminder");
    expect_not_found(
        store.create_reminder(b.id, t.id, at_trigger(HOUR), at(3)).await,
        "remind on another user's task",
    );
    expect_not_found(store.delete_reminder(b.id, t.id, abs.id).await, "delete another's reminder");
    expect_not_found(
        store.create_reminder(a.id, new_id(), at_trigger(HOUR), at(3)).await,
        "remind on an unknown task",
    );

    store.delete_reminder(a.id, t.id, abs.id).await.expect("delete");
    assert_eq!(store.list_reminders(a.id, t.id).await.expect("list"), vec![rel]);
    expect_not_found(store.delete_reminder(a.id, t.id, abs.id).await, "delete twice");

    // A reminder of a task without a due date has no fire time until it gets one.
    let undated = store.create_task(a.id, task("Someday"), at(0)).await.expect("create");
    let r = store.create_reminder(a.id, undated.id, before_due("P1D"), at(4)).await.expect("r");
    assert_eq!(r.fire_at, None);
}

/// Relative reminders follow the due date; completing cancels, reopening re-arms what is
/// still in the future.
pub async fn check_reminders_follow_due_date_and_status(store: &dyn Store) {
    let u = user(store, "remind-follow").await;
    let t = store.create_task(u.id, due_task("Report", 10 * DAY), at(0)).await.expect("create");
    let rel = store.create_reminder(u.id, t.id, before_due("P1D"), at(1)).await.expect("rel");
    let abs = store.create_reminder(u.id, t.id, at_trigger(2 * DAY), at(1)).await.expect("abs");
    let early = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(1)).await.expect("early");
    let find = |list: &[Reminder], id| list.iter().find(|r| r.id == id).cloned().expect("listed");

    let moved = TaskPatch { due_date: Some(Some(at(20 * DAY))), ..TaskPatch::default() };
    store.update_task(u.id, t.id, moved, None, at(2)).await.expect("move the due date");
    let list = store.list_reminders(u.id, t.id).await.expect("list");
    assert_eq!(find(&list, rel.id).fire_at, Some(at(19 * DAY)), "follows the due date");
    assert_eq!(find(&list, abs.id).fire_at, Some(at(2 * DAY)), "an absolute one stays");

    let cleared = TaskPatch { due_date: Some(None), ..TaskPatch::default() };
    store.update_task(u.id, t.id, cleared, None, at(3)).await.expect("clear the due date");
    let list = store.list_reminders(u.id, t.id).await.expect("list");
    assert_eq!(find(&list, rel.id).fire_at, None, "no due date, no fire time");
    let back = TaskPatch { due_date: Some(Some(at(10 * DAY))), ..TaskPatch::default() };
    store.update_task(u.id, t.id, back, None, at(4)).await.expect("due again");

    store
        .update_task(u.id, t.id, patch_status(Status::Completed), None, at(5))
        .await
        .expect("done");
    let list = store.list_reminders(u.id, t.id).await.expect("list");
    assert!(list.iter().all(|r| r.status == ReminderStatus::Canceled), "{list:?}");
    assert_eq!(store.fire_due_reminders(at(30 * DAY), 100).await.expect("fire"), vec![]);

    // Reopened at 1.5 days: `early` (1 h) is past and stays canceled; the others re-arm.
    let now = at(DAY + 12 * HOUR);
    store.update_task(u.id, t.id, patch_status(Status::Pending), None, now).await.expect("reopen");
    let list = store.list_reminders(u.id, t.id).await.expect("list");
    assert_eq!(find(&list, early.id).status, ReminderStatus::Canceled);
    assert_eq!(find(&list, abs.id).status, ReminderStatus::Pending);
    assert_eq!(find(&list, rel.id).status, ReminderStatus::Pending);
    assert_eq!(find(&list, rel.id).fire_at, Some(at(9 * DAY)));

    // A reminder added to a completed task waits, canceled, for a reopen.
    store
        .update_task(u.id, t.id, patch_status(Status::Completed), None, at(DAY * 2))
        .await
        .expect("done");
    let late =
        store.create_reminder(u.id, t.id, at_trigger(5 * DAY), at(DAY * 2)).await.expect("late");
    assert_eq!(late.status, ReminderStatus::Canceled);
}

/// A due reminder fires once, earliest first, with its `reminder.triggered` event; the next
/// deadline is the earliest pending one.
pub async fn check_reminders_fire_once_with_their_event(store: &dyn Store) {
    let u = user(store, "remind-fire").await;
    let t = store.create_task(u.id, due_task("Call", 10 * DAY), at(0)).await.expect("create");
    let start = store.outbox_head(topics::REMINDERS).await.expect("head");
    let second = store.create_reminder(u.id, t.id, at_trigger(2 * HOUR), at(1)).await.expect("r");
    let first = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(1)).await.expect("r");
    let later = store.create_reminder(u.id, t.id, at_trigger(DAY), at(1)).await.expect("r");
    assert_eq!(store.next_reminder_at().await.expect("next"), Some(at(HOUR)));
    assert_eq!(
        store.fire_due_reminders(at(HOUR - 1), 10).await.expect("fire"),
        vec![],
        "never early"
    );

    let now = at(3 * HOUR);
    let fired = store.fire_due_reminders(now, 10).await.expect("fire");
    let ids: Vec<ReminderId> = fired.iter().map(|r| r.id).collect();
    assert_eq!(ids, [first.id, second.id], "the due ones, earliest first");
    for r in &fired {
        assert_eq!(r.status, ReminderStatus::Fired);
        assert_eq!(r.fired_at, Some(now));
        assert_eq!(r.attempts, 1);
    }
    assert_eq!(store.fire_due_reminders(now, 10).await.expect("again"), vec![], "fired once");
    assert_eq!(store.next_reminder_at().await.expect("next"), Some(at(DAY)));
    let listed = store.list_reminders(u.id, t.id).await.expect("list");
    assert_eq!(listed.iter().filter(|r| r.status == ReminderStatus::Fired).count(), 2);
    assert!(listed.iter().any(|r| r.id == later.id && r.status == ReminderStatus::Pending));

    let events = read_events(store, topics::REMINDERS, start, 2).await;
    assert_eq!(events.len(), 2, "one event per firing");
    for ((_, e), r) in events.iter().zip(&fired) {
        assert_eq!(e.ty, types::REMINDER_TRIGGERED);
        assert_eq!(e.subject.as_deref(), Some(t.id.to_string().as_str()));
        assert_eq!(e.partitionkey.as_deref(), Some(u.id.to_string().as_str()));
        let data = e.data.as_ref().expect("data");
        assert_eq!(data["reminder"]["id"], r.id.to_string());
        assert_eq!(data["reminder"]["status"], "fired");
        assert_eq!(data["task"]["id"], t.id.to_string());
    }
}

/// Concurrent firing callers share the due reminders without firing any twice.
pub async fn check_reminders_fire_exactly_once_under_concurrency(store: &dyn Store) {
    const N: usize = 60;
    let u = user(store, "remind-race").await;
    let t = store.create_task(u.id, task("Many"), at(0)).await.expect("create");
    let mut want = HashSet::new();
    for i in 0..N {
        let r = store.create_reminder(u.id, t.id, at_trigger(i as i64), at(0)).await.expect("r");
        want.insert(r.id);
    }
    let now = at(HOUR);
    let racers = (0..4).map(|_| async {
        let mut mine = Vec::new();
        loop {
            let fired = store.fire_due_reminders(now, 7).await.expect("fire");
            if fired.is_empty() {
                return mine;
            }
            mine.extend(fired.into_iter().map(|r| r.id));
        }
    });
    let all: Vec<ReminderId> = join_all(racers).await.into_iter().flatten().collect();
    let unique: HashSet<ReminderId> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "no reminder fired twice");
    assert_eq!(unique, want, "every due reminder fired");
}

/// Deleting a task deletes its reminders: they are gone and never fire.
/// A reminder whose task's due date moves fires at its new time only: moved later, nothing
/// fires at the old time; moved earlier, it fires at the new time, once.
pub async fn check_moved_reminders_fire_at_their_new_time_only(store: &dyn Store) {
    let u = user(store, "remind-moved").await;
    let later = store.create_task(u.id, due_task("Later", 10 * DAY), at(0)).await.expect("task");
    let sooner = store.create_task(u.id, due_task("Sooner", 10 * DAY), at(0)).await.expect("task");
    let a = store.create_reminder(u.id, later.id, before_due("P1D"), at(1)).await.expect("a");
    let b = store.create_reminder(u.id, sooner.id, before_due("P1D"), at(1)).await.expect("b");
    let due = |d| TaskPatch { due_date: Some(Some(at(d))), ..TaskPatch::default() };
    store.update_task(u.id, later.id, due(20 * DAY), None, at(2)).await.expect("move later");
    store.update_task(u.id, sooner.id, due(5 * DAY), None, at(2)).await.expect("move earlier");
    let fired_ids = |v: Vec<Reminder>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let before_new = at(4 * DAY) - jiff::SignedDuration::from_micros(1);
    let none = store.fire_due_reminders(before_new, 100).await.expect("fire");
    assert!(fired_ids(none).iter().all(|id| *id != a.id && *id != b.id), "nothing early");
    let moved_earlier = store.fire_due_reminders(at(4 * DAY), 100).await.expect("fire");
    assert_eq!(fired_ids(moved_earlier), vec![b.id], "the earlier one at its new time");
    let old_time = store.fire_due_reminders(at(9 * DAY), 100).await.expect("fire");
    assert!(old_time.is_empty(), "nothing at the old time: {old_time:?}");
    let before_later = at(19 * DAY) - jiff::SignedDuration::from_micros(1);
    assert!(store.fire_due_reminders(before_later, 100).await.expect("fire").is_empty());
    let moved_later = store.fire_due_reminders(at(19 * DAY), 100).await.expect("fire");
    assert_eq!(fired_ids(moved_later), vec![a.id], "the later one at its new time");
    assert!(store.fire_due_reminders(at(30 * DAY), 100).await.expect("fire").is_empty(), "once");
    let list = store.list_reminders(u.id, later.id).await.expect("list");
    assert_eq!((list[0].status, list[0].fired_at), (ReminderStatus::Fired, Some(at(19 * DAY))));
}

/// `upcoming_reminders(until, limit)` lists the pending reminders with a fire time at or
/// before `until` (overdue included), earliest first, ties by id, at most `limit`: exactly
/// what `fire_due_reminders` at `until` claims; never canceled, fired, undated or deleted
/// ones; a moved fire time is listed at its new time; reading changes nothing.
pub async fn check_upcoming_reminders_are_the_pending_ones_earliest_first(store: &dyn Store) {
    let u = user(store, "remind-upcoming").await;
    let t = store.create_task(u.id, due_task("Trip", 10 * DAY), at(0)).await.expect("create");
    let second = store.create_reminder(u.id, t.id, at_trigger(2 * HOUR), at(1)).await.expect("r");
    let first = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(1)).await.expect("r");
    let tie = store.create_reminder(u.id, t.id, at_trigger(2 * HOUR), at(1)).await.expect("r");
    let rel = store.create_reminder(u.id, t.id, before_due("P1D"), at(1)).await.expect("rel");
    // Never listed: no fire time, canceled by completion, gone with its task.
    let undated = store.create_task(u.id, task("Someday"), at(0)).await.expect("create");
    store.create_reminder(u.id, undated.id, before_due("PT1H"), at(1)).await.expect("undated");
    let done = store.create_task(u.id, task("Done"), at(0)).await.expect("create");
    store.create_reminder(u.id, done.id, at_trigger(HOUR), at(1)).await.expect("canceled");
    store
        .update_task(u.id, done.id, patch_status(Status::Completed), None, at(2))
        .await
        .expect("complete");
    let gone = store.create_task(u.id, task("Gone"), at(0)).await.expect("create");
    store.create_reminder(u.id, gone.id, at_trigger(HOUR), at(1)).await.expect("deleted");
    store.delete_task(u.id, gone.id, None, at(2)).await.expect("delete");

    let mut ties = [second.id, tie.id];
    ties.sort();
    let want_all = vec![
        (first.id, at(HOUR)),
        (ties[0], at(2 * HOUR)),
        (ties[1], at(2 * HOUR)),
        (rel.id, at(9 * DAY)),
    ];
    let all = store.upcoming_reminders(at(30 * DAY), 100).await.expect("upcoming");
    assert_eq!(all, want_all, "pending ones only, earliest first, ties by id");
    assert_eq!(
        store.upcoming_reminders(at(30 * DAY), 100).await.expect("again"),
        all,
        "reading changes nothing"
    );
    assert_eq!(
        store.upcoming_reminders(at(2 * HOUR), 100).await.expect("upcoming"),
        want_all[..3],
        "`until` is inclusive"
    );
    let just_before = at(2 * HOUR) - jiff::SignedDuration::from_micros(1);
    assert_eq!(
        store.upcoming_reminders(just_before, 100).await.expect("upcoming"),
        want_all[..1],
        "nothing after `until`"
    );
    assert_eq!(
        store.upcoming_reminders(at(30 * DAY), 2).await.expect("upcoming"),
        want_all[..2],
        "at most `limit`, the earliest"
    );
    assert_eq!(store.upcoming_reminders(at(0), 100).await.expect("upcoming"), vec![]);

    let moved = TaskPatch { due_date: Some(Some(at(20 * DAY))), ..TaskPatch::default() };
    store.update_task(u.id, t.id, moved, None, at(3)).await.expect("move the due date");
    let listed = store.upcoming_reminders(at(30 * DAY), 100).await.expect("upcoming");
    assert_eq!(listed.last(), Some(&(rel.id, at(19 * DAY))), "listed at its new time");

    // Overdue ones stay listed until they fire; what is listed is what fires.
    let now = at(3 * HOUR);
    let due = store.upcoming_reminders(now, 100).await.expect("upcoming");
    let fired = store.fire_due_reminders(now, 100).await.expect("fire");
    let fired: Vec<(ReminderId, Timestamp)> =
        fired.iter().map(|r| (r.id, r.fire_at.expect("fired with a fire time"))).collect();
    assert_eq!(due, fired, "upcoming until `now` is what fire_due_reminders(now) claims");
    assert_eq!(
        store.upcoming_reminders(at(30 * DAY), 100).await.expect("upcoming"),
        vec![(rel.id, at(19 * DAY))],
        "fired ones are no longer listed"
    );
}

pub async fn check_reminders_go_with_their_task(store: &dyn Store) {
    let u = user(store, "remind-delete").await;
    let t = store.create_task(u.id, task("Gone"), at(0)).await.expect("create");
    let r = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(0)).await.expect("r");
    store.delete_task(u.id, t.id, None, at(1)).await.expect("delete the task");
    expect_not_found(store.get_reminder(u.id, r.id).await, "a deleted task's reminder");
    expect_not_found(store.list_reminders(u.id, t.id).await, "a deleted task's reminders");
    assert_eq!(store.fire_due_reminders(at(DAY), 100).await.expect("fire"), vec![]);
}

// --- notifications

fn notification(user: UserId, title: &str, created: i64) -> Notification {
    Notification {
        id: new_id(),
        user_id: user,
        task_id: Some(new_id()),
        reminder_id: None,
        title: title.to_owned(),
        body: format!("{title} is due"),
        created_at: at(created),
        read_at: None,
    }
}

/// A notification is appended once per causing event, with its `notification.created`
/// event on the `task-updates` log.
pub async fn check_notifications_append_once_with_their_event(store: &dyn Store) {
    let u = user(store, "notify-once").await;
    let start = store.outbox_head(topics::TASK_UPDATES).await.expect("head");
    let n = notification(u.id, "Dentist", 10);
    assert!(store.append_notification(n.clone(), "evt-1".to_owned()).await.expect("append"));
    let again = notification(u.id, "Dentist", 11);
    assert!(!store.append_notification(again, "evt-1".to_owned()).await.expect("again"));
    assert_eq!(store.list_notifications(u.id, false, 50).await.expect("list"), vec![n.clone()]);
    let events = read_events(store, topics::TASK_UPDATES, start, 1).await;
    assert_eq!(events.len(), 1, "one event for one notification");
    let e = &events[0].1;
    assert_eq!(e.ty, types::NOTIFICATION_CREATED);
    assert_eq!(e.subject.as_deref(), Some(n.id.to_string().as_str()));
    assert_eq!(e.partitionkey.as_deref(), Some(u.id.to_string().as_str()));
    assert_eq!(e.data.as_ref().expect("data")["notification"]["title"], "Dentist");
    // Not on task-events: the audit and recurrence consumers never see it.
    let task_events = store.read_outbox(start, topics::TASK_EVENTS, 100).await.expect("read");
    assert!(task_events.iter().all(|(_, e)| e.ty != types::NOTIFICATION_CREATED));
}

/// Lists are the owner's, newest first; marking read is scoped, idempotent, and read-all
/// marks only what is unread.
pub async fn check_notifications_scoped_newest_first_and_read(store: &dyn Store) {
    let a = user(store, "notify-a").await;
    let b = user(store, "notify-b").await;
    let mut mine = Vec::new();
    for i in 1..=3 {
        let n = notification(a.id, &format!("n{i}"), i * SEC);
        store.append_notification(n.clone(), format!("a-{i}-{}", n.id)).await.expect("append");
        mine.push(n);
    }
    let theirs = notification(b.id, "other", SEC);
    store.append_notification(theirs.clone(), format!("b-{}", theirs.id)).await.expect("append");

    let ids = |l: &[Notification]| l.iter().map(|n| n.id).collect::<Vec<_>>();
    let list = store.list_notifications(a.id, false, 50).await.expect("list");
    assert_eq!(ids(&list), [mine[2].id, mine[1].id, mine[0].id], "newest first, only mine");
    assert_eq!(ids(&store.list_notifications(b.id, false, 50).await.expect("list")), [theirs.id]);
    assert_eq!(store.list_notifications(a.id, false, 2).await.expect("list").len(), 2);

    expect_not_found(
        store.mark_notification_read(b.id, mine[1].id, at(HOUR)).await,
        "mark another user's notification",
    );
    let read = store.mark_notification_read(a.id, mine[1].id, at(HOUR)).await.expect("read");
    assert_eq!(read.read_at, Some(at(HOUR)));
    let again = store.mark_notification_read(a.id, mine[1].id, at(DAY)).await.expect("again");
    assert_eq!(again.read_at, Some(at(HOUR)), "the first read time stays");
    let unread = store.list_notifications(a.id, true, 50).await.expect("unread");
    assert_eq!(ids(&unread), [mine[2].id, mine[0].id]);

    assert_eq!(store.mark_all_notifications_read(a.id, at(DAY)).await.expect("all"), 2);
    assert!(store.list_notifications(a.id, true, 50).await.expect("unread").is_empty());
    assert_eq!(store.list_notifications(b.id, true, 50).await.expect("b").len(), 1, "b untouched");
}

// --- series

fn daily_series(start_offset: i64, mode: docket_core::Mode) -> docket_core::NewSeries {
    let recurrence = docket_core::Recurrence::new(
        docket_core::Pattern::Preset { preset: docket_core::Preset::Daily, interval: 1 },
        zone("Europe/Berlin"),
    )
    .with_mode(mode);
    let start = at(start_offset).to_zoned(zone("Europe/Berlin").tz().clone()).datetime();
    docket_core::NewSeries::starting(recurrence, start).expect("daily matches")
}

/// Creating a recurring task makes its series and the task as the first instance; series
/// are scoped by user; pause, resume and delete (instances stay).
pub async fn check_series_created_with_first_instance_scoped_pause_resume_delete(
    store: &dyn Store,
) {
    let a = user(store, "series-a").await;
    let b = user(store, "series-b").await;
    let new = NewTask { tags: tags(&["gym"]), ..task("Stretch") };
    let series = daily_series(DAY, docket_core::Mode::AfterCompletion);
    let first_at = docket_core::time::truncate_micros(series.first.at);
    let t = store.create_recurring_task(a.id, new, series, at(0)).await.expect("create");
    let link = t.series.clone().expect("the task is an instance");
    assert_eq!(t.due_date, Some(first_at), "due at the first occurrence");
    assert_eq!(store.get_task(a.id, t.id).await.expect("get"), t, "read back as written");
    let s = store.get_series(a.id, link.series_id).await.expect("get series");
    assert_eq!((s.active, s.instances, s.title.as_str()), (true, 1, "Stretch"));
    assert_eq!(s.next_occurrence, Some(first_at + jiff::SignedDuration::from_hours(24)));
    assert_eq!(store.list_series(a.id).await.expect("list"), vec![s.clone()]);
    assert!(store.list_series(b.id).await.expect("list b").is_empty(), "scoped by user");
    expect_not_found(store.get_series(b.id, s.id).await, "get another user's series");
    expect_not_found(
        store.set_series_active(b.id, s.id, false, at(1)).await,
        "pause another user's series",
    );
    expect_not_found(store.delete_series(b.id, s.id, at(1)).await, "delete another user's series");

    let paused = store.set_series_active(a.id, s.id, false, at(2)).await.expect("pause");
    assert!(!paused.active);
    assert!(!store.get_series(a.id, s.id).await.expect("get").active);
    let resumed = store.set_series_active(a.id, s.id, true, at(3)).await.expect("resume");
    assert!(resumed.active);
    store.delete_series(a.id, s.id, at(4)).await.expect("delete");
    expect_not_found(store.get_series(a.id, s.id).await, "a deleted series");
    let kept = store.get_task(a.id, t.id).await.expect("instance stays");
    assert_eq!((kept.series, kept.title.as_str()), (None, "Stretch"), "detached");
    assert_eq!(kept.version, t.version + 1, "detaching bumps the version");
}

/// Deleting a series detaches its instances in the same transaction: each keeps its row,
/// loses its link, has its version bumped and one updated event naming the cleared fields;
/// other tasks are untouched.
pub async fn check_series_delete_detaches_instances(store: &dyn Store) {
    let a = user(store, "series-detach").await;
    let series = daily_series(HOUR, docket_core::Mode::Fixed);
    let first = store
        .create_recurring_task(a.id, task("Water plants"), series, at(0))
        .await
        .expect("create");
    let id = first.series.as_ref().expect("instance").series_id;
    let due = store.get_series(a.id, id).await.expect("get").next_occurrence.expect("next");
    store.spawn_due_instances(due, 10).await.expect("spawn");
    let loose = store.create_task(a.id, task("Loose"), at(0)).await.expect("create_task");
    let query = TaskQuery { series_id: Some(id.0), status: StatusFilter::All, ..all() };
    let instances = store.list_tasks(a.id, &query, at(0)).await.expect("list").items;
    assert_eq!(instances.len(), 2, "two instances before the delete");
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("head");

    store.delete_series(a.id, id, at(9 * MIN)).await.expect("delete_series");
    expect_not_found(store.get_series(a.id, id).await, "a deleted series");
    let events = read_events(store, topics::TASK_EVENTS, start, 2).await;
    assert_eq!(events.len(), 2, "one event per detached instance");
    for before in &instances {
        let after = store.get_task(a.id, before.id).await.expect("the instance stays");
        assert_eq!(after.series, None, "no series link");
        assert_eq!(after.version, before.version + 1, "version bumped");
        assert_eq!(after.updated_at, at(9 * MIN));
        assert_eq!(
            Task {
                series: None,
                version: after.version,
                updated_at: after.updated_at,
                ..before.clone()
            },
            after
        );
        let (_, e) = events
            .iter()
            .find(|(_, e)| e.subject.as_deref() == Some(before.id.to_string().as_str()))
            .expect("an event for each instance");
        expect_event(e, types::TASK_UPDATED, &after);
        let data = task_data(e);
        assert_eq!(data.task, TaskV1::from(&after));
        let changes = data.changes.expect("updated carries changes");
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["instance_date", "series_id"]);
        assert_eq!(changes["series_id"].old, serde_json::json!(id.to_string()));
        assert_eq!(changes["series_id"].new, serde_json::Value::Null);
    }
    assert_eq!(store.get_task(a.id, loose.id).await.expect("loose"), loose, "untouched");
    assert!(store.list_tasks(a.id, &query, at(0)).await.expect("list").items.is_empty());
    // Detached instances keep the unique index sane: a new series can be made beside them.
    let again = daily_series(HOUR, docket_core::Mode::Fixed);
    store.create_recurring_task(a.id, task("Water plants"), again, at(0)).await.expect("again");
}

fn weekly(zone_name: &str) -> docket_core::Recurrence {
    docket_core::Recurrence::new(
        docket_core::Pattern::Preset { preset: docket_core::Preset::Weekly, interval: 1 },
        zone(zone_name),
    )
}

/// `TaskPatch::recurrence`: on a one-off task it makes a series with the task as its first
/// instance (due at the first occurrence); on an instance it replaces the series' rule (the
/// same rule changes nothing); `None` ends the series, detaching every instance; a completed
/// task made recurring gets its next instance at once.
pub async fn check_series_update_makes_recurring_replaces_rule_and_ends(store: &dyn Store) {
    let a = user(store, "series-update").await;
    let b = user(store, "series-update-b").await;
    let due = at(DAY + 30 * MIN);
    let t = store
        .create_task(a.id, NewTask { due_date: Some(due), ..task("Stretch") }, at(0))
        .await
        .expect("create");
    let daily = daily_series(0, docket_core::Mode::AfterCompletion).recurrence;
    let make = TaskPatch { recurrence: Some(Some(daily.clone())), ..TaskPatch::default() };
    expect_not_found(
        store.update_task(b.id, t.id, make.clone(), None, at(MIN)).await,
        "another user's task",
    );
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    let made = store.update_task(a.id, t.id, make, Some(1), at(MIN)).await.expect("recurring");
    let link = made.series.clone().expect("the task is now an instance");
    assert_eq!(made.version, 2);
    // Due at the rule's first occurrence from its due date (whole seconds, like create).
    let local = due.to_zoned(zone("Europe/Berlin").tz().clone()).datetime();
    let first = docket_core::NewSeries::starting(daily.clone(), local).expect("matches").first;
    assert_eq!(made.due_date, Some(docket_core::time::truncate_micros(first.at)));
    let due = first.at;
    assert_eq!(store.get_task(a.id, t.id).await.expect("get"), made, "read back as written");
    let s = store.get_series(a.id, link.series_id).await.expect("its series");
    assert_eq!((s.active, s.instances, s.title.as_str()), (true, 1, "Stretch"));
    assert_eq!(s.next_occurrence, Some(due + jiff::SignedDuration::from_hours(24)));
    let events = read_events(store, topics::TASK_EVENTS, start, 1).await;
    assert_eq!(events.len(), 1);
    expect_event(&events[0].1, types::TASK_UPDATED, &made);
    let changes = task_data(&events[0].1).changes.expect("changes");
    assert!(changes.contains_key("series_id"), "{changes:?}");

    // A new rule for the instances after this one; the same rule again changes nothing.
    let replace =
        TaskPatch { recurrence: Some(Some(weekly("Europe/Berlin"))), ..TaskPatch::default() };
    let replaced =
        store.update_task(a.id, t.id, replace.clone(), None, at(2 * MIN)).await.expect("replace");
    assert_eq!(replaced.version, 3);
    assert_eq!(replaced.series.as_ref().map(|l| l.series_id), Some(link.series_id));
    assert_eq!(
        replaced.series.as_ref().map(|l| &l.recurrence),
        Some(&weekly("Europe/Berlin").to_spec())
    );
    let s = store.get_series(a.id, link.series_id).await.expect("its series");
    assert_eq!(s.recurrence, weekly("Europe/Berlin"));
    assert_eq!(s.next_occurrence, Some(due + jiff::SignedDuration::from_hours(7 * 24)));
    let same = store.update_task(a.id, t.id, replace, None, at(3 * MIN)).await.expect("same");
    assert_eq!(same, replaced, "the same rule changes nothing");

    // A second instance, then `None`: the series ends and every instance is detached.
    let other = store
        .create_task(a.id, NewTask { due_date: Some(due), ..task("Other") }, at(0))
        .await
        .expect("create");
    let other = store
        .update_task(
            a.id,
            other.id,
            TaskPatch { recurrence: Some(Some(daily.clone())), ..TaskPatch::default() },
            None,
            at(MIN),
        )
        .await
        .expect("recurring");
    let other_series = other.series.as_ref().expect("instance").series_id;
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    let end = TaskPatch {
        recurrence: Some(None),
        title: Some(Title::parse("Stretch!").expect("title")),
        ..TaskPatch::default()
    };
    let ended = store.update_task(a.id, t.id, end.clone(), None, at(4 * MIN)).await.expect("end");
    assert_eq!((ended.series.as_ref(), ended.version, ended.title.as_str()), (None, 4, "Stretch!"));
    expect_not_found(store.get_series(a.id, link.series_id).await, "an ended series");
    let events = read_events(store, topics::TASK_EVENTS, start, 1).await;
    assert_eq!(events.len(), 1, "one event: the task's own update");
    let changes = task_data(&events[0].1).changes.expect("changes");
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["instance_date", "series_id", "title"]);
    assert!(store.get_series(a.id, other_series).await.is_ok(), "other series untouched");
    let again = store.update_task(a.id, t.id, end, None, at(5 * MIN)).await.expect("again");
    assert_eq!(again, ended, "ending no series changes nothing");

    // A completed one-off task made recurring gets its next instance now.
    let done = store
        .create_task(
            a.id,
            NewTask { due_date: Some(due), status: Status::Completed, ..task("Done") },
            at(0),
        )
        .await
        .expect("create");
    let start = store.outbox_head(topics::TASK_EVENTS).await.expect("head");
    let linked = store
        .update_task(
            a.id,
            done.id,
            TaskPatch { recurrence: Some(Some(daily)), ..TaskPatch::default() },
            None,
            at(6 * MIN),
        )
        .await
        .expect("recurring");
    let sid = linked.series.as_ref().expect("instance").series_id;
    let query = TaskQuery { series_id: Some(sid.0), status: StatusFilter::All, ..all() };
    let instances = store.list_tasks(a.id, &query, at(0)).await.expect("list").items;
    assert_eq!(instances.len(), 2, "the completed instance and its next one");
    let next = instances.iter().find(|x| x.id != done.id).expect("the next instance");
    assert_eq!(
        (next.status, next.due_date),
        (Status::Pending, Some(due + jiff::SignedDuration::from_hours(24)))
    );
    let events = read_events(store, topics::TASK_EVENTS, start, 2).await;
    let types_seen: Vec<&str> = events.iter().map(|(_, e)| e.ty.as_str()).collect();
    assert_eq!(types_seen, [types::TASK_UPDATED, types::TASK_CREATED]);
}

/// A new instance gets the relative (`before_due`) reminders of the one before it, pending
/// and timed from its own due date; absolute ones are not copied.
pub async fn check_series_instances_get_the_relative_reminders(store: &dyn Store) {
    let a = user(store, "series-reminders").await;
    let series = daily_series(HOUR, docket_core::Mode::Fixed);
    let first = store
        .create_recurring_task(a.id, task("Take the pills"), series, at(0))
        .await
        .expect("create");
    store.create_reminder(a.id, first.id, before_due("PT15M"), at(1)).await.expect("relative");
    store.create_reminder(a.id, first.id, at_trigger(2 * HOUR), at(1)).await.expect("absolute");
    let id = first.series.as_ref().expect("instance").series_id;
    let due = store.get_series(a.id, id).await.expect("get").next_occurrence.expect("next");
    let made = store.spawn_due_instances(due, 10).await.expect("spawn");
    let next = made
        .iter()
        .find(|t| t.series.as_ref().map(|l| l.series_id) == Some(id))
        .expect("the next instance");
    let copied = store.list_reminders(a.id, next.id).await.expect("list");
    assert_eq!(copied.len(), 1, "only the relative reminder is copied: {copied:?}");
    assert_eq!(copied[0].trigger, before_due("PT15M").trigger);
    assert_eq!(copied[0].status, ReminderStatus::Pending);
    assert_eq!(copied[0].fire_at, Some(due - jiff::SignedDuration::from_mins(15)));
    assert_eq!(store.list_reminders(a.id, first.id).await.expect("list").len(), 2, "kept");
}

/// `upcoming_series(until, limit)` lists the active fixed-mode series whose next occurrence
/// is at or before `until`, earliest first, at most `limit`: never paused, deleted or
/// `after_completion` ones; after an instance is made, the series is listed at its next one.
pub async fn check_upcoming_series_are_the_active_fixed_ones_earliest_first(store: &dyn Store) {
    use docket_core::Mode;
    let u = user(store, "series-upcoming").await;
    let owner = u.id;
    let make = |start: i64, mode: Mode, title: &'static str| {
        let series = daily_series(start, mode);
        async move {
            let t = store.create_recurring_task(owner, task(title), series, at(0)).await;
            let id = t.expect("create").series.expect("an instance").series_id;
            store.get_series(owner, id).await.expect("get")
        }
    };
    let later = make(2 * HOUR, Mode::Fixed, "Later").await;
    let sooner = make(HOUR, Mode::Fixed, "Sooner").await;
    make(HOUR, Mode::AfterCompletion, "On completion").await;
    let paused = make(HOUR, Mode::Fixed, "Paused").await;
    store.set_series_active(u.id, paused.id, false, at(1)).await.expect("pause");
    let deleted = make(HOUR, Mode::Fixed, "Deleted").await;
    store.delete_series(u.id, deleted.id, at(1)).await.expect("delete");

    let next = |s: &docket_core::Series| s.next_occurrence.expect("a next occurrence");
    let want = vec![(sooner.id, next(&sooner)), (later.id, next(&later))];
    assert!(want[0].1 < want[1].1, "the fixture's order");
    let far = at(30 * DAY);
    assert_eq!(
        store.upcoming_series(next(&later), 100).await.expect("upcoming"),
        want,
        "active fixed-mode series only, earliest first, `until` inclusive"
    );
    assert_eq!(store.upcoming_series(next(&later), 100).await.expect("again"), want, "no change");
    let just_before = next(&later) - jiff::SignedDuration::from_micros(1);
    assert_eq!(store.upcoming_series(just_before, 100).await.expect("upcoming"), want[..1]);
    assert_eq!(store.upcoming_series(far, 1).await.expect("upcoming"), want[..1], "`limit`");
    assert_eq!(store.upcoming_series(at(0), 100).await.expect("upcoming"), vec![]);

    store.spawn_due_instances(next(&sooner), 10).await.expect("spawn");
    let moved = store.get_series(u.id, sooner.id).await.expect("get");
    assert_eq!(
        store.upcoming_series(far, 100).await.expect("upcoming"),
        vec![(later.id, next(&later)), (sooner.id, next(&moved))],
        "after its instance, a series is listed at its next occurrence"
    );
    store.set_series_active(u.id, paused.id, true, at(2)).await.expect("resume");
    let listed = store.upcoming_series(far, 100).await.expect("upcoming");
    assert!(listed.contains(&(paused.id, next(&paused))), "a resumed series is listed again");
}

/// A due fixed-mode series makes its next instance once, however often the scheduler asks;
/// a paused one makes none.
pub async fn check_series_fixed_instance_made_once(store: &dyn Store) {
    let a = user(store, "series-fixed").await;
    let series = daily_series(HOUR, docket_core::Mode::Fixed);
    let t = store
        .create_recurring_task(a.id, task("Water plants"), series, at(0))
        .await
        .expect("create");
    let id = t.series.as_ref().expect("instance").series_id;
    let s = store.get_series(a.id, id).await.expect("get");
    let due = s.next_occurrence.expect("a next occurrence");
    let before = store.spawn_due_instances(due - jiff::SignedDuration::from_secs(1), 10).await;
    assert!(
        before
            .expect("spawn early")
            .iter()
            .all(|x| x.series.as_ref().map(|l| l.series_id) != Some(id))
    );

    store.set_series_active(a.id, id, false, at(1)).await.expect("pause");
    let paused = store.spawn_due_instances(due, 10).await.expect("spawn paused");
    assert!(paused.iter().all(|x| x.series.as_ref().map(|l| l.series_id) != Some(id)));
    store.set_series_active(a.id, id, true, at(2)).await.expect("resume");

    let made = store.spawn_due_instances(due, 10).await.expect("spawn");
    let mine: Vec<_> =
        made.iter().filter(|x| x.series.as_ref().map(|l| l.series_id) == Some(id)).collect();
    assert_eq!(mine.len(), 1, "one instance");
    assert_eq!(mine[0].due_date, Some(due));
    assert_eq!(mine[0].title.as_str(), "Water plants");
    let again = store.spawn_due_instances(due, 10).await.expect("spawn again");
    assert!(again.iter().all(|x| x.series.as_ref().map(|l| l.series_id) != Some(id)), "once");
    let s = store.get_series(a.id, id).await.expect("get");
    assert_eq!(s.instances, 2);
    assert_eq!(s.next_occurrence, Some(due + jiff::SignedDuration::from_hours(24)));
}

/// What a series makes is what the preview promised: a fixed-mode series stepped through its
/// occurrences makes one instance at each, due at its instant, dated by its local date-time
/// (daily 09:00 in Berlin across the spring DST change, the 31st of each month, Mondays and
/// Thursdays every other week, every 90 minutes).
pub async fn check_series_instances_follow_the_preview(store: &dyn Store) {
    use docket_core::recurrence::Rule;
    use docket_core::{Mode, Pattern, PreviewCount, Recurrence};
    let u = user(store, "series-preview").await;
    let start = |s: &str| s.parse::<jiff::civil::DateTime>().expect("local start");
    let cases = [
        ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0", "Europe/Berlin", "2026-03-26T09:00:00"),
        ("FREQ=MONTHLY;BYMONTHDAY=31", "America/New_York", "2026-01-31T18:30:00"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", "UTC", "2026-03-02T07:00:00"),
        ("FREQ=MINUTELY;INTERVAL=90", "Europe/Berlin", "2026-10-24T22:00:00"),
    ];
    for (rule, tz, first) in cases {
        let recurrence = Recurrence::new(Pattern::Rule(Rule::parse(rule).expect("rule")), zone(tz))
            .with_mode(Mode::Fixed);
        let preview = recurrence.preview(start(first), PreviewCount::parse(6).expect("count"));
        assert_eq!(preview.len(), 6, "{rule}");
        let series = docket_core::NewSeries::starting(recurrence, start(first)).expect("matches");
        let t = store.create_recurring_task(u.id, task(rule), series, at(0)).await.expect("create");
        let id = t.series.as_ref().expect("instance").series_id;
        let mut made = vec![t.clone()];
        for occurrence in &preview[1..] {
            let now = docket_core::time::truncate_micros(occurrence.at);
            let spawned = store.spawn_due_instances(now, 100).await.expect("spawn");
            made.extend(
                spawned.into_iter().filter(|x| x.series.as_ref().map(|l| l.series_id) == Some(id)),
            );
        }
        let got: Vec<(Option<Timestamp>, String)> = made
            .iter()
            .map(|t| (t.due_date, t.series.as_ref().expect("link").instance_date.to_string()))
            .collect();
        let want: Vec<(Option<Timestamp>, String)> = preview
            .iter()
            .map(|o| (Some(docket_core::time::truncate_micros(o.at)), o.local.to_string()))
            .collect();
        assert_eq!(got, want, "{rule} in {tz}: instances follow the preview");
        // The list filter by series finds exactly these instances.
        let query = TaskQuery { series_id: Some(id.0), status: StatusFilter::All, ..all() };
        let page = store.list_tasks(u.id, &query, at(0)).await.expect("list by series");
        let mut listed = ids(&page.items);
        let mut instances = ids(&made);
        listed.sort();
        instances.sort();
        assert_eq!(listed, instances, "{rule}: the series filter lists its instances");
    }
}

// --- webhooks and deliveries

/// The lease the delivery checks claim with.
const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn new_webhook(url: &str, events: &[&str]) -> docket_core::NewWebhook {
    docket_core::NewWebhook {
        id: new_id(),
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: format!("secret of {url}"),
        active: true,
    }
}

async fn webhook(store: &dyn Store, user: UserId, url: &str) -> docket_core::Webhook {
    store
        .create_webhook(user, new_webhook(url, &[types::TASK_CREATED]), at(0))
        .await
        .expect("create_webhook")
}

/// A delivery of event `event_id` to `hook`, due at `created`.
fn webhook_delivery(
    hook: &docket_core::Webhook,
    event_id: &str,
    created: i64,
) -> docket_core::NewDelivery {
    docket_core::NewDelivery {
        id: new_id(),
        user_id: hook.user_id,
        channel: docket_core::DeliveryChannel::Webhook,
        webhook_id: Some(hook.id),
        reminder_id: None,
        event_id: event_id.to_owned(),
        event_type: types::TASK_CREATED.to_owned(),
        target: hook.url.clone(),
        payload: format!(r#"{{"id":"{event_id}"}}"#),
        created_at: at(created),
    }
}

/// An email of event `event_id` to `user`, due at `created`.
fn email_delivery(user: &User, event_id: &str, created: i64) -> docket_core::NewDelivery {
    docket_core::NewDelivery {
        id: new_id(),
        user_id: user.id,
        channel: docket_core::DeliveryChannel::Email,
        webhook_id: None,
        reminder_id: None,
        event_id: event_id.to_owned(),
        event_type: types::REMINDER_TRIGGERED.to_owned(),
        target: user.email.as_ref().expect("test users have an email").as_str().to_owned(),
        payload: r#"{"subject":"Reminder","text":"It is due"}"#.to_owned(),
        created_at: at(created),
    }
}

fn claimed_ids(claimed: &[crate::webhooks::ClaimedDelivery]) -> Vec<docket_core::DeliveryId> {
    claimed.iter().map(|c| c.delivery.id).collect()
}

/// The user's delivery `id` to `hook`, as listed.
async fn listed_delivery(
    store: &dyn Store,
    user: UserId,
    hook: docket_core::WebhookId,
    id: docket_core::DeliveryId,
) -> docket_core::Delivery {
    let list = store.list_deliveries(user, hook, 200).await.expect("list_deliveries");
    list.into_iter().find(|d| d.id == id).expect("the delivery is listed under its webhook")
}

/// Webhooks are created, listed oldest first, read, patched (only the given fields, with a new
/// `updated_at`) and deleted with their deliveries, all only by their owner.
pub async fn check_webhooks_crud_scoped_to_the_owner(store: &dyn Store) {
    let a = user(store, "hook-a").await;
    let b = user(store, "hook-b").await;
    let events = [types::TASK_COMPLETED, types::TASK_CREATED];
    let first = store
        .create_webhook(a.id, new_webhook("https://example.com/one", &events), at(1))
        .await
        .expect("create");
    assert_eq!(first.user_id, a.id);
    assert_eq!(first.url, "https://example.com/one");
    assert_eq!(first.events, events);
    assert!(first.active);
    assert_eq!((first.created_at, first.updated_at), (at(1), at(1)));
    let second = store
        .create_webhook(a.id, new_webhook("https://example.com/two", &events[..1]), at(2))
        .await
        .expect("create");
    let theirs = webhook(store, b.id, "https://example.com/theirs").await;

    assert_eq!(
        store.list_webhooks(a.id).await.expect("list"),
        vec![first.clone(), second.clone()],
        "oldest first, read back as written"
    );
    assert_eq!(store.list_webhooks(b.id).await.expect("list"), vec![theirs]);
    assert_eq!(store.get_webhook(a.id, second.id).await.expect("get"), second);

    let off = docket_core::WebhookPatch { active: Some(false), ..Default::default() };
    expect_not_found(store.get_webhook(b.id, first.id).await, "get another user's webhook");
    expect_not_found(
        store.update_webhook(b.id, first.id, off.clone(), at(3)).await,
        "update another user's webhook",
    );
    expect_not_found(store.delete_webhook(b.id, first.id).await, "delete another's webhook");
    expect_not_found(
        store.list_deliveries(b.id, first.id, 50).await,
        "list another user's deliveries",
    );
    expect_not_found(store.get_webhook(a.id, new_id()).await, "get an unknown webhook");
    assert_eq!(store.get_webhook(a.id, first.id).await.expect("get"), first, "untouched");

    let patched = store.update_webhook(a.id, first.id, off, at(5)).await.expect("update");
    let want = docket_core::Webhook { active: false, updated_at: at(5), ..first.clone() };
    assert_eq!(patched, want, "only `active` and `updated_at` change");
    assert_eq!(store.get_webhook(a.id, first.id).await.expect("get"), want);
    let moved = docket_core::WebhookPatch {
        url: Some("https://example.com/moved".to_owned()),
        events: Some(vec![types::TASK_DELETED.to_owned()]),
        active: None,
    };
    let patched = store.update_webhook(a.id, first.id, moved, at(6)).await.expect("update");
    let want = docket_core::Webhook {
        url: "https://example.com/moved".to_owned(),
        events: vec![types::TASK_DELETED.to_owned()],
        updated_at: at(6),
        ..want
    };
    assert_eq!(patched, want, "url and events change, `active` stays off");
    assert_eq!(store.get_webhook(a.id, first.id).await.expect("get"), want);

    let gone = [webhook_delivery(&first, "evt-1", 10), webhook_delivery(&first, "evt-2", 11)];
    let kept = webhook_delivery(&second, "evt-1", 12);
    let added = store
        .enqueue_deliveries(vec![gone[0].clone(), gone[1].clone(), kept.clone()])
        .await
        .expect("enqueue");
    assert_eq!(added, 3);
    assert_eq!(store.list_deliveries(a.id, first.id, 50).await.expect("list").len(), 2);

    store.delete_webhook(a.id, first.id).await.expect("delete");
    expect_not_found(store.get_webhook(a.id, first.id).await, "get a deleted webhook");
    expect_not_found(store.delete_webhook(a.id, first.id).await, "delete twice");
    expect_not_found(store.list_deliveries(a.id, first.id, 50).await, "a deleted one's list");
    assert_eq!(store.list_webhooks(a.id).await.expect("list"), vec![second.clone()]);
    let claimed = store.claim_deliveries(at(DAY), LEASE, 100).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [kept.id], "a deleted webhook's deliveries are gone");
}

/// Every user's stored webhook secrets are listed by id in pages; a secret is replaced only
/// while it is still the one the caller read (of two racing callers exactly one wins), nothing
/// else about the webhook changes, and claims then sign with the new one.
pub async fn check_webhook_secrets_listed_and_replaced_conditionally(store: &dyn Store) {
    let a = user(store, "secrets-a").await;
    let b = user(store, "secrets-b").await;
    let one = webhook(store, a.id, "https://example.com/s1").await;
    let two = webhook(store, a.id, "https://example.com/s2").await;
    let three = webhook(store, b.id, "https://example.com/s3").await;
    let ours = [one.id, two.id, three.id];

    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.webhook_secrets(after, 2).await.expect("webhook_secrets");
        assert!(page.len() <= 2, "a page holds at most `limit`");
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        listed.extend(page);
    }
    let ids: Vec<_> = listed.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id, no repeats: {ids:?}");
    let mine: Vec<_> = listed.into_iter().filter(|(id, _)| ours.contains(id)).collect();
    let mut want: Vec<_> =
        [&one, &two, &three].into_iter().map(|w| (w.id, format!("secret of {}", w.url))).collect();
    want.sort();
    assert_eq!(mine, want, "every user's webhooks, with the secret as stored");

    let old = format!("secret of {}", one.url);
    let replaced = store
        .replace_webhook_secret(one.id, "not the stored one".to_owned(), "x".to_owned())
        .await
        .expect("replace");
    assert!(!replaced, "a stale `old` replaces nothing");
    let unknown = new_id();
    assert!(!store.replace_webhook_secret(unknown, old.clone(), "x".to_owned()).await.expect("r"));
    let (r1, r2) = futures::join!(
        store.replace_webhook_secret(one.id, old.clone(), "sealed-1".to_owned()),
        store.replace_webhook_secret(one.id, old.clone(), "sealed-2".to_owned()),
    );
    let (r1, r2) = (r1.expect("replace"), r2.expect("replace"));
    assert!(r1 != r2, "exactly one of two racing replacements wins ({r1}, {r2})");
    let winner = if r1 { "sealed-1" } else { "sealed-2" };
    assert!(!store.replace_webhook_secret(one.id, old, "again".to_owned()).await.expect("r"));
    let page = store.webhook_secrets(None, 10_000).await.expect("webhook_secrets");
    let stored = page.iter().find(|(id, _)| *id == one.id).map(|(_, s)| s.as_str());
    assert_eq!(stored, Some(winner));
    assert_eq!(store.get_webhook(a.id, one.id).await.expect("get"), one, "nothing else moves");

    let d = webhook_delivery(&one, "evt-resealed", 10);
    store.enqueue_deliveries(vec![d.clone()]).await.expect("enqueue");
    let claimed = store.claim_deliveries(at(DAY), LEASE, 100).await.expect("claim");
    let c = claimed.iter().find(|c| c.delivery.id == d.id).expect("claimed");
    assert_eq!(c.secret.as_deref(), Some(winner), "claims carry the replaced secret");
}

/// A delivery is enqueued once per (event, channel, target); another target or channel of
/// the same event is another delivery. Lists are newest first.
pub async fn check_deliveries_enqueued_once(store: &dyn Store) {
    let u = user(store, "deliver-once").await;
    let hook = webhook(store, u.id, "https://example.com/once").await;
    let d = webhook_delivery(&hook, "evt-once", 10);
    assert_eq!(store.enqueue_deliveries(vec![d.clone()]).await.expect("enqueue"), 1);
    let again = docket_core::NewDelivery {
        id: new_id(),
        payload: "{}".to_owned(),
        created_at: at(20),
        ..d.clone()
    };
    assert_eq!(
        store.enqueue_deliveries(vec![again.clone()]).await.expect("enqueue"),
        0,
        "the same event, channel and target is not enqueued twice"
    );
    let elsewhere = docket_core::NewDelivery {
        id: new_id(),
        target: "https://example.com/elsewhere".to_owned(),
        created_at: at(30),
        ..d.clone()
    };
    let email = email_delivery(&u, "evt-once", 40);
    let again2 = docket_core::NewDelivery { id: new_id(), ..again };
    assert_eq!(
        store.enqueue_deliveries(vec![elsewhere.clone(), again2, email]).await.expect("enqueue"),
        2,
        "another target and another channel are new, the repeat is not"
    );

    let list = store.list_deliveries(u.id, hook.id, 50).await.expect("list");
    let ids: Vec<_> = list.iter().map(|d| d.id).collect();
    assert_eq!(ids, [elsewhere.id, d.id], "the webhook's deliveries, newest first");
    let stored = &list[1];
    let want = docket_core::Delivery {
        id: d.id,
        user_id: u.id,
        channel: docket_core::DeliveryChannel::Webhook,
        webhook_id: Some(hook.id),
        reminder_id: None,
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        target: d.target.clone(),
        payload: d.payload.clone(),
        status: docket_core::DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: Some(at(10)),
        last_error: None,
        created_at: at(10),
        delivered_at: None,
    };
    assert_eq!(stored, &want, "the first one stays, pending and due at once");
    assert_eq!(store.list_deliveries(u.id, hook.id, 1).await.expect("list").len(), 1, "limit");
}

/// A claim returns the due pending deliveries earliest first, each with one more attempt and
/// its webhook's secret, and leases them: not claimed again before the lease runs out; what
/// is not yet due is not claimed.
pub async fn check_deliveries_claimed_due_first_and_leased(store: &dyn Store) {
    let u = user(store, "deliver-claim").await;
    let hook = webhook(store, u.id, "https://example.com/claim").await;
    let late = webhook_delivery(&hook, "evt-late", 20);
    let early = webhook_delivery(&hook, "evt-early", 10);
    let mail = email_delivery(&u, "evt-mail", 15);
    let future = webhook_delivery(&hook, "evt-future", HOUR);
    let all = vec![late.clone(), early.clone(), mail.clone(), future.clone()];
    assert_eq!(store.enqueue_deliveries(all).await.expect("enqueue"), 4);

    assert_eq!(store.claim_deliveries(at(9), LEASE, 10).await.expect("claim"), vec![]);
    let now = at(MIN);
    let claimed = store.claim_deliveries(now, LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [early.id, mail.id, late.id], "the due ones, earliest first");
    for c in &claimed {
        assert_eq!(c.delivery.attempts, 1, "a claim counts an attempt");
        assert_eq!(c.delivery.status, docket_core::DeliveryStatus::Pending);
    }
    let (e, m) = (&claimed[0], &claimed[1]);
    assert_eq!(e.secret.as_deref(), Some("secret of https://example.com/claim"));
    assert_eq!(m.secret, None, "an email has no secret");
    assert_eq!(
        (&e.delivery.payload, &e.delivery.target, &e.delivery.event_id, e.delivery.webhook_id),
        (&early.payload, &early.target, &early.event_id, Some(hook.id)),
    );
    assert_eq!((&m.delivery.target, m.delivery.channel), (&mail.target, mail.channel));

    assert_eq!(store.claim_deliveries(now, LEASE, 10).await.expect("claim"), vec![], "leased");
    let almost = at(MIN + 30 * SEC - 1);
    assert_eq!(store.claim_deliveries(almost, LEASE, 10).await.expect("claim"), vec![]);
    let again = store.claim_deliveries(at(MIN + 30 * SEC), LEASE, 10).await.expect("claim");
    let mut got = claimed_ids(&again);
    got.sort();
    let mut want = vec![early.id, mail.id, late.id];
    want.sort();
    assert_eq!(got, want, "claimed again when the lease has run out");
    assert!(again.iter().all(|c| c.delivery.attempts == 2), "{again:?}");

    let due = store.claim_deliveries(at(HOUR), LEASE, 10).await.expect("claim");
    assert!(claimed_ids(&due).contains(&future.id), "due at its time");
    let f = due.iter().find(|c| c.delivery.id == future.id).expect("claimed");
    assert_eq!(f.delivery.attempts, 1);
    assert_eq!(store.claim_deliveries(at(HOUR), LEASE, 10).await.expect("claim"), vec![]);
}

/// Concurrent claimers share the due deliveries without any delivery claimed twice.
pub async fn check_deliveries_claimed_once_under_concurrency(store: &dyn Store) {
    const N: usize = 40;
    let u = user(store, "deliver-race").await;
    let hook = webhook(store, u.id, "https://example.com/race").await;
    let new: Vec<_> =
        (0..N).map(|i| webhook_delivery(&hook, &format!("evt-{i}"), i as i64)).collect();
    let want: HashSet<_> = new.iter().map(|d| d.id).collect();
    assert_eq!(store.enqueue_deliveries(new).await.expect("enqueue") as usize, N);
    let now = at(MIN);
    let racers = (0..4).map(|_| async {
        let mut mine = Vec::new();
        loop {
            let claimed =
                store.claim_deliveries(now, std::time::Duration::from_secs(3600), 3).await;
            let claimed = claimed.expect("claim");
            if claimed.is_empty() {
                return mine;
            }
            mine.extend(claimed_ids(&claimed));
        }
    });
    let all: Vec<_> = join_all(racers).await.into_iter().flatten().collect();
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "no delivery claimed twice");
    assert_eq!(unique, want, "every due delivery claimed");
}

/// Settling: delivered ends a delivery; a retry records the error and makes it due at the
/// given time, not before; giving up fails it for good; settling what is not pending
/// returns false and changes nothing.
pub async fn check_deliveries_settled(store: &dyn Store) {
    let u = user(store, "deliver-settle").await;
    let hook = webhook(store, u.id, "https://example.com/settle").await;
    let ok = webhook_delivery(&hook, "evt-ok", 0);
    let retry = webhook_delivery(&hook, "evt-retry", 1);
    let fail = webhook_delivery(&hook, "evt-fail", 2);
    let all = vec![ok.clone(), retry.clone(), fail.clone()];
    assert_eq!(store.enqueue_deliveries(all).await.expect("enqueue"), 3);
    assert_eq!(store.claim_deliveries(at(SEC), LEASE, 10).await.expect("claim").len(), 3);

    let now = at(2 * SEC);
    let settle = |id, outcome| store.settle_delivery(id, outcome, now);
    assert!(settle(ok.id, docket_core::DeliveryOutcome::Delivered).await.expect("settle"));
    let again = docket_core::DeliveryOutcome::Retry { error: "answered 503".into(), at: at(HOUR) };
    assert!(settle(retry.id, again).await.expect("settle"));
    let give_up = docket_core::DeliveryOutcome::GiveUp { error: "answered 410".into() };
    assert!(settle(fail.id, give_up).await.expect("settle"));

    let delivered = listed_delivery(store, u.id, hook.id, ok.id).await;
    assert_eq!(delivered.status, docket_core::DeliveryStatus::Delivered);
    assert_eq!(delivered.delivered_at, Some(now));
    assert_eq!(delivered.attempts, 1);
    let retrying = listed_delivery(store, u.id, hook.id, retry.id).await;
    assert_eq!(retrying.status, docket_core::DeliveryStatus::Pending);
    assert_eq!(retrying.last_error.as_deref(), Some("answered 503"));
    assert_eq!(retrying.next_attempt_at, Some(at(HOUR)));
    assert_eq!(retrying.delivered_at, None);
    let failed = listed_delivery(store, u.id, hook.id, fail.id).await;
    assert_eq!(failed.status, docket_core::DeliveryStatus::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("answered 410"));
    assert_eq!(failed.delivered_at, None);

    // The first claim's lease ran out long ago: the retry time alone decides.
    assert_eq!(
        store.claim_deliveries(at(HOUR - 1), LEASE, 10).await.expect("claim"),
        vec![],
        "a retry is not due before its time; delivered and failed ones never are"
    );
    let claimed = store.claim_deliveries(at(HOUR), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [retry.id]);
    assert_eq!(claimed[0].delivery.attempts, 2);

    let later = at(HOUR + SEC);
    let retry_again = docket_core::DeliveryOutcome::Retry { error: "x".into(), at: at(DAY) };
    for (id, outcome) in [
        (ok.id, retry_again.clone()),
        (ok.id, docket_core::DeliveryOutcome::Delivered),
        (fail.id, docket_core::DeliveryOutcome::Delivered),
        (fail.id, retry_again),
        (new_id(), docket_core::DeliveryOutcome::Delivered),
    ] {
        let settled = store.settle_delivery(id, outcome.clone(), later).await.expect("settle");
        assert!(!settled, "settling {outcome:?} on a delivery that is not pending");
    }
    assert_eq!(listed_delivery(store, u.id, hook.id, ok.id).await, delivered, "unchanged");
    assert_eq!(listed_delivery(store, u.id, hook.id, fail.id).await, failed, "unchanged");
    let claimed = store.claim_deliveries(at(10 * DAY), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [retry.id], "only the pending one is ever claimed again");
}

/// A failed reminder is retried (pending again, due now, fired again by the next firing);
/// any other reminder is a conflict, another user's not found.
pub async fn check_failed_reminders_are_retried(store: &dyn Store) {
    let a = user(store, "retry-reminder").await;
    let b = user(store, "retry-reminder-b").await;
    let t = store.create_task(a.id, due_task("Retry", 10 * DAY), at(0)).await.expect("task");
    let r = store.create_reminder(a.id, t.id, at_trigger(HOUR), at(1)).await.expect("reminder");
    expect_conflict(store.retry_reminder(a.id, r.id, at(2)).await, "retry a pending reminder");
    let fired = store.fire_due_reminders(at(HOUR), 10).await.expect("fire");
    assert!(fired.iter().any(|x| x.id == r.id));
    expect_conflict(store.retry_reminder(a.id, r.id, at(HOUR)).await, "retry a fired reminder");
    let new = docket_core::NewDelivery {
        id: new_id(),
        user_id: a.id,
        channel: docket_core::DeliveryChannel::Email,
        webhook_id: None,
        reminder_id: Some(r.id),
        event_id: format!("evt-{}", unique("retry")),
        event_type: "com.todo.reminder.triggered".to_owned(),
        target: "a@example.com".to_owned(),
        payload: "{}".to_owned(),
        created_at: at(HOUR),
    };
    store.enqueue_deliveries(vec![new.clone()]).await.expect("enqueue");
    let lease = std::time::Duration::from_secs(60);
    store.claim_deliveries(at(HOUR), lease, 10).await.expect("claim");
    let give_up = docket_core::DeliveryOutcome::GiveUp { error: "relay down".to_owned() };
    store.settle_delivery(new.id, give_up, at(HOUR)).await.expect("settle");
    assert_eq!(store.get_reminder(a.id, r.id).await.expect("get").status, ReminderStatus::Failed);

    expect_not_found(store.retry_reminder(b.id, r.id, at(2 * HOUR)).await, "another user's");
    let again = store.retry_reminder(a.id, r.id, at(2 * HOUR)).await.expect("retry");
    assert_eq!((again.status, again.fire_at), (ReminderStatus::Pending, Some(at(2 * HOUR))));
    assert_eq!(again.trigger, r.trigger, "nothing else changes");
    assert_eq!(again.last_error.as_deref(), Some("relay down"), "the error stays for the record");
    let refired = store.fire_due_reminders(at(2 * HOUR), 10).await.expect("fire");
    assert_eq!(refired.iter().filter(|x| x.id == r.id).count(), 1, "fires again, once");
    assert!(
        store
            .fire_due_reminders(at(3 * HOUR), 10)
            .await
            .expect("fire")
            .iter()
            .all(|x| x.id != r.id)
    );
}

/// A delivery's failures show on the reminder that caused it: each failed attempt counts
/// and records its error, giving up fails the reminder, and once retried deliveries succeed
/// and none of its deliveries is failed, the reminder is `fired` again. Retrying is scoped
/// to the owner and the webhook.
pub async fn check_deliveries_drive_their_reminder(store: &dyn Store) {
    let u = user(store, "deliver-remind").await;
    let other = user(store, "deliver-remind-other").await;
    let t = store.create_task(u.id, due_task("Rent", DAY), at(0)).await.expect("create");
    let r = store.create_reminder(u.id, t.id, at_trigger(HOUR), at(1)).await.expect("reminder");
    let fired = store.fire_due_reminders(at(HOUR), 10).await.expect("fire");
    assert_eq!(fired.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id]);
    let base_attempts = fired[0].attempts;
    let reminder = || async { store.get_reminder(u.id, r.id).await.expect("get_reminder") };

    let one = webhook(store, u.id, "https://example.com/remind-1").await;
    let two = webhook(store, u.id, "https://example.com/remind-2").await;
    let d1 = docket_core::NewDelivery {
        reminder_id: Some(r.id),
        ..webhook_delivery(&one, "evt-remind", HOUR)
    };
    let d2 = docket_core::NewDelivery {
        reminder_id: Some(r.id),
        ..webhook_delivery(&two, "evt-remind", HOUR)
    };
    assert_eq!(store.enqueue_deliveries(vec![d1.clone(), d2.clone()]).await.expect("q"), 2);
    assert_eq!(store.claim_deliveries(at(HOUR), LEASE, 10).await.expect("claim").len(), 2);

    let retry =
        docket_core::DeliveryOutcome::Retry { error: "answered 500".into(), at: at(HOUR + MIN) };
    assert!(store.settle_delivery(d1.id, retry, at(HOUR)).await.expect("settle"));
    let now = reminder().await;
    assert_eq!(now.status, ReminderStatus::Fired, "a retry leaves the reminder fired");
    assert_eq!(now.attempts, base_attempts + 1, "a failed attempt counts");
    assert_eq!(now.last_error.as_deref(), Some("answered 500"));

    let give_up = |error: &str| docket_core::DeliveryOutcome::GiveUp { error: error.into() };
    assert!(store.settle_delivery(d2.id, give_up("answered 404"), at(HOUR)).await.expect("s"));
    let now = reminder().await;
    assert_eq!(now.status, ReminderStatus::Failed, "giving up fails the reminder");
    assert_eq!(now.attempts, base_attempts + 2);
    assert_eq!(now.last_error.as_deref(), Some("answered 404"));

    let claimed = store.claim_deliveries(at(HOUR + MIN), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [d1.id]);
    assert!(store.settle_delivery(d1.id, give_up("timed out"), at(HOUR + MIN)).await.expect("s"));
    let now = reminder().await;
    assert_eq!(now.status, ReminderStatus::Failed);
    assert_eq!(now.attempts, base_attempts + 3);
    assert_eq!(now.last_error.as_deref(), Some("timed out"));

    expect_not_found(
        store.retry_delivery(other.id, one.id, d1.id, at(2 * HOUR)).await,
        "retry another user's delivery",
    );
    expect_not_found(
        store.retry_delivery(u.id, two.id, d1.id, at(2 * HOUR)).await,
        "retry a delivery under another webhook",
    );
    expect_not_found(
        store.retry_delivery(u.id, one.id, new_id(), at(2 * HOUR)).await,
        "retry an unknown delivery",
    );
    let failed = listed_delivery(store, u.id, one.id, d1.id).await;
    assert_eq!(
        failed.status,
        docket_core::DeliveryStatus::Failed,
        "refused retries change nothing"
    );

    let retried = store.retry_delivery(u.id, one.id, d1.id, at(2 * HOUR)).await.expect("retry");
    assert_eq!(retried.id, d1.id);
    assert_eq!(retried.status, docket_core::DeliveryStatus::Pending);
    assert_eq!(retried.attempts, 0, "attempts counted afresh");
    assert_eq!(retried.next_attempt_at, Some(at(2 * HOUR)), "due at once");
    assert_eq!(listed_delivery(store, u.id, one.id, d1.id).await, retried);
    assert_eq!(reminder().await.status, ReminderStatus::Failed, "not before it is delivered");

    let claimed = store.claim_deliveries(at(2 * HOUR), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [d1.id]);
    assert_eq!(claimed[0].delivery.attempts, 1);
    let delivered = docket_core::DeliveryOutcome::Delivered;
    assert!(store.settle_delivery(d1.id, delivered.clone(), at(2 * HOUR)).await.expect("s"));
    assert_eq!(
        reminder().await.status,
        ReminderStatus::Failed,
        "another of its deliveries is still failed"
    );
    let unchanged = store.retry_delivery(u.id, one.id, d1.id, at(3 * HOUR)).await.expect("r");
    assert_eq!(unchanged.status, docket_core::DeliveryStatus::Delivered, "a delivered one stays");

    store.retry_delivery(u.id, two.id, d2.id, at(3 * HOUR)).await.expect("retry");
    let claimed = store.claim_deliveries(at(3 * HOUR), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [d2.id]);
    assert!(store.settle_delivery(d2.id, delivered, at(3 * HOUR)).await.expect("settle"));
    let now = reminder().await;
    assert_eq!(now.status, ReminderStatus::Fired, "every delivery went through: fired again");
    assert_eq!(now.attempts, base_attempts + 3, "a success is not a failed attempt");
}

/// The next delivery time is the earliest pending `next_attempt_at`, `None` when nothing
/// is pending.
pub async fn check_next_delivery_at_is_the_earliest_pending(store: &dyn Store) {
    assert_eq!(store.next_delivery_at().await.expect("next"), None, "nothing enqueued");
    let u = user(store, "deliver-next").await;
    let hook = webhook(store, u.id, "https://example.com/next").await;
    let later = webhook_delivery(&hook, "evt-later", 2 * HOUR);
    let sooner = email_delivery(&u, "evt-sooner", HOUR);
    store.enqueue_deliveries(vec![later.clone(), sooner.clone()]).await.expect("enqueue");
    assert_eq!(store.next_delivery_at().await.expect("next"), Some(at(HOUR)));

    let claimed = store.claim_deliveries(at(HOUR), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [sooner.id]);
    assert_eq!(
        store.next_delivery_at().await.expect("next"),
        Some(at(HOUR + 30 * SEC)),
        "a claimed delivery is next due when its lease runs out"
    );
    let delivered = docket_core::DeliveryOutcome::Delivered;
    assert!(store.settle_delivery(sooner.id, delivered, at(HOUR)).await.expect("settle"));
    assert_eq!(store.next_delivery_at().await.expect("next"), Some(at(2 * HOUR)));

    let claimed = store.claim_deliveries(at(2 * HOUR), LEASE, 10).await.expect("claim");
    assert_eq!(claimed_ids(&claimed), [later.id]);
    let give_up = docket_core::DeliveryOutcome::GiveUp { error: "gone".into() };
    assert!(store.settle_delivery(later.id, give_up, at(2 * HOUR)).await.expect("settle"));
    assert_eq!(store.next_delivery_at().await.expect("next"), None, "nothing pending");
}
