//! Schema migrations for PostgreSQL: the embedded SQL files of `migrations/postgres/`,
//! applied in order and recorded in `schema_migrations`.
//!
//! Written by hand rather than with `sqlx::migrate!` because that macro needs the `macros`
//! feature, and because several replicas may start at once: all pending migrations run in
//! one transaction that first takes a transaction-scoped advisory lock, so concurrent
//! starters queue up, the first applies everything and the others find nothing left to do.
//! The lock is keyed by the current schema, so isolated test schemas migrate in parallel.
//! Migrations only move forward; there is no down path.

use sqlx::{PgPool, Row};

use super::{BACKEND, unavailable};
use docket_ports::StoreError;

/// One embedded migration; `version` is the number its file name starts with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) name: &'static str,
    pub(super) sql: &'static str,
}

/// Every migration, in the order they apply. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
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

/// First key of the advisory lock (`hashtext('docket_schema_migrations')` is not a constant
/// expression, so a fixed number stands in for it); the second key is the schema's hash.
const LOCK_CLASS: i32 = 0x646b_6d67; // "dkmg"

/// Applies the migrations `pool`'s schema has not seen yet and returns how many it applied.
pub(super) async fn run(pool: &PgPool) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(LOCK_CLASS)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    bigint PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;

    let rows = sqlx::query("SELECT version, name FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
    let mut applied = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i64 = row.try_get("version").map_err(unavailable)?;
        let name: String = row.try_get("name").map_err(unavailable)?;
        if let Some(known) = MIGRATIONS.iter().find(|m| m.version == version)
            && known.name != name
        {
            return Err(StoreError::unavailable(
                BACKEND,
                format!(
                    "migration {version} is recorded as '{name}' but this build calls it '{}'; \
                     the database was migrated by a different build",
                    known.name
                ),
            ));
        }
        applied.push(version);
    }
    if let Some(newest) = applied.iter().max()
        && MIGRATIONS.iter().all(|m| m.version < *newest)
    {
        // A newer build migrated this database; running older code against it is the
        // operator's call (rolling deploys do it briefly), so only say so.
        tracing::warn!(db.migration = newest, "database schema is newer than this build");
    }

    let mut count = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::unavailable(
                BACKEND,
                format!("migration {} '{}' failed: {e}", m.version, m.name),
            )
        })?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tracing::info!(db.migration = m.version, db.migration_name = m.name, "applied migration");
        count += 1;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(count)
}
