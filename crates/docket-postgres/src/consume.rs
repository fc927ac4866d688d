//! [`ConsumerStore`] for [`PostgresStore`]: a commit is one sqlx transaction (dropped, so
//! rolled back, on any error), so the effects, the `processed:` key and the position commit
//! or roll back together. It persists with the per-table functions of the rest of the crate
//! and decides nothing itself (see `consume/mod.rs`).
//!
//! Not a guard against two subscribers handling one event at the same moment (both may read
//! no key): the bus hands an event to one subscriber of a group at a time.

use async_trait::async_trait;
use docket_core::Timestamp;
use sqlx::postgres::PgConnection;

use crate::PostgresStore;
use docket_ports::StoreError;
use docket_ports::consume::{
    Consumed, ConsumerStore, Effect, Failures, PROCESSED_TTL, Position, Recipients, Target, key,
};

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("postgres", e)
}

#[async_trait]
impl ConsumerStore for PostgresStore {
    async fn consumed(
        &self,
        consumer: &str,
        event_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = key(consumer, event_id)?;
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        Ok(crate::state::get(&mut conn, &key, now).await?.is_some())
    }

    async fn commit_consumed(
        &self,
        consumer: &str,
        event_id: &str,
        position: Option<Position>,
        effects: Vec<Effect>,
        now: Timestamp,
    ) -> Result<Consumed, StoreError> {
        let key = key(consumer, event_id)?;
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        if crate::state::get(&mut tx, &key, now).await?.is_some() {
            return Ok(Consumed::Duplicate);
        }
        apply(&mut tx, effects, now).await?;
        crate::state::set(&mut tx, &key, b"1", None, Some(PROCESSED_TTL), now).await?;
        if let Some(p) = position {
            crate::bus::save_position(&mut tx, consumer, &p.topic, p.seq, now).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Consumed::Handled)
    }
}

/// Applies `effects` in order, then the reminder failures they add up to.
async fn apply(
    conn: &mut PgConnection,
    effects: Vec<Effect>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut failures = Failures::default();
    for effect in effects {
        match effect {
            Effect::AppendAudit(entry) => {
                crate::audit::append(conn, &entry).await?;
            }
            Effect::AddNotification { notification, source_event, source } => {
                crate::notifications::append(conn, &notification, &source_event, &source).await?;
            }
            Effect::Deliver { to, delivery, if_none } => {
                let user = delivery.user_id;
                let targets = match &to {
                    Recipients::OwnerEmail => {
                        Target::email(crate::webhooks::user_email(conn, user).await?)
                    }
                    Recipients::Webhooks { event_type } => Target::webhooks(
                        crate::webhooks::subscribers(conn, user, event_type).await?,
                    ),
                };
                let new = failures.deliver(&to, &delivery, if_none, targets);
                crate::webhooks::enqueue(conn, &new).await?;
            }
            Effect::RecordReminderFailure(f) => failures.note(f),
            Effect::SpawnNextInstance(n) => {
                crate::series::spawn_after_completion(conn, &n).await?;
            }
            Effect::Publish { topic, event } => {
                // The outbox position must come after this transaction holds its id.
                crate::bus::hold_xid(conn).await?;
                crate::bus::append_event(conn, &topic, &event, now).await?;
            }
        }
    }
    for f in failures.into_vec() {
        crate::reminders::record_failure(conn, f.reminder, &f.error, f.give_up).await?;
    }
    Ok(())
}
