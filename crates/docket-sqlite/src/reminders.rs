//! Reminders on SQLite: functions run inside a `SqliteStore::write` closure (the task write
//! rules, the claim) or on a reader connection.

use docket_core::plan::reminders::{
    ReminderWrite, plan_reminders_on_task_change, planned, reminders_must_follow,
};
use docket_core::{
    Channels, NewReminder, Reminder, ReminderId, ReminderStatus, Task, TaskId, Timestamp, UserId,
    Zone,
};
use docket_events::reminder_triggered;
use rusqlite::{Connection, Row, Transaction, params};

use crate::append_outbox;
use crate::codec::{DbResult as _, TASK_COLUMNS, TASK_FROM, corrupt, micros, task_from_row};
use docket_ports::StoreError;
use docket_ports::ids::new_id;
use docket_ports::reminders::{trigger_columns, trigger_from_columns};

const COLUMNS: &str = "id, task_id, user_id, trigger_at, before_due, channels, status, fire_at, \
                       fired_at, attempts, last_error, created_at";

fn instant(v: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    v.map(|v| Timestamp::from_microsecond(v).map_err(|_| corrupt("instant"))).transpose()
}

fn uuid(row: &Row<'_>, i: usize) -> Result<uuid::Uuid, StoreError> {
    let bytes: Vec<u8> = row.get(i).db()?;
    uuid::Uuid::from_slice(&bytes).map_err(|_| corrupt("id"))
}

fn from_row(row: &Row<'_>) -> Result<Reminder, StoreError> {
    let before_due: Option<String> = row.get(4).db()?;
    let trigger = trigger_from_columns(instant(row.get(3).db()?)?, before_due.as_deref())
        .ok_or_else(|| corrupt("reminder trigger"))?;
    let channels: String = row.get(5).db()?;
    let channels = Channels::parse(&channels.split(',').collect::<Vec<_>>())
        .map_err(|_| corrupt("reminder channels"))?;
    let status: String = row.get(6).db()?;
    Ok(Reminder {
        id: ReminderId(uuid(row, 0)?),
        task_id: TaskId(uuid(row, 1)?),
        user_id: UserId(uuid(row, 2)?),
        trigger,
        channels,
        status: ReminderStatus::from_db(&status).ok_or_else(|| corrupt("reminder status"))?,
        fire_at: instant(row.get(7).db()?)?,
        fired_at: instant(row.get(8).db()?)?,
        attempts: row.get(9).db()?,
        last_error: row.get(10).db()?,
        created_at: instant(Some(row.get(11).db()?))?.ok_or_else(|| corrupt("instant"))?,
    })
}

fn user_zone(conn: &Connection, user: UserId) -> Result<Option<Zone>, StoreError> {
    let name: Option<String> = conn
        .prepare_cached("SELECT timezone FROM users WHERE id = ?1")
        .db()?
        .query_row([user.0.as_bytes()], |r| r.get(0))
        .db()?;
    Ok(name.and_then(|n| Zone::parse(&n).ok()))
}

/// Creates a reminder of `task` (already loaded, the caller's): pending, or canceled when the
/// task is completed (reopening re-arms it).
pub fn insert(
    tx: &Transaction<'_>,
    task: &Task,
    new: NewReminder,
    now: Timestamp,
) -> Result<Reminder, StoreError> {
    let reminder = planned(new_id(), task, new, user_zone(tx, task.user_id)?, now);
    let (at, before_due) = trigger_columns(&reminder.trigger);
    tx.prepare_cached(&format!("INSERT INTO reminders ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"))
        .db()?
        .execute(params![
            reminder.id.0.as_bytes(),
            reminder.task_id.0.as_bytes(),
            reminder.user_id.0.as_bytes(),
            at.map(micros),
            before_due,
            reminder.channels.to_csv(),
            reminder.status.as_str(),
            reminder.fire_at.map(micros),
            Option::<i64>::None,
            0,
            Option::<String>::None,
            micros(now),
        ])
        .db()?;
    Ok(reminder)
}

/// The reminders of `task`, oldest first.
pub fn for_task(conn: &Connection, task: TaskId) -> Result<Vec<Reminder>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM reminders WHERE task_id = ?1 ORDER BY created_at, id"
        ))
        .db()?;
    let mut rows = st.query([task.0.as_bytes()]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// The reminder `id` of `user`.
pub fn get(conn: &Connection, user: UserId, id: ReminderId) -> Result<Reminder, StoreError> {
    let mut st = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM reminders WHERE id = ?1 AND user_id = ?2"))
        .db()?;
    let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
    match rows.next().db()? {
        Some(row) => from_row(row),
        None => Err(StoreError::NotFound("reminder")),
    }
}

/// Retries the user's failed reminder `id` (rules on `Store::retry_reminder`).
pub fn retry(
    tx: &Transaction<'_>,
    user: UserId,
    id: ReminderId,
    now: Timestamp,
) -> Result<Reminder, StoreError> {
    let r = get(tx, user, id)?;
    if r.status != ReminderStatus::Failed {
        return Err(docket_ports::reminders::not_failed(&r));
    }
    tx.prepare_cached("UPDATE reminders SET status = 'pending', fire_at = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id.0.as_bytes(), micros(now)])
        .db()?;
    get(tx, user, id)
}

/// Records `error` on reminder `id` (one more failed attempt); `give_up` also moves it from
/// `fired` to `failed`.
pub fn record_failure(
    tx: &Transaction<'_>,
    id: ReminderId,
    error: &str,
    give_up: bool,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE reminders SET attempts = attempts + 1, last_error = ?2,
             status = CASE WHEN ?3 AND status = 'fired' THEN 'failed' ELSE status END
         WHERE id = ?1",
    )
    .db()?
    .execute(params![id.0.as_bytes(), error, give_up])
    .db()?;
    Ok(())
}

/// Deletes reminder `id` of `task` (the caller's); `NotFound` when there is none.
pub fn delete(tx: &Transaction<'_>, task: TaskId, id: ReminderId) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM reminders WHERE id = ?1 AND task_id = ?2")
        .db()?
        .execute(params![id.0.as_bytes(), task.0.as_bytes()])
        .db()?;
    if n == 0 { Err(StoreError::NotFound("reminder")) } else { Ok(()) }
}

/// Loads what the reminder rules of the task write `before → after` need (the task's
/// reminders and its owner's zone, only when fire times move) and writes their change set.
pub fn on_task_updated(
    tx: &Transaction<'_>,
    before: &Task,
    after: &Task,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (loaded, zone) = if reminders_must_follow(before, after) {
        (for_task(tx, after.id)?, user_zone(tx, after.user_id)?)
    } else {
        (Vec::new(), None)
    };
    write(tx, &plan_reminders_on_task_change(before, after, &loaded, zone, now))
}

/// Writes a reminder change set, in order.
pub fn write(tx: &Transaction<'_>, writes: &[ReminderWrite]) -> Result<(), StoreError> {
    for w in writes {
        match w {
            ReminderWrite::FireAt { id, fire_at } => tx
                .prepare_cached("UPDATE reminders SET fire_at = ?2 WHERE id = ?1")
                .db()?
                .execute(params![id.0.as_bytes(), fire_at.map(micros)]),
            ReminderWrite::CancelPending { task } => tx
                .prepare_cached(
                    "UPDATE reminders SET status = 'canceled' WHERE task_id = ?1 AND status = 'pending'",
                )
                .db()?
                .execute([task.0.as_bytes()]),
            ReminderWrite::RearmCanceled { task, after } => tx
                .prepare_cached(
                    "UPDATE reminders SET status = 'pending'
                     WHERE task_id = ?1 AND status = 'canceled' AND fire_at > ?2",
                )
                .db()?
                .execute(params![task.0.as_bytes(), micros(*after)]),
        }
        .db()?;
    }
    Ok(())
}

/// Claims up to `limit` due reminders (`fire_at <= now`, earliest first), marks them fired
/// and appends their events; returns them as fired.
pub fn claim_due(
    tx: &Transaction<'_>,
    now: Timestamp,
    limit: usize,
    source: &str,
) -> Result<Vec<Reminder>, StoreError> {
    let due: Vec<Reminder> = {
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM reminders
                 WHERE status = 'pending' AND fire_at IS NOT NULL AND fire_at <= ?1
                 ORDER BY fire_at, id LIMIT ?2"
            ))
            .db()?;
        let mut rows =
            st.query(params![micros(now), i64::try_from(limit).unwrap_or(i64::MAX)]).db()?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().db()? {
            out.push(from_row(row)?);
        }
        out
    };
    let mut fired = Vec::with_capacity(due.len());
    for mut r in due {
        let n = tx
            .prepare_cached(
                "UPDATE reminders SET status = 'fired', fired_at = ?2, attempts = attempts + 1
                 WHERE id = ?1 AND status = 'pending'",
            )
            .db()?
            .execute(params![r.id.0.as_bytes(), micros(now)])
            .db()?;
        if n == 0 {
            continue;
        }
        r.status = ReminderStatus::Fired;
        r.fired_at = Some(now);
        r.attempts += 1;
        let task = task_by_id(tx, r.task_id)?;
        append_outbox(
            tx,
            &[reminder_triggered(&r, &task, docket_ports::facts::origin(now, source))],
            now,
        )?;
        fired.push(r);
    }
    Ok(fired)
}

fn task_by_id(conn: &Connection, id: TaskId) -> Result<Task, StoreError> {
    let mut st = conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE t.id = ?1"))
        .db()?;
    let mut rows = st.query([id.0.as_bytes()]).db()?;
    match rows.next().db()? {
        Some(row) => Ok(task_from_row(row)?.1),
        None => Err(StoreError::NotFound("task")),
    }
}

/// The earliest `fire_at` of a pending reminder, if any.
pub fn next_fire_at(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached(
            "SELECT min(fire_at) FROM reminders WHERE status = 'pending' AND fire_at IS NOT NULL",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    instant(v)
}

/// Up to `limit` pending reminders due at or before `until`, `(id, fire_at)`, earliest first:
/// a range scan of the partial index `reminders_due (fire_at, id)`, which also gives the order.
pub fn upcoming(
    conn: &Connection,
    until: Timestamp,
    limit: usize,
) -> Result<Vec<(ReminderId, Timestamp)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, fire_at FROM reminders INDEXED BY reminders_due
             WHERE status = 'pending' AND fire_at IS NOT NULL AND fire_at <= ?1
             ORDER BY fire_at, id LIMIT ?2",
        )
        .db()?;
    let mut rows =
        st.query(params![micros(until), i64::try_from(limit).unwrap_or(i64::MAX)]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        let id = ReminderId(uuid(row, 0)?);
        let at = instant(Some(row.get(1).db()?))?.ok_or_else(|| corrupt("fire_at"))?;
        out.push((id, at));
    }
    Ok(out)
}
