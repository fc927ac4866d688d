//! Notifications on SQLite: the append runs inside a `SqliteStore::write` closure (the
//! consumer's transaction), reads on a reader connection.

use docket_core::{Notification, NotificationId, ReminderId, TaskId, Timestamp, UserId};
use docket_events::notification_created;
use rusqlite::{Connection, Row, Transaction, params};

use crate::append_outbox;
use crate::codec::{DbResult as _, corrupt, micros};
use docket_ports::StoreError;

const COLUMNS: &str = "id, user_id, task_id, reminder_id, title, body, created_at, read_at";

fn instant(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(v).map_err(|_| corrupt("instant"))
}

fn id_at(row: &Row<'_>, i: usize) -> Result<Option<uuid::Uuid>, StoreError> {
    let bytes: Option<Vec<u8>> = row.get(i).db()?;
    bytes.map(|b| uuid::Uuid::from_slice(&b).map_err(|_| corrupt("id"))).transpose()
}

fn from_row(row: &Row<'_>) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: NotificationId(id_at(row, 0)?.ok_or_else(|| corrupt("id"))?),
        user_id: UserId(id_at(row, 1)?.ok_or_else(|| corrupt("id"))?),
        task_id: id_at(row, 2)?.map(TaskId),
        reminder_id: id_at(row, 3)?.map(ReminderId),
        title: row.get(4).db()?,
        body: row.get(5).db()?,
        created_at: instant(row.get(6).db()?)?,
        read_at: row.get::<_, Option<i64>>(7).db()?.map(instant).transpose()?,
    })
}

/// Appends `n` (caused by event `source_event`) and its `notification.created` event, unless
/// that event already made one; true when it was new.
pub fn append(
    tx: &Transaction<'_>,
    n: &Notification,
    source_event: &str,
    source: &str,
) -> Result<bool, StoreError> {
    let added = tx
        .prepare_cached(
            "INSERT INTO notifications
             (id, user_id, source_event, task_id, reminder_id, title, body, created_at, read_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)
             ON CONFLICT (source_event) DO NOTHING",
        )
        .db()?
        .execute(params![
            n.id.0.as_bytes(),
            n.user_id.0.as_bytes(),
            source_event,
            n.task_id.map(|t| t.0.as_bytes().to_vec()),
            n.reminder_id.map(|r| r.0.as_bytes().to_vec()),
            n.title,
            n.body,
            micros(n.created_at),
        ])
        .db()?
        == 1;
    if added {
        append_outbox(
            tx,
            &[notification_created(n, docket_ports::facts::origin(n.created_at, source))],
            n.created_at,
        )?;
    }
    Ok(added)
}

/// The user's notifications, newest first, only unread ones when asked.
pub fn list(
    conn: &Connection,
    user: UserId,
    unread_only: bool,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    let sql = if unread_only {
        format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = ?1 AND read_at IS NULL
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        )
    };
    let mut st = conn.prepare_cached(&sql).db()?;
    let limit = i64::try_from(limit.min(docket_ports::notifications::MAX_LIST)).unwrap_or(0);
    let mut rows = st.query(params![user.0.as_bytes(), limit]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// Marks the user's notification `id` read (keeping an earlier `read_at`); returns it.
pub fn mark_read(
    tx: &Transaction<'_>,
    user: UserId,
    id: NotificationId,
    now: Timestamp,
) -> Result<Notification, StoreError> {
    tx.prepare_cached(
        "UPDATE notifications SET read_at = coalesce(read_at, ?3) WHERE id = ?1 AND user_id = ?2",
    )
    .db()?
    .execute(params![id.0.as_bytes(), user.0.as_bytes(), micros(now)])
    .db()?;
    let mut st = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = ?1 AND user_id = ?2"
        ))
        .db()?;
    let mut rows = st.query(params![id.0.as_bytes(), user.0.as_bytes()]).db()?;
    match rows.next().db()? {
        Some(row) => from_row(row),
        None => Err(StoreError::NotFound("notification")),
    }
}

/// Marks every unread notification of the user read; returns how many.
pub fn mark_all_read(
    tx: &Transaction<'_>,
    user: UserId,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE notifications SET read_at = ?2 WHERE user_id = ?1 AND read_at IS NULL",
        )
        .db()?
        .execute(params![user.0.as_bytes(), micros(now)])
        .db()?;
    Ok(n as u64)
}
