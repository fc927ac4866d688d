//! The audit log on PostgreSQL; every function takes a `&mut PgConnection`, a pooled
//! connection or an open transaction (`&mut *tx`).

use docket_core::{Timestamp, UserId};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use docket_ports::StoreError;
use docket_ports::audit::{AuditEntry, AuditPage};

fn db(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("postgres", e)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::unavailable("postgres", format!("corrupt audit {what}"))
}

/// Appends `entry` unless an entry for its event id exists; true when it was new.
pub async fn append(conn: &mut PgConnection, entry: &AuditEntry) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO audit_log
         (id, event_id, event_type, entity_type, entity_id, user_id, actor, at, data, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7,
                 timestamptz 'epoch' + $8 * interval '1 microsecond', $9::jsonb, $10)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(entry.id)
    .bind(entry.event_id.as_str())
    .bind(entry.event_type.as_str())
    .bind(entry.entity_type.as_str())
    .bind(entry.entity_id)
    .bind(entry.user_id.as_uuid())
    .bind(entry.actor.as_str())
    .bind(entry.at.as_microsecond())
    .bind(entry.data.to_string())
    .bind(entry.seq)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

const COLUMNS: &str = "id, event_id, event_type, entity_type, entity_id, user_id, actor, \
     (extract(epoch from at) * 1000000)::bigint AS at_us, data::text AS data_text, seq";

fn entry(row: &PgRow) -> Result<AuditEntry, StoreError> {
    let data: String = row.try_get("data_text").map_err(db)?;
    let at: i64 = row.try_get("at_us").map_err(db)?;
    Ok(AuditEntry {
        id: row.try_get("id").map_err(db)?,
        event_id: row.try_get("event_id").map_err(db)?,
        event_type: row.try_get("event_type").map_err(db)?,
        entity_type: row.try_get("entity_type").map_err(db)?,
        entity_id: row.try_get("entity_id").map_err(db)?,
        user_id: UserId(row.try_get("user_id").map_err(db)?),
        actor: row.try_get("actor").map_err(db)?,
        at: Timestamp::from_microsecond(at).map_err(|_| corrupt("instant"))?,
        data: serde_json::from_str(&data).map_err(|_| corrupt("data"))?,
        seq: row.try_get("seq").map_err(db)?,
    })
}

fn fetch(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1)
}

/// The entries of `user`'s entity `entity_id`, oldest first, after cursor `after`.
pub async fn entity_history(
    conn: &mut PgConnection,
    user: UserId,
    entity_type: &str,
    entity_id: uuid::Uuid,
    after: Option<i64>,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log
         WHERE user_id = $1 AND entity_type = $2 AND entity_id = $3 AND seq > $4
         ORDER BY seq LIMIT $5"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.as_uuid())
        .bind(entity_type)
        .bind(entity_id)
        .bind(after.unwrap_or(i64::MIN))
        .bind(fetch(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let items = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    Ok(AuditPage::from_rows(items, limit))
}

/// Every entry of `user`'s, oldest first, after cursor `after`.
pub async fn activity(
    conn: &mut PgConnection,
    user: UserId,
    after: Option<i64>,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.as_uuid())
        .bind(after.unwrap_or(i64::MIN))
        .bind(fetch(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let items = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    Ok(AuditPage::from_rows(items, limit))
}
