//! Series on PostgreSQL (rules decided in `docket_core::plan::series`, summed up in
//! `crate::series`): functions run inside a caller's transaction. Read-modify-write locks
//! the series row `FOR UPDATE`, so two completions of one series' instances make their
//! decisions one after the other; the scheduler's claim takes due rows `FOR UPDATE SKIP
//! LOCKED`, so several processes share the work without making an occurrence twice. The
//! unique index on `(series_id, instance_date)` backs both.
//!
//! Lock order: a series row before any of its instances' rows (instances in `id` order), so
//! writers that take both cannot deadlock. `delete` and an update ending a series
//! ([`write`]) lock the series, then every instance; `update_task` therefore locks the
//! series its task links to ([`lock_linked`]) before the task when its patch carries a
//! `recurrence` (other updates, and `delete_task`, lock only the task); completions, `catch_up`, `set_active` and
//! `spawn_due` lock series and insert instances, locking no existing task row.

use docket_core::plan::series::{
    SeriesWrite, after_completion, catch_up as plan_catch_up, due_occurrence, ended,
    first_instance, plan_next_instance, plan_series_detach, set_active as plan_set_active,
};
use docket_core::{
    Category, CategoryId, CategoryName, Color, Description, NewSeries, NewTask, Occurrence,
    Priority, Series, SeriesId, Tags, Task, TaskChanged, TaskId, Timestamp, Title, UserId,
};
use sqlx::postgres::{PgConnection, PgRow};

use super::codec::{self, PgInstant, corrupt, get};
use super::{
    INSERT_TASK, append_outbox, bind_task, resolve_category, task_error, task_select, unavailable,
};
use crate::reminders;
use docket_ports::StoreError;
use docket_ports::consume::NextInstance;
use docket_ports::facts::{changed, created};
use docket_ports::ids::new_id;
use docket_ports::series::{recurrence_from_json, spec_json};

macro_rules! series_select {
    () => {
        "SELECT s.id, s.user_id, s.title, s.description, s.priority, s.tags, \
     s.recurrence, s.start_local, s.active, s.next_occurrence, s.instances, s.created_at, \
     s.updated_at, c.id AS cat_id, c.name AS cat_name, c.color AS cat_color, \
     c.created_at AS cat_created_at \
     FROM series s LEFT JOIN categories c ON c.id = s.category_id"
    };
}

fn from_row(row: &PgRow) -> Result<Series, StoreError> {
    let user_id = UserId(get(row, "user_id")?);
    let category = match get::<Option<uuid::Uuid>>(row, "cat_id")? {
        None => None,
        Some(id) => Some(Category {
            id: CategoryId(id),
            user_id,
            name: CategoryName::parse(&get::<String>(row, "cat_name")?)
                .map_err(|e| corrupt("categories.name", e))?,
            color: Color::parse(&get::<String>(row, "cat_color")?)
                .map_err(|e| corrupt("categories.color", e))?,
            created_at: codec::instant(row, "cat_created_at")?,
        }),
    };
    let description = get::<Option<String>>(row, "description")?;
    let priority = get::<i16>(row, "priority")?;
    Ok(Series {
        id: SeriesId(get(row, "id")?),
        user_id,
        title: Title::parse(&get::<String>(row, "title")?).map_err(|e| corrupt("title", e))?,
        description: match description {
            Some(d) => Description::parse(&d).map_err(|e| corrupt("description", e))?,
            None => None,
        },
        priority: Priority::from_rank(i64::from(priority))
            .ok_or_else(|| corrupt("priority", "unknown rank"))?,
        category,
        tags: Tags::parse(&get::<Vec<String>>(row, "tags")?).map_err(|e| corrupt("tags", e))?,
        recurrence: recurrence_from_json(&get::<String>(row, "recurrence")?)?,
        start: get::<String>(row, "start_local")?
            .parse()
            .map_err(|e| corrupt("series.start_local", e))?,
        active: get(row, "active")?,
        next_occurrence: codec::opt_instant(row, "next_occurrence")?,
        instances: u32::try_from(get::<i32>(row, "instances")?)
            .map_err(|e| corrupt("series.instances", e))?,
        created_at: codec::instant(row, "created_at")?,
        updated_at: codec::instant(row, "updated_at")?,
    })
}

/// The user's series, oldest first.
pub async fn list(conn: &mut PgConnection, user: UserId) -> Result<Vec<Series>, StoreError> {
    let rows = sqlx::query(concat!(series_select!(), " WHERE s.user_id = $1 ORDER BY s.id"))
        .bind(user.0)
        .fetch_all(conn)
        .await
        .map_err(unavailable)?;
    rows.iter().map(from_row).collect()
}

/// The user's series `id`, locked `FOR UPDATE` when `lock`.
pub async fn get_series(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
    lock: bool,
) -> Result<Series, StoreError> {
    let sql = if lock {
        concat!(series_select!(), " WHERE s.id = $1 AND s.user_id = $2 FOR UPDATE OF s")
    } else {
        concat!(series_select!(), " WHERE s.id = $1 AND s.user_id = $2")
    };
    let row =
        sqlx::query(sql).bind(id.0).bind(user.0).fetch_optional(conn).await.map_err(unavailable)?;
    row.as_ref().map(from_row).transpose()?.ok_or(StoreError::NotFound("series"))
}

/// Locks `FOR UPDATE` the series the user's task `task` links to, before the task itself
/// is locked (see the lock order above); returns the link read, which the caller compares
/// with the link of the task once locked (another update may relink it in between). A link
/// to a series that no longer exists locks nothing.
pub async fn lock_linked(
    conn: &mut PgConnection,
    user: UserId,
    task: TaskId,
) -> Result<Option<SeriesId>, StoreError> {
    let link: Option<Option<uuid::Uuid>> =
        sqlx::query_scalar("SELECT series_id FROM tasks WHERE id = $1 AND user_id = $2")
            .bind(task.0)
            .bind(user.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some(id) = link.flatten() else { return Ok(None) };
    sqlx::query("SELECT 1 FROM series WHERE id = $1 AND user_id = $2 FOR UPDATE")
        .bind(id)
        .bind(user.0)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(Some(SeriesId(id)))
}

async fn insert_series(conn: &mut PgConnection, s: &Series) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO series (id, user_id, title, description, priority, category_id, tags, \
         recurrence, mode, start_local, active, next_occurrence, instances, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(s.id.0)
    .bind(s.user_id.0)
    .bind(s.title.as_str().to_owned())
    .bind(s.description.as_ref().map(|d| d.as_str().to_owned()))
    .bind(s.priority.rank() as i16)
    .bind(s.category.as_ref().map(|c| c.id.0))
    .bind(s.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
    .bind(spec_json(&s.recurrence))
    .bind(s.recurrence.mode().as_str())
    .bind(s.start.to_string())
    .bind(s.active)
    .bind(s.next_occurrence.map(PgInstant::new))
    .bind(i32::try_from(s.instances).unwrap_or(i32::MAX))
    .bind(PgInstant::new(s.created_at))
    .bind(PgInstant::new(s.updated_at))
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn save_progress(conn: &mut PgConnection, s: &Series) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE series SET next_occurrence = $2, instances = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(s.id.0)
    .bind(s.next_occurrence.map(PgInstant::new))
    .bind(i32::try_from(s.instances).unwrap_or(i32::MAX))
    .bind(PgInstant::new(s.updated_at))
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts `task` (an instance) with its series columns.
async fn insert_instance(conn: &mut PgConnection, task: &Task) -> Result<(), StoreError> {
    let category = task.category.as_ref().map(|c| c.id);
    bind_task(INSERT_TASK, task, category)
        .execute(&mut *conn)
        .await
        .map_err(|e| task_error(e, category))?;
    let link = task.series.as_ref().expect("an instance has a series link");
    sqlx::query(
        "UPDATE tasks SET series_id = $2, instance_date = $3, recurrence = $4 WHERE id = $1",
    )
    .bind(task.id.0)
    .bind(link.series_id.0)
    .bind(link.instance_date.to_string())
    .bind(serde_json::to_string(&link.recurrence).expect("a recurrence spec serialises"))
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Creates the series of `new` and the task as its first instance, with its created event.
pub async fn create(
    conn: &mut PgConnection,
    user: UserId,
    new: NewTask,
    series: NewSeries,
    now: Timestamp,
    source: &str,
) -> Result<Task, StoreError> {
    let category = match &new.category {
        Some(r) => Some(resolve_category(conn, user, r, now).await?),
        None => None,
    };
    let (s, task) = first_instance((new_id(), new_id()), new, series, user, category, now);
    insert_series(conn, &s).await?;
    insert_instance(conn, &task).await?;
    append_outbox(conn, &created(&task, now, source), now).await?;
    Ok(task)
}

async fn instance_exists(
    conn: &mut PgConnection,
    series: SeriesId,
    date: &str,
    later: bool,
) -> Result<bool, StoreError> {
    let sql = if later {
        "SELECT 1 FROM tasks WHERE series_id = $1 AND instance_date > $2 LIMIT 1"
    } else {
        "SELECT 1 FROM tasks WHERE series_id = $1 AND instance_date = $2"
    };
    Ok(sqlx::query(sql)
        .bind(series.0)
        .bind(date)
        .fetch_optional(conn)
        .await
        .map_err(unavailable)?
        .is_some())
}

/// Makes the instance of `series` (locked by the caller) at `occurrence` unless one exists
/// (`plan_next_instance`), carrying over the relative reminders of task `reminders_from`.
async fn spawn(
    conn: &mut PgConnection,
    series: Series,
    occurrence: &Occurrence,
    reminders_from: Option<TaskId>,
    now: Timestamp,
    source: &str,
) -> Result<Option<Task>, StoreError> {
    let exists = instance_exists(conn, series.id, &occurrence.local.to_string(), false).await?;
    let carry = match reminders_from {
        Some(from) if !exists => reminders::for_task(conn, from).await?,
        _ => Vec::new(),
    };
    let next = plan_next_instance(series, occurrence, exists, &carry, new_id(), now);
    save_progress(conn, &next.series).await?;
    if let Some(task) = &next.instance {
        insert_instance(conn, task).await?;
        for r in &next.reminders {
            reminders::insert(conn, task, r.clone(), now).await?;
        }
        append_outbox(conn, &created(task, now, source), now).await?;
    }
    Ok(next.instance)
}

/// The user's series `id`, locked, for a write that decides on it: `None` when it no
/// longer exists (a link to a series deleted before deleting detached instances).
pub async fn linked(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
) -> Result<Option<Series>, StoreError> {
    match get_series(conn, user, id, true).await {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The next instance after `n.completed` was completed (see
/// `crate::series::sqlite::spawn_after_completion`).
pub async fn spawn_after_completion(
    conn: &mut PgConnection,
    n: &NextInstance,
) -> Result<Option<Task>, StoreError> {
    let Some(series) = linked(conn, n.user, n.series).await? else { return Ok(None) };
    let later = instance_exists(conn, n.series, &n.instance_date, true).await?;
    let Some(next) = after_completion(&series, later, n.due, n.completed_at) else {
        return Ok(None);
    };
    spawn(conn, series, &next, Some(n.completed), n.at, &n.source).await
}

/// Makes the instances of up to `limit` due fixed-mode series, skipping rows another
/// process holds.
pub async fn spawn_due(
    conn: &mut PgConnection,
    now: Timestamp,
    limit: usize,
    source: &str,
) -> Result<Vec<Task>, StoreError> {
    let rows = sqlx::query(concat!(
        series_select!(),
        " WHERE s.active AND s.mode = 'fixed' AND s.next_occurrence IS NOT NULL \
         AND s.next_occurrence <= $1 ORDER BY s.next_occurrence LIMIT $2 \
         FOR UPDATE OF s SKIP LOCKED"
    ))
    .bind(PgInstant::new(now))
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut made = Vec::new();
    for row in &rows {
        let series = from_row(row)?;
        let Some(occurrence) = due_occurrence(&series) else {
            save_progress(conn, &ended(series, now)).await?;
            continue;
        };
        let latest = latest_instance(conn, series.id).await?.map(|t| t.id);
        if let Some(task) = spawn(conn, series, &occurrence, latest, now, source).await? {
            made.push(task);
        }
    }
    Ok(made)
}

/// The latest instance of `series` (by occurrence), if any.
async fn latest_instance(
    conn: &mut PgConnection,
    series: SeriesId,
) -> Result<Option<Task>, StoreError> {
    let row = sqlx::query(concat!(
        task_select!(),
        " WHERE t.series_id = $1 ORDER BY t.instance_date DESC LIMIT 1"
    ))
    .bind(series.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(codec::task).transpose()
}

/// The earliest `next_occurrence` of an active fixed-mode series.
pub async fn next_due_at(conn: &mut PgConnection) -> Result<Option<Timestamp>, StoreError> {
    let v: Option<PgInstant> = sqlx::query_scalar(
        "SELECT min(next_occurrence) FROM series \
         WHERE active AND mode = 'fixed' AND next_occurrence IS NOT NULL",
    )
    .fetch_one(conn)
    .await
    .map_err(unavailable)?;
    v.map(|v| v.timestamp().map_err(|e| corrupt("series.next_occurrence", e))).transpose()
}

/// Up to `limit` active fixed-mode series due at or before `until`, `(id,
/// next_occurrence)`, earliest first: a range scan of the partial index `series_due`.
pub async fn upcoming(
    conn: &mut PgConnection,
    until: Timestamp,
    limit: usize,
) -> Result<Vec<(SeriesId, Timestamp)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, next_occurrence FROM series \
         WHERE active AND mode = 'fixed' AND next_occurrence IS NOT NULL \
         AND next_occurrence <= $1 ORDER BY next_occurrence, id LIMIT $2",
    )
    .bind(PgInstant::new(until))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| Ok((SeriesId(get(row, "id")?), codec::instant(row, "next_occurrence")?)))
        .collect()
}

/// Pauses or resumes the user's series `id` and returns it.
pub async fn set_active(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
    active: bool,
    now: Timestamp,
    source: &str,
) -> Result<Series, StoreError> {
    let s = get_series(conn, user, id, true).await?;
    let Some((s, catch_up_now)) = plan_set_active(&s, active, now) else { return Ok(s) };
    sqlx::query("UPDATE series SET active = $2, updated_at = $3 WHERE id = $1")
        .bind(id.0)
        .bind(s.active)
        .bind(PgInstant::new(s.updated_at))
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if !catch_up_now {
        return Ok(s);
    }
    catch_up(conn, user, id, now, source).await?;
    get_series(conn, user, id, false).await
}

/// On resume, or after an update linked a completed task: makes the next instance when the
/// latest one was completed (see `crate::series::sqlite::catch_up`).
pub async fn catch_up(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    let latest = latest_instance(conn, id).await?;
    let Some(c) = latest.as_ref().and_then(|t| plan_catch_up(t, now)) else { return Ok(()) };
    spawn_after_completion(conn, &NextInstance::after(user, id, c, now, source)).await?;
    Ok(())
}

/// Deletes the user's series `id` and detaches its instances (see `crate::series`).
pub async fn delete(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    // Locked first: a completion making the next instance locks it too, so none is made
    // between detaching the instances and deleting the row.
    get_series(conn, user, id, true).await?;
    end(conn, user, id, None, now, source).await
}

/// Ends the user's series `id` (locked by the caller): its instances but `except` detached,
/// each with its version bumped and its updated event (`plan_series_detach`; the instances
/// are locked in `id` order), then its row deleted.
async fn end(
    conn: &mut PgConnection,
    user: UserId,
    id: SeriesId,
    except: Option<TaskId>,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    let rows = sqlx::query(concat!(
        task_select!(),
        " WHERE t.series_id = $1 AND t.user_id = $2 ORDER BY t.id FOR UPDATE OF t"
    ))
    .bind(id.0)
    .bind(user.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let instances = rows.iter().map(codec::task).collect::<Result<Vec<_>, _>>()?;
    for TaskChanged { before, after } in plan_series_detach(instances, except, now) {
        sqlx::query(
            "UPDATE tasks SET series_id = NULL, instance_date = NULL, recurrence = NULL, \
             version = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(after.id.0)
        .bind(after.version)
        .bind(PgInstant::new(after.updated_at))
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        append_outbox(conn, &changed(&before, &after, now, source), now).await?;
    }
    sqlx::query("DELETE FROM series WHERE id = $1")
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Persists what an update's `recurrence` does to the series rows of task `task` (see
/// `crate::series::sqlite::write`); the task's row is locked, and normally the series it
/// links to before it ([`lock_linked`]).
pub async fn write(
    conn: &mut PgConnection,
    user: UserId,
    task: TaskId,
    write: &SeriesWrite,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    match write {
        SeriesWrite::Keep => Ok(()),
        SeriesWrite::Insert(series) => insert_series(conn, series).await,
        SeriesWrite::ReplaceRule(series) => {
            sqlx::query(
                "UPDATE series SET recurrence = $2, mode = $3, start_local = $4, \
                 next_occurrence = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(series.id.0)
            .bind(spec_json(&series.recurrence))
            .bind(series.recurrence.mode().as_str())
            .bind(series.start.to_string())
            .bind(series.next_occurrence.map(PgInstant::new))
            .bind(PgInstant::new(series.updated_at))
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            Ok(())
        }
        SeriesWrite::End(id) => end(conn, user, *id, Some(task), now, source).await,
    }
}

/// Writes the link columns of `task`'s row when an update changed its link.
pub async fn save_link(
    conn: &mut PgConnection,
    before: &Task,
    task: &Task,
) -> Result<(), StoreError> {
    if before.series == task.series {
        return Ok(());
    }
    let link = task.series.as_ref();
    sqlx::query(
        "UPDATE tasks SET series_id = $2, instance_date = $3, recurrence = $4 WHERE id = $1",
    )
    .bind(task.id.0)
    .bind(link.map(|l| l.series_id.0))
    .bind(link.map(|l| l.instance_date.to_string()))
    .bind(link.map(|l| serde_json::to_string(&l.recurrence).expect("a recurrence spec serialises")))
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}
