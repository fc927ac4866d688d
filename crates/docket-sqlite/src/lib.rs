//! The embedded SQLite adapter of the [`Store`] contract: [`SqliteStore`].
//!
//! One file in WAL mode with `synchronous=FULL`, so an acknowledged write survives a crash.
//! All writes go through one writer thread that commits them in batches ([`writer`]: group
//! commit, one fsync per batch, a savepoint per request); reads run on a pool of `query_only`
//! connections ([`readers`]) that never wait for the writer; a background thread copies the
//! WAL into the database file ([`checkpoint`]). Schema changes are the embedded migrations in
//! `migrations/sqlite/` ([`migrate`]).
//!
//! This adapter does not share a file with other processes cleverly: another process may read
//! the file, and writes from elsewhere only wait on `busy_timeout`. It also does not support
//! `:memory:` databases, since its several connections would each see a different one.

mod audit;
pub mod bus;
mod checkpoint;
mod codec;
mod consume;
mod list;
mod migrate;
mod notifications;
mod outbox;
mod readers;
mod reminders;
mod series;
mod state;
mod webhooks;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docket_core::plan::check_version;
use docket_core::plan::task::{plan_category_delete, plan_task_update, series_to_load};
use docket_core::{
    Category, CategoryId, CategoryPatch, CategoryRef, NewCategory, NewReminder, NewTask, NewUser,
    Notification, NotificationId, Page, Reminder, ReminderId, Task, TaskId, TaskPatch, TaskQuery,
    Timestamp, TokenId, User, UserId,
};
use docket_events::{CloudEvent, TaskChange, task_events};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use self::checkpoint::Checkpointer;
use self::codec::{
    BACKEND, CATEGORY_COLUMNS, DbResult as _, TASK_COLUMNS, TASK_FROM, TOKEN_COLUMNS, USER_COLUMNS,
    category_from_row, foreign_key_violation, micros, status_code, tags_text, task_from_row,
    token_from_row, truncate, unique_violation, user_from_row,
};
use self::readers::Readers;
use self::writer::Writer;
use docket_ports::StoreError;
use docket_ports::audit::ENTITY_TASK;
use docket_ports::ids::new_id;
use docket_ports::{AuditEntry, AuditPage};
use docket_ports::{Store, TagCount, TokenInfo, UserRecord};

pub use self::outbox::append_outbox;
pub use self::writer::MAX_BATCH;

/// How many read connections (threads) a store keeps. Reads are short; on a small machine a
/// few readers keep the cores busy without crowding out the writer.
pub const READERS: usize = 4;

/// How long a connection waits for a lock held by another process before `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to share behind an `Arc`; dropping it finishes the write batch in
/// progress, stops its threads and closes the file.
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    checkpointer: Checkpointer,
    path: PathBuf,
    /// The `source` of the events this store's writes append (`/docket/{role}`).
    source: Arc<str>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // One connection after the other: the last connection to close checkpoints the WAL
        // and removes it, which fails when connections close at the same moment. No read can
        // be in flight (reads borrow the store); queued writes still commit before the writer
        // stops, and its stopping is what stops the checkpointer, which closes last.
        self.readers.shutdown();
        self.writer.shutdown();
        self.checkpointer.shutdown();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating the parent directory and the file when missing) the database at `path`
    /// and applies pending migrations.
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() || path.to_str().is_some_and(|p| p.starts_with(":memory:")) {
            return Err(StoreError::unavailable(
                BACKEND,
                format!(
                    "sqlite path '{}' is not supported (expected a file such as ./data/docket.db)",
                    path.display()
                ),
            ));
        }
        tokio::task::spawn_blocking(move || open_blocking(path))
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, e))?
    }

    /// Sets the `source` of the events this store's task writes append (default
    /// `/docket/api`; see `docket_events::source`).
    pub fn with_event_source(mut self, source: &str) -> SqliteStore {
        self.source = Arc::from(source);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer thread inside the next group-commit transaction, in a savepoint
    /// of its own: when `f` returns `Err` (or panics) its changes are rolled back and the rest
    /// of the batch commits. Resolves once the batch is durable.
    ///
    /// The request is queued when this is called, not when the future is polled, and dropping
    /// the future does not cancel it. `f` must not commit, roll back or release savepoints it
    /// did not open, and must not write `tasks_fts` itself (queue the task in `fts_pending`,
    /// as `mark_fts` does: the index is refreshed once per batch).
    pub(crate) fn write<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, StoreError>> + Send + 'static
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        // The closure runs on the writer thread: it re-enters the caller's trace context, so
        // the events it appends carry the caller's `traceparent`.
        let trace = docket_trace::current();
        writer::reply(self.writer.submit(move |tx| docket_trace::sync_scope(trace, || f(tx))))
    }

    /// Runs `f` on a free `query_only` reader connection; it sees every write acknowledged
    /// before the call.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.readers.run(f).await
    }

    /// Adds `reminders` to `task` in one transaction, as `Store::create_reminder` would
    /// (fire times planned from the task and its owner's zone) but without re-reading the
    /// task for each: for loading many at once (the reminder benchmark seeds millions).
    pub async fn add_reminders(
        &self,
        task: &Task,
        reminders: Vec<NewReminder>,
        now: Timestamp,
    ) -> Result<Vec<Reminder>, StoreError> {
        let task = task.clone();
        self.write(move |tx| {
            reminders.into_iter().map(|new| reminders::insert(tx, &task, new, now)).collect()
        })
        .await
    }

    /// [`SqliteStore::write`] for test fixtures (feature `raw-access`, which only
    /// dev-dependencies turn on): what the product writes goes through the store's methods.
    #[cfg(feature = "raw-access")]
    pub fn raw_write<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, StoreError>> + Send + 'static
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.write(f)
    }

    /// [`SqliteStore::read`] for test fixtures (feature `raw-access`).
    #[cfg(feature = "raw-access")]
    pub async fn raw_read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.read(f).await
    }

    /// How many write batches have committed since open (for tests and metrics).
    pub fn write_batches(&self) -> u64 {
        self.writer.commits()
    }
}

fn open_blocking(path: PathBuf) -> Result<SqliteStore, StoreError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::unavailable(
                BACKEND,
                format!("cannot create directory '{}': {e}", parent.display()),
            )
        })?;
    }
    let mut conn = Connection::open(&path).map_err(|e| {
        StoreError::unavailable(BACKEND, format!("cannot open '{}': {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).db()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::unavailable(
            BACKEND,
            format!("'{}' refused WAL mode (journal_mode is '{mode}')", path.display()),
        ));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged write is durable.
    // wal_autocheckpoint is only a backstop (40 MB of WAL): the checkpointer thread copies
    // the WAL long before. journal_size_limit gives the disk back after a burst.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA wal_autocheckpoint = 10000;
         PRAGMA journal_size_limit = 67108864;",
    )
    .db()?;
    conn.set_prepared_statement_cache_capacity(64);
    stable_plans(&conn)?;
    migrate::migrate(&mut conn, micros(Timestamp::now()))?;

    let mut reader_conns = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let r = Connection::open(&path).db()?;
        r.busy_timeout(BUSY_TIMEOUT).db()?;
        // mmap: pages of the database file are read from the shared OS page cache in place,
        // not copied into each reader's own cache by a read() call (WAL pages still are).
        // synchronous is per connection: set, not left to the library's default, so no
        // connection of the file (one closing last may checkpoint) runs with less.
        r.execute_batch(
            "PRAGMA query_only = ON;
             PRAGMA synchronous = FULL;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -8000;
             PRAGMA mmap_size = 268435456;",
        )
        .db()?;
        // List queries differ by the shape of their filters; keep many shapes prepared.
        r.set_prepared_statement_cache_capacity(256);
        stable_plans(&r)?;
        reader_conns.push(r);
    }
    let checkpoint_conn = Connection::open(&path).db()?;
    checkpoint_conn.busy_timeout(BUSY_TIMEOUT).db()?;
    let readers = Readers::start(reader_conns)?;
    let (checkpointer, nudge) = Checkpointer::start(checkpoint_conn)?;
    let writer = Writer::start(conn, refresh_fts, nudge)?;
    let source = Arc::from(docket_events::source("api"));
    Ok(SqliteStore { writer, readers, checkpointer, path, source })
}

/// Turns on the query planner stability guarantee. Without it, a statement whose plan could
/// depend on a bound value (any `LIMIT ?`, with this build's STAT4) is re-prepared every
/// time it is bound, which made each list request parse and plan its SQL again. It also
/// keeps plans the ones `tests.rs` checks, whatever statistics the file gathers.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).db()?;
    Ok(())
}

// --- helpers shared by the write closures

fn user_conflict(e: &rusqlite::Error, new: &NewUser) -> Option<StoreError> {
    let msg = unique_violation(e)?;
    if msg.contains("users.email") {
        let email = new.email.as_ref().map(|e| e.as_str()).unwrap_or_default();
        Some(StoreError::Conflict(format!("email '{email}' is already registered")))
    } else if msg.contains("users.external_subject") {
        let subject = new.external_subject.as_deref().unwrap_or_default();
        Some(StoreError::Conflict(format!("external subject '{subject}' is already registered")))
    } else {
        None
    }
}

fn insert_user(tx: &Transaction<'_>, new: &NewUser, now: Timestamp) -> Result<User, StoreError> {
    let user = User {
        id: new_id(),
        email: new.email.clone(),
        name: new.name.clone(),
        timezone: new.timezone.clone(),
        external_subject: new.external_subject.clone(),
        created_at: now,
    };
    let mut st = tx
        .prepare_cached(
            "INSERT INTO users (id, email, name, timezone, password_hash, external_subject, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .db()?;
    st.execute(params![
        user.id.0.as_bytes(),
        user.email.as_ref().map(|e| e.as_str()),
        user.name.as_str(),
        user.timezone.as_ref().map(|z| z.name()),
        new.password_hash.as_deref(),
        user.external_subject.as_deref(),
        micros(now),
    ])
    .map_err(|e| user_conflict(&e, new).unwrap_or_else(|| StoreError::unavailable(BACKEND, e)))?;
    Ok(user)
}

fn missing_user(e: rusqlite::Error) -> StoreError {
    if foreign_key_violation(&e) {
        StoreError::NotFound("user")
    } else {
        StoreError::unavailable(BACKEND, e)
    }
}

fn find_category(
    conn: &Connection,
    user: UserId,
    id: CategoryId,
) -> Result<Option<Category>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = ?1 AND user_id = ?2"
        ))
        .db()?;
    let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
    rows.next().db()?.map(category_from_row).transpose()
}

/// The category a task write names: the user's own by id, or by name (created when missing).
pub(crate) fn resolve_category(
    tx: &Transaction<'_>,
    user: UserId,
    r: &CategoryRef,
    now: Timestamp,
) -> Result<Category, StoreError> {
    match r {
        CategoryRef::Id(id) => {
            find_category(tx, user, *id)?.ok_or_else(|| StoreError::InvalidReference {
                field: "category_id",
                message: format!("category '{id}' does not exist"),
            })
        }
        CategoryRef::Name(name) => {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories WHERE user_id = ?1 AND name_key = ?2"
                ))
                .db()?;
            let mut rows = st.query(params![user.0.as_bytes(), name.key()]).db()?;
            if let Some(row) = rows.next().db()? {
                return category_from_row(row);
            }
            let category = NewCategory::named(name.clone()).into_category(new_id(), user, now);
            insert_category(tx, &category)?;
            Ok(category)
        }
    }
}

fn insert_category(tx: &Transaction<'_>, c: &Category) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO categories (id, user_id, name, name_key, color, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?;
    st.execute(params![
        c.id.0.as_bytes(),
        c.user_id.0.as_bytes(),
        c.name.as_str(),
        c.name.key(),
        c.color.as_str(),
        micros(c.created_at),
    ])
    .map_err(|e| category_error(e, c.name.as_str()))?;
    Ok(())
}

fn category_error(e: rusqlite::Error, name: &str) -> StoreError {
    if unique_violation(&e).is_some() {
        StoreError::Conflict(format!("category '{name}' already exists"))
    } else {
        missing_user(e)
    }
}

/// The task `id` of `user` with its `seq`, read inside the write transaction.
fn load_task(tx: &Transaction<'_>, user: UserId, id: TaskId) -> Result<(i64, Task), StoreError> {
    let mut st = tx
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.id = ?1 AND t.user_id = ?2"
        ))
        .db()?;
    let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
    match rows.next().db()? {
        Some(row) => task_from_row(row),
        None => Err(StoreError::NotFound("task")),
    }
}

/// The user's tasks in category `id`, in id order.
fn tasks_in_category(
    tx: &Transaction<'_>,
    user: UserId,
    id: CategoryId,
) -> Result<Vec<Task>, StoreError> {
    let mut st = tx
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.category_id = ?1 AND t.user_id = ?2 ORDER BY t.id"
        ))
        .db()?;
    let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(task_from_row(row)?.1);
    }
    Ok(out)
}

fn insert_tags(tx: &Transaction<'_>, task: &Task) -> Result<(), StoreError> {
    if task.tags.is_empty() {
        return Ok(());
    }
    let mut st = tx
        .prepare_cached("INSERT INTO task_tags (task_id, user_id, tag) VALUES (?1, ?2, ?3)")
        .db()?;
    for tag in task.tags.iter() {
        st.execute(params![task.id.0.as_bytes(), task.user_id.0.as_bytes(), tag.as_str()]).db()?;
    }
    Ok(())
}

/// Queues the task at `seq` for a refresh of its `tasks_fts` row when the batch commits
/// (see [`refresh_fts`]); `indexed` says whether the index already has a row for it.
fn mark_fts(tx: &Transaction<'_>, seq: i64, indexed: bool) -> Result<(), StoreError> {
    // A task created and then changed in one batch keeps `indexed = 0`: it has no row yet.
    tx.prepare_cached(
        "INSERT INTO fts_pending (seq, indexed) VALUES (?1, ?2) ON CONFLICT (seq) DO NOTHING",
    )
    .db()?
    .execute(params![seq, indexed])
    .db()?;
    Ok(())
}

/// Brings `tasks_fts` in step with the tasks queued in `fts_pending`; the writer runs it at
/// the end of every batch, outside the requests' savepoints, in the batch's transaction.
///
/// Why not write the index inside each request: FTS5 flushes its pending terms to a new
/// segment at every SAVEPOINT, so indexing inside per-request savepoints wrote one segment
/// per task and spent the writer's time merging them. Refreshed here, a batch writes one.
fn refresh_fts(tx: &Transaction<'_>) -> Result<(), rusqlite::Error> {
    // One rowid at a time: FTS5 answers `rowid = ?` directly, while `rowid IN (subquery)`
    // made it scan the whole index.
    let stale: Vec<i64> = tx
        .prepare_cached("SELECT seq FROM fts_pending WHERE indexed = 1")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut delete = tx.prepare_cached("DELETE FROM tasks_fts WHERE rowid = ?1")?;
    for seq in stale {
        delete.execute([seq])?;
    }
    // `tags` is comma-joined in `tasks`; the index gets them space-separated (Tags::joined).
    tx.prepare_cached(
        "INSERT INTO tasks_fts (rowid, title, description, tags)
         SELECT t.seq, t.title, t.description, replace(t.tags, ',', ' ')
         FROM fts_pending p JOIN tasks t ON t.seq = p.seq",
    )?
    .execute([])?;
    tx.prepare_cached("DELETE FROM fts_pending")?.execute([])?;
    Ok(())
}

pub(crate) fn insert_task(tx: &Transaction<'_>, task: &Task) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO tasks (id, user_id, title, title_key, description, status, completed_at, priority,
                                category_id, tags, due_date, timezone, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )
        .db()?;
    st.execute(params![
        task.id.0.as_bytes(),
        task.user_id.0.as_bytes(),
        task.title.as_str(),
        task.title.sort_key(),
        task.description.as_ref().map(|d| d.as_str()),
        status_code(task.status),
        task.completed_at.map(micros),
        task.priority.rank(),
        task.category.as_ref().map(|c| c.id.0.as_bytes()),
        tags_text(&task.tags),
        task.due_date.map(micros),
        task.timezone.as_ref().map(|z| z.name()),
        micros(task.created_at),
        micros(task.updated_at),
        task.version,
    ])
    .map_err(missing_user)?;
    let seq = tx.last_insert_rowid();
    insert_tags(tx, task)?;
    mark_fts(tx, seq, false)
}

fn update_task_row(
    tx: &Transaction<'_>,
    seq: i64,
    before: &Task,
    task: &Task,
) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "UPDATE tasks SET title = ?2, title_key = ?3, description = ?4, status = ?5, completed_at = ?6,
                              priority = ?7, category_id = ?8, tags = ?9, due_date = ?10, timezone = ?11,
                              updated_at = ?12, version = ?13
             WHERE seq = ?1",
        )
        .db()?;
    st.execute(params![
        seq,
        task.title.as_str(),
        task.title.sort_key(),
        task.description.as_ref().map(|d| d.as_str()),
        status_code(task.status),
        task.completed_at.map(micros),
        task.priority.rank(),
        task.category.as_ref().map(|c| c.id.0.as_bytes()),
        tags_text(&task.tags),
        task.due_date.map(micros),
        task.timezone.as_ref().map(|z| z.name()),
        micros(task.updated_at),
        task.version,
    ])
    .db()?;
    if task.tags != before.tags {
        tx.prepare_cached("DELETE FROM task_tags WHERE task_id = ?1")
            .db()?
            .execute([task.id.0.as_bytes()])
            .db()?;
        insert_tags(tx, task)?;
    }
    if task.title != before.title
        || task.description != before.description
        || task.tags != before.tags
    {
        mark_fts(tx, seq, true)?;
    }
    Ok(())
}

fn read_user(
    conn: &Connection,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<UserRecord>, StoreError> {
    let mut st = conn.prepare_cached(sql).db()?;
    let mut rows = st.query([key]).db()?;
    rows.next().db()?.map(user_from_row).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.prepare_cached("SELECT 1").db()?.query_row([], |_| Ok(())).db()).await
    }

    // --- users and tokens

    async fn create_user(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let now = truncate(now);
        self.write(move |tx| insert_user(tx, &new, now)).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1");
            Ok(read_user(conn, &sql, &id.0.as_bytes())?.map(|r| r.user))
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        // Stored emails are lower-case (docket_core::Email), so the lookup folds the same way.
        let email = email.trim().to_lowercase();
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = ?1");
            read_user(conn, &sql, &email)
        })
        .await
    }

    async fn user_for_subject(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let Some(subject) = new.external_subject.clone() else {
            return Err(StoreError::InvalidReference {
                field: "external_subject",
                message: "an external subject is needed to provision a user".to_owned(),
            });
        };
        let now = truncate(now);
        // Every request with an external token comes here, so the common case (a known
        // subject) is a plain read that never waits for the writer's fsync.
        let known = subject.clone();
        let found = self
            .read(move |conn| {
                let sql =
                    format!("SELECT {USER_COLUMNS} FROM users u WHERE u.external_subject = ?1");
                Ok(read_user(conn, &sql, &known)?.map(|r| r.user))
            })
            .await?;
        if let Some(user) = found {
            return Ok(user);
        }
        // Look-up and insert run again in one write request: the single writer serialises
        // concurrent first sightings, so only one of them inserts.
        self.write(move |tx| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.external_subject = ?1");
            if let Some(found) = read_user(tx, &sql, &subject)? {
                return Ok(found.user);
            }
            insert_user(tx, &new, now)
        })
        .await
    }

    async fn create_token(&self, info: TokenInfo, token_hash: String) -> Result<(), StoreError> {
        let info = TokenInfo {
            created_at: truncate(info.created_at),
            expires_at: info.expires_at.map(truncate),
            ..info
        };
        self.write(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO tokens (id, user_id, name, prefix, token_hash, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .db()?;
            st.execute(params![
                info.id.0.as_bytes(),
                info.user_id.0.as_bytes(),
                info.name,
                info.prefix,
                token_hash,
                micros(info.created_at),
                info.expires_at.map(micros),
            ])
            .map_err(|e| {
                if unique_violation(&e).is_some() {
                    // Never echo the hash: it is as good as a credential in some hands.
                    StoreError::Conflict(format!("token '{}' already exists", info.id))
                } else {
                    missing_user(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = ?1 ORDER BY created_at, id"
                ))
                .db()?;
            let mut rows = st.query([user.0.as_bytes()]).db()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().db()? {
                out.push(token_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_token(&self, user: UserId, id: TokenId) -> Result<(), StoreError> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM tokens WHERE id = ?1 AND user_id = ?2")
                .db()?
                .execute(params![id.0.as_bytes(), user.0.as_bytes()])
                .db()?;
            if n == 0 { Err(StoreError::NotFound("token")) } else { Ok(()) }
        })
        .await
    }

    async fn user_by_token_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM tokens k JOIN users u ON u.id = k.user_id
                     WHERE k.token_hash = ?1 AND (k.expires_at IS NULL OR k.expires_at > ?2)"
                ))
                .db()?;
            let mut rows = st.query(params![token_hash, micros(now)]).db()?;
            Ok(rows.next().db()?.map(user_from_row).transpose()?.map(|r| r.user))
        })
        .await
    }

    // --- tasks

    async fn create_recurring_task(
        &self,
        user: UserId,
        new: NewTask,
        series: docket_core::NewSeries,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| crate::series::create(tx, user, new, series, now, &source)).await
    }

    async fn list_series(&self, user: UserId) -> Result<Vec<docket_core::Series>, StoreError> {
        self.read(move |conn| crate::series::list(conn, user)).await
    }

    async fn get_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
    ) -> Result<docket_core::Series, StoreError> {
        self.read(move |conn| crate::series::get(conn, user, id)).await
    }

    async fn set_series_active(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        active: bool,
        now: Timestamp,
    ) -> Result<docket_core::Series, StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| crate::series::set_active(tx, user, id, active, now, &source)).await
    }

    async fn delete_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| crate::series::delete(tx, user, id, now, &source)).await
    }

    async fn spawn_due_instances(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| crate::series::spawn_due(tx, now, limit, &source)).await
    }

    async fn next_series_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(crate::series::next_due_at).await
    }

    async fn upcoming_series(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(docket_core::SeriesId, Timestamp)>, StoreError> {
        self.read(move |c| crate::series::upcoming(c, until, limit)).await
    }

    async fn create_webhook(
        &self,
        user: UserId,
        new: docket_core::NewWebhook,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let now = truncate(now);
        self.write(move |tx| webhooks::create(tx, user, new, now)).await
    }

    async fn list_webhooks(&self, user: UserId) -> Result<Vec<docket_core::Webhook>, StoreError> {
        self.read(move |conn| webhooks::list(conn, user)).await
    }

    async fn get_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<docket_core::Webhook, StoreError> {
        self.read(move |conn| webhooks::get(conn, user, id)).await
    }

    async fn update_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
        patch: docket_core::WebhookPatch,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let now = truncate(now);
        self.write(move |tx| webhooks::update(tx, user, id, patch, now)).await
    }

    async fn delete_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<(), StoreError> {
        self.write(move |tx| webhooks::delete(tx, user, id)).await
    }

    async fn webhook_secrets(
        &self,
        after: Option<docket_core::WebhookId>,
        limit: usize,
    ) -> Result<Vec<(docket_core::WebhookId, String)>, StoreError> {
        self.read(move |conn| webhooks::secrets(conn, after, limit)).await
    }

    async fn replace_webhook_secret(
        &self,
        id: docket_core::WebhookId,
        old: String,
        new: String,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| webhooks::replace_secret(tx, id, &old, &new)).await
    }

    async fn list_deliveries(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        limit: usize,
    ) -> Result<Vec<docket_core::Delivery>, StoreError> {
        self.read(move |conn| webhooks::deliveries_of(conn, user, webhook, limit)).await
    }

    async fn enqueue_deliveries(
        &self,
        mut deliveries: Vec<docket_core::NewDelivery>,
    ) -> Result<u64, StoreError> {
        for d in &mut deliveries {
            d.created_at = truncate(d.created_at);
        }
        self.write(move |tx| webhooks::enqueue(tx, &deliveries)).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<docket_ports::webhooks::ClaimedDelivery>, StoreError> {
        let now = truncate(now);
        self.write(move |tx| webhooks::claim(tx, now, lease, limit)).await
    }

    async fn settle_delivery(
        &self,
        id: docket_core::DeliveryId,
        outcome: docket_core::DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = truncate(now);
        self.write(move |tx| webhooks::settle(tx, id, &outcome, now)).await
    }

    async fn retry_delivery(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        id: docket_core::DeliveryId,
        now: Timestamp,
    ) -> Result<docket_core::Delivery, StoreError> {
        let now = truncate(now);
        self.write(move |tx| webhooks::retry(tx, user, webhook, id, now)).await
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(webhooks::next_due).await
    }

    async fn create_task(
        &self,
        user: UserId,
        mut new: NewTask,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate(now);
        new.due_date = new.due_date.map(truncate);
        let source = Arc::clone(&self.source);
        self.write(move |tx| {
            let category = match &new.category {
                Some(r) => Some(resolve_category(tx, user, r, now)?),
                None => None,
            };
            let task = new.into_task(new_id(), user, category, now);
            insert_task(tx, &task)?;
            append_outbox(tx, &docket_ports::facts::created(&task, now, &source), now)?;
            Ok(task)
        })
        .await
    }

    async fn get_task(&self, user: UserId, id: TaskId) -> Result<Task, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.id = ?1 AND t.user_id = ?2"
                ))
                .db()?;
            let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
            match rows.next().db()? {
                Some(row) => Ok(task_from_row(row)?.1),
                None => Err(StoreError::NotFound("task")),
            }
        })
        .await
    }

    async fn update_task(
        &self,
        user: UserId,
        id: TaskId,
        mut patch: TaskPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate(now);
        if let Some(Some(d)) = &mut patch.due_date {
            *d = truncate(*d);
        }
        let source = Arc::clone(&self.source);
        self.write(move |tx| {
            let (seq, before) = load_task(tx, user, id)?;
            check_version(&before, expected_version)?;
            let category = match &patch.category {
                Some(Some(r)) => Some(resolve_category(tx, user, r, now)?),
                _ => None,
            };
            let series = match series_to_load(&before, &patch) {
                Some(s) => crate::series::linked(tx, user, s)?,
                None => None,
            };
            let plan = plan_task_update(before, patch, category, series, new_id(), now)?;
            crate::series::write(tx, user, id, &plan.series, now, &source)?;
            if plan.changed {
                update_task_row(tx, seq, &plan.before, &plan.task)?;
                crate::series::save_link(tx, &plan.before, &plan.task)?;
                reminders::on_task_updated(tx, &plan.before, &plan.task, now)?;
                let events = docket_ports::facts::changed(&plan.before, &plan.task, now, &source);
                append_outbox(tx, &events, now)?;
            }
            if let Some(series) = plan.catch_up() {
                crate::series::catch_up(tx, user, series, now, &source)?;
            }
            Ok(plan.task)
        })
        .await
    }

    async fn delete_task(
        &self,
        user: UserId,
        id: TaskId,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| {
            let (seq, task) = load_task(tx, user, id)?;
            check_version(&task, expected_version)?;
            // task_tags rows go with it (ON DELETE CASCADE).
            tx.prepare_cached("DELETE FROM tasks WHERE seq = ?1").db()?.execute([seq]).db()?;
            mark_fts(tx, seq, true)?;
            append_outbox(
                tx,
                &task_events(TaskChange::Deleted(&task), docket_ports::facts::origin(now, &source)),
                now,
            )?;
            Ok(task)
        })
        .await
    }

    async fn list_tasks(
        &self,
        user: UserId,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        let query = query.clone();
        self.read(move |conn| list::run(conn, user, &query, now)).await
    }

    async fn list_tags(&self, user: UserId) -> Result<Vec<TagCount>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT tag, count(*) AS n FROM task_tags WHERE user_id = ?1 GROUP BY tag ORDER BY n DESC, tag",
                )
                .db()?;
            let rows = st
                .query_map([user.0.as_bytes()], |r| Ok(TagCount { name: r.get(0)?, count: r.get(1)? }))
                .db()?;
            rows.collect::<Result<Vec<_>, _>>().db()
        })
        .await
    }

    // --- categories

    async fn create_category(
        &self,
        user: UserId,
        new: NewCategory,
        now: Timestamp,
    ) -> Result<Category, StoreError> {
        let category = new.into_category(new_id(), user, truncate(now));
        self.write(move |tx| {
            insert_category(tx, &category)?;
            Ok(category)
        })
        .await
    }

    async fn list_categories(&self, user: UserId) -> Result<Vec<Category>, StoreError> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories WHERE user_id = ?1 ORDER BY name_key, id"
                ))
                .db()?;
            let mut rows = st.query([user.0.as_bytes()]).db()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().db()? {
                out.push(category_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_category(&self, user: UserId, id: CategoryId) -> Result<Category, StoreError> {
        self.read(move |conn| {
            find_category(conn, user, id)?.ok_or(StoreError::NotFound("category"))
        })
        .await
    }

    async fn update_category(
        &self,
        user: UserId,
        id: CategoryId,
        patch: CategoryPatch,
    ) -> Result<Category, StoreError> {
        self.write(move |tx| {
            let mut c = find_category(tx, user, id)?.ok_or(StoreError::NotFound("category"))?;
            let before = c.clone();
            if let Some(name) = patch.name {
                c.name = name;
            }
            if let Some(color) = patch.color {
                c.color = color;
            }
            if c != before {
                tx.prepare_cached(
                    "UPDATE categories SET name = ?2, name_key = ?3, color = ?4 WHERE id = ?1",
                )
                .db()?
                .execute(params![
                    c.id.0.as_bytes(),
                    c.name.as_str(),
                    c.name.key(),
                    c.color.as_str()
                ])
                .map_err(|e| category_error(e, c.name.as_str()))?;
            }
            Ok(c)
        })
        .await
    }

    async fn delete_category(
        &self,
        user: UserId,
        id: CategoryId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| {
            // The tasks it clears, read first for their events (the writer is alone, so no
            // task can join the category between this read and the delete).
            let cleared = tasks_in_category(tx, user, id)?;
            // The user's tasks keep their rows and versions; ON DELETE SET NULL clears the link.
            let n = tx
                .prepare_cached("DELETE FROM categories WHERE id = ?1 AND user_id = ?2")
                .db()?
                .execute(params![id.0.as_bytes(), user.0.as_bytes()])
                .db()?;
            if n == 0 {
                return Err(StoreError::NotFound("category"));
            }
            for c in plan_category_delete(cleared) {
                let events = docket_ports::facts::changed(&c.before, &c.after, now, &source);
                append_outbox(tx, &events, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn read_outbox(
        &self,
        after_seq: i64,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        let topic = topic.to_owned();
        self.read(move |conn| outbox::read(conn, after_seq, &topic, limit)).await
    }

    async fn outbox_head(&self, topic: &str) -> Result<i64, StoreError> {
        let topic = topic.to_owned();
        self.read(move |conn| outbox::head(conn, &topic)).await
    }

    async fn read_outbox_for(
        &self,
        topic: &str,
        key: &str,
        after_seq: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        let (topic, key) = (topic.to_owned(), key.to_owned());
        self.read(move |conn| outbox::read_for(conn, &topic, &key, after_seq, until, limit)).await
    }

    async fn outbox_tail(&self, topic: &str) -> Result<i64, StoreError> {
        let topic = topic.to_owned();
        self.read(move |conn| outbox::tail(conn, &topic)).await
    }

    async fn prune_outbox(&self, older_than: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.write(move |tx| outbox::prune(tx, older_than, limit)).await
    }

    async fn save_consumer_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.write(move |tx| crate::bus::save_position(tx, &group, &topic, position, now)).await
    }

    async fn consumer_position(&self, group: &str, topic: &str) -> Result<i64, StoreError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.read(move |conn| crate::bus::position(conn, &group, &topic)).await
    }

    async fn create_reminder(
        &self,
        user: UserId,
        task: TaskId,
        new: NewReminder,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let now = truncate(now);
        self.write(move |tx| {
            let (_, task) = load_task(tx, user, task)?;
            reminders::insert(tx, &task, new, now)
        })
        .await
    }

    async fn list_reminders(
        &self,
        user: UserId,
        task: TaskId,
    ) -> Result<Vec<Reminder>, StoreError> {
        self.read(move |conn| {
            let owned: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND user_id = ?2")
                .db()?
                .query_row(params![task.0.as_bytes(), user.0.as_bytes()], |r| r.get(0))
                .optional()
                .db()?;
            if owned.is_none() {
                return Err(StoreError::NotFound("task"));
            }
            reminders::for_task(conn, task)
        })
        .await
    }

    async fn get_reminder(&self, user: UserId, id: ReminderId) -> Result<Reminder, StoreError> {
        self.read(move |conn| reminders::get(conn, user, id)).await
    }

    async fn delete_reminder(
        &self,
        user: UserId,
        task: TaskId,
        id: ReminderId,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            load_task(tx, user, task)?;
            reminders::delete(tx, task, id)
        })
        .await
    }

    async fn retry_reminder(
        &self,
        user: UserId,
        id: ReminderId,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let now = truncate(now);
        self.write(move |tx| reminders::retry(tx, user, id, now)).await
    }

    async fn fire_due_reminders(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Reminder>, StoreError> {
        let now = truncate(now);
        let source = Arc::clone(&self.source);
        self.write(move |tx| reminders::claim_due(tx, now, limit, &source)).await
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(reminders::next_fire_at).await
    }

    async fn upcoming_reminders(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ReminderId, Timestamp)>, StoreError> {
        self.read(move |c| reminders::upcoming(c, until, limit)).await
    }

    async fn append_notification(
        &self,
        n: Notification,
        source_event: String,
    ) -> Result<bool, StoreError> {
        let source = Arc::clone(&self.source);
        self.write(move |tx| notifications::append(tx, &n, &source_event, &source)).await
    }

    async fn list_notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read(move |conn| notifications::list(conn, user, unread_only, limit)).await
    }

    async fn mark_notification_read(
        &self,
        user: UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let now = truncate(now);
        self.write(move |tx| notifications::mark_read(tx, user, id, now)).await
    }

    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let now = truncate(now);
        self.write(move |tx| notifications::mark_all_read(tx, user, now)).await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<bool, StoreError> {
        self.write(move |tx| crate::audit::append(tx, &entry)).await
    }

    async fn task_history(
        &self,
        user: UserId,
        task: TaskId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.read(move |conn| {
            crate::audit::entity_history(conn, user, ENTITY_TASK, task.as_uuid(), after, limit)
        })
        .await
    }

    async fn activity(
        &self,
        user: UserId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.read(move |conn| crate::audit::activity(conn, user, after, limit)).await
    }
}
