//! Tests of what is particular to the SQLite adapter: group commit (savepoints, batching,
//! panics), migrations on reopen, shutdown, and that list queries are served by indexes.
//! The contract itself is tested by the conformance suite (`tests/conformance.rs`).

use std::sync::Arc;

use docket_core::{
    CategoryName, CategoryRef, Cursor, CursorKey, Limit, NewTask, NewUser, Order, Priority,
    SearchText, SortField, StatusFilter, Tag, TaskQuery, Timestamp, Title, UserId,
};
use futures::future::join_all;
use rusqlite::Connection;

use super::codec::DbResult as _;
use super::{SqliteStore, list, migrate};
use docket_ports::{Store, StoreError};

async fn open_temp() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nested").join("docket.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open");
    (dir, store)
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

async fn make_user(store: &SqliteStore) -> UserId {
    let new = NewUser {
        email: Some(
            docket_core::Email::parse(&format!("{}@example.com", uuid::Uuid::now_v7().simple()))
                .expect("ok"),
        ),
        name: docket_core::DisplayName::parse("tester").expect("ok"),
        timezone: None,
        password_hash: None,
        external_subject: None,
    };
    store.create_user(new, now()).await.expect("create_user").id
}

fn insert(tx: &rusqlite::Transaction<'_>, n: i64) -> Result<(), StoreError> {
    tx.execute("INSERT INTO scratch (n) VALUES (?1)", [n]).db().map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_does_not_fail_its_batch() {
    let (_dir, store) = open_temp().await;
    store
        .write(|tx| tx.execute_batch("CREATE TABLE scratch (n INTEGER NOT NULL UNIQUE)").db())
        .await
        .expect("create scratch table");
    let batches = store.write_batches();

    // The gate holds the writer inside a batch until every request below is queued, so they
    // all land in the next batch together.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = store.write(move |_tx| {
        let _ = started_tx.send(());
        let _ = release_rx.recv();
        Ok(())
    });
    started_rx.await.expect("the gate runs");
    let ok_1 = store.write(|tx| insert(tx, 1));
    let fails_after_writing = store.write(|tx| {
        insert(tx, 2)?;
        Err::<(), _>(StoreError::Conflict("refused on purpose".to_owned()))
    });
    let violates_unique = store.write(|tx| insert(tx, 1));
    let panics = store.write(|tx| -> Result<(), StoreError> {
        insert(tx, 4)?;
        panic!("a write closure panicked on purpose")
    });
    let ok_3 = store.write(|tx| insert(tx, 3));
    release_tx.send(()).expect("release the gate");

    gate.await.expect("gate");
    ok_1.await.expect("the first insert commits");
    assert!(
        matches!(fails_after_writing.await, Err(StoreError::Conflict(m)) if m == "refused on purpose")
    );
    assert!(matches!(
        violates_unique.await,
        Err(StoreError::Unavailable { backend: "sqlite", .. })
    ));
    assert!(matches!(panics.await, Err(StoreError::Unavailable { backend: "sqlite", .. })));
    ok_3.await.expect("a request after a panic commits");
    assert_eq!(
        store.write_batches(),
        batches + 2,
        "the gate's batch and one batch of the five others"
    );

    let rows: Vec<i64> = store
        .read(|conn| {
            let mut st = conn.prepare("SELECT n FROM scratch ORDER BY n").db()?;
            st.query_map([], |r| r.get(0)).db()?.collect::<Result<_, _>>().db()
        })
        .await
        .expect("read scratch");
    assert_eq!(rows, vec![1, 3], "failed requests were rolled back to their savepoints, alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_batched_and_all_readable() {
    let (_dir, store) = open_temp().await;
    let store = Arc::new(store);
    let user = make_user(&store).await;
    let batches = store.write_batches();
    const N: usize = 2000;
    let creates = (0..N).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut new = NewTask::new(Title::parse(&format!("task {i}")).expect("ok"));
            new.tags = docket_core::Tags::parse(&[format!("t{}", i % 7)]).expect("ok");
            new.category =
                Some(CategoryRef::Name(CategoryName::parse(&format!("c{}", i % 3)).expect("ok")));
            store.create_task(user, new, now()).await
        })
    });
    let mut ids = std::collections::HashSet::new();
    for r in join_all(creates).await {
        ids.insert(r.expect("task joined").expect("create_task").id);
    }
    assert_eq!(ids.len(), N);
    let used = store.write_batches() - batches;
    assert!(
        used < (N / 4) as u64,
        "{N} concurrent writes took {used} commits: group commit is not batching"
    );

    let listed =
        page_through(&store, user, TaskQuery { limit: Limit::new(200), ..TaskQuery::default() })
            .await;
    assert_eq!(listed.iter().copied().collect::<std::collections::HashSet<_>>(), ids);
    assert_eq!(listed.len(), N);
    assert_eq!(
        store.list_categories(user).await.expect("categories").len(),
        3,
        "one category per name, not per race"
    );
    let tags = store.list_tags(user).await.expect("tags");
    assert_eq!(tags.iter().map(|t| t.count).sum::<i64>(), N as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("docket.db");
    let path = path.to_str().expect("utf-8").to_owned();
    let applied = |path: &str| -> Vec<(i64, String, i64)> {
        let conn = Connection::open(path).expect("open raw");
        let mut st = conn
            .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };

    let store = SqliteStore::open(&path).await.expect("first open");
    let user = make_user(&store).await;
    drop(store);
    let first = applied(&path);
    assert_eq!(first.len(), migrate::MIGRATIONS.len(), "every migration recorded once");

    let store = SqliteStore::open(&path).await.expect("second open");
    assert!(store.user_by_id(user).await.expect("user_by_id").is_some(), "data survives a reopen");
    drop(store);
    assert_eq!(applied(&path), first, "nothing re-applied (same rows, same applied_at)");

    let mut conn = Connection::open(&path).expect("open raw");
    assert_eq!(migrate::migrate(&mut conn, 0).expect("migrate"), 0, "nothing left to apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_closes_every_connection() {
    let (dir, store) = open_temp().await;
    make_user(&store).await;
    let wal = dir.path().join("nested").join("docket.db-wal");
    assert!(wal.exists(), "WAL mode is on");
    drop(store);
    // SQLite deletes the WAL when the last connection closes, so this holds only once the
    // writer and every reader thread have finished.
    assert!(!wal.exists(), "a connection is still open after drop");
}

#[tokio::test]
async fn memory_databases_are_refused() {
    let err = SqliteStore::open(":memory:").await.expect_err("refused");
    assert!(err.to_string().contains("':memory:' is not supported"), "{err}");
}

/// The `EXPLAIN QUERY PLAN` lines of `q`'s page query.
fn plan(conn: &Connection, user: UserId, q: &TaskQuery) -> Vec<String> {
    let sql = list::build(user, q, now()).expect("builds").expect("a query");
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.sql)).expect("prepare");
    st.query_map(rusqlite::params_from_iter(sql.params), |r| r.get::<_, String>(3))
        .expect("explain")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shapes_are_served_by_sort_indexes() {
    let (_dir, store) = open_temp().await;
    let user = make_user(&store).await;
    let tag = Tag::parse("work").expect("ok");
    let filters: Vec<(&str, TaskQuery)> = vec![
        ("no filter", TaskQuery::default()),
        ("status", TaskQuery { status: StatusFilter::Pending, ..TaskQuery::default() }),
        (
            "priorities",
            TaskQuery {
                priorities: vec![Priority::High, Priority::Urgent],
                ..TaskQuery::default()
            },
        ),
        ("tag", TaskQuery { tags: vec![tag], ..TaskQuery::default() }),
        (
            "due range",
            TaskQuery { due_before: Some(now()), due_after: Some(now()), ..TaskQuery::default() },
        ),
        ("overdue", TaskQuery { overdue: true, ..TaskQuery::default() }),
    ];
    let sorts = [
        SortField::DueDate,
        SortField::Priority,
        SortField::Title,
        SortField::CreatedAt,
        SortField::UpdatedAt,
    ];
    let mut checked = 0;
    for (name, base) in &filters {
        for sort in sorts {
            for order in [Order::Asc, Order::Desc] {
                for with_cursor in [false, true] {
                    let key = match sort {
                        SortField::Title => CursorKey::Text("m".to_owned()),
                        _ => CursorKey::Int(5),
                    };
                    let cursor =
                        with_cursor.then(|| Cursor { sort, order, key, id: uuid::Uuid::now_v7() });
                    let q =
                        TaskQuery { sort, order, limit: Limit::new(50), cursor, ..base.clone() };
                    let shape = format!("{name}, {sort:?} {order:?}, cursor {with_cursor}");
                    let lines =
                        store.read(move |conn| Ok(plan(conn, user, &q))).await.expect("plan");
                    assert!(
                        lines.iter().all(|l| !l.contains("TEMP B-TREE")),
                        "{shape}: sorts in a temporary B-tree: {lines:?}"
                    );
                    assert!(
                        lines
                            .iter()
                            .any(|l| l.starts_with("SEARCH t USING")
                                && l.contains("INDEX tasks_by_")),
                        "{shape}: not served by a sort index: {lines:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, filters.len() * sorts.len() * 4);
}

/// Pages through `q` with cursors sent through their text form, failing (not hanging) when
/// the cursor does not advance.
async fn page_through(
    store: &SqliteStore,
    user: UserId,
    mut q: TaskQuery,
) -> Vec<docket_core::TaskId> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = store.list_tasks(user, &q, now()).await.expect("list");
        out.extend(page.items.iter().map(|t| t.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(Cursor::decode(&c.encode()).expect("round trip")),
            None => return out,
        }
    }
    panic!("paging does not end: the cursor does not advance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_search_pages_exactly_through_cursor_text() {
    let (_dir, store) = open_temp().await;
    let user = make_user(&store).await;
    let create = |title: String| {
        let new = NewTask::new(Title::parse(&title).expect("ok"));
        store.create_task(user, new, now())
    };
    for i in 0..30 {
        create(format!("garden {}", "word ".repeat(i % 7))).await.expect("create");
    }
    let q =
        TaskQuery { text: Some(SearchText::parse("gard").expect("ok")), ..TaskQuery::default() }
            .settle(None, None)
            .expect("settle");
    // First with the word in every task (bm25 scores near 1e-6), then in a third of them.
    for round in 0..2 {
        let one = store
            .list_tasks(user, &TaskQuery { limit: Limit::new(200), ..q.clone() }, now())
            .await
            .expect("list");
        assert_eq!(one.items.len(), 30);
        let paged =
            page_through(&store, user, TaskQuery { limit: Limit::new(4), ..q.clone() }).await;
        assert_eq!(paged, one.items.iter().map(|t| t.id).collect::<Vec<_>>(), "round {round}");
        let shortest = one.items.iter().map(|t| t.title.as_str().len()).min();
        assert_eq!(
            Some(one.items[0].title.as_str().len()),
            shortest,
            "round {round}: the shortest match ranks first"
        );
        for i in 0..60 {
            create(format!("unrelated {i}")).await.expect("create");
        }
    }
}

#[tokio::test]
async fn a_cursor_of_another_sort_is_refused() {
    let (_dir, store) = open_temp().await;
    let user = make_user(&store).await;
    let cursor = Cursor {
        sort: SortField::Title,
        order: Order::Asc,
        key: CursorKey::Int(1),
        id: uuid::Uuid::nil(),
    };
    let q = TaskQuery {
        sort: SortField::Title,
        order: Order::Asc,
        cursor: Some(cursor),
        ..TaskQuery::default()
    };
    let err = store.list_tasks(user, &q, now()).await.expect_err("key type does not fit the sort");
    assert!(matches!(err, StoreError::InvalidReference { field: "cursor", .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_start_from_the_full_text_matches() {
    let (_dir, store) = open_temp().await;
    let user = make_user(&store).await;
    let text = Some(SearchText::parse("milk").expect("ok"));
    let ranked = TaskQuery { text: text.clone(), ..TaskQuery::default() }
        .settle(None, None)
        .expect("settle");
    let ranked_cursor = Cursor {
        sort: SortField::Rank,
        order: Order::Asc,
        key: CursorKey::Float(-1.5),
        id: uuid::Uuid::nil(),
    };
    let shapes = [
        ("ranked", ranked.clone()),
        ("ranked, cursor", TaskQuery { cursor: Some(ranked_cursor), ..ranked }),
        (
            "by due date",
            TaskQuery {
                text: text.clone(),
                sort: SortField::DueDate,
                order: Order::Asc,
                ..TaskQuery::default()
            },
        ),
        (
            "with a tag",
            TaskQuery { text, tags: vec![Tag::parse("home").expect("ok")], ..TaskQuery::default() },
        ),
    ];
    for (shape, q) in shapes {
        let lines = store.read(move |conn| Ok(plan(conn, user, &q))).await.expect("plan");
        assert!(
            lines[0].starts_with("SCAN tasks_fts"),
            "{shape}: must start from the matches: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l == "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)"),
            "{shape}: tasks looked up by rowid: {lines:?}"
        );
    }
}

async fn search_ids(store: &SqliteStore, user: UserId, text: &str) -> Vec<docket_core::TaskId> {
    let q = TaskQuery { text: Some(SearchText::parse(text).expect("ok")), ..TaskQuery::default() };
    store.list_tasks(user, &q, now()).await.expect("search").items.iter().map(|t| t.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_index_follows_every_write_of_a_batch() {
    use docket_core::TaskPatch;
    let (_dir, store) = open_temp().await;
    let user = make_user(&store).await;
    let task = |title: &str| NewTask::new(Title::parse(title).expect("ok"));
    let x = store.create_task(user, task("xylophone lesson"), now()).await.expect("create");
    let y = store.create_task(user, task("yodel practice"), now()).await.expect("create");

    // Everything below lands in one batch, behind the gate.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = store.write(move |_tx| {
        let _ = started_tx.send(());
        let _ = release_rx.recv();
        Ok(())
    });
    started_rx.await.expect("the gate runs");
    let retitle = TaskPatch {
        title: Some(Title::parse("marimba lesson").expect("ok")),
        ..TaskPatch::default()
    };
    let mut update_x = store.update_task(user, x.id, retitle, None, now());
    let mut delete_y = store.delete_task(user, y.id, None, Timestamp::now());
    let mut create_w = store.create_task(user, task("walrus watching"), now());
    // The trait's futures queue their request on first poll.
    assert!(futures::poll!(&mut update_x).is_pending());
    assert!(futures::poll!(&mut delete_y).is_pending());
    assert!(futures::poll!(&mut create_w).is_pending());
    // Created, changed, and failed: rolled back with its queue entry.
    let failed = store.write(move |tx| {
        let t = task("zebra crossing").into_task(docket_ports::ids::new_id(), user, None, now());
        super::insert_task(tx, &t)?;
        Err::<(), _>(StoreError::Conflict("refused on purpose".to_owned()))
    });
    // Created and changed in the same request: indexed once, with the final text.
    let created_then_changed = store.write(move |tx| {
        let before =
            task("quokka spotting").into_task(docket_ports::ids::new_id(), user, None, now());
        super::insert_task(tx, &before)?;
        let seq = tx.last_insert_rowid();
        let after = docket_core::Task {
            title: Title::parse("quail spotting").expect("ok"),
            ..before.clone()
        };
        super::update_task_row(tx, seq, &before, &after)?;
        Ok(after.id)
    });
    release_tx.send(()).expect("release");
    gate.await.expect("gate");
    update_x.await.expect("update");
    delete_y.await.expect("delete");
    let w = create_w.await.expect("create");
    assert!(failed.await.is_err());
    let q = created_then_changed.await.expect("create and change");

    for (word, want) in [
        ("xylophone", vec![]),
        ("marimba", vec![x.id]),
        ("yodel", vec![]),
        ("walrus", vec![w.id]),
        ("zebra", vec![]),
        ("quokka", vec![]),
        ("quail", vec![q]),
        ("lesson", vec![x.id]),
    ] {
        assert_eq!(search_ids(&store, user, word).await, want, "search {word:?}");
    }
    let pending: i64 = store
        .read(|conn| conn.query_row("SELECT count(*) FROM fts_pending", [], |r| r.get(0)).db())
        .await
        .expect("count");
    assert_eq!(pending, 0, "the refresh queue is empty between batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_wake_up_counts_only_committed_batches_with_events() {
    let (_dir, store) = open_temp().await;
    let mut appended = store.outbox_appended();
    let start = *appended.borrow_and_update();
    make_user(&store).await;
    assert!(!appended.has_changed().expect("the writer is running"), "no events, no wake-up");

    let event = docket_events::CloudEvent::parse(
        br#"{"specversion":"1.0","id":"e-1","source":"/docket/test","type":"t"}"#,
    )
    .expect("valid event");
    let rolled_back = event.clone();
    let r = store
        .write(move |tx| {
            crate::bus::append_event(tx, "t", &rolled_back, now())?;
            Err::<(), _>(StoreError::Conflict("rolled back on purpose".to_owned()))
        })
        .await;
    assert!(r.is_err());
    // A rolled-back append may wake (spuriously); it leaves nothing to read.
    appended.borrow_and_update();
    assert!(store.read_outbox(0, "t", 10).await.expect("read").is_empty());

    store.write(move |tx| crate::bus::append_event(tx, "t", &event, now())).await.expect("append");
    assert!(appended.has_changed().expect("the writer is running"), "a committed append wakes");
    assert!(*appended.borrow_and_update() > start);
}

/// Durability is a setting nothing else observes (a SIGKILL test cannot see a missing fsync):
/// the writer's connection and every reader's run in WAL mode with `synchronous=FULL` (2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_runs_wal_with_synchronous_full() {
    fn pragmas(conn: &Connection) -> Result<(String, i64), StoreError> {
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).db()?;
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).db()?;
        Ok((mode, sync))
    }
    let (_dir, store) = open_temp().await;
    let writer = store.write(|tx| pragmas(tx)).await.expect("the writer's pragmas");
    assert_eq!(writer, ("wal".to_owned(), 2), "the writer: (journal_mode, synchronous)");

    // Each read holds its reader thread at the barrier until all of them are held, so the
    // reads run on `READERS` different connections.
    let barrier = Arc::new(std::sync::Barrier::new(super::READERS));
    let reads = (0..super::READERS).map(|_| {
        let barrier = Arc::clone(&barrier);
        store.read(move |conn| {
            barrier.wait();
            let name = std::thread::current().name().map(str::to_owned);
            pragmas(conn).map(|p| (name, p))
        })
    });
    let readers: Vec<_> = join_all(reads).await.into_iter().map(|r| r.expect("read")).collect();
    let threads: std::collections::HashSet<_> = readers.iter().map(|(name, _)| name).collect();
    assert_eq!(threads.len(), super::READERS, "one read per reader: {readers:?}");
    for (name, p) in &readers {
        assert_eq!(p, &("wal".to_owned(), 2), "reader {name:?}: (journal_mode, synchronous)");
    }
}
