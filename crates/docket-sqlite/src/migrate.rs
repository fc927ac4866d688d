//! SQLite schema migrations: the embedded `migrations/sqlite/NNNN_name.sql` files, applied in
//! order, each in its own transaction together with its `schema_migrations` row.
//!
//! Applying is idempotent: a version already recorded is skipped, and the check happens
//! inside the `BEGIN IMMEDIATE` transaction, so two processes starting on one file at once do
//! not both apply a migration. There are no down-migrations; a released file is never edited.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::codec::DbResult as _;
use docket_ports::StoreError;

/// One migration: its version (the file's number), name and SQL.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order they apply. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/0001_init.sql") },
    Migration { version: 2, name: "outbox", sql: include_str!("../migrations/0002_outbox.sql") },
    Migration { version: 3, name: "state", sql: include_str!("../migrations/0003_state.sql") },
    Migration {
        version: 4,
        name: "consumers",
        sql: include_str!("../migrations/0004_consumers.sql"),
    },
    Migration { version: 5, name: "audit", sql: include_str!("../migrations/0005_audit.sql") },
    Migration {
        version: 6,
        name: "outbox_by_key",
        sql: include_str!("../migrations/0006_outbox_by_key.sql"),
    },
    Migration {
        version: 7,
        name: "reminders",
        sql: include_str!("../migrations/0007_reminders.sql"),
    },
    Migration {
        version: 8,
        name: "notifications",
        sql: include_str!("../migrations/0008_notifications.sql"),
    },
    Migration { version: 9, name: "series", sql: include_str!("../migrations/0009_series.sql") },
    Migration {
        version: 10,
        name: "webhooks",
        sql: include_str!("../migrations/0010_webhooks.sql"),
    },
    Migration {
        version: 11,
        name: "outbox_pruned",
        sql: include_str!("../migrations/0011_outbox_pruned.sql"),
    },
];

/// Applies the migrations `conn` has not seen yet; returns how many it applied.
pub fn migrate(conn: &mut Connection, now_micros: i64) -> Result<usize, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER NOT NULL PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT",
    )
    .db()?;
    let mut applied = 0;
    for m in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let seen: Option<String> = tx
            .query_row("SELECT name FROM schema_migrations WHERE version = ?1", [m.version], |r| {
                r.get(0)
            })
            .optional()
            .db()?;
        match seen {
            Some(name) if name == m.name => continue,
            Some(name) => {
                return Err(StoreError::unavailable(
                    super::codec::BACKEND,
                    format!(
                        "schema_migrations records version {} as '{name}' but this build calls it '{}'; \
                         the database belongs to another build of docket",
                        m.version, m.name
                    ),
                ));
            }
            None => {}
        }
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::unavailable(
                super::codec::BACKEND,
                format!("migration {:04}_{}: {e}", m.version, m.name),
            )
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_micros],
        )
        .db()?;
        tx.commit().db()?;
        applied += 1;
        tracing::info!(
            migration.version = m.version,
            migration.name = m.name,
            "applied sqlite migration"
        );
    }
    Ok(applied)
}
