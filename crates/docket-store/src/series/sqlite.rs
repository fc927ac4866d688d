//! Series on SQLite: functions run inside a `SqliteStore::write` closure (create, the two
//! ways an instance is made, pause/resume/delete) or on a reader connection. The one writer
//! thread serialises them, so "check, then insert" is race-free here; the unique index on
//! `(series_id, instance_date)` still backs it.

use docket_core::{
    NewReminder, NewSeries, NewTask, Priority, Recurrence, Series, SeriesId, Tags, Task, TaskId,
    Timestamp, Title, Trigger, UserId,
};
use docket_events::{TaskChange, task_events};
use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, params};

use super::{
    advance, attach, detached, first_instance, instance, recurrence_from_json, replace_rule,
    spec_json,
};
use crate::StoreError;
use crate::reminders::sqlite as reminders;
use crate::sqlite::append_outbox;
use crate::sqlite::codec::{
    DbResult as _, TASK_COLUMNS, TASK_FROM, corrupt, i64_at, instant, micros, opt_instant_at,
    opt_text_at, tags_text, task_from_row, text_at, uuid_at,
};
use crate::sqlite::{insert_task, resolve_category};

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
    let (s, task) = first_instance(new, series, user, category, now);
    insert_series(tx, &s)?;
    insert_task(tx, &task)?;
    set_link(tx, &task)?;
    append_outbox(tx, &task_events(TaskChange::Created(&task), now, source), now)?;
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

/// Inserts the instance of `series` at `occurrence` unless one exists, copying the relative
/// reminders of task `reminders_from`; records the progress on the series row.
fn spawn(
    tx: &Transaction<'_>,
    series: &mut Series,
    occurrence: &docket_core::Occurrence,
    reminders_from: Option<TaskId>,
    now: Timestamp,
    source: &str,
) -> Result<Option<Task>, StoreError> {
    let date = occurrence.local.to_string();
    if instance_exists(tx, series.id, &date, false)? {
        series.next_occurrence = series.following(occurrence.at.max(now)).map(|o| o.at);
        save_progress(tx, series)?;
        return Ok(None);
    }
    advance(series, occurrence.at, now);
    save_progress(tx, series)?;
    let task = instance(series, occurrence, now);
    insert_task(tx, &task)?;
    set_link(tx, &task)?;
    if let Some(from) = reminders_from {
        for r in reminders::for_task(tx, from)? {
            if let Trigger::BeforeDue(_) = r.trigger {
                reminders::insert(
                    tx,
                    &task,
                    NewReminder { trigger: r.trigger, channels: r.channels },
                    now,
                )?;
            }
        }
    }
    append_outbox(tx, &task_events(TaskChange::Created(&task), now, source), now)?;
    Ok(Some(task))
}

/// The next instance after the user's instance `completed` (of series `series_id`, at
/// `instance_date`) was completed (rules in `crate::series`); `None` when none is due.
#[allow(clippy::too_many_arguments)]
pub fn spawn_after_completion(
    tx: &Transaction<'_>,
    user: UserId,
    series_id: SeriesId,
    instance_date: &str,
    completed: TaskId,
    due: Option<Timestamp>,
    completed_at: Timestamp,
    now: Timestamp,
    source: &str,
) -> Result<Option<Task>, StoreError> {
    let mut series = match get(tx, user, series_id) {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !series.active || instance_exists(tx, series_id, instance_date, true)? {
        return Ok(None);
    }
    let Some(next) = series.next_after_completion(due, completed_at) else {
        return Ok(None);
    };
    spawn(tx, &mut series, &next, Some(completed), now, source)
}

/// Makes the instances of up to `limit` due fixed-mode series (rules in `crate::series`).
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
    for mut series in due {
        let at = series.next_occurrence.expect("selected with a next occurrence");
        let latest = latest_instance(tx, series.id)?;
        let Some(occurrence) = series.recurrence.clone().with_count(None).next_after(
            series.start,
            at.checked_sub(jiff::SignedDuration::from_micros(1)).unwrap_or(at),
        ) else {
            series.next_occurrence = None;
            series.updated_at = now;
            save_progress(tx, &series)?;
            continue;
        };
        if let Some(task) = spawn(tx, &mut series, &occurrence, latest, now, source)? {
            made.push(task);
        }
    }
    Ok(made)
}

fn latest_instance(tx: &Transaction<'_>, series: SeriesId) -> Result<Option<TaskId>, StoreError> {
    let id: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT id FROM tasks WHERE series_id = ?1 ORDER BY instance_date DESC LIMIT 1",
        )
        .db()?
        .query_row([series.0.as_bytes()], |r| r.get(0))
        .optional()
        .db()?;
    id.map(|b| uuid::Uuid::from_slice(&b).map(TaskId).map_err(|_| corrupt("id"))).transpose()
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
    let mut s = get(tx, user, id)?;
    if s.active != active {
        s.active = active;
        s.updated_at = now;
        tx.prepare_cached("UPDATE series SET active = ?2, updated_at = ?3 WHERE id = ?1")
            .db()?
            .execute(params![id.0.as_bytes(), i64::from(active), micros(now)])
            .db()?;
        if active && s.recurrence.mode() == docket_core::Mode::AfterCompletion {
            catch_up(tx, user, id, now, source)?;
            s = get(tx, user, id)?;
        }
    }
    Ok(s)
}

/// On resume, or after an update linked a completed task: when the latest instance was
/// completed (while the series was paused, or before the task joined it, so no next one was
/// made), makes the next one now, as that completion would have.
pub fn catch_up(
    tx: &Transaction<'_>,
    user: UserId,
    id: SeriesId,
    now: Timestamp,
    source: &str,
) -> Result<(), StoreError> {
    type Latest = (Vec<u8>, i64, Option<i64>, Option<i64>, String);
    let latest: Option<Latest> = tx
        .prepare_cached(
            "SELECT id, status, due_date, completed_at, instance_date FROM tasks
             WHERE series_id = ?1 ORDER BY instance_date DESC LIMIT 1",
        )
        .db()?
        .query_row([id.0.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .db()?;
    let Some((task, status, due, completed_at, date)) = latest else { return Ok(()) };
    if status != 1 {
        return Ok(()); // the latest instance is still open: its completion will continue
    }
    let task = uuid::Uuid::from_slice(&task).map(TaskId).map_err(|_| corrupt("id"))?;
    let due = due.map(instant).transpose()?;
    let completed_at = completed_at.map(instant).transpose()?.unwrap_or(now);
    spawn_after_completion(tx, user, id, &date, task, due, completed_at, now, source)?;
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
/// and its updated event. The one writer runs this, so no instance can be made meanwhile.
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
            out.push(task_from_row(row)?);
        }
        out
    };
    for (seq, before) in instances.iter().filter(|(_, t)| Some(t.id) != except) {
        let after = detached(before, now);
        tx.prepare_cached(
            "UPDATE tasks SET series_id = NULL, instance_date = NULL, recurrence = NULL, \
             version = ?2, updated_at = ?3 WHERE seq = ?1",
        )
        .db()?
        .execute(params![seq, after.version, micros(after.updated_at)])
        .db()?;
        let change = TaskChange::Updated { before, after: &after };
        append_outbox(tx, &task_events(change, now, source), now)?;
    }
    Ok(())
}

/// What an update's `recurrence` does to the task's series (rules in `crate::series`), run
/// in `update_task`'s transaction on the task after the rest of the patch; the task's own
/// row, link and event are the caller's (see [`save_link`]). Returns the series whose next
/// instance [`catch_up`] must check for once the task's row is saved.
pub fn relink(
    tx: &Transaction<'_>,
    user: UserId,
    task: &mut Task,
    recurrence: Option<Recurrence>,
    now: Timestamp,
    source: &str,
) -> Result<Option<SeriesId>, StoreError> {
    let current = match task.series.as_ref().map(|l| l.series_id) {
        None => None,
        Some(id) => match get(tx, user, id) {
            Ok(s) => Some(s),
            // A link to a series deleted before deleting detached instances: no series.
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
    };
    match (recurrence, current) {
        (None, None) => {
            task.series = None;
            Ok(None)
        }
        (None, Some(series)) => {
            tx.prepare_cached("DELETE FROM series WHERE id = ?1")
                .db()?
                .execute([series.id.0.as_bytes()])
                .db()?;
            detach_instances(tx, user, series.id, Some(task.id), now, source)?;
            task.series = None;
            Ok(None)
        }
        (Some(recurrence), None) => {
            let series = attach(task, recurrence, now)?;
            insert_series(tx, &series)?;
            Ok(follows_completion(&series))
        }
        (Some(recurrence), Some(mut series)) => {
            if !replace_rule(&mut series, task, recurrence, now) {
                return Ok(None);
            }
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
            Ok(follows_completion(&series))
        }
    }
}

fn follows_completion(series: &Series) -> Option<SeriesId> {
    (series.active && series.recurrence.mode() == docket_core::Mode::AfterCompletion)
        .then_some(series.id)
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
