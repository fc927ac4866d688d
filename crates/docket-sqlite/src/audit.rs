//! The audit log on SQLite: [`append`] runs inside a [`crate::SqliteStore::write`]
//! closure, the reads on any connection.

use docket_core::{Timestamp, UserId};
use rusqlite::{Connection, Row, Transaction, params};

use docket_ports::StoreError;
use docket_ports::audit::{AuditEntry, AuditPage};

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("sqlite", e)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::unavailable("sqlite", format!("corrupt audit {what}"))
}

/// Appends `entry` unless an entry for its event id exists; true when it was new.
pub fn append(tx: &Transaction<'_>, entry: &AuditEntry) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO audit_log
             (id, event_id, event_type, entity_type, entity_id, user_id, actor, at, data, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .map_err(db)?
        .execute(params![
            entry.id.as_bytes().as_slice(),
            entry.event_id,
            entry.event_type,
            entry.entity_type,
            entry.entity_id.as_bytes().as_slice(),
            entry.user_id.as_uuid().as_bytes().as_slice(),
            entry.actor,
            entry.at.as_microsecond(),
            entry.data.to_string(),
            entry.seq,
        ])
        .map_err(db)?;
    Ok(n == 1)
}

const COLUMNS: &str =
    "id, event_id, event_type, entity_type, entity_id, user_id, actor, at, data, seq";

fn uuid_at(row: &Row<'_>, i: usize) -> Result<uuid::Uuid, StoreError> {
    let bytes: Vec<u8> = row.get(i).map_err(db)?;
    uuid::Uuid::from_slice(&bytes).map_err(|_| corrupt("id"))
}

fn entry(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let data: String = row.get(8).map_err(db)?;
    Ok(AuditEntry {
        id: uuid_at(row, 0)?,
        event_id: row.get(1).map_err(db)?,
        event_type: row.get(2).map_err(db)?,
        entity_type: row.get(3).map_err(db)?,
        entity_id: uuid_at(row, 4)?,
        user_id: UserId(uuid_at(row, 5)?),
        actor: row.get(6).map_err(db)?,
        at: Timestamp::from_microsecond(row.get(7).map_err(db)?).map_err(|_| corrupt("instant"))?,
        data: serde_json::from_str(&data).map_err(|_| corrupt("data"))?,
        seq: row.get(9).map_err(db)?,
    })
}

fn rows(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let mut rows = stmt.query(params).map_err(db)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(db)? {
        items.push(entry(row)?);
    }
    Ok(AuditPage::from_rows(items, limit))
}

fn fetch(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1)
}

/// The entries of `user`'s entity `entity_id`, oldest first, after cursor `after`.
pub fn entity_history(
    conn: &Connection,
    user: UserId,
    entity_type: &str,
    entity_id: uuid::Uuid,
    after: Option<i64>,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log
         WHERE user_id = ?1 AND entity_type = ?2 AND entity_id = ?3 AND seq > ?4
         ORDER BY seq LIMIT ?5"
    );
    let user = user.as_uuid();
    rows(
        conn,
        &sql,
        params![
            user.as_bytes().as_slice(),
            entity_type,
            entity_id.as_bytes().as_slice(),
            after.unwrap_or(i64::MIN),
            fetch(limit)
        ],
        limit,
    )
}

/// Every entry of `user`'s, oldest first, after cursor `after`.
pub fn activity(
    conn: &Connection,
    user: UserId,
    after: Option<i64>,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    );
    let user = user.as_uuid();
    rows(
        conn,
        &sql,
        params![user.as_bytes().as_slice(), after.unwrap_or(i64::MIN), fetch(limit)],
        limit,
    )
}
