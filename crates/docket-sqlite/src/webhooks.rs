//! Webhooks and deliveries on SQLite: functions run inside a `SqliteStore::write` closure (a
//! consumer's transaction, the claim, the settlement) or on a reader connection.

use std::time::Duration;

use docket_core::{
    Delivery, DeliveryChannel, DeliveryId, DeliveryOutcome, DeliveryStatus, NewDelivery,
    NewWebhook, ReminderId, Timestamp, UserId, Webhook, WebhookId, WebhookPatch,
};
use rusqlite::{Connection, Row, Transaction, params};

use crate::codec::{DbResult as _, corrupt, micros};
use docket_ports::StoreError;
use docket_ports::webhooks::{ClaimedDelivery, Subscriber, events_json};

const WEBHOOK_COLUMNS: &str = "id, user_id, url, events, active, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "d.id, d.user_id, d.channel, d.webhook_id, d.reminder_id, \
    d.event_id, d.event_type, d.target, d.payload, d.status, d.attempts, d.next_attempt_at, \
    d.last_error, d.created_at, d.delivered_at";

fn instant(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(v).map_err(|_| corrupt("instant"))
}

fn opt_instant(v: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    v.map(instant).transpose()
}

fn uuid_at(row: &Row<'_>, i: usize) -> Result<Option<uuid::Uuid>, StoreError> {
    let bytes: Option<Vec<u8>> = row.get(i).db()?;
    bytes.map(|b| uuid::Uuid::from_slice(&b).map_err(|_| corrupt("id"))).transpose()
}

fn required(row: &Row<'_>, i: usize) -> Result<uuid::Uuid, StoreError> {
    uuid_at(row, i)?.ok_or_else(|| corrupt("id"))
}

fn webhook_from_row(row: &Row<'_>) -> Result<Webhook, StoreError> {
    let events: String = row.get(3).db()?;
    let events: Vec<String> =
        serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?;
    Ok(Webhook {
        id: WebhookId(required(row, 0)?),
        user_id: UserId(required(row, 1)?),
        url: row.get(2).db()?,
        events,
        active: row.get::<_, i64>(4).db()? != 0,
        created_at: instant(row.get(5).db()?)?,
        updated_at: instant(row.get(6).db()?)?,
    })
}

fn delivery_from_row(row: &Row<'_>) -> Result<Delivery, StoreError> {
    let channel: String = row.get(2).db()?;
    let status: String = row.get(9).db()?;
    Ok(Delivery {
        id: DeliveryId(required(row, 0)?),
        user_id: UserId(required(row, 1)?),
        channel: DeliveryChannel::from_db(&channel).ok_or_else(|| corrupt("delivery channel"))?,
        webhook_id: uuid_at(row, 3)?.map(WebhookId),
        reminder_id: uuid_at(row, 4)?.map(ReminderId),
        event_id: row.get(5).db()?,
        event_type: row.get(6).db()?,
        target: row.get(7).db()?,
        payload: row.get(8).db()?,
        status: DeliveryStatus::from_db(&status).ok_or_else(|| corrupt("delivery status"))?,
        attempts: row.get(10).db()?,
        next_attempt_at: opt_instant(row.get(11).db()?)?,
        last_error: row.get(12).db()?,
        created_at: instant(row.get(13).db()?)?,
        delivered_at: opt_instant(row.get(14).db()?)?,
    })
}

fn query<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Creates a webhook of `user`.
pub fn create(
    tx: &Transaction<'_>,
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
    tx.prepare_cached(
        "INSERT INTO webhooks (id, user_id, url, events, secret, active, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )
    .db()?
    .execute(params![
        hook.id.0.as_bytes(),
        user.0.as_bytes(),
        hook.url,
        events_json(&hook.events),
        new.secret,
        i64::from(hook.active),
        micros(now),
    ])
    .db()?;
    Ok(hook)
}

/// The user's webhooks, oldest first.
pub fn list(conn: &Connection, user: UserId) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = ?1 ORDER BY created_at, id"
    );
    query(conn, &sql, [user.0.as_bytes()], webhook_from_row)
}

/// The user's webhook `id`.
pub fn get(conn: &Connection, user: UserId, id: WebhookId) -> Result<Webhook, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND user_id = ?2");
    query(conn, &sql, params![id.0.as_bytes(), user.0.as_bytes()], webhook_from_row)?
        .pop()
        .ok_or(StoreError::NotFound("webhook"))
}

/// Applies `patch` to the user's webhook `id`.
pub fn update(
    tx: &Transaction<'_>,
    user: UserId,
    id: WebhookId,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Webhook, StoreError> {
    let mut hook = get(tx, user, id)?;
    patch.apply(&mut hook, now);
    tx.prepare_cached(
        "UPDATE webhooks SET url = ?2, events = ?3, active = ?4, updated_at = ?5 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        id.0.as_bytes(),
        hook.url,
        events_json(&hook.events),
        i64::from(hook.active),
        micros(now),
    ])
    .db()?;
    Ok(hook)
}

/// Deletes the user's webhook `id` and its deliveries.
pub fn delete(tx: &Transaction<'_>, user: UserId, id: WebhookId) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND user_id = ?2")
        .db()?
        .execute(params![id.0.as_bytes(), user.0.as_bytes()])
        .db()?;
    if n == 0 {
        return Err(StoreError::NotFound("webhook"));
    }
    Ok(())
}

/// Every user's webhooks with their stored secrets, ordered by id, the first `limit` after
/// `after` (ids are 16-byte blobs, ordered as `Uuid`s are).
pub fn secrets(
    conn: &Connection,
    after: Option<WebhookId>,
    limit: usize,
) -> Result<Vec<(WebhookId, String)>, StoreError> {
    let after = after.map(|id| id.0.as_bytes().to_vec());
    query(
        conn,
        "SELECT id, secret FROM webhooks WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
        params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| Ok((WebhookId(required(row, 0)?), row.get(1).db()?)),
    )
}

/// Replaces webhook `id`'s secret with `new` while it is still `old`; true when it did.
pub fn replace_secret(
    tx: &Transaction<'_>,
    id: WebhookId,
    old: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached("UPDATE webhooks SET secret = ?3 WHERE id = ?1 AND secret = ?2")
        .db()?
        .execute(params![id.0.as_bytes(), old, new])
        .db()?;
    Ok(n == 1)
}

/// The user's active webhooks that receive events of type `event_type`, oldest first.
pub fn subscribers(
    conn: &Connection,
    user: UserId,
    event_type: &str,
) -> Result<Vec<Subscriber>, StoreError> {
    query(
        conn,
        "SELECT w.id, w.url FROM webhooks w
         WHERE w.user_id = ?1 AND w.active = 1
           AND EXISTS (SELECT 1 FROM json_each(w.events) e WHERE e.value = ?2)
         ORDER BY w.created_at, w.id",
        params![user.0.as_bytes(), event_type],
        |row| Ok(Subscriber { id: WebhookId(required(row, 0)?), url: row.get(1).db()? }),
    )
}

/// The email address of `user`, `None` when the user is gone.
pub fn user_email(conn: &Connection, user: UserId) -> Result<Option<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT email FROM users WHERE id = ?1").db()?;
    let mut rows = stmt.query([user.0.as_bytes()]).db()?;
    match rows.next().db()? {
        Some(row) => Ok(Some(row.get(0).db()?)),
        None => Ok(None),
    }
}

/// Enqueues `deliveries` (pending, due at once) unless their (event, channel, target) is
/// already there; returns how many were new.
pub fn enqueue(tx: &Transaction<'_>, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, user_id, channel, webhook_id, reminder_id, event_id,
                 event_type, target, payload, status, attempts, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?10)
             ON CONFLICT (event_id, channel, target) DO NOTHING",
        )
        .db()?;
    let mut added = 0;
    for d in deliveries {
        added += stmt
            .execute(params![
                d.id.0.as_bytes(),
                d.user_id.0.as_bytes(),
                d.channel.as_str(),
                d.webhook_id.map(|w| w.0.as_bytes().to_vec()),
                d.reminder_id.map(|r| r.0.as_bytes().to_vec()),
                d.event_id,
                d.event_type,
                d.target,
                d.payload,
                micros(d.created_at),
            ])
            .db()? as u64;
    }
    Ok(added)
}

/// The user's deliveries to webhook `webhook`, newest first.
pub fn deliveries_of(
    conn: &Connection,
    user: UserId,
    webhook: WebhookId,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    get(conn, user, webhook)?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.webhook_id = ?1
         ORDER BY d.created_at DESC, d.id DESC LIMIT ?2"
    );
    let limit = limit.min(docket_ports::webhooks::MAX_LIST) as i64;
    query(conn, &sql, params![webhook.0.as_bytes(), limit], delivery_from_row)
}

fn delivery(conn: &Connection, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?1");
    Ok(query(conn, &sql, [id.0.as_bytes()], delivery_from_row)?.pop())
}

/// Claims up to `limit` pending deliveries due at `now`, earliest first: each counts an
/// attempt and is not due again until `now + lease`.
pub fn claim(
    tx: &Transaction<'_>,
    now: Timestamp,
    lease: Duration,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let until = micros(now).saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, w.secret FROM deliveries d
         LEFT JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
         ORDER BY d.next_attempt_at, d.id LIMIT ?2"
    );
    let due = query(tx, &sql, params![micros(now), limit as i64], |row| {
        Ok(ClaimedDelivery { delivery: delivery_from_row(row)?, secret: row.get(15).db()? })
    })?;
    let mut stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
        )
        .db()?;
    let mut out = Vec::with_capacity(due.len());
    for mut c in due {
        stmt.execute(params![c.delivery.id.0.as_bytes(), until]).db()?;
        c.delivery.attempts += 1;
        c.delivery.next_attempt_at = Timestamp::from_microsecond(until).ok();
        out.push(c);
    }
    Ok(out)
}

/// Records how the attempt of pending delivery `id` ended (nothing when it is no longer
/// pending); false when there was nothing to settle.
pub fn settle(
    tx: &Transaction<'_>,
    id: DeliveryId,
    outcome: &DeliveryOutcome,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let Some(d) = delivery(tx, id)? else {
        return Ok(false);
    };
    if d.status != DeliveryStatus::Pending {
        return Ok(false);
    }
    match outcome {
        DeliveryOutcome::Delivered => {
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'delivered', delivered_at = ?2,
                     next_attempt_at = NULL WHERE id = ?1",
            )
            .db()?
            .execute(params![id.0.as_bytes(), micros(now)])
            .db()?;
            if let Some(r) = d.reminder_id {
                tx.prepare_cached(
                    "UPDATE reminders SET status = 'fired' WHERE id = ?1 AND status = 'failed'
                       AND NOT EXISTS (SELECT 1 FROM deliveries
                                       WHERE reminder_id = ?1 AND status = 'failed')",
                )
                .db()?
                .execute([r.0.as_bytes()])
                .db()?;
            }
        }
        DeliveryOutcome::Retry { error, at } => {
            tx.prepare_cached(
                "UPDATE deliveries SET last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![id.0.as_bytes(), error, micros(*at)])
            .db()?;
            if let Some(r) = d.reminder_id {
                crate::reminders::record_failure(tx, r, error, false)?;
            }
        }
        DeliveryOutcome::GiveUp { error } => {
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'failed', last_error = ?2, next_attempt_at = NULL
                 WHERE id = ?1",
            )
            .db()?
            .execute(params![id.0.as_bytes(), error])
            .db()?;
            if let Some(r) = d.reminder_id {
                crate::reminders::record_failure(tx, r, error, true)?;
            }
        }
    }
    Ok(true)
}

/// Puts the user's failed delivery `id` to `webhook` back in line, due at `now`, with a fresh count of
/// attempts; a delivery that is not failed is returned unchanged.
pub fn retry(
    tx: &Transaction<'_>,
    user: UserId,
    webhook: WebhookId,
    id: DeliveryId,
    now: Timestamp,
) -> Result<Delivery, StoreError> {
    let d = delivery(tx, id)?
        .filter(|d| d.user_id == user && d.webhook_id == Some(webhook))
        .ok_or(StoreError::NotFound("delivery"))?;
    if d.status == DeliveryStatus::Failed {
        tx.prepare_cached(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2
             WHERE id = ?1",
        )
        .db()?
        .execute(params![id.0.as_bytes(), micros(now)])
        .db()?;
    }
    delivery(tx, id)?.ok_or(StoreError::NotFound("delivery"))
}

/// When the next pending delivery is due.
pub fn next_due(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'")
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    opt_instant(v)
}
