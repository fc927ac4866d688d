//! The PostgreSQL adapter of the [`Store`] contract: sqlx runtime queries over a connection
//! pool, for the scaled-out deployment where several replicas share one database.
//!
//! Every operation is one statement or one transaction, with as few round trips as the
//! contract allows: creates are a single statement, updates lock the row (`FOR UPDATE`),
//! apply `TaskPatch::apply` in Rust and write back only what changed. Uniqueness and
//! ownership are enforced by the schema (unique indexes, a `(category_id, user_id)` foreign
//! key), and their violations become `Conflict` / `InvalidReference`; every other database
//! failure is `Unavailable`. The schema lives in `migrations/postgres/` and is applied by
//! [`PostgresStore::connect`] ([`migrate`]). This module does no caching, no retries and no
//! logging of user data.
//!
//! Lock order, so that writers cannot deadlock: series, then tasks (each in `id` order),
//! then categories (see `series` for series and instances). Writers referencing a category
//! take its row `FOR KEY SHARE` (the foreign-key check) last, after their series or task;
//! `delete_category` locks the category's series and tasks before the category
//! (`lock_category_for_delete`), since its delete sets their `category_id` to null.

mod audit;
pub mod bus;
mod codec;
mod consume;
mod list;
mod migrate;
mod notifications;
mod outbox;
mod reminders;
mod series;
mod state;
#[cfg(test)]
mod tests;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use docket_core::plan::check_version;
use docket_core::plan::task::{plan_category_delete, plan_task_update, series_to_load};
use docket_core::time::truncate_micros;
use docket_core::{
    Category, CategoryId, CategoryName, CategoryPatch, CategoryRef, NewCategory, NewReminder,
    NewTask, NewUser, Notification, NotificationId, Page, Reminder, ReminderId, Task, TaskId,
    TaskPatch, TaskQuery, Timestamp, TokenId, User, UserId,
};
use docket_events::{CloudEvent, TaskChange, task_events};
use sqlx::error::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgPool};

use codec::PgInstant;
use docket_ports::audit::ENTITY_TASK;
use docket_ports::ids::new_id;
use docket_ports::{AuditEntry, AuditPage, Store, StoreError, TagCount, TokenInfo, UserRecord};

pub use outbox::{SETTLE_WAIT, append_outbox};

/// The name this backend reports in errors and logs.
pub(crate) const BACKEND: &str = "postgres";

/// The columns of a task row joined with its category (`cat_*`), as `codec::task` reads
/// them. A macro so queries can be `concat!`ed into `&'static str`s.
macro_rules! task_select {
    () => {
        "SELECT t.id, t.user_id, t.title, t.description, t.status, t.completed_at, t.priority, \
         t.tags, t.due_at, t.timezone, t.created_at, t.updated_at, t.version, \
         t.series_id, t.instance_date, t.recurrence, \
         c.id AS cat_id, c.user_id AS cat_user_id, c.name AS cat_name, c.color AS cat_color, \
         c.created_at AS cat_created_at \
         FROM tasks t LEFT JOIN categories c ON c.id = t.category_id"
    };
}
use task_select;

/// [`Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The private schema of a store made by [`PostgresStore::connect_isolated`].
    schema: Option<String>,
    /// The `source` of the events this store's writes append (`/docket/{role}`).
    source: Arc<str>,
    /// The last settled outbox horizon (see `outbox.rs`), shared by clones.
    settled: Arc<AtomicI64>,
}

fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    // The URL may hold a password, so the error names neither it nor sqlx's message.
    PgConnectOptions::from_str(url).map_err(|_| {
        StoreError::unavailable(
            BACKEND,
            "database url is not a valid postgres:// url (expected postgres://user@host:5432/db)",
        )
    })
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Fail a request with `Unavailable` (503) rather than queueing it for sqlx's 30 s.
        .acquire_timeout(Duration::from_secs(5))
}

impl PostgresStore {
    fn new(pool: PgPool, schema: Option<String>) -> PostgresStore {
        PostgresStore {
            pool,
            schema,
            source: Arc::from(docket_events::source("api")),
            settled: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Sets the `source` of the events this store's task writes append (default
    /// `/docket/api`; see `docket_events::source`).
    pub fn with_event_source(mut self, source: &str) -> PostgresStore {
        self.source = Arc::from(source);
        self
    }

    /// Connects a pool to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = parse_url(url)?;
        let pool = pool_options(16).connect_with(options).await.map_err(unavailable)?;
        migrate::run(&pool).await?;
        Ok(PostgresStore::new(pool, None))
    }

    /// Connects to `url` in a fresh schema of its own (`docket_test_<uuid>`) and migrates it,
    /// so tests share one database without seeing each other's rows. Every pooled
    /// connection has the schema as its `search_path`. The schema is kept until
    /// [`PostgresStore::drop_schema`] removes it.
    pub async fn connect_isolated(url: &str) -> Result<PostgresStore, StoreError> {
        let (pool, schema) = isolated_pool(url).await?;
        migrate::run(&pool).await?;
        Ok(PostgresStore::new(pool, Some(schema)))
    }

    /// Drops the private schema of a store made by [`PostgresStore::connect_isolated`]
    /// (a no-op otherwise) and closes the pool.
    pub async fn drop_schema(self) -> Result<(), StoreError> {
        if let Some(schema) = &self.schema {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
        }
        self.pool.close().await;
        Ok(())
    }

    /// The connection pool, for this crate's modules (the event log, the state store).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The connection pool for test fixtures (feature `raw-access`, which only
    /// dev-dependencies turn on): what the product does goes through the store's methods.
    #[cfg(feature = "raw-access")]
    pub fn raw_pool(&self) -> &PgPool {
        &self.pool
    }

    /// The private schema of an isolated store.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

/// A fresh schema `docket_test_<uuid>` and a pool whose connections all use it as their
/// `search_path`; nothing is migrated yet.
async fn isolated_pool(url: &str) -> Result<(PgPool, String), StoreError> {
    let options = parse_url(url)?;
    let schema = format!("{TEST_SCHEMA_PREFIX}{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect_with(&options).await.map_err(unavailable)?;
    sweep_stale_test_schemas(&mut conn).await;
    // Identifiers cannot be bind parameters; `schema` is a fixed prefix and hex digits.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;
    conn.close().await.map_err(unavailable)?;
    let options = options.options([("search_path", schema.as_str())]);
    // Few connections: many isolated stores run at once against one server.
    let pool = pool_options(4).connect_with(options).await.map_err(unavailable)?;
    Ok((pool, schema))
}

const TEST_SCHEMA_PREFIX: &str = "docket_test_";

/// Drops test schemas left behind by earlier runs (tests that failed, or suites that never
/// call [`PostgresStore::drop_schema`]), once per process, so a long-lived test database does
/// not pile up thousands of schemas. A schema's UUIDv7 names its creation time; only those
/// older than an hour are dropped, which no test run lasts. Best effort: failures (say,
/// another process dropping the same schema) are ignored.
async fn sweep_stale_test_schemas(conn: &mut PgConnection) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else { return };
    drop_test_schemas_before(conn, now.as_millis().saturating_sub(3_600_000)).await;
}

/// Drops the test schemas created before `cutoff_ms` (Unix milliseconds), best effort.
async fn drop_test_schemas_before(conn: &mut PgConnection, cutoff_ms: u128) {
    let names: Vec<String> = match sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
    )
    .bind(TEST_SCHEMA_PREFIX)
    .fetch_all(&mut *conn)
    .await
    {
        Ok(names) => names,
        Err(_) => return,
    };
    for name in names {
        let Some(hex) = name.strip_prefix(TEST_SCHEMA_PREFIX) else { continue };
        // Exactly what `isolated_pool` makes (32 hex digits), so the name is safe as SQL.
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(created_ms) = u128::from_str_radix(&hex[..12], 16) else { continue };
        if created_ms < cutoff_ms {
            let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
            let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await;
        }
    }
}

/// Any database failure without a more specific meaning.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(BACKEND, e)
}

/// The kind of constraint `e` violated and the constraint's name.
fn violation(e: &sqlx::Error) -> Option<(ErrorKind, &str)> {
    let db = e.as_database_error()?;
    Some((db.kind(), db.constraint().unwrap_or("")))
}

/// Maps the violations any write may hit: its user being gone, its row id colliding.
fn write_error(e: sqlx::Error, what: &'static str) -> StoreError {
    match violation(&e) {
        Some((ErrorKind::ForeignKeyViolation, c)) if c.ends_with("user_id_fkey") => {
            StoreError::NotFound("user")
        }
        Some((ErrorKind::UniqueViolation, c)) if c.ends_with("_pkey") => {
            StoreError::Conflict(format!("{what} id is already taken"))
        }
        _ => unavailable(e),
    }
}

fn category_error(e: sqlx::Error, name: &CategoryName) -> StoreError {
    match violation(&e) {
        Some((ErrorKind::UniqueViolation, "categories_user_name_key")) => {
            StoreError::Conflict(format!("category '{name}' already exists"))
        }
        _ => write_error(e, "category"),
    }
}

fn unknown_category(id: CategoryId) -> StoreError {
    StoreError::InvalidReference {
        field: "category_id",
        message: format!("category '{id}' does not exist"),
    }
}

fn task_error(e: sqlx::Error, category: Option<CategoryId>) -> StoreError {
    match (violation(&e), category) {
        // The category was deleted between our read and our write.
        (Some((ErrorKind::ForeignKeyViolation, "tasks_category_fkey")), Some(id)) => {
            unknown_category(id)
        }
        _ => write_error(e, "task"),
    }
}

fn user_error(e: sqlx::Error, new: &NewUser) -> StoreError {
    match violation(&e) {
        Some((ErrorKind::UniqueViolation, "users_email_key")) => {
            let email = new.email.as_ref().map(|e| e.as_str()).unwrap_or_default();
            StoreError::Conflict(format!("email '{email}' is already registered"))
        }
        Some((ErrorKind::UniqueViolation, "users_external_subject_key")) => {
            let subject = new.external_subject.as_deref().unwrap_or_default();
            StoreError::Conflict(format!(
                "external subject '{subject}' is already linked to a user"
            ))
        }
        _ => write_error(e, "user"),
    }
}

fn opt_instant(ts: Option<Timestamp>) -> Option<PgInstant> {
    ts.map(PgInstant::new)
}

/// Drops sub-microsecond digits from every instant of `task`, so the task returned equals
/// the task read back.
fn truncate_task(task: &mut Task) {
    task.due_date = task.due_date.map(truncate_micros);
    task.completed_at = task.completed_at.map(truncate_micros);
    task.created_at = truncate_micros(task.created_at);
    task.updated_at = truncate_micros(task.updated_at);
}

/// Begins `update_task`'s transaction and locks the user's task `id`. With `relinks` (the
/// patch carries a `recurrence`, so `series::relink` will lock the task's series and maybe all
/// its instances), the series the task links to is locked first, in the order
/// `series::delete` takes them (see `postgres::series`); when another update relinked the task
/// between the two locks, it starts over, and after three tries it goes on with the task
/// locked, relinking then locking the series after it.
async fn lock_for_update(
    pool: &PgPool,
    user: UserId,
    id: TaskId,
    relinks: bool,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Task), StoreError> {
    const TRIES: u32 = 3;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut tx = pool.begin().await.map_err(unavailable)?;
        let locked =
            if relinks { Some(series::lock_linked(&mut tx, user, id).await?) } else { None };
        let task = fetch_task_for_update(&mut tx, user, id).await?;
        match locked {
            Some(link) if link != task.series.as_ref().map(|l| l.series_id) && tries < TRIES => {
                tx.rollback().await.map_err(unavailable)?;
            }
            _ => return Ok((tx, task)),
        }
    }
}

/// Begins `delete_category`'s transaction and locks what it writes, in the lock order of
/// the module doc: the series of the user's category `id` (their `category_id` is set to
/// null by the foreign key), then its tasks (both in `id` order), then the category; returns
/// the tasks, for their events. Writers that reference the category hold a series or task
/// and take `FOR KEY SHARE` on the category last, so the category cannot be held while
/// waiting for them. A series or task that joined the category between the first locks and
/// the category's (it waited for its writer) is not locked: then it starts over, and after
/// three tries it goes on, locking the newcomers after the category.
async fn lock_category_for_delete(
    pool: &PgPool,
    user: UserId,
    id: CategoryId,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Vec<Task>), StoreError> {
    const TRIES: u32 = 3;
    const TASKS: &str = concat!(
        task_select!(),
        " WHERE t.user_id = $2 AND t.category_id = $1 ORDER BY t.id FOR UPDATE OF t"
    );
    let mut tries = 0;
    loop {
        tries += 1;
        let mut tx = pool.begin().await.map_err(unavailable)?;
        let series = sqlx::query(
            "SELECT 1 FROM series WHERE category_id = $1 AND user_id = $2 ORDER BY id FOR UPDATE",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?
        .len() as i64;
        let rows = sqlx::query(TASKS)
            .bind(id.0)
            .bind(user.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        // Locked, the category makes concurrent writes that reference it (their foreign-key
        // check takes a share lock on it) wait for this delete, so none can slip in between
        // clearing the tasks and deleting the row; after it they fail as `InvalidReference`.
        let found =
            sqlx::query("SELECT 1 FROM categories WHERE id = $1 AND user_id = $2 FOR UPDATE")
                .bind(id.0)
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        if found.is_none() {
            return Err(StoreError::NotFound("category"));
        }
        // The rows locked cannot leave the category, so equal counts mean no newcomer.
        let (now_series, now_tasks): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM series WHERE category_id = $1 AND user_id = $2), \
             (SELECT count(*) FROM tasks WHERE category_id = $1 AND user_id = $2)",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        if (now_series, now_tasks) == (series, rows.len() as i64) {
            let cleared = rows.iter().map(codec::task).collect::<Result<Vec<_>, _>>()?;
            return Ok((tx, cleared));
        }
        if tries >= TRIES {
            let rows = sqlx::query(TASKS)
                .bind(id.0)
                .bind(user.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            let cleared = rows.iter().map(codec::task).collect::<Result<Vec<_>, _>>()?;
            return Ok((tx, cleared));
        }
        tx.rollback().await.map_err(unavailable)?;
    }
}

async fn fetch_task_for_update(
    conn: &mut PgConnection,
    user: UserId,
    id: TaskId,
) -> Result<Task, StoreError> {
    let row =
        sqlx::query(concat!(task_select!(), " WHERE t.id = $1 AND t.user_id = $2 FOR UPDATE OF t"))
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(conn)
            .await
            .map_err(unavailable)?;
    row.as_ref().map(codec::task).transpose()?.ok_or(StoreError::NotFound("task"))
}

/// The user's category named by `r`: an owned id, or a name created on first use.
async fn resolve_category(
    conn: &mut PgConnection,
    user: UserId,
    r: &CategoryRef,
    now: Timestamp,
) -> Result<Category, StoreError> {
    match r {
        CategoryRef::Id(id) => {
            let row = sqlx::query(
                "SELECT id, user_id, name, color, created_at FROM categories \
                 WHERE id = $1 AND user_id = $2",
            )
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(conn)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(codec::category).transpose()?.ok_or_else(|| unknown_category(*id))
        }
        CategoryRef::Name(name) => category_by_name(conn, user, name, now).await,
    }
}

/// Finds the user's category `name` case-insensitively, creating it with the default colour.
///
/// Race-free: the insert waits for a concurrent insert of the same name to settle and then
/// does nothing; the follow-up select, a new statement, sees that committed row.
async fn category_by_name(
    conn: &mut PgConnection,
    user: UserId,
    name: &CategoryName,
    now: Timestamp,
) -> Result<Category, StoreError> {
    let new = NewCategory::named(name.clone()).into_category(new_id(), user, now);
    let key = name.key();
    let row = sqlx::query(
        "WITH ins AS ( \
             INSERT INTO categories (id, user_id, name, name_key, color, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, name_key) DO NOTHING \
             RETURNING id, user_id, name, color, created_at) \
         SELECT id, user_id, name, color, created_at FROM ins \
         UNION ALL \
         SELECT id, user_id, name, color, created_at FROM categories \
         WHERE user_id = $2 AND name_key = $4 \
         LIMIT 1",
    )
    .bind(new.id.0)
    .bind(user.0)
    .bind(name.as_str())
    .bind(&key)
    .bind(new.color.as_str())
    .bind(PgInstant::new(new.created_at))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| category_error(e, name))?;
    if let Some(row) = row {
        return codec::category(&row);
    }
    let row = sqlx::query(
        "SELECT id, user_id, name, color, created_at FROM categories \
         WHERE user_id = $1 AND name_key = $2",
    )
    .bind(user.0)
    .bind(&key)
    .fetch_optional(conn)
    .await
    .map_err(unavailable)?;
    // Only a concurrent delete right after the conflicting insert committed gets here.
    row.as_ref().map(codec::category).transpose()?.ok_or_else(|| {
        StoreError::Conflict(format!("category '{name}' was deleted while in use; try again"))
    })
}

/// The INSERT of a task row; `$9` is the category id.
const INSERT_TASK: &str = "INSERT INTO tasks (id, user_id, title, title_key, description, \
     status, completed_at, priority, category_id, tags, due_at, timezone, created_at, \
     updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// The same insert, only when category `$9` is the user's (`$2`), returning the category:
/// one round trip for a create by category id.
const INSERT_TASK_WITH_CATEGORY: &str = "WITH cat AS ( \
         SELECT id, user_id, name, color, created_at FROM categories \
         WHERE id = $9 AND user_id = $2), \
     ins AS ( \
         INSERT INTO tasks (id, user_id, title, title_key, description, status, completed_at, \
             priority, category_id, tags, due_at, timezone, created_at, updated_at, version) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, cat.id, $10, $11, $12, $13, $14, $15 FROM cat \
         RETURNING id) \
     SELECT cat.id, cat.user_id, cat.name, cat.color, cat.created_at, \
         (SELECT count(*) FROM ins) AS inserted \
     FROM cat";

fn bind_task<'q>(
    sql: &'static str,
    task: &Task,
    category: Option<CategoryId>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(task.id.0)
        .bind(task.user_id.0)
        .bind(task.title.as_str().to_owned())
        .bind(task.title.sort_key())
        .bind(task.description.as_ref().map(|d| d.as_str().to_owned()))
        .bind(task.status.as_str())
        .bind(opt_instant(task.completed_at))
        .bind(task.priority.rank() as i16)
        .bind(category.map(|c| c.0))
        .bind(task.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
        .bind(opt_instant(task.due_date))
        .bind(task.timezone.as_ref().map(|z| z.name().to_owned()))
        .bind(PgInstant::new(task.created_at))
        .bind(PgInstant::new(task.updated_at))
        .bind(task.version)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    // --- users and tokens

    async fn create_user(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let user = User {
            id: new_id(),
            email: new.email.clone(),
            name: new.name.clone(),
            timezone: new.timezone.clone(),
            external_subject: new.external_subject.clone(),
            created_at: truncate_micros(now),
        };
        sqlx::query(
            "INSERT INTO users (id, email, name, timezone, password_hash, external_subject, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.0)
        .bind(user.email.as_ref().map(|e| e.as_str()))
        .bind(user.name.as_str())
        .bind(user.timezone.as_ref().map(|z| z.name()))
        .bind(new.password_hash.as_deref())
        .bind(user.external_subject.as_deref())
        .bind(PgInstant::new(user.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| user_error(e, &new))?;
        Ok(user)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, timezone, external_subject, created_at FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(codec::user).transpose()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, timezone, external_subject, created_at, password_hash \
             FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email.trim())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let password_hash = column(&row, "password_hash")?;
        Ok(Some(UserRecord { user: codec::user(&row)?, password_hash }))
    }

    async fn user_for_subject(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let Some(subject) = new.external_subject.clone() else {
            return Err(StoreError::InvalidReference {
                field: "external_subject",
                message: "a user provisioned from an identity provider needs its subject".into(),
            });
        };
        // Insert-or-nothing, then read: the insert waits for a concurrent insert of the same
        // subject to commit (then does nothing) or roll back (then inserts), and the read, a
        // later statement, sees the committed row. A delete in between is retried once.
        for _ in 0..2 {
            let row = sqlx::query(
                "INSERT INTO users (id, email, name, timezone, password_hash, external_subject, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (external_subject) DO NOTHING \
                 RETURNING id, email, name, timezone, external_subject, created_at",
            )
            .bind(new_id::<UserId>().0)
            .bind(new.email.as_ref().map(|e| e.as_str()))
            .bind(new.name.as_str())
            .bind(new.timezone.as_ref().map(|z| z.name()))
            .bind(new.password_hash.as_deref())
            .bind(subject.as_str())
            .bind(PgInstant::new(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| user_error(e, &new))?;
            let row = match row {
                Some(row) => Some(row),
                None => sqlx::query(
                    "SELECT id, email, name, timezone, external_subject, created_at FROM users \
                     WHERE external_subject = $1",
                )
                .bind(subject.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?,
            };
            if let Some(row) = row {
                return codec::user(&row);
            }
        }
        Err(StoreError::Conflict(format!(
            "the user of external subject '{subject}' is being deleted; try again"
        )))
    }

    async fn create_token(&self, info: TokenInfo, token_hash: String) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, prefix, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(info.id.0)
        .bind(info.user_id.0)
        .bind(info.name.as_str())
        .bind(info.prefix.as_str())
        .bind(token_hash.as_str())
        .bind(PgInstant::new(info.created_at))
        .bind(opt_instant(info.expires_at))
        .execute(&self.pool)
        .await
        .map_err(|e| match violation(&e) {
            Some((ErrorKind::UniqueViolation, "tokens_token_hash_key")) => {
                StoreError::Conflict("a token with this hash already exists".into())
            }
            _ => write_error(e, "token"),
        })?;
        Ok(())
    }

    async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, prefix, created_at, expires_at FROM tokens \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(codec::token).collect()
    }

    async fn delete_token(&self, user: UserId, id: TokenId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        Ok(())
    }

    async fn user_by_token_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.timezone, u.external_subject, u.created_at \
             FROM tokens k JOIN users u ON u.id = k.user_id \
             WHERE k.token_hash = $1 AND (k.expires_at IS NULL OR k.expires_at > $2)",
        )
        .bind(token_hash)
        .bind(PgInstant::new(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(codec::user).transpose()
    }

    // --- tasks

    async fn create_recurring_task(
        &self,
        user: UserId,
        new: NewTask,
        series: docket_core::NewSeries,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let task = series::create(&mut tx, user, new, series, now, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(task)
    }

    async fn list_series(&self, user: UserId) -> Result<Vec<docket_core::Series>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        series::list(&mut conn, user).await
    }

    async fn get_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
    ) -> Result<docket_core::Series, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        series::get_series(&mut conn, user, id, false).await
    }

    async fn set_series_active(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        active: bool,
        now: Timestamp,
    ) -> Result<docket_core::Series, StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let s = series::set_active(&mut tx, user, id, active, now, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(s)
    }

    async fn delete_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        series::delete(&mut tx, user, id, now, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn spawn_due_instances(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let made = series::spawn_due(&mut tx, now, limit, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(made)
    }

    async fn next_series_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        series::next_due_at(&mut conn).await
    }

    async fn upcoming_series(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(docket_core::SeriesId, Timestamp)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        series::upcoming(&mut conn, until, limit).await
    }

    async fn create_webhook(
        &self,
        user: UserId,
        new: docket_core::NewWebhook,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::create(&mut conn, user, new, truncate_micros(now)).await
    }

    async fn list_webhooks(&self, user: UserId) -> Result<Vec<docket_core::Webhook>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::list(&mut conn, user).await
    }

    async fn get_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<docket_core::Webhook, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::get(&mut conn, user, id, false).await
    }

    async fn update_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
        patch: docket_core::WebhookPatch,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let hook = webhooks::update(&mut tx, user, id, patch, truncate_micros(now)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(hook)
    }

    async fn delete_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::delete(&mut conn, user, id).await
    }

    async fn webhook_secrets(
        &self,
        after: Option<docket_core::WebhookId>,
        limit: usize,
    ) -> Result<Vec<(docket_core::WebhookId, String)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::secrets(&mut conn, after, limit).await
    }

    async fn replace_webhook_secret(
        &self,
        id: docket_core::WebhookId,
        old: String,
        new: String,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::replace_secret(&mut conn, id, &old, &new).await
    }

    async fn list_deliveries(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        limit: usize,
    ) -> Result<Vec<docket_core::Delivery>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::deliveries_of(&mut conn, user, webhook, limit).await
    }

    async fn enqueue_deliveries(
        &self,
        mut deliveries: Vec<docket_core::NewDelivery>,
    ) -> Result<u64, StoreError> {
        for d in &mut deliveries {
            d.created_at = truncate_micros(d.created_at);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let added = webhooks::enqueue(&mut tx, &deliveries).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(added)
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<docket_ports::webhooks::ClaimedDelivery>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let claimed = webhooks::claim(&mut tx, truncate_micros(now), lease, limit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(claimed)
    }

    async fn settle_delivery(
        &self,
        id: docket_core::DeliveryId,
        outcome: docket_core::DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let settled = webhooks::settle(&mut tx, id, &outcome, truncate_micros(now)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(settled)
    }

    async fn retry_delivery(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        id: docket_core::DeliveryId,
        now: Timestamp,
    ) -> Result<docket_core::Delivery, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let d = webhooks::retry(&mut tx, user, webhook, id, truncate_micros(now)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(d)
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        webhooks::next_due(&mut conn).await
    }

    async fn create_task(
        &self,
        user: UserId,
        new: NewTask,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate_micros(now);
        let category_ref = new.category.clone();
        let mut task = new.into_task(new_id(), user, None, now);
        truncate_task(&mut task);
        // One transaction: the row and its outbox event commit together.
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        match category_ref {
            None => {
                bind_task(INSERT_TASK, &task, None)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| task_error(e, None))?;
            }
            Some(CategoryRef::Id(id)) => {
                let row = bind_task(INSERT_TASK_WITH_CATEGORY, &task, Some(id))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| task_error(e, Some(id)))?;
                let row = row.ok_or_else(|| unknown_category(id))?;
                task.category = Some(codec::category(&row)?);
            }
            Some(CategoryRef::Name(name)) => {
                let category = category_by_name(&mut tx, user, &name, now).await?;
                bind_task(INSERT_TASK, &task, Some(category.id))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| task_error(e, Some(category.id)))?;
                task.category = Some(category);
            }
        }
        append_outbox(&mut tx, &docket_ports::facts::created(&task, now, &self.source), now)
            .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(task)
    }

    async fn get_task(&self, user: UserId, id: TaskId) -> Result<Task, StoreError> {
        let row = sqlx::query(concat!(task_select!(), " WHERE t.id = $1 AND t.user_id = $2"))
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(codec::task).transpose()?.ok_or(StoreError::NotFound("task"))
    }

    async fn update_task(
        &self,
        user: UserId,
        id: TaskId,
        mut patch: TaskPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let now = truncate_micros(now);
        if let Some(Some(due)) = &mut patch.due_date {
            *due = truncate_micros(*due);
        }
        let (mut tx, before) =
            lock_for_update(&self.pool, user, id, patch.recurrence.is_some()).await?;
        check_version(&before, expected_version)?;
        let category = match &patch.category {
            Some(Some(r)) => Some(resolve_category(&mut tx, user, r, now).await?),
            _ => None,
        };
        let category_id = category.as_ref().map(|c| c.id);
        let series = match series_to_load(&before, &patch) {
            Some(s) => series::linked(&mut tx, user, s).await?,
            None => None,
        };
        let plan = plan_task_update(before, patch, category, series, new_id(), now)?;
        series::write(&mut tx, user, id, &plan.series, now, &self.source).await?;
        if plan.changed {
            let task = &plan.task;
            sqlx::query(
                "UPDATE tasks SET title = $3, title_key = $4, description = $5, status = $6, \
                 completed_at = $7, priority = $8, category_id = $9, tags = $10, due_at = $11, \
                 timezone = $12, updated_at = $13, version = $14 \
                 WHERE id = $1 AND user_id = $2",
            )
            .bind(task.id.0)
            .bind(task.user_id.0)
            .bind(task.title.as_str())
            .bind(task.title.sort_key())
            .bind(task.description.as_ref().map(|d| d.as_str()))
            .bind(task.status.as_str())
            .bind(opt_instant(task.completed_at))
            .bind(task.priority.rank() as i16)
            .bind(task.category.as_ref().map(|c| c.id.0))
            .bind(task.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
            .bind(opt_instant(task.due_date))
            .bind(task.timezone.as_ref().map(|z| z.name()))
            .bind(PgInstant::new(task.updated_at))
            .bind(task.version)
            .execute(&mut *tx)
            .await
            .map_err(|e| task_error(e, category_id))?;
            series::save_link(&mut tx, &plan.before, task).await?;
            reminders::on_task_updated(&mut tx, &plan.before, task, now).await?;
            let events = docket_ports::facts::changed(&plan.before, task, now, &self.source);
            append_outbox(&mut tx, &events, now).await?;
        }
        if let Some(id) = plan.catch_up() {
            series::catch_up(&mut tx, user, id, now, &self.source).await?;
        }
        // Committed even without an UPDATE: a category named by the patch may have been
        // created (then the task changed too) and the row lock must be released anyway.
        tx.commit().await.map_err(unavailable)?;
        Ok(plan.task)
    }

    async fn delete_task(
        &self,
        user: UserId,
        id: TaskId,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let task = fetch_task_for_update(&mut tx, user, id).await?;
        check_version(&task, expected_version)?;
        sqlx::query("DELETE FROM tasks WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let now = truncate_micros(now);
        append_outbox(
            &mut tx,
            &task_events(
                TaskChange::Deleted(&task),
                docket_ports::facts::origin(now, &self.source),
            ),
            now,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(task)
    }

    async fn list_tasks(
        &self,
        user: UserId,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        list::list_tasks(&self.pool, user, query, now).await
    }

    async fn list_tags(&self, user: UserId) -> Result<Vec<TagCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT tag, count(*) AS count FROM tasks t CROSS JOIN LATERAL unnest(t.tags) AS tag \
             WHERE t.user_id = $1 GROUP BY tag ORDER BY count(*) DESC, tag COLLATE \"C\"",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| Ok(TagCount { name: column(row, "tag")?, count: column(row, "count")? }))
            .collect()
    }

    // --- categories

    async fn create_category(
        &self,
        user: UserId,
        new: NewCategory,
        now: Timestamp,
    ) -> Result<Category, StoreError> {
        let category = new.into_category(new_id(), user, truncate_micros(now));
        sqlx::query(
            "INSERT INTO categories (id, user_id, name, name_key, color, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(category.id.0)
        .bind(user.0)
        .bind(category.name.as_str())
        .bind(category.name.key())
        .bind(category.color.as_str())
        .bind(PgInstant::new(category.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| category_error(e, &category.name))?;
        Ok(category)
    }

    async fn list_categories(&self, user: UserId) -> Result<Vec<Category>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, color, created_at FROM categories \
             WHERE user_id = $1 ORDER BY name_key, id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(codec::category).collect()
    }

    async fn get_category(&self, user: UserId, id: CategoryId) -> Result<Category, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_id, name, color, created_at FROM categories \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(codec::category).transpose()?.ok_or(StoreError::NotFound("category"))
    }

    async fn update_category(
        &self,
        user: UserId,
        id: CategoryId,
        patch: CategoryPatch,
    ) -> Result<Category, StoreError> {
        let row = sqlx::query(
            "UPDATE categories SET name = coalesce($3, name), name_key = coalesce($4, name_key), \
             color = coalesce($5, color) WHERE id = $1 AND user_id = $2 \
             RETURNING id, user_id, name, color, created_at",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(patch.name.as_ref().map(|n| n.as_str()))
        .bind(patch.name.as_ref().map(|n| n.key()))
        .bind(patch.color.as_ref().map(|c| c.as_str()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match &patch.name {
            Some(name) => category_error(e, name),
            None => unavailable(e),
        })?;
        row.as_ref().map(codec::category).transpose()?.ok_or(StoreError::NotFound("category"))
    }

    async fn delete_category(
        &self,
        user: UserId,
        id: CategoryId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (mut tx, cleared) = lock_category_for_delete(&self.pool, user, id).await?;
        sqlx::query("UPDATE tasks SET category_id = NULL WHERE user_id = $2 AND category_id = $1")
            .bind(id.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        // `ON DELETE SET NULL` clears the series' category, on rows locked above.
        sqlx::query("DELETE FROM categories WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let now = truncate_micros(now);
        for c in plan_category_delete(cleared) {
            let events = docket_ports::facts::changed(&c.before, &c.after, now, &self.source);
            append_outbox(&mut tx, &events, now).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn read_outbox(
        &self,
        after_seq: i64,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        outbox::read(&self.pool, &self.settled, after_seq, topic, limit).await
    }

    async fn outbox_head(&self, topic: &str) -> Result<i64, StoreError> {
        outbox::head(&self.pool, &self.settled, topic).await
    }

    async fn read_outbox_for(
        &self,
        topic: &str,
        key: &str,
        after_seq: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        outbox::read_for(&self.pool, topic, key, after_seq, until, limit).await
    }

    async fn outbox_tail(&self, topic: &str) -> Result<i64, StoreError> {
        outbox::tail(&self.pool, topic).await
    }

    async fn prune_outbox(&self, older_than: Timestamp, limit: u32) -> Result<u64, StoreError> {
        outbox::prune(&self.pool, &self.settled, older_than, limit).await
    }

    async fn save_consumer_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        crate::bus::save_position(&mut tx, group, topic, position, now).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn consumer_position(&self, group: &str, topic: &str) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        crate::bus::position(&mut conn, group, topic).await
    }

    async fn create_reminder(
        &self,
        user: UserId,
        task: TaskId,
        new: NewReminder,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let task = fetch_task_for_update(&mut tx, user, task).await?;
        let reminder = reminders::insert(&mut tx, &task, new, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(reminder)
    }

    async fn list_reminders(
        &self,
        user: UserId,
        task: TaskId,
    ) -> Result<Vec<Reminder>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let owned: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tasks WHERE id = $1 AND user_id = $2")
                .bind(task.0)
                .bind(user.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
        if owned.is_none() {
            return Err(StoreError::NotFound("task"));
        }
        reminders::for_task(&mut conn, task).await
    }

    async fn get_reminder(&self, user: UserId, id: ReminderId) -> Result<Reminder, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        reminders::get(&mut conn, user, id).await
    }

    async fn delete_reminder(
        &self,
        user: UserId,
        task: TaskId,
        id: ReminderId,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fetch_task_for_update(&mut tx, user, task).await?;
        reminders::delete(&mut tx, task, id).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn retry_reminder(
        &self,
        user: UserId,
        id: ReminderId,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        reminders::retry(&mut conn, user, id, truncate_micros(now)).await
    }

    async fn fire_due_reminders(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Reminder>, StoreError> {
        let now = truncate_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let fired = reminders::claim_due(&mut tx, now, limit, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(fired)
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        reminders::next_fire_at(&mut conn).await
    }

    async fn upcoming_reminders(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ReminderId, Timestamp)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        reminders::upcoming(&mut conn, until, limit).await
    }

    async fn append_notification(
        &self,
        n: Notification,
        source_event: String,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let added = notifications::append(&mut tx, &n, &source_event, &self.source).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(added)
    }

    async fn list_notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        notifications::list(&mut conn, user, unread_only, limit).await
    }

    async fn mark_notification_read(
        &self,
        user: UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        notifications::mark_read(&mut conn, user, id, truncate_micros(now)).await
    }

    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        notifications::mark_all_read(&mut conn, user, truncate_micros(now)).await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        crate::audit::append(&mut conn, &entry).await
    }

    async fn task_history(
        &self,
        user: UserId,
        task: TaskId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let task = task.as_uuid();
        crate::audit::entity_history(&mut conn, user, ENTITY_TASK, task, after, limit).await
    }

    async fn activity(
        &self,
        user: UserId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        crate::audit::activity(&mut conn, user, after, limit).await
    }
}

/// Reads a column of a row that is not a domain value (a count, a hash).
fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::Row::try_get(row, name).map_err(unavailable)
}
