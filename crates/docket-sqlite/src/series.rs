//! Series on SQLite: functions run inside a `SqliteStore::write` closure (create, the two
//! ways an instance is made, pause/resume/delete) or on a reader connection. The one writer
//! thread serialises them, so "check, then insert" is race-free here; the unique index on
//! `(series_id, instance_date)` still backs it.

use docket_core::plan::series::{
    SeriesWrite, after_completion, catch_up as plan_catch_up, due_occurrence, ended,
    first_instance, plan_next_instance, plan_series_detach, set_active as plan_set_active,
};
use docket_core::{
    NewSeries, NewTask, Occurrence, Priority, Series, SeriesId, Tags, Task, TaskChanged, TaskId,
    Timestamp, Title, UserId,
};
use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, params};

use crate::append_outbox;
use crate::codec::{
    DbResult as _, TASK_COLUMNS, TASK_FROM, corrupt, i64_at, instant, micros, opt_instant_at,
    opt_text_at, tags_text, task_from_row, text_at, uuid_at,
};
use crate::reminders;
use crate::{insert_task, resolve_category};
use docket_ports::StoreError;
use docket_ports::consume::NextInstance;
use docket_ports::facts::{changed, created};
use docket_ports::ids::new_id;
use docket_ports::series::{recurrence_from_json, spec_json};

const COLUMNS: &str = "s.id, s.user_id, s.title, s.description, s.priority, s.tags, s.recurrence, \
     s.start_local, s.active, s.next_occurrence, s.instances, s.created_at, s.updated_at, \
     c.id, c.name, c.color, c.created_at";
const FROM: &str = "series s LEFT JOIN categories c ON c.id = s.category_id";

fn from_row(row: &Row<'_>) -> Result<Series, StoreError> {
    let user_id = UserId(uuid_at(row, 1)?);
    let tags_raw = text_at(row, 5)?;
    let tags = if tags_raw.is_empty() {
        Tags::default()
    } else {
        Tags::parse(&tags_raw.split(',').collect::<Vec<_>>()).map_err(|_| corrupt("tags"))?
    };
    let category = match opt_text_at(row, 14)? {
        None => None,
        Some(name) => Some(docket_core::Category {
            id: docket_core::CategoryId(uuid_at(row, 13)?),
            user_id,
            name: docket_core::CategoryName::parse(name).map_err(|_| corrupt("category name"))?,
            color: docket_core::Color::parse(text_at(row, 15)?)
                .map_err(|_| corrupt("category colour"))?,
            created_at: instant(i64_at(row, 16)?)?,
        }),
    };
    Ok(Series {
        id: SeriesId(uuid_at(row, 0)?),
        user_id,
        title: Title::parse(text_at(row, 2)?).map_err(|_| corrupt("series title"))?,
        description: match opt_text_at(row, 3)? {
            None => None,
            Some(d) => docket_core::Description::parse(d).map_err(|_| corrupt("description"))?,
        },
        priority: Priority::from_rank(i64_at(row, 4)?).ok_or_else(|| corrupt("priority"))?,
        category,
        tags,
        recurrence: recurrence_from_json(text_at(row, 6)?)?,
        start: text_at(row, 7)?.parse().map_err(|_| corrupt("series start"))?,
        active: i64_at(row, 8)? != 0,
        next_occurrence: opt_instant_at(row, 9)?,
        instances: u32::try_from(i64_at(row, 10)?).map_err(|_| corrupt("series instances"))?,
        created_at: instant(i64_at(row, 11)?)?,
        updated_at: instant(i64_at(row, 12)?)?,
    })
}

fn query_series(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Series>, StoreError> {
    let mut st = conn.prepare_cached(sql).db()?;
    let mut rows = st.query(p).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// The user's series, oldest first.
pub fn list(conn: &Connection, user: UserId) -> Result<Vec<Series>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE s.user_id = ?1 ORDER BY s.id");
    query_series(conn, &sql, [user.0.as_bytes()])
}

/// The user's series `id`.
pub fn get(conn: &Connection, user: UserId, id: SeriesId) -> Result<Series, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE s.id = ?1 AND s.user_id = ?2");
    query_series(conn, &sql, params![id.0.as_bytes(), user.0.as_bytes()])?
        .pop()
        .ok_or(StoreError::NotFound("series"))
}

fn insert_series(tx: &Transaction<'_>, s: &Series) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO series (id, user_id, title, description, priority, category_id, tags, recurrence,
                             mode, start_local, active, next_occurrence, instances, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .db()?
    .execute(params![
        s.id.0.as_bytes(),
        s.user_id.0.as_bytes(),
        s.title.as_str(),
        s.description.as_ref().map(|d| d.as_str()),
        s.priority.rank(),
        s.category.as_ref().map(|c| c.id.0.as_bytes()),
        tags_text(&s.tags),
        spec_json(&s.recurrence),
        s.recurrence.mode().as_str(),
        s.start.to_string(),
        i64::from(s.active),
        s.next_occurrence.map(micros),
        i64::from(s.instances),
        micros(s.created_at),
        micros(s.updated_at),
    ])
    .db()?;
    Ok(())
}

fn save_progress(tx: &Transaction<'_>, s: &Series) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE series SET next_occurrence = ?2, instances = ?3, updated_at = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        s.id.0.as_bytes(),
        s.next_occurrence.map(micros),
        i64::from(s.instances),
        micros(s.updated_at)
    ])
    .db()?;
    Ok(())
}

/// Sets the series columns of an inserted task row.
fn set_link(tx: &Transaction<'_>, task: &Task) -> Result<(), StoreError> {
    let link = task.series.as_ref().expect("an instance has a series link");
    tx.prepare_cached(
        "UPDATE tasks SET series_id = ?2, instance_date = ?3, recurrence = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        task.id.0.as_bytes(),
        link.series_id.0.as_bytes(),
        link.instance_date.to_string(),
        serde_json::to_string(&link.recurrence).expect("a recurrence spec serialises"),
    ])
    .db()?;
    Ok(())
}

/// Creates the series of `new` and the task as its first instance, with its created event.
pub fn create(
    tx: &Transaction<'_>,
    user: UserId,
    new: NewTask,
    series: NewSeries,
    now: Timestamp,
    source: &str,
) -> Result<Task, StoreError> {
    let category = match &new.category {
        Some(r) => Some(resolve_category(tx, user, r, now)?),
        None => None,
    };
    let (s, task) = first_instance((new_id(), new_id()), new, series, user, category, now);
    insert_series(tx, &s)?;
    insert_task(tx, &task)?;
    set_link(tx, &task)?;
    append_outbox(tx, &created(&task, now, source), now)?;
    Ok(task)
}

fn instance_exists(
    tx: &Transaction<'_>,
    series: SeriesId,
    date: &str,
    later: bool,
) -> Result<bool, StoreError> {
    let sql = if later {
        "SELECT 1 FROM tasks WHERE series_id = ?1 AND instance_date > ?2 LIMIT 1"
    } else {
        "SELECT 1 FROM tasks WHERE series_id = ?1 AND instance_date = ?2"
    };
    Ok(tx
        .prepare_cached(sql)
        .db()?
        .query_row(params![series.0.as_bytes(), date], |_| Ok(()))
        .optional()
        .db()?
        .is_some())
}

/// Makes the instance of `series` at `occurrence` unless one exists (`plan_next_instance`),
/// carrying over the relative reminders of task `reminders_from`; records the progress on
/// the series row.
fn spawn(
    tx: &Transaction<'_>,
    series: Series,
    occurrence: &Occurrence,
    reminders_from: Option<TaskId>,
    now: Timestamp,
    source: &str,
) -> Result<Option<Task>, StoreError> {
    let exists = instance_exists(tx, series.id, &occurrence.local.to_string(), false)?;
    let carry = match reminders_from {
        Some(from) if !exists => reminders::for_task(tx, from)?,
        _ => Vec::new(),
    };
    let next = plan_next_instance(series, occurrence, exists, &carry, new_id(), now);
    save_progress(tx, &next.series)?;
    if let Some(task) = &next.instance {
        insert_task(tx, task)?;
        set_link(tx, task)?;
        for r in &next.reminders {
            reminders::insert(tx, task, r.clone(), now)?;
        }
        append_outbox(tx, &created(task, now, source), now)?;
    }
    Ok(next.instance)
}

/// The next instance after `n.completed` was completed
/// (`docket_core::plan::series::after_completion`); `None` when none is due.
pub fn spawn_after_completion(
    tx: &Transaction<'_>,
    n: &NextInstance,
) -> Result<Option<Task>, StoreError> {
    let Some(series) = linked(tx, n.user, n.series)? else { return Ok(None) };
    let later = instance_exists(tx, n.series, &n.instance_date, true)?;
    let Some(next) = after_completion(&series, later, n.due, n.completed_at) else {
        return Ok(None);
    };
    spawn(tx, series, &next, Some(n.completed), n.at, &n.source)
}

/// Makes the instances of up to `limit` due fixed-mode series (`due_occurrence`).
pub fn spawn_due(
    tx: &Transaction<'_>,
    now: Timestamp,
    limit: usize,
    source: &str,
) -> Result<Vec<Task>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE s.active = 1 AND s.mode = 'fixed' \
         AND s.next_occurrence IS NOT NULL AND s.next_occurrence <= ?1 \
         ORDER BY s.next_occurrence LIMIT ?2"
    );
    let due = query_series(tx, &sql, params![micros(now), limit as i64])?;
    let mut made = Vec::new();
    for series in due {
        let Some(occurrence) = due_occurrence(&series) else {
            save_progress(tx, &ended(series, now))?;
            continue;
        };
        let latest = latest_instance(tx, series.id)?.map(|t| t.id);
        if let Some(task) = spawn(tx, series, &occurrence, latest, now, source)? {
            made.push(task);
        }
    }
    Ok(made)
}

/// The latest instance of `series` (by occurrence), if any.
fn latest_instance(tx: &Transaction<'_>, series: SeriesId) -> Result<Option<Task>, StoreError> {
    let mut st = tx
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.series_id = ?1 \
             ORDER BY t.instance_date DESC LIMIT 1"
        ))
        .db()?;
    let mut rows = st.query([series.0.as_bytes()]).db()?;
    rows.next().db()?.map(|row| Ok(task_from_row(row)?.1)).transpose()
}

/// The earliest `next_occurrence` of an active fixed-mode series.
pub fn next_due_at(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached(
            "SELECT min(next_occurrence) FROM series \
             WHERE active = 1 AND mode = 'fixed' AND next_occurrence IS NOT NULL",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    v.map(instant).transpose()
}

/// Up to `limit` active fixed-mode series due at or before `until`, `(id,
/// next_occurrence)`, earliest first: a range scan of the partial index `series_due`.
pub fn upcoming(
    conn: &Connection,
    until: Timestamp,
    limit: usize,
) -> Result<Vec<(SeriesId, Timestamp)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, next_occurrence FROM series INDEXED BY series_due \
             WHERE active = 1 AND mode = 'fixed' AND next_occurrence IS NOT NULL \
             AND next_occurrence <= ?1 ORDER BY next_occurrence, id LIMIT ?2",
        )
        .db()?;
    let mut rows =
        st.query(params![micros(until), i64::try_from(limit).unwrap_or(i64::MAX)]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push((SeriesId(uuid_at(row, 0)?), instant(i64_at(row, 1)?)?));
    }
    Ok(out)
}

/// Pauses or resumes the user's series `id` and returns it.
pub fn set_active(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
    active: bool,
    now: Timestamp,
    source: &str,
) -> Result<Series, StoreError> {
    let s = get(tx, user, id)?;
    let Some((s, catch_up_now)) = plan_set_active(&s, active, now) else { return Ok(s) };
    tx.prepare_cached("UPDATE series SET active = ?2, updated_at = ?3 WHERE id = ?1")
        .db()?
        .execute(params![id.0.as_bytes(), i64::from(s.active), micros(s.updated_at)])
        .db()?;
    if !catch_up_now {
        return Ok(s);
    }
    catch_up(tx, user, id, now, source)?;
    get(tx, user, id)
}

/// On resume, or after an update linked a completed task: makes the next instance when the
/// latest one was completed (`docket_core::plan::series::catch_up`), as its completion would
/// have.
pub fn catch_up(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    let latest = latest_instance(tx, id)?;
    let Some(c) = latest.as_ref().and_then(|t| plan_catch_up(t, now)) else { return Ok(()) };
    spawn_after_completion(tx, &NextInstance::after(user, id, c, now, source))?;
    Ok(())
}

/// Deletes the user's series `id` and detaches its instances (see `crate::series`).
pub fn delete(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM series WHERE id = ?1 AND user_id = ?2")
        .db()?
        .execute(params![id.0.as_bytes(), user.0.as_bytes()])
        .db()?;
    if n == 0 {
        return Err(StoreError::NotFound("series"));
    }
    detach_instances(tx, user, id, None, now, source)
}

/// Detaches the user's instances of series `id` but `except`, each with its version bumped
/// and its updated event (`plan_series_detach`). The one writer runs this, so no instance
/// can be made meanwhile.
fn detach_instances(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
    except: Option<TaskId>,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    let instances = {
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.series_id = ?1 AND t.user_id = ?2 ORDER BY t.id"
            ))
            .db()?;
        let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().db()? {
            out.push(task_from_row(row)?.1);
        }
        out
    };
    for TaskChanged { before, after } in plan_series_detach(instances, except, now) {
        tx.prepare_cached(
            "UPDATE tasks SET series_id = NULL, instance_date = NULL, recurrence = NULL, \
             version = ?2, updated_at = ?3 WHERE id = ?1",
        )
        .db()?
        .execute(params![after.id.0.as_bytes(), after.version, micros(after.updated_at)])
        .db()?;
        append_outbox(tx, &changed(&before, &after, now, source), now)?;
    }
    Ok(())
}

/// The user's series `id` for an update that relinks its task: `None` when it no longer
/// exists (a link to a series deleted before deleting detached instances).
pub fn linked(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
) -> Result<Option<Series>, StoreError> {
    match get(tx, user, id) {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Persists what an update's `recurrence` does to the series rows of task `task` (decided
/// by `docket_core::plan::task::plan_task_update`), before the task's own row is written
/// (see [`save_link`]).
pub fn write(
    tx: &Transaction<'_>,
    user: UserId,
    task: TaskId,
    write: &SeriesWrite,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    match write {
        SeriesWrite::Keep => Ok(()),
        SeriesWrite::Insert(series) => insert_series(tx, series),
        SeriesWrite::ReplaceRule(series) => {
            tx.prepare_cached(
                "UPDATE series SET recurrence = ?2, mode = ?3, start_local = ?4, \
                 next_occurrence = ?5, updated_at = ?6 WHERE id = ?1",
            )
            .db()?
            .execute(params![
                series.id.0.as_bytes(),
                spec_json(&series.recurrence),
                series.recurrence.mode().as_str(),
                series.start.to_string(),
                series.next_occurrence.map(micros),
                micros(series.updated_at),
            ])
            .db()?;
            Ok(())
        }
        SeriesWrite::End(id) => {
            tx.prepare_cached("DELETE FROM series WHERE id = ?1")
                .db()?
                .execute([id.0.as_bytes()])
                .db()?;
            detach_instances(tx, user, *id, Some(task), now, source)
        }
    }
}

/// Writes the link columns of `task`'s row when an update changed its link.
pub fn save_link(tx: &Transaction<'_>, before: &Task, task: &Task) -> Result<(), StoreError> {
    if before.series == task.series {
        return Ok(());
    }
    match &task.series {
        Some(_) => set_link(tx, task),
        None => {
            tx.prepare_cached(
                "UPDATE tasks SET series_id = NULL, instance_date = NULL, recurrence = NULL WHERE id = ?1",
            )
            .db()?
            .execute([task.id.0.as_bytes()])
            .db()?;
            Ok(())
        }
    }
}
