//! Notifications on PostgreSQL (rules in `crate::notifications`).

use docket_core::{Notification, NotificationId, ReminderId, TaskId, Timestamp, UserId};
use docket_events::notification_created;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};

use super::codec::{self, PgInstant};
use super::{append_outbox, unavailable};
use docket_ports::StoreError;

const COLUMNS: &str = "id, user_id, task_id, reminder_id, title, body, created_at, read_at";

fn from_row(row: &PgRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: NotificationId(row.try_get("id").map_err(unavailable)?),
        user_id: UserId(row.try_get("user_id").map_err(unavailable)?),
        task_id: row.try_get::<Option<uuid::Uuid>, _>("task_id").map_err(unavailable)?.map(TaskId),
        reminder_id: row
            .try_get::<Option<uuid::Uuid>, _>("reminder_id")
            .map_err(unavailable)?
            .map(ReminderId),
        title: row.try_get("title").map_err(unavailable)?,
        body: row.try_get("body").map_err(unavailable)?,
        created_at: codec::instant(row, "created_at")?,
        read_at: codec::opt_instant(row, "read_at")?,
    })
}

/// Appends `n` (caused by event `source_event`) and its `notification.created` event in the
/// caller's transaction, unless that event already made one; true when it was new.
pub async fn append(
    conn: &mut PgConnection,
    n: &Notification,
    source_event: &str,
    source: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO notifications
         (id, user_id, source_event, task_id, reminder_id, title, body, created_at, read_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)
         ON CONFLICT (source_event) DO NOTHING",
    )
    .bind(n.id.0)
    .bind(n.user_id.0)
    .bind(source_event)
    .bind(n.task_id.map(|t| t.0))
    .bind(n.reminder_id.map(|r| r.0))
    .bind(&n.title)
    .bind(&n.body)
    .bind(PgInstant::new(n.created_at))
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let added = done.rows_affected() == 1;
    if added {
        append_outbox(
            &mut *conn,
            &[notification_created(n, docket_ports::facts::origin(n.created_at, source))],
            n.created_at,
        )
        .await?;
    }
    Ok(added)
}

/// The user's notifications, newest first, only unread ones when asked.
pub async fn list(
    conn: &mut PgConnection,
    user: UserId,
    unread_only: bool,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    let filter = if unread_only { "AND read_at IS NULL" } else { "" };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 {filter}
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(user.0)
    .bind(i64::try_from(limit.min(docket_ports::notifications::MAX_LIST)).unwrap_or(0))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter().map(from_row).collect()
}

/// Marks the user's notification `id` read (keeping an earlier `read_at`); returns it.
pub async fn mark_read(
    conn: &mut PgConnection,
    user: UserId,
    id: NotificationId,
    now: Timestamp,
) -> Result<Notification, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET read_at = coalesce(read_at, $3) WHERE id = $1 AND user_id = $2
         RETURNING {COLUMNS}"
    )))
    .bind(id.0)
    .bind(user.0)
    .bind(PgInstant::new(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(from_row).transpose()?.ok_or(StoreError::NotFound("notification"))
}

/// Marks every unread notification of the user read; returns how many.
pub async fn mark_all_read(
    conn: &mut PgConnection,
    user: UserId,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let done =
        sqlx::query("UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL")
            .bind(user.0)
            .bind(PgInstant::new(now))
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    Ok(done.rows_affected())
}
