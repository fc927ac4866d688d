//! The audit consumer (§2.5): turns each `com.todo.task.*` event of `task-events` into an
//! audit log entry ([`handle`] returns it as an effect), which the store commits together with
//! the consumer's `processed:` key (`docket_bus::runtime::StoreProcessor`).
//!
//! Idempotent twice over: the runtime skips an event whose `processed:` key exists, and the
//! log keeps one entry per event id. An event whose data does not parse as its type's
//! payload, or that lacks its log position, is poison: a `Permanent` error, dead-lettered.
//! Other event types on the topic are acknowledged and ignored. The actor is the task's
//! owner (only owners write tasks); `data` is the event's data (the after-image and, for
//! updates, `changes`; for a deletion the deleted task's id, owner and title).

use std::sync::Arc;

use docket_bus::runtime::{ConsumerConfig, Handler, HandlerError};
use docket_core::{Timestamp, UserId};
use docket_events::{CloudEvent, TaskDeletedV1, TaskEventDataV1, topics, types};
use docket_ports::AuditEntry;
use docket_ports::audit::ENTITY_TASK;
use docket_ports::consume::Effect;

/// The audit consumer's group name (also its metric label and `processed:` key prefix).
pub const CONSUMER: &str = "audit";

/// The audit consumer's configuration: group `audit` on `task-events`, position committed in
/// the handler's transaction (the embedded bus on the same database).
pub fn config() -> ConsumerConfig {
    crate::consumer_config(CONSUMER, topics::TASK_EVENTS)
}

fn poison(event: &CloudEvent, why: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("event {} ({}): {why}", event.id, event.ty))
}

/// The audit entry of `event`, `None` for an event that is not a task event.
pub fn entry(event: &CloudEvent) -> Result<Option<AuditEntry>, HandlerError> {
    let (entity_id, user_id) = match event.ty.as_str() {
        types::TASK_CREATED
        | types::TASK_UPDATED
        | types::TASK_COMPLETED
        | types::TASK_REOPENED => {
            let data: TaskEventDataV1 = event.data_as().map_err(|e| poison(event, e))?;
            (data.task.id, data.task.user_id)
        }
        types::TASK_DELETED => {
            let data: TaskDeletedV1 = event.data_as().map_err(|e| poison(event, e))?;
            (data.task_id, data.user_id)
        }
        _ => return Ok(None),
    };
    let seq = event.seq().ok_or_else(|| poison(event, "no log position (sequence)"))?;
    let data = event.data.clone().ok_or_else(|| poison(event, "no data"))?;
    let at = docket_core::time::truncate_micros(event.time.unwrap_or_else(Timestamp::now));
    Ok(Some(AuditEntry {
        id: uuid::Uuid::now_v7(),
        event_id: event.id.clone(),
        event_type: event.ty.clone(),
        entity_type: ENTITY_TASK.to_owned(),
        entity_id,
        user_id: UserId(user_id),
        actor: user_id.to_string(),
        at,
        data,
        seq,
    }))
}

/// The audit consumer's decision: the entry of a task event, nothing for other events.
pub fn handle(event: &CloudEvent) -> Result<Vec<Effect>, HandlerError> {
    Ok(entry(event)?.map(Effect::AppendAudit).into_iter().collect())
}

/// [`handle`] as the runtime's handler.
pub fn handler() -> Arc<Handler> {
    Arc::new(handle)
}

impl crate::App {
    /// The audit entries of the caller's task, oldest first, after cursor `after`. Entries
    /// outlive the task; a task the caller never had (or another user's) is `NotFound`.
    pub async fn task_history(
        &self,
        user: &docket_core::User,
        id: docket_core::TaskId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<docket_ports::AuditPage, crate::AppError> {
        let page = self.store.task_history(user.id, id, after, limit).await?;
        if page.items.is_empty() {
            // Nothing (more) to show: still a 404 unless the task is the caller's, living
            // (maybe with no entry yet) or deleted (its history is the caller's).
            let has_history = after.is_some()
                && !self.store.task_history(user.id, id, None, 1).await?.items.is_empty();
            if !has_history {
                self.store.get_task(user.id, id).await?;
            }
        }
        Ok(page)
    }

    /// Every audit entry of the caller's, oldest first, after cursor `after`.
    pub async fn activity(
        &self,
        user: &docket_core::User,
        after: Option<i64>,
        limit: usize,
    ) -> Result<docket_ports::AuditPage, crate::AppError> {
        Ok(self.store.activity(user.id, after, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use docket_bus::Message;
    use docket_bus::runtime::{Processed, Processor as _, StoreProcessor};
    use docket_core::{NewTask, TaskId, Title};
    use docket_events::{CloudEvent, topics};
    use docket_ports::Store;
    use docket_sqlite::SqliteStore;

    use super::*;

    /// A user with one task in `store`, and the task's created event with its position, read
    /// from the outbox `settle` after the write (how long the store takes to make it visible).
    async fn user_task_event(
        store: &dyn Store,
        settle: std::time::Duration,
    ) -> (UserId, TaskId, i64, CloudEvent) {
        let now = Timestamp::now();
        let user = crate::testing::user(store, "Audit", now).await;
        let task = NewTask::new(Title::parse("Audit me").expect("title"));
        let task = store.create_task(user.id, task, now).await.expect("create_task");
        tokio::time::sleep(settle).await;
        let events = store.read_outbox(0, topics::TASK_EVENTS, 10).await.expect("read_outbox");
        let (seq, event) = events.into_iter().next().expect("a created event");
        (user.id, task.id, seq, event)
    }

    async fn store_with_event() -> (tempfile::TempDir, Arc<SqliteStore>, UserId, TaskId, CloudEvent)
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("docket.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open");
        let (user, task, _, event) = user_task_event(&store, std::time::Duration::ZERO).await;
        (dir, Arc::new(store), user, task, event)
    }

    #[tokio::test]
    async fn duplicate_delivery_writes_one_entry() {
        let (_dir, store, user, task, event) = store_with_event().await;
        let seq = event.seq().expect("sequence");
        let processor = StoreProcessor::new(store.clone(), handler());
        let delivery = Message { event: event.clone(), seq, attempt: 1 };
        let first = processor.process(CONSUMER, topics::TASK_EVENTS, &delivery, true).await;
        assert_eq!(first, Ok(Processed::Handled));
        let again = processor.process(CONSUMER, topics::TASK_EVENTS, &delivery, true).await;
        assert_eq!(again, Ok(Processed::Duplicate));
        // Without the processed key (another group), the unique event id still keeps one.
        let other = processor.process("audit-replay", topics::TASK_EVENTS, &delivery, false).await;
        assert_eq!(other, Ok(Processed::Handled));
        let page = store.task_history(user, task, None, 10).await.expect("task_history");
        assert_eq!(page.items.len(), 1, "one entry per event id");
        let entry = &page.items[0];
        assert_eq!(entry.event_id, event.id);
        assert_eq!(entry.event_type, types::TASK_CREATED);
        assert_eq!(entry.entity_id, task.as_uuid());
        assert_eq!(entry.seq, seq);
        assert_eq!(Some(&entry.data), event.data.as_ref());
    }

    #[tokio::test]
    async fn unparsable_data_is_permanent() {
        let (_dir, store, user, task, mut event) = store_with_event().await;
        event.data = Some(serde_json::json!({ "task": "not a task" }));
        let seq = event.seq().expect("sequence");
        let processor = StoreProcessor::new(store.clone(), handler());
        let delivery = Message { event, seq, attempt: 1 };
        let result = processor.process(CONSUMER, topics::TASK_EVENTS, &delivery, true).await;
        assert!(matches!(result, Err(HandlerError::Permanent(_))), "got {result:?}");
        let page = store.task_history(user, task, None, 10).await.expect("task_history");
        assert!(page.items.is_empty(), "nothing written for poison input");
    }

    #[tokio::test]
    async fn other_event_types_are_ignored() {
        let (_dir, _store, _user, _task, mut event) = store_with_event().await;
        event.ty = types::REMINDER_TRIGGERED.to_owned();
        assert_eq!(entry(&event), Ok(None));
    }

    /// The PostgreSQL handler, when `DOCKET_TEST_POSTGRES_URL` is set: a duplicate delivery
    /// writes one entry.
    #[tokio::test]
    async fn postgres_duplicate_delivery_writes_one_entry() {
        use docket_postgres::PostgresStore;
        let Ok(url) = std::env::var("DOCKET_TEST_POSTGRES_URL") else {
            eprintln!("skipped: DOCKET_TEST_POSTGRES_URL is not set");
            return;
        };
        let store = PostgresStore::connect_isolated(&url).await.expect("connect");
        let (user, task, seq, event) = user_task_event(&store, docket_postgres::SETTLE_WAIT).await;
        let processor = StoreProcessor::new(Arc::new(store.clone()), handler());
        let delivery = Message { event, seq, attempt: 1 };
        for consumer in [CONSUMER, CONSUMER, "audit-replay"] {
            processor
                .process(consumer, topics::TASK_EVENTS, &delivery, false)
                .await
                .expect("process");
        }
        let page = store.task_history(user, task, None, 10).await.expect("task_history");
        assert_eq!(page.items.len(), 1, "one entry per event id");
        assert_eq!(page.items[0].event_id, delivery.event.id);
        store.drop_schema().await.expect("drop schema");
    }
}
