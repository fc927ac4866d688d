//! Webhooks and deliveries on PostgreSQL (rules in `crate::webhooks`): functions run inside
//! a caller's transaction (a consumer's, the claim's, the settlement's) or on a connection.

use std::time::Duration;

use docket_core::{
    Delivery, DeliveryChannel, DeliveryId, DeliveryOutcome, DeliveryStatus, NewDelivery,
    NewWebhook, ReminderId, Timestamp, UserId, Webhook, WebhookId, WebhookPatch,
};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};

use super::codec::{self, PgInstant};
use super::unavailable;
use docket_ports::StoreError;
use docket_ports::webhooks::{ClaimedDelivery, Subscriber};

const WEBHOOK_COLUMNS: &str = "id, user_id, url, events, active, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "d.id, d.user_id, d.channel, d.webhook_id, d.reminder_id, \
    d.event_id, d.event_type, d.target, d.payload, d.status, d.attempts, d.next_attempt_at, \
    d.last_error, d.created_at, d.delivered_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::unavailable(
        "postgres",
        format!("stored {what} does not parse; was the database edited by hand?"),
    )
}

fn webhook_from_row(row: &PgRow) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: WebhookId(row.try_get("id").map_err(unavailable)?),
        user_id: UserId(row.try_get("user_id").map_err(unavailable)?),
        url: row.try_get("url").map_err(unavailable)?,
        events: row.try_get("events").map_err(unavailable)?,
        active: row.try_get("active").map_err(unavailable)?,
        created_at: codec::instant(row, "created_at")?,
        updated_at: codec::instant(row, "updated_at")?,
    })
}

fn delivery_from_row(row: &PgRow) -> Result<Delivery, StoreError> {
    let channel: String = row.try_get("channel").map_err(unavailable)?;
    let status: String = row.try_get("status").map_err(unavailable)?;
    Ok(Delivery {
        id: DeliveryId(row.try_get("id").map_err(unavailable)?),
        user_id: UserId(row.try_get("user_id").map_err(unavailable)?),
        channel: DeliveryChannel::from_db(&channel).ok_or_else(|| corrupt("delivery channel"))?,
        webhook_id: row
            .try_get::<Option<uuid::Uuid>, _>("webhook_id")
            .map_err(unavailable)?
            .map(WebhookId),
        reminder_id: row
            .try_get::<Option<uuid::Uuid>, _>("reminder_id")
            .map_err(unavailable)?
            .map(ReminderId),
        event_id: row.try_get("event_id").map_err(unavailable)?,
        event_type: row.try_get("event_type").map_err(unavailable)?,
        target: row.try_get("target").map_err(unavailable)?,
        payload: row.try_get("payload").map_err(unavailable)?,
        status: DeliveryStatus::from_db(&status).ok_or_else(|| corrupt("delivery status"))?,
        attempts: row.try_get("attempts").map_err(unavailable)?,
        next_attempt_at: codec::opt_instant(row, "next_attempt_at")?,
        last_error: row.try_get("last_error").map_err(unavailable)?,
        created_at: codec::instant(row, "created_at")?,
        delivered_at: codec::opt_instant(row, "delivered_at")?,
    })
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Creates a webhook of `user`.
pub async fn create(
    conn: &mut PgConnection,
    user: UserId,
    new: NewWebhook,
    now: Timestamp,
) -> Result<Webhook, StoreError> {
    let hook = Webhook {
        id: new.id,
        user_id: user,
        url: new.url,
        events: new.events,
        active: new.active,
        created_at: now,
        updated_at: now,
    };
    sqlx::query(
        "INSERT INTO webhooks (id, user_id, url, events, secret, active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(hook.id.0)
    .bind(user.0)
    .bind(&hook.url)
    .bind(&hook.events)
    .bind(&new.secret)
    .bind(hook.active)
    .bind(PgInstant::new(now))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if matches!(&e, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
            StoreError::NotFound("user")
        } else {
            unavailable(e)
        }
    })?;
    Ok(hook)
}

/// The user's webhooks, oldest first.
pub async fn list(conn: &mut PgConnection, user: UserId) -> Result<Vec<Webhook>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
    )))
    .bind(user.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter().map(webhook_from_row).collect()
}

/// The user's webhook `id`; `lock` takes it `FOR UPDATE`.
pub async fn get(
    conn: &mut PgConnection,
    user: UserId,
    id: WebhookId,
    lock: bool,
) -> Result<Webhook, StoreError> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2 {lock}"
    )))
    .bind(id.0)
    .bind(user.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(webhook_from_row).transpose()?.ok_or(StoreError::NotFound("webhook"))
}

/// Applies `patch` to the user's webhook `id`.
pub async fn update(
    conn: &mut PgConnection,
    user: UserId,
    id: WebhookId,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Webhook, StoreError> {
    let mut hook = get(&mut *conn, user, id, true).await?;
    patch.apply(&mut hook, now);
    sqlx::query(
        "UPDATE webhooks SET url = $2, events = $3, active = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(id.0)
    .bind(&hook.url)
    .bind(&hook.events)
    .bind(hook.active)
    .bind(PgInstant::new(now))
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(hook)
}

/// Deletes the user's webhook `id` and its deliveries.
pub async fn delete(
    conn: &mut PgConnection,
    user: UserId,
    id: WebhookId,
) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2")
        .bind(id.0)
        .bind(user.0)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("webhook"));
    }
    Ok(())
}

/// Every user's webhooks with their stored secrets, ordered by id, the first `limit` after
/// `after`.
pub async fn secrets(
    conn: &mut PgConnection,
    after: Option<WebhookId>,
    limit: usize,
) -> Result<Vec<(WebhookId, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, secret FROM webhooks WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after.map(|id| id.0))
    .bind(limit_of(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok((
                WebhookId(row.try_get("id").map_err(unavailable)?),
                row.try_get("secret").map_err(unavailable)?,
            ))
        })
        .collect()
}

/// Replaces webhook `id`'s secret with `new` while it is still `old`; true when it did.
pub async fn replace_secret(
    conn: &mut PgConnection,
    id: WebhookId,
    old: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE webhooks SET secret = $3 WHERE id = $1 AND secret = $2")
        .bind(id.0)
        .bind(old)
        .bind(new)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(done.rows_affected() == 1)
}

/// The user's active webhooks that receive events of type `event_type`, oldest first.
pub async fn subscribers(
    conn: &mut PgConnection,
    user: UserId,
    event_type: &str,
) -> Result<Vec<Subscriber>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, url FROM webhooks
         WHERE user_id = $1 AND active AND $2 = ANY (events)
         ORDER BY created_at, id",
    )
    .bind(user.0)
    .bind(event_type)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok(Subscriber {
                id: WebhookId(row.try_get("id").map_err(unavailable)?),
                url: row.try_get("url").map_err(unavailable)?,
            })
        })
        .collect()
}

/// The email address of `user`, `None` when the user is gone.
pub async fn user_email(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)
}

/// Enqueues `deliveries` (pending, due at once) unless their (event, channel, target) is
/// already there; returns how many were new.
pub async fn enqueue(
    conn: &mut PgConnection,
    deliveries: &[NewDelivery],
) -> Result<u64, StoreError> {
    let mut added = 0;
    for d in deliveries {
        added += sqlx::query(
            "INSERT INTO deliveries (id, user_id, channel, webhook_id, reminder_id, event_id,
                 event_type, target, payload, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10)
             ON CONFLICT (event_id, channel, target) DO NOTHING",
        )
        .bind(d.id.0)
        .bind(d.user_id.0)
        .bind(d.channel.as_str())
        .bind(d.webhook_id.map(|w| w.0))
        .bind(d.reminder_id.map(|r| r.0))
        .bind(&d.event_id)
        .bind(&d.event_type)
        .bind(&d.target)
        .bind(&d.payload)
        .bind(PgInstant::new(d.created_at))
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
    }
    Ok(added)
}

/// The user's deliveries to webhook `webhook`, newest first.
pub async fn deliveries_of(
    conn: &mut PgConnection,
    user: UserId,
    webhook: WebhookId,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    get(&mut *conn, user, webhook, false).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.webhook_id = $1
         ORDER BY d.created_at DESC, d.id DESC LIMIT $2"
    )))
    .bind(webhook.0)
    .bind(limit_of(limit.min(docket_ports::webhooks::MAX_LIST)))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter().map(delivery_from_row).collect()
}

async fn delivery(
    conn: &mut PgConnection,
    id: DeliveryId,
    lock: bool,
) -> Result<Option<Delivery>, StoreError> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = $1 {lock}"
    )))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// Claims up to `limit` pending deliveries due at `now`, earliest first, skipping rows
/// another claimer holds: each counts an attempt and is not due again until `now + lease`.
pub async fn claim(
    conn: &mut PgConnection,
    now: Timestamp,
    lease: Duration,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let until = now
        .checked_add(jiff::SignedDuration::try_from(lease).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH due AS (
             SELECT id, next_attempt_at AS due_at FROM deliveries
             WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = $3
             FROM due WHERE d.id = due.id
             RETURNING d.*, due.due_at
         )
         -- The update moved every claimed row to the same time: order by when each was due.
         SELECT {DELIVERY_COLUMNS}, w.secret FROM claimed d
         LEFT JOIN webhooks w ON w.id = d.webhook_id
         ORDER BY d.due_at, d.id"
    )))
    .bind(PgInstant::new(now))
    .bind(limit_of(limit))
    .bind(PgInstant::new(until))
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                delivery: delivery_from_row(row)?,
                secret: row.try_get("secret").map_err(unavailable)?,
            })
        })
        .collect()
}

/// Records how the attempt of pending delivery `id` ended (nothing when it is no longer
/// pending); false when there was nothing to settle.
pub async fn settle(
    conn: &mut PgConnection,
    id: DeliveryId,
    outcome: &DeliveryOutcome,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let Some(d) = delivery(&mut *conn, id, true).await? else {
        return Ok(false);
    };
    if d.status != DeliveryStatus::Pending {
        return Ok(false);
    }
    match outcome {
        DeliveryOutcome::Delivered => {
            sqlx::query(
                "UPDATE deliveries SET status = 'delivered', delivered_at = $2,
                     next_attempt_at = NULL WHERE id = $1",
            )
            .bind(id.0)
            .bind(PgInstant::new(now))
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            if let Some(r) = d.reminder_id {
                sqlx::query(
                    "UPDATE reminders SET status = 'fired' WHERE id = $1 AND status = 'failed'
                       AND NOT EXISTS (SELECT 1 FROM deliveries
                                       WHERE reminder_id = $1 AND status = 'failed')",
                )
                .bind(r.0)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            }
        }
        DeliveryOutcome::Retry { error, at } => {
            sqlx::query(
                "UPDATE deliveries SET last_error = $2, next_attempt_at = $3 WHERE id = $1",
            )
            .bind(id.0)
            .bind(error)
            .bind(PgInstant::new(*at))
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            if let Some(r) = d.reminder_id {
                super::reminders::record_failure(&mut *conn, r, error, false).await?;
            }
        }
        DeliveryOutcome::GiveUp { error } => {
            sqlx::query(
                "UPDATE deliveries SET status = 'failed', last_error = $2, next_attempt_at = NULL
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(error)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            if let Some(r) = d.reminder_id {
                super::reminders::record_failure(&mut *conn, r, error, true).await?;
            }
        }
    }
    Ok(true)
}

/// Puts the user's failed delivery `id` to `webhook` back in line, due at `now`, with a fresh count of
/// attempts; a delivery that is not failed is returned unchanged.
pub async fn retry(
    conn: &mut PgConnection,
    user: UserId,
    webhook: WebhookId,
    id: DeliveryId,
    now: Timestamp,
) -> Result<Delivery, StoreError> {
    let d = delivery(&mut *conn, id, true)
        .await?
        .filter(|d| d.user_id == user && d.webhook_id == Some(webhook))
        .ok_or(StoreError::NotFound("delivery"))?;
    if d.status != DeliveryStatus::Failed {
        return Ok(d);
    }
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(PgInstant::new(now))
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    delivery(&mut *conn, id, false).await?.ok_or(StoreError::NotFound("delivery"))
}

/// When the next pending delivery is due.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<Timestamp>, StoreError> {
    let row = sqlx::query(
        "SELECT next_attempt_at FROM deliveries WHERE status = 'pending'
         ORDER BY next_attempt_at LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    match row {
        Some(row) => codec::opt_instant(&row, "next_attempt_at"),
        None => Ok(None),
    }
}
