//! Tests of what is particular to the PostgreSQL adapter: migrations under concurrent
//! starters, index use of list queries (EXPLAIN), exact instants, races the schema must
//! settle, and error mapping. Behaviour shared with SQLite is the conformance suite's job.
//!
//! They run against `DOCKET_TEST_POSTGRES_URL`, each in a schema of its own; without the
//! variable they are skipped with a message, unless `CI` is set, where they fail.

use docket_core::{
    CategoryName, CategoryRef, Color, DisplayName, Limit, NewCategory, NewTask, NewUser, Order,
    SearchText, SortField, TaskPatch, TaskQuery, Timestamp, Title, UserId,
};
use sqlx::{AssertSqlSafe, Row};

use super::{PostgresStore, drop_test_schemas_before, isolated_pool, list, migrate};
use docket_ports::facts::origin;
use docket_ports::{Store, StoreError};

fn url() -> Option<String> {
    match std::env::var("DOCKET_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DOCKET_TEST_POSTGRES_URL must be set when CI is set")
        }
        _ => {
            eprintln!("skipped: set DOCKET_TEST_POSTGRES_URL to run the PostgreSQL tests");
            None
        }
    }
}

fn at(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).expect("test instant in range")
}

fn new_user(subject: Option<&str>) -> NewUser {
    NewUser {
        email: None,
        name: DisplayName::parse("Ada").expect("valid name"),
        timezone: None,
        password_hash: None,
        external_subject: subject.map(str::to_owned),
    }
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(pool)
        .await
        .expect("drop test schema");
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_for_concurrent_starters() {
    let Some(url) = url() else { return };
    let (a, schema) = isolated_pool(&url).await.expect("isolated schema");
    // A second pool on the same schema stands for a second replica starting at once.
    let options = a.connect_options().as_ref().clone();
    let b = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("second pool");
    let (ra, rb) = tokio::join!(migrate::run(&a), migrate::run(&b));
    let applied = ra.expect("first starter") + rb.expect("second starter");
    assert_eq!(applied, migrate::MIGRATIONS.len(), "each migration applied exactly once");

    // A restart finds nothing to do.
    assert_eq!(migrate::run(&a).await.expect("restart"), 0);
    let recorded: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&a)
            .await
            .expect("read schema_migrations");
    let known: Vec<i64> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(recorded, known);
    b.close().await;
    drop_schema(&a, &schema).await;
}

#[tokio::test]
async fn instants_round_trip_at_microsecond_precision() {
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let user =
        store.create_user(new_user(Some("s")), at(1_800_000_000_123_456)).await.expect("user");
    // Near the ends of what the domain allows (years 1 and 9999), before the Unix
    // epoch, just before PostgreSQL's epoch, and a value with nanoseconds (stored truncated,
    // and returned as stored).
    let dues = [
        "0001-01-01T00:00:00Z".parse::<Timestamp>().expect("year 1"),
        "9999-12-30T21:59:59.999999Z".parse::<Timestamp>().expect("year 9999"),
        at(-1),
        at(946_684_799_999_999),
        at(1_800_000_000_000_001),
        Timestamp::new(1_800_000_000, 123_456_789).expect("in range"),
    ];
    for due in dues {
        let mut new = NewTask::new(Title::parse("t").expect("title"));
        new.due_date = Some(due);
        let created =
            store.create_task(user.id, new, at(1_800_000_000_000_000)).await.expect("create");
        assert_eq!(created.due_date.map(|d| d.as_microsecond()), Some(due.as_microsecond()));
        assert_eq!(store.get_task(user.id, created.id).await.expect("get"), created);
    }
    store.drop_schema().await.expect("drop");
}

#[tokio::test]
async fn concurrent_provisioning_and_category_creation_yield_one_row() {
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let now = at(1_800_000_000_000_000);
    let users = futures::future::join_all(
        (0..8).map(|_| store.user_for_subject(new_user(Some("idp|42")), now)),
    )
    .await;
    let ids: Vec<UserId> = users.into_iter().map(|u| u.expect("provisioned").id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one user for one subject: {ids:?}");

    let user = ids[0];
    let creates = (0..8).map(|i| {
        let mut new = NewTask::new(Title::parse("t").expect("title"));
        let name = if i % 2 == 0 { "Work" } else { "WORK" };
        new.category = Some(CategoryRef::Name(CategoryName::parse(name).expect("name")));
        store.create_task(user, new, now)
    });
    let tasks = futures::future::join_all(creates).await;
    let categories: Vec<_> =
        tasks.into_iter().map(|t| t.expect("created").category.expect("category").id).collect();
    assert!(categories.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(store.list_categories(user).await.expect("list").len(), 1);
    store.drop_schema().await.expect("drop");
}

#[tokio::test]
async fn a_version_mismatch_changes_nothing() {
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let now = at(1_800_000_000_000_000);
    let user = store.user_for_subject(new_user(Some("s")), now).await.expect("user");
    let task = store
        .create_task(user.id, NewTask::new(Title::parse("t").expect("title")), now)
        .await
        .expect("create");
    let patch = TaskPatch {
        category: Some(Some(CategoryRef::Name(CategoryName::parse("New").expect("name")))),
        ..TaskPatch::default()
    };
    let err = store.update_task(user.id, task.id, patch, Some(7), now).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { current: 1 }), "{err:?}");
    // Not even the category the patch named was created.
    assert!(store.list_categories(user.id).await.expect("list").is_empty());
    let err = store.delete_task(user.id, task.id, Some(2), Timestamp::now()).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { current: 1 }), "{err:?}");
    assert_eq!(store.get_task(user.id, task.id).await.expect("still there"), task);
    store.drop_schema().await.expect("drop");
}

/// Fills the store with `n` tasks for one user and `n` more spread over 40 others, straight
/// in SQL (fast), refreshes the planner's statistics and returns the first user.
async fn fill(store: &PostgresStore, n: i64) -> UserId {
    let now = at(1_800_000_000_000_000);
    let mut users = Vec::new();
    for i in 0..41 {
        let subject = format!("user-{i}");
        users.push(store.user_for_subject(new_user(Some(&subject)), now).await.expect("user").id);
    }
    let ids: Vec<uuid::Uuid> = users[1..].iter().map(|u| u.0).collect();
    sqlx::query(
        "INSERT INTO tasks (id, user_id, title, title_key, status, priority, tags, due_at, \
         created_at, updated_at, version) \
         SELECT gen_random_uuid(), CASE WHEN g <= $2 THEN $1 ELSE $3[1 + g % 40] END, \
             'task ' || g || ' ' || md5(g::text), 'task ' || g || ' ' || md5(g::text), \
             CASE WHEN g % 3 = 0 THEN 'completed' ELSE 'pending' END, g % 4, \
             ARRAY['t' || (g % 10)], \
             CASE WHEN g % 5 = 0 THEN NULL ELSE now() + g * interval '1 minute' END, \
             now() - g * interval '1 second', now(), 1 \
         FROM generate_series(1, 2 * $2) AS g",
    )
    .bind(users[0].0)
    .bind(n)
    .bind(ids)
    .execute(store.pool())
    .await
    .expect("fill tasks");
    sqlx::raw_sql("ANALYZE tasks").execute(store.pool()).await.expect("analyze");
    users[0]
}

async fn explain(store: &PostgresStore, user: UserId, query: &TaskQuery) -> String {
    let mut b = list::build("EXPLAIN ", user, query, at(1_800_000_000_000_000)).expect("query");
    let rows = b.build().fetch_all(store.pool()).await.expect("explain");
    rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn every_sort_is_an_index_range_scan_without_sorting() {
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let user = fill(&store, 20_000).await;
    let cases = [
        (SortField::DueDate, Order::Asc, "tasks_due_asc_idx"),
        (SortField::DueDate, Order::Desc, "tasks_due_desc_idx"),
        (SortField::Priority, Order::Asc, "tasks_priority_idx"),
        (SortField::Priority, Order::Desc, "tasks_priority_idx"),
        (SortField::Title, Order::Asc, "tasks_title_idx"),
        (SortField::Title, Order::Desc, "tasks_title_idx"),
        (SortField::CreatedAt, Order::Asc, "tasks_created_idx"),
        (SortField::CreatedAt, Order::Desc, "tasks_created_idx"),
        (SortField::UpdatedAt, Order::Asc, "tasks_updated_idx"),
        (SortField::UpdatedAt, Order::Desc, "tasks_updated_idx"),
    ];
    for (sort, order, index) in cases {
        let first = TaskQuery { limit: Limit::new(50), ..TaskQuery::default() }
            .settle(Some(sort), Some(order))
            .expect("settle");
        // A later page: the cursor must become an index bound, not a filter over a sort.
        let page = store.list_tasks(user, &first, at(0)).await.expect("list");
        let next = TaskQuery { cursor: page.next_cursor.clone(), ..first.clone() };
        assert!(next.cursor.is_some());
        for query in [first, next] {
            let plan = explain(&store, user, &query).await;
            assert!(plan.contains(index), "{sort:?} {order:?} should use {index}:\n{plan}");
            assert!(!plan.contains("Sort"), "{sort:?} {order:?} should not sort:\n{plan}");
        }
    }
    let search = TaskQuery {
        text: Some(SearchText::parse("12345").expect("words")),
        ..TaskQuery::default()
    }
    .settle(None, None)
    .expect("settle");
    let plan = explain(&store, user, &search).await;
    assert!(plan.contains("tasks_search_idx"), "search should use the GIN index:\n{plan}");
    store.drop_schema().await.expect("drop");
}

#[tokio::test]
async fn paging_by_rank_visits_every_match_once() {
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let user = fill(&store, 300).await;
    let mut query = TaskQuery {
        text: Some(SearchText::parse("tas").expect("words")),
        limit: Limit::new(7),
        ..TaskQuery::default()
    }
    .settle(None, None)
    .expect("settle");
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = store.list_tasks(user, &query, at(0)).await.expect("page");
        for task in &page.items {
            assert!(seen.insert(task.id), "{} repeated", task.id);
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 300);
    store.drop_schema().await.expect("drop");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 refuses connections; no server is needed for this test.
    for url in ["postgres://postgres@127.0.0.1:1/test", "mysql://nope"] {
        match PostgresStore::connect(url).await {
            Err(StoreError::Unavailable { backend, .. }) => assert_eq!(backend, "postgres"),
            other => panic!("{url}: expected unavailable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn stale_test_schemas_are_swept() {
    let Some(url) = url() else { return };
    let (pool, fresh) = isolated_pool(&url).await.expect("isolated schema");
    // A schema named like one made in 1970, and one that is not ours despite the prefix.
    let stale = format!("docket_test_{:032x}", 1u128 << 80);
    let foreign = "docket_test_keep_me";
    for name in [stale.as_str(), foreign] {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {name}")))
            .execute(&pool)
            .await
            .expect("create schema");
    }
    let mut conn = pool.acquire().await.expect("connection");
    drop_test_schemas_before(&mut conn, 1_000).await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1) ORDER BY 1",
    )
    .bind(vec![stale.clone(), foreign.to_owned(), fresh.clone()])
    .fetch_all(&mut *conn)
    .await
    .expect("list schemas");
    let mut expected = vec![fresh.clone(), foreign.to_owned()];
    expected.sort();
    assert_eq!(left, expected);
    drop(conn);
    drop_schema(&pool, foreign).await;
    drop_schema(&pool, &fresh).await;
}

/// A position allocated by a transaction still open is a gap that may fill later: a read
/// must not return later positions past it (a reader advancing past it would skip its
/// event), and must return everything in order once the transaction ends.
#[tokio::test]
async fn outbox_read_stops_below_an_open_transaction() {
    use docket_events::{TaskChange, task_events, topics};
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("isolated store");
    let user = store.create_user(new_user(None), at(0)).await.expect("create_user");
    let early = store
        .create_task(user.id, NewTask::new(Title::parse("early").expect("valid")), at(0))
        .await
        .expect("create_task");

    // An open transaction holds the next position: it writes first (as every store write
    // does), then appends.
    let mut open = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *open).await.expect("xact id");
    let events = task_events(TaskChange::Created(&early), origin(at(1), "/docket/test"));
    super::append_outbox(&mut open, &events, at(1)).await.expect("append in the open tx");

    let late = store
        .create_task(user.id, NewTask::new(Title::parse("late").expect("valid")), at(2))
        .await
        .expect("create_task commits after the open transaction allocated its position");
    let read = store.read_outbox(0, topics::TASK_EVENTS, 100).await.expect("read_outbox");
    let subjects: Vec<String> = read.iter().filter_map(|(_, e)| e.subject.clone()).collect();
    assert!(
        !subjects.contains(&late.id.to_string()),
        "a later position was returned while a lower one may still commit: {read:?}"
    );
    let head = store.outbox_head(topics::TASK_EVENTS).await.expect("outbox_head");
    assert!(read.iter().all(|(seq, _)| *seq <= head), "head covers what was read");

    open.commit().await.expect("commit the open transaction");
    let mut all = Vec::new();
    for _ in 0..50 {
        all = store.read_outbox(0, topics::TASK_EVENTS, 100).await.expect("read_outbox");
        if all.len() == 3 {
            break;
        }
    }
    let sources: Vec<&str> = all.iter().map(|(_, e)| e.source.as_str()).collect();
    assert_eq!(sources, ["/docket/api", "/docket/test", "/docket/api"], "all three, in order");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));

    // A rolled-back append leaves a gap that later reads pass over.
    let mut aborted = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *aborted).await.expect("xact id");
    let events = task_events(TaskChange::Deleted(&early), origin(at(3), "/docket/test"));
    super::append_outbox(&mut aborted, &events, at(3)).await.expect("append");
    aborted.rollback().await.expect("rollback");
    let after = all.last().expect("events").0;
    store.delete_task(user.id, late.id, None, Timestamp::now()).await.expect("delete_task");
    let mut next = Vec::new();
    for _ in 0..50 {
        next = store.read_outbox(after, topics::TASK_EVENTS, 100).await.expect("read_outbox");
        if !next.is_empty() {
            break;
        }
    }
    assert_eq!(next.len(), 1, "nothing of the rolled-back transaction is delivered");
    assert_eq!(next[0].1.ty, docket_events::types::TASK_DELETED);
    assert!(next[0].0 > after + 1, "the rolled-back position is a gap");
    store.drop_schema().await.expect("drop schema");
}

/// Ending a series through an update of one instance (`recurrence: null`) racing
/// `delete_series` on the same series: both lock the series row and every instance row, so
/// they must take the locks in one order (series, then tasks) or PostgreSQL aborts one of
/// them as a deadlock (`Unavailable`, a 503). Either may win: the update always succeeds
/// (it ends the series, or finds its task already detached), and the delete succeeds or,
/// when the update ended the series first, finds no series (`NotFound`). Either way no task
/// links to the series afterwards.
#[tokio::test]
async fn ending_a_series_by_update_racing_its_delete_does_not_deadlock() {
    use docket_core::{Mode, NewSeries, Pattern, Preset, Recurrence, Zone};
    const ROUNDS: usize = 30;
    const INSTANCES: usize = 6;
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let now = at(1_800_000_000_000_000);
    let user = store.user_for_subject(new_user(Some("s")), now).await.expect("user").id;
    let daily = Recurrence::new(
        Pattern::Preset { preset: Preset::Daily, interval: 1 },
        Zone::parse("UTC").expect("zone"),
    )
    .with_mode(Mode::Fixed);
    let start = now.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let (mut unavailable, mut update_won) = (Vec::new(), 0);
    for round in 0..ROUNDS {
        let series = NewSeries::starting(daily.clone(), start).expect("daily matches");
        let first = store
            .create_recurring_task(
                user,
                NewTask::new(Title::parse("t").expect("title")),
                series,
                now,
            )
            .await
            .expect("create_recurring_task");
        let series_id = first.series.as_ref().expect("an instance").series_id;
        // More instances: the scheduler makes one per call, when it is due.
        let mut last = first;
        for _ in 1..INSTANCES {
            let s = store.get_series(user, series_id).await.expect("get_series");
            let due = s.next_occurrence.expect("a next occurrence");
            let made = store.spawn_due_instances(due, 10).await;
            last = made
                .expect("spawn")
                .into_iter()
                .find(|t| t.series.as_ref().map(|l| l.series_id) == Some(series_id))
                .unwrap_or_else(|| panic!("round {round}: one instance made"));
        }
        let end = TaskPatch { recurrence: Some(None), ..TaskPatch::default() };
        let (a, b) = (store.clone(), store.clone());
        let (updated, deleted) = tokio::join!(
            a.update_task(user, last.id, end, None, now),
            b.delete_series(user, series_id, now),
        );
        for (what, r) in
            [("update_task", updated.as_ref().err()), ("delete_series", deleted.as_ref().err())]
        {
            if let Some(e @ StoreError::Unavailable { .. }) = r {
                unavailable.push(format!("round {round}: {what}: {e}"));
            }
        }
        match (&updated, &deleted) {
            (Err(StoreError::Unavailable { .. }), _) | (_, Err(StoreError::Unavailable { .. })) => {
                // The aborted side changed nothing: end the series for the next round.
                match store.delete_series(user, series_id, now).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => continue,
                    Err(e) => panic!("round {round}: cleaning up: {e}"),
                }
            }
            (Ok(task), Ok(())) => assert_eq!(task.series, None, "round {round}: detached"),
            (Ok(task), Err(StoreError::NotFound("series"))) => {
                assert_eq!(task.series, None, "round {round}: detached");
                update_won += 1;
            }
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
        let linked: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE series_id = $1")
            .bind(series_id.0)
            .fetch_one(store.pool())
            .await
            .expect("count linked tasks");
        assert_eq!(linked, 0, "round {round}: no task links to the deleted series");
        assert!(matches!(
            store.get_series(user, series_id).await,
            Err(StoreError::NotFound("series"))
        ));
    }
    assert!(
        unavailable.is_empty(),
        "{} of {ROUNDS} rounds failed as unavailable (deadlock):\n{}",
        unavailable.len(),
        unavailable.join("\n")
    );
    eprintln!("the update ended the series first in {update_won} of {ROUNDS} rounds");
    store.drop_schema().await.expect("drop");
}

/// Moving tasks into and out of a category racing `delete_category` on it. This pair cannot
/// deadlock, with the delete's old order (category, then tasks) or its present one (series,
/// tasks, then the category): an update locks its task, then its foreign-key check takes
/// `FOR KEY SHARE` on the category moved *to* (none on the one moved from, none when the
/// category does not change), so it waits on the deleted category only when moving a task
/// into it, while the delete waits only on tasks in it (by their committed row): never both
/// for one task. The test guards that: locking the target category before the task (the
/// reverse order) makes a move by name within the category deadlock against the delete.
/// Outcomes: moves out succeed; a move in by id succeeds (then the delete clears it) or,
/// after the delete, finds no category (`InvalidReference`); a move by name to the deleted
/// category keeps it, or after the delete creates a new one (or is a `Conflict` in
/// between). Nothing may be `Unavailable` (a deadlock).
#[tokio::test]
async fn moving_tasks_racing_their_category_delete_does_not_deadlock() {
    const ROUNDS: usize = 30;
    const TASKS: usize = 4;
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let now = at(1_800_000_000_000_000);
    let user = store.user_for_subject(new_user(Some("s")), now).await.expect("user").id;
    let name = |s: &str| CategoryName::parse(s).expect("name");
    let other = store
        .create_category(user, NewCategory { name: name("Other"), color: Color::default() }, now)
        .await
        .expect("create_category")
        .id;
    let mut unavailable = Vec::new();
    for round in 0..ROUNDS {
        let doomed = name(&format!("Doomed {round}"));
        let cat = store
            .create_category(
                user,
                NewCategory { name: doomed.clone(), color: Color::default() },
                now,
            )
            .await
            .expect("create_category")
            .id;
        let mut tasks = Vec::new();
        for i in 0..2 * TASKS {
            let mut new = NewTask::new(Title::parse(&format!("t{i}")).expect("title"));
            new.category = Some(CategoryRef::Id(if i < TASKS { cat } else { other }));
            tasks.push(store.create_task(user, new, now).await.expect("create_task").id);
        }
        let to = |r: CategoryRef| TaskPatch { category: Some(Some(r)), ..TaskPatch::default() };
        // Vary which side reaches the database first.
        let pause = |us: u64| tokio::time::sleep(std::time::Duration::from_micros(us));
        let (lead, lag) = ((round % 3) as u64 * 400, (round % 2) as u64 * 400);
        let (out, into, same, deleted) = tokio::join!(
            async {
                store
                    .update_task(user, tasks[round % TASKS], to(CategoryRef::Id(other)), None, now)
                    .await
            },
            async {
                pause(lag).await;
                store.update_task(user, tasks[TASKS], to(CategoryRef::Id(cat)), None, now).await
            },
            async {
                pause(lead).await;
                store
                    .update_task(
                        user,
                        tasks[TASKS - 1 - round % TASKS],
                        to(CategoryRef::Name(doomed.clone())),
                        None,
                        now,
                    )
                    .await
            },
            async {
                pause(lead + lag).await;
                store.delete_category(user, cat, now).await
            },
        );
        for (what, r) in [
            ("move out", out.as_ref().err()),
            ("move in", into.as_ref().err()),
            ("move by name", same.as_ref().err()),
            ("delete_category", deleted.as_ref().err()),
        ] {
            if let Some(e @ StoreError::Unavailable { .. }) = r {
                unavailable.push(format!("round {round}: {what}: {e}"));
            }
        }
        if !unavailable.is_empty() {
            // The aborted side changed nothing; the assertions below would not hold.
            let _ = store.delete_category(user, cat, now).await;
            continue;
        }
        deleted.expect("delete_category");
        assert_eq!(out.expect("move out").category.map(|c| c.id), Some(other), "round {round}");
        match into {
            Ok(t) => assert_eq!(t.category.map(|c| c.id), Some(cat), "round {round}"),
            Err(StoreError::InvalidReference { field: "category_id", .. }) => {}
            Err(e) => panic!("round {round}: move in: {e:?}"),
        }
        match same {
            Ok(t) => assert!(t.category.is_some_and(|c| c.name == doomed), "round {round}"),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("round {round}: move by name: {e:?}"),
        }
        let linked: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE category_id = $1")
            .bind(cat.0)
            .fetch_one(store.pool())
            .await
            .expect("count tasks");
        assert_eq!(linked, 0, "round {round}: no task keeps the deleted category");
        assert!(matches!(
            store.get_category(user, cat).await,
            Err(StoreError::NotFound("category"))
        ));
    }
    assert!(
        unavailable.is_empty(),
        "{} failures as unavailable (deadlock) in {ROUNDS} rounds:\n{}",
        unavailable.len(),
        unavailable.join("\n")
    );
    store.drop_schema().await.expect("drop");
}

/// `delete_category` racing writers that hold a series or task of the category and then
/// reference it or lock the other: `delete_series` (series, then instances), the scheduler
/// making an instance (series, then `FOR KEY SHARE` on the category by the instance's
/// foreign key) and an update making a task recurring (task, then `FOR KEY SHARE` on the
/// category by the new series' foreign key). The delete sets the series' `category_id` to
/// null (`ON DELETE SET NULL`) and clears its tasks, so it must lock series, then tasks,
/// then the category (the module's lock order), or PostgreSQL aborts one side as a
/// deadlock (`Unavailable`). Every side succeeds, and nothing keeps the category.
#[tokio::test]
async fn series_writers_racing_their_category_delete_do_not_deadlock() {
    use docket_core::{Mode, NewSeries, Pattern, Preset, Recurrence, Zone};
    const ROUNDS: usize = 15;
    let Some(url) = url() else { return };
    let store = PostgresStore::connect_isolated(&url).await.expect("connect");
    let now = at(1_800_000_000_000_000);
    let user = store.user_for_subject(new_user(Some("s")), now).await.expect("user").id;
    let daily = Recurrence::new(
        Pattern::Preset { preset: Preset::Daily, interval: 1 },
        Zone::parse("UTC").expect("zone"),
    )
    .with_mode(Mode::Fixed);
    let start = now.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        for race in ["delete_series", "spawn_due_instances", "update_task"] {
            let name = CategoryName::parse(&format!("{race} {round}")).expect("name");
            let new = NewCategory { name, color: Color::default() };
            let cat = store.create_category(user, new, now).await.expect("create_category").id;
            let mut new = NewTask::new(Title::parse("t").expect("title"));
            new.category = Some(CategoryRef::Id(cat));
            let (raced, deleted) = if race == "update_task" {
                let task = store.create_task(user, new, now).await.expect("create_task");
                let patch =
                    TaskPatch { recurrence: Some(Some(daily.clone())), ..TaskPatch::default() };
                tokio::join!(
                    async { store.update_task(user, task.id, patch, None, now).await.map(drop) },
                    store.delete_category(user, cat, now),
                )
            } else {
                let series = NewSeries::starting(daily.clone(), start).expect("daily matches");
                let first = store.create_recurring_task(user, new, series, now).await;
                let id = first.expect("create_recurring_task").series.expect("linked").series_id;
                // More instances: the scheduler makes one per call, when it is due.
                for _ in 0..3 {
                    let s = store.get_series(user, id).await.expect("get_series");
                    let due = s.next_occurrence.expect("a next occurrence");
                    store.spawn_due_instances(due, 10).await.expect("spawn");
                }
                if race == "delete_series" {
                    tokio::join!(
                        store.delete_series(user, id, now),
                        store.delete_category(user, cat, now)
                    )
                } else {
                    let s = store.get_series(user, id).await.expect("get_series");
                    let due = s.next_occurrence.expect("a next occurrence");
                    tokio::join!(
                        async { store.spawn_due_instances(due, 10).await.map(drop) },
                        store.delete_category(user, cat, now),
                    )
                }
            };
            let failed: Vec<_> = [(race, raced), ("delete_category", deleted)]
                .into_iter()
                .filter_map(|(what, r)| r.err().map(|e| format!("round {round}: {what}: {e}")))
                .collect();
            if !failed.is_empty() {
                failures.extend(failed);
                let _ = store.delete_category(user, cat, now).await;
                continue;
            }
            let left: (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM tasks WHERE category_id = $1), \
                 (SELECT count(*) FROM series WHERE category_id = $1)",
            )
            .bind(cat.0)
            .fetch_one(store.pool())
            .await
            .expect("count");
            assert_eq!(left, (0, 0), "round {round}, {race}: nothing keeps the category");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} races failed:\n{}",
        failures.len(),
        3 * ROUNDS,
        failures.join("\n")
    );
    store.drop_schema().await.expect("drop");
}
