//! Reminders on PostgreSQL: functions run inside the caller's transaction (the task write
//! rules, the claim) or on a pooled connection. The rules are decided in
//! `docket_core::plan::reminders`; this module loads their inputs and writes their change sets.

use docket_core::plan::reminders::{
    ReminderWrite, plan_reminders_on_task_change, planned, reminders_must_follow,
};
use docket_core::{
    Channels, NewReminder, Reminder, ReminderId, ReminderStatus, Task, TaskId, Timestamp, UserId,
    Zone,
};
use docket_events::reminder_triggered;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};

use super::codec::{self, PgInstant};
use super::{append_outbox, task_select, unavailable};
use docket_ports::StoreError;
use docket_ports::ids::new_id;
use docket_ports::reminders::{trigger_columns, trigger_from_columns};

const COLUMNS: &str = "id, task_id, user_id, trigger_at, before_due, channels, status, fire_at, \
                       fired_at, attempts, last_error, created_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::unavailable(super::BACKEND, format!("stored {what} is not valid"))
}

fn from_row(row: &PgRow) -> Result<Reminder, StoreError> {
    let get_text = |c: &str| row.try_get::<Option<String>, _>(c).map_err(unavailable);
    let before_due = get_text("before_due")?;
    let trigger =
        trigger_from_columns(codec::opt_instant(row, "trigger_at")?, before_due.as_deref())
            .ok_or_else(|| corrupt("reminder trigger"))?;
    let channels = get_text("channels")?.unwrap_or_default();
    let channels = Channels::parse(&channels.split(',').collect::<Vec<_>>())
        .map_err(|_| corrupt("reminder channels"))?;
    let status = get_text("status")?.unwrap_or_default();
    Ok(Reminder {
        id: ReminderId(row.try_get("id").map_err(unavailable)?),
        task_id: TaskId(row.try_get("task_id").map_err(unavailable)?),
        user_id: UserId(row.try_get("user_id").map_err(unavailable)?),
        trigger,
        channels,
        status: ReminderStatus::from_db(&status).ok_or_else(|| corrupt("reminder status"))?,
        fire_at: codec::opt_instant(row, "fire_at")?,
        fired_at: codec::opt_instant(row, "fired_at")?,
        attempts: row.try_get("attempts").map_err(unavailable)?,
        last_error: get_text("last_error")?,
        created_at: codec::instant(row, "created_at")?,
    })
}

fn pg(ts: Option<Timestamp>) -> Option<PgInstant> {
    ts.map(PgInstant::new)
}

async fn user_zone(conn: &mut PgConnection, user: UserId) -> Result<Option<Zone>, StoreError> {
    let name: Option<String> = sqlx::query_scalar("SELECT timezone FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?
        .flatten();
    Ok(name.and_then(|n| Zone::parse(&n).ok()))
}

/// Creates a reminder of `task` (already loaded and locked, the caller's): pending, or
/// canceled when the task is completed (reopening re-arms it).
pub async fn insert(
    conn: &mut PgConnection,
    task: &Task,
    new: NewReminder,
    now: Timestamp,
) -> Result<Reminder, StoreError> {
    let reminder = planned(new_id(), task, new, user_zone(conn, task.user_id).await?, now);
    let (at, before_due) = trigger_columns(&reminder.trigger);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO reminders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, NULL, $9)"
    )))
    .bind(reminder.id.0)
    .bind(reminder.task_id.0)
    .bind(reminder.user_id.0)
    .bind(pg(at))
    .bind(before_due)
    .bind(reminder.channels.to_csv())
    .bind(reminder.status.as_str())
    .bind(pg(reminder.fire_at))
    .bind(PgInstant::new(now))
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(reminder)
}

/// The reminders of `task`, oldest first.
pub async fn for_task(conn: &mut PgConnection, task: TaskId) -> Result<Vec<Reminder>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reminders WHERE task_id = $1 ORDER BY created_at, id"
    )))
    .bind(task.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter().map(from_row).collect()
}

/// The reminder `id` of `user`.
pub async fn get(
    conn: &mut PgConnection,
    user: UserId,
    id: ReminderId,
) -> Result<Reminder, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reminders WHERE id = $1 AND user_id = $2"
    )))
    .bind(id.0)
    .bind(user.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(from_row).transpose()?.ok_or(StoreError::NotFound("reminder"))
}

/// Retries the user's failed reminder `id` (rules on `Store::retry_reminder`).
pub async fn retry(
    conn: &mut PgConnection,
    user: UserId,
    id: ReminderId,
    now: Timestamp,
) -> Result<Reminder, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE reminders SET status = 'pending', fire_at = $3
         WHERE id = $1 AND user_id = $2 AND status = 'failed' RETURNING {COLUMNS}"
    )))
    .bind(id.0)
    .bind(user.0)
    .bind(PgInstant::new(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    match row {
        Some(row) => from_row(&row),
        None => Err(docket_ports::reminders::not_failed(&get(conn, user, id).await?)),
    }
}

/// Records `error` on reminder `id` (one more failed attempt); `give_up` also moves it from
/// `fired` to `failed`.
pub async fn record_failure(
    conn: &mut PgConnection,
    id: ReminderId,
    error: &str,
    give_up: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE reminders SET attempts = attempts + 1, last_error = $2,
             status = CASE WHEN $3 AND status = 'fired' THEN 'failed' ELSE status END
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(error)
    .bind(give_up)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Deletes reminder `id` of `task` (the caller's); `NotFound` when there is none.
pub async fn delete(
    conn: &mut PgConnection,
    task: TaskId,
    id: ReminderId,
) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM reminders WHERE id = $1 AND task_id = $2")
        .bind(id.0)
        .bind(task.0)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if done.rows_affected() == 0 { Err(StoreError::NotFound("reminder")) } else { Ok(()) }
}

/// Loads what the reminder rules of the task write `before → after` need (the task's
/// reminders and its owner's zone, only when fire times move) and writes their change set.
pub async fn on_task_updated(
    conn: &mut PgConnection,
    before: &Task,
    after: &Task,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (loaded, zone) = if reminders_must_follow(before, after) {
        (for_task(conn, after.id).await?, user_zone(conn, after.user_id).await?)
    } else {
        (Vec::new(), None)
    };
    write(conn, &plan_reminders_on_task_change(before, after, &loaded, zone, now)).await
}

/// Writes a reminder change set, in order.
pub async fn write(conn: &mut PgConnection, writes: &[ReminderWrite]) -> Result<(), StoreError> {
    for w in writes {
        let query = match w {
            ReminderWrite::FireAt { id, fire_at } => {
                sqlx::query("UPDATE reminders SET fire_at = $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(pg(*fire_at))
            }
            ReminderWrite::CancelPending { task } => sqlx::query(
                "UPDATE reminders SET status = 'canceled' WHERE task_id = $1 AND status = 'pending'",
            )
            .bind(task.0),
            ReminderWrite::RearmCanceled { task, after } => sqlx::query(
                "UPDATE reminders SET status = 'pending'
                 WHERE task_id = $1 AND status = 'canceled' AND fire_at > $2",
            )
            .bind(task.0)
            .bind(PgInstant::new(*after)),
        };
        query.execute(&mut *conn).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Claims up to `limit` due reminders (`fire_at <= now`, earliest first; rows another
/// scheduler holds are skipped), marks them fired and appends their events, in the caller's
/// transaction; returns them as fired.
pub async fn claim_due(
    conn: &mut PgConnection,
    now: Timestamp,
    limit: usize,
    source: &str,
) -> Result<Vec<Reminder>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH due AS (
             SELECT id FROM reminders
             WHERE status = 'pending' AND fire_at IS NOT NULL AND fire_at <= $1
             ORDER BY fire_at, id LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE reminders r SET status = 'fired', fired_at = $1, attempts = r.attempts + 1
         FROM due WHERE r.id = due.id
         RETURNING {}",
        COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
    )))
    .bind(PgInstant::new(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut fired: Vec<Reminder> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    fired.sort_by_key(|r| (r.fire_at, r.id));
    for r in &fired {
        let task = sqlx::query(concat!(task_select!(), " WHERE t.id = $1"))
            .bind(r.task_id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        let task =
            task.as_ref().map(codec::task).transpose()?.ok_or(StoreError::NotFound("task"))?;
        append_outbox(
            &mut *conn,
            &[reminder_triggered(r, &task, docket_ports::facts::origin(now, source))],
            now,
        )
        .await?;
    }
    Ok(fired)
}

/// The earliest `fire_at` of a pending reminder, if any.
pub async fn next_fire_at(conn: &mut PgConnection) -> Result<Option<Timestamp>, StoreError> {
    let row = sqlx::query(
        "SELECT min(fire_at) AS next FROM reminders WHERE status = 'pending' AND fire_at IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    codec::opt_instant(&row, "next")
}

/// Up to `limit` pending reminders due at or before `until`, `(id, fire_at)`, earliest first:
/// a range scan of the partial index `reminders_due (fire_at, id)`, which also gives the order.
pub async fn upcoming(
    conn: &mut PgConnection,
    until: Timestamp,
    limit: usize,
) -> Result<Vec<(ReminderId, Timestamp)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, fire_at FROM reminders
         WHERE status = 'pending' AND fire_at IS NOT NULL AND fire_at <= $1
         ORDER BY fire_at, id LIMIT $2",
    )
    .bind(PgInstant::new(until))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("id").map_err(unavailable)?;
            Ok((ReminderId(id), codec::instant(row, "fire_at")?))
        })
        .collect()
}
