//! [`ConsumerStore`] for [`SqliteStore`]: a commit is one closure of the writer's group
//! commit (its own savepoint), so the effects, the `processed:` key and the position commit
//! or roll back together. It persists with the per-table functions of the rest of the crate
//! and decides nothing itself (see `consume/mod.rs`).

use async_trait::async_trait;
use docket_core::Timestamp;
use rusqlite::Transaction;

use crate::SqliteStore;
use docket_ports::StoreError;
use docket_ports::consume::{
    Consumed, ConsumerStore, Effect, Failures, PROCESSED_TTL, Position, Recipients, Target, key,
};

#[async_trait]
impl ConsumerStore for SqliteStore {
    async fn consumed(
        &self,
        consumer: &str,
        event_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = key(consumer, event_id)?;
        self.read(move |conn| Ok(crate::state::get(conn, &key, now)?.is_some())).await
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
        let consumer = consumer.to_owned();
        self.write(move |tx| {
            if crate::state::get(tx, &key, now)?.is_some() {
                return Ok(Consumed::Duplicate);
            }
            apply(tx, effects, now)?;
            crate::state::set(tx, &key, b"1", None, Some(PROCESSED_TTL), now)?;
            if let Some(p) = position {
                crate::bus::save_position(tx, &consumer, &p.topic, p.seq, now)?;
            }
            Ok(Consumed::Handled)
        })
        .await
    }
}

/// Applies `effects` in order, then the reminder failures they add up to.
fn apply(tx: &Transaction<'_>, effects: Vec<Effect>, now: Timestamp) -> Result<(), StoreError> {
    let mut failures = Failures::default();
    for effect in effects {
        match effect {
            Effect::AppendAudit(entry) => {
                crate::audit::append(tx, &entry)?;
            }
            Effect::AddNotification { notification, source_event, source } => {
                crate::notifications::append(tx, &notification, &source_event, &source)?;
            }
            Effect::Deliver { to, delivery, if_none } => {
                let user = delivery.user_id;
                let targets = match &to {
                    Recipients::OwnerEmail => Target::email(crate::webhooks::user_email(tx, user)?),
                    Recipients::Webhooks { event_type } => {
                        Target::webhooks(crate::webhooks::subscribers(tx, user, event_type)?)
                    }
                };
                crate::webhooks::enqueue(tx, &failures.deliver(&to, &delivery, if_none, targets))?;
            }
            Effect::RecordReminderFailure(f) => failures.note(f),
            Effect::SpawnNextInstance(n) => {
                crate::series::spawn_after_completion(tx, &n)?;
            }
            Effect::Publish { topic, event } => crate::bus::append_event(tx, &topic, &event, now)?,
        }
    }
    for f in failures.into_vec() {
        crate::reminders::record_failure(tx, f.reminder, &f.error, f.give_up)?;
    }
    Ok(())
}
