//! An in-memory [`Store`] for the tests of this crate and of the HTTP edge (feature
//! `test-support`). It follows the contract closely enough for use-case and router tests
//! (scoping, versions, no-op writes, category resolution, filters, keyset paging, outbox
//! events, reminders without the task write rules, series without instances made after the first) but is no adapter: no durability, linear
//! scans, and a constant search rank. Never use it to serve.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use docket_core::{
    Category, CategoryId, CategoryPatch, CategoryRef, Color, Cursor, CursorKey, NewCategory,
    NewReminder, NewTask, NewUser, Notification, NotificationId, Order, Page, Reminder, ReminderId,
    ReminderStatus, SortField, StatusFilter, Task, TaskId, TaskPatch, TaskQuery, Timestamp,
    TokenId, User, UserId,
};
use docket_events::{CloudEvent, OutboxEvent, TaskChange, sequence_string, task_events, topics};
use docket_store::{AuditEntry, AuditPage, Store, StoreError, TagCount, TokenInfo, UserRecord};

#[derive(Default)]
struct State {
    audit: Vec<AuditEntry>,
    users: Vec<(User, Option<String>)>,
    tokens: Vec<(TokenInfo, String)>,
    tasks: Vec<Task>,
    categories: Vec<Category>,
    reminders: Vec<Reminder>,
    series: Vec<docket_core::Series>,
    /// `(notification, source event id)`.
    notifications: Vec<(Notification, String)>,
    /// `(webhook, secret)`.
    webhooks: Vec<(docket_core::Webhook, String)>,
    deliveries: Vec<docket_core::Delivery>,
    /// `(position, topic, event)`; positions start at 1.
    outbox: Vec<(i64, &'static str, CloudEvent)>,
    /// The last position given out (pruning never makes one reusable).
    last_seq: i64,
    /// Each `(group, topic)`'s committed position and when it was last saved (the
    /// `consumer_offsets.updated_at` of the real stores: renewed by every save, also one
    /// that does not move the position).
    offsets: HashMap<(String, String), (i64, Timestamp)>,
    /// Each outbox topic's highest pruned position.
    pruned: HashMap<&'static str, i64>,
}

impl State {
    fn append(&mut self, change: TaskChange<'_>, now: Timestamp) {
        for OutboxEvent { topic, event } in task_events(change, now, "/docket/api") {
            self.push_outbox(topic, event);
        }
    }

    fn push_outbox(&mut self, topic: &'static str, event: CloudEvent) {
        self.last_seq += 1;
        self.outbox.push((self.last_seq, topic, event));
    }

    /// The highest pruned position of `topic`'s log.
    fn tail(&self, topic: &str) -> i64 {
        let log = topics::log_topics(topic);
        self.pruned.iter().filter(|(t, _)| log.contains(t)).map(|(_, p)| *p).max().unwrap_or(0)
    }
}

/// The in-memory store. `set_down(true)` makes every call fail as `Unavailable`;
/// `set_panicking(true)` makes `ping` panic.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    down: AtomicBool,
    panicking: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("the in-memory store was switched off")]
struct Down;

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes `ping` panic, to test that a panic never reaches a client as such.
    pub fn set_panicking(&self, on: bool) {
        self.panicking.store(on, Ordering::SeqCst);
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("memory", Down));
        }
        Ok(self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

fn resolve_category(
    st: &mut State,
    user: UserId,
    cref: &CategoryRef,
    now: Timestamp,
) -> Result<Category, StoreError> {
    match cref {
        CategoryRef::Id(id) => {
            st.categories.iter().find(|c| c.id == *id && c.user_id == user).cloned().ok_or(
                StoreError::InvalidReference {
                    field: "category_id",
                    message: format!(
                        "category '{id}' does not exist (create it first or give its name)"
                    ),
                },
            )
        }
        CategoryRef::Name(name) => {
            if let Some(c) =
                st.categories.iter().find(|c| c.user_id == user && c.name.key() == name.key())
            {
                return Ok(c.clone());
            }
            let c = Category {
                id: CategoryId::new(),
                user_id: user,
                name: name.clone(),
                color: Color::default(),
                created_at: now,
            };
            st.categories.push(c.clone());
            Ok(c)
        }
    }
}

fn sort_key(task: &Task, sort: SortField) -> CursorKey {
    match sort {
        SortField::DueDate => {
            CursorKey::Int(task.due_date.map_or(i64::MAX, |d| d.as_microsecond()))
        }
        SortField::Priority => CursorKey::Int(task.priority.rank()),
        SortField::Title => CursorKey::Text(task.title.sort_key()),
        SortField::CreatedAt => CursorKey::Int(task.created_at.as_microsecond()),
        SortField::UpdatedAt => CursorKey::Int(task.updated_at.as_microsecond()),
        SortField::Rank => CursorKey::Float(0.0),
    }
}

fn cmp_keys(a: &CursorKey, b: &CursorKey) -> std::cmp::Ordering {
    match (a, b) {
        (CursorKey::Int(x), CursorKey::Int(y)) => x.cmp(y),
        (CursorKey::Text(x), CursorKey::Text(y)) => x.cmp(y),
        (CursorKey::Float(x), CursorKey::Float(y)) => x.total_cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

fn matches(task: &Task, q: &TaskQuery, now: Timestamp, categories: &[Category]) -> bool {
    let status_ok = match q.status {
        StatusFilter::All => true,
        StatusFilter::Pending => task.status == docket_core::Status::Pending,
        StatusFilter::Completed => task.status == docket_core::Status::Completed,
    };
    let category_ok = match &q.category {
        None => true,
        Some(CategoryRef::Id(id)) => task.category.as_ref().is_some_and(|c| c.id == *id),
        Some(CategoryRef::Name(n)) => task
            .category
            .as_ref()
            .is_some_and(|c| categories.iter().any(|k| k.id == c.id && k.name.key() == n.key())),
    };
    let text_ok = q.text.as_ref().is_none_or(|t| {
        let hay = format!(
            "{} {} {}",
            task.title.as_str().to_lowercase(),
            task.description.as_ref().map(|d| d.as_str().to_lowercase()).unwrap_or_default(),
            task.tags.joined()
        );
        let words: Vec<&str> = hay.split(|c: char| !c.is_alphanumeric()).collect();
        t.words().iter().all(|w| words.iter().any(|h| h.starts_with(w.as_str())))
    });
    status_ok
        && category_ok
        && text_ok
        && (q.priorities.is_empty() || q.priorities.contains(&task.priority))
        && q.tags.iter().all(|t| task.tags.iter().any(|x| x == t))
        && q.due_before.is_none_or(|b| task.due_date.is_some_and(|d| d < b))
        && q.due_after.is_none_or(|a| task.due_date.is_some_and(|d| d >= a))
        && (!q.overdue || task.is_overdue(now))
}

/// Detaches the instances of series `id` but `except`, each with its updated event.
fn detach_instances(
    st: &mut State,
    id: docket_core::SeriesId,
    except: Option<TaskId>,
    now: Timestamp,
) {
    let linked: Vec<usize> = (0..st.tasks.len())
        .filter(|&i| {
            let t = &st.tasks[i];
            t.series.as_ref().is_some_and(|l| l.series_id == id) && Some(t.id) != except
        })
        .collect();
    for i in linked {
        let before = st.tasks[i].clone();
        let after =
            Task { series: None, version: before.version + 1, updated_at: now, ..before.clone() };
        st.tasks[i] = after.clone();
        st.append(TaskChange::Updated { before: &before, after: &after }, now);
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        assert!(!self.panicking.load(Ordering::SeqCst), "the in-memory store was told to panic");
        self.state().map(|_| ())
    }

    async fn create_user(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let mut st = self.state()?;
        if new.email.is_some() && st.users.iter().any(|(u, _)| u.email == new.email) {
            return Err(StoreError::Conflict("email is taken".to_owned()));
        }
        let user = User {
            id: UserId::new(),
            email: new.email,
            name: new.name,
            timezone: new.timezone,
            external_subject: new.external_subject,
            created_at: now,
        };
        st.users.push((user.clone(), new.password_hash));
        Ok(user)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.state()?.users.iter().find(|(u, _)| u.id == id).map(|(u, _)| u.clone()))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .state()?
            .users
            .iter()
            .find(|(u, _)| u.email.as_ref().is_some_and(|e| e.as_str() == email))
            .map(|(u, h)| UserRecord { user: u.clone(), password_hash: h.clone() }))
    }

    async fn user_for_subject(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        {
            let st = self.state()?;
            if let Some((u, _)) =
                st.users.iter().find(|(u, _)| u.external_subject == new.external_subject)
            {
                return Ok(u.clone());
            }
        }
        self.create_user(new, now).await
    }

    async fn create_token(&self, info: TokenInfo, token_hash: String) -> Result<(), StoreError> {
        self.state()?.tokens.push((info, token_hash));
        Ok(())
    }

    async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError> {
        Ok(self
            .state()?
            .tokens
            .iter()
            .filter(|(t, _)| t.user_id == user)
            .map(|(t, _)| t.clone())
            .collect())
    }

    async fn delete_token(&self, user: UserId, id: TokenId) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let before = st.tokens.len();
        st.tokens.retain(|(t, _)| !(t.id == id && t.user_id == user));
        if st.tokens.len() == before { Err(StoreError::NotFound("token")) } else { Ok(()) }
    }

    async fn user_by_token_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let st = self.state()?;
        let Some((info, _)) =
            st.tokens.iter().find(|(t, h)| h == token_hash && t.expires_at.is_none_or(|e| e > now))
        else {
            return Ok(None);
        };
        Ok(st.users.iter().find(|(u, _)| u.id == info.user_id).map(|(u, _)| u.clone()))
    }

    async fn create_recurring_task(
        &self,
        user: UserId,
        mut new: NewTask,
        series: docket_core::NewSeries,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let mut st = self.state()?;
        let category = match &new.category {
            Some(c) => Some(resolve_category(&mut st, user, c, now)?),
            None => None,
        };
        new.due_date = Some(series.first.at);
        let first = series.first;
        let s = series.into_series(
            docket_core::SeriesId::new(),
            user,
            new.title.clone(),
            new.description.clone(),
            new.priority,
            category.clone(),
            new.tags.clone(),
            now,
        );
        let mut task = new.into_task(TaskId::new(), user, category, now);
        task.series = Some(docket_core::SeriesLink {
            series_id: s.id,
            instance_date: first.local,
            recurrence: s.recurrence.to_spec(),
        });
        st.series.push(s);
        st.tasks.push(task.clone());
        st.append(TaskChange::Created(&task), now);
        Ok(task)
    }

    async fn list_series(&self, user: UserId) -> Result<Vec<docket_core::Series>, StoreError> {
        Ok(self.state()?.series.iter().filter(|s| s.user_id == user).cloned().collect())
    }

    async fn get_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
    ) -> Result<docket_core::Series, StoreError> {
        let st = self.state()?;
        st.series
            .iter()
            .find(|s| s.id == id && s.user_id == user)
            .cloned()
            .ok_or(StoreError::NotFound("series"))
    }

    async fn set_series_active(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        active: bool,
        now: Timestamp,
    ) -> Result<docket_core::Series, StoreError> {
        let mut st = self.state()?;
        let s = st
            .series
            .iter_mut()
            .find(|s| s.id == id && s.user_id == user)
            .ok_or(StoreError::NotFound("series"))?;
        if s.active != active {
            s.active = active;
            s.updated_at = now;
        }
        Ok(s.clone())
    }

    async fn delete_series(
        &self,
        user: UserId,
        id: docket_core::SeriesId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let before = st.series.len();
        st.series.retain(|s| !(s.id == id && s.user_id == user));
        if st.series.len() == before {
            return Err(StoreError::NotFound("series"));
        }
        detach_instances(&mut st, id, None, now);
        Ok(())
    }

    async fn spawn_due_instances(
        &self,
        _now: Timestamp,
        _limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let _st = self.state()?;
        Ok(Vec::new())
    }

    async fn next_series_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let _st = self.state()?;
        Ok(None)
    }

    async fn upcoming_series(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(docket_core::SeriesId, Timestamp)>, StoreError> {
        let st = self.state()?;
        let mut due: Vec<(docket_core::SeriesId, Timestamp)> = st
            .series
            .iter()
            .filter(|s| s.active && s.recurrence.mode() == docket_core::Mode::Fixed)
            .filter_map(|s| s.next_occurrence.filter(|at| *at <= until).map(|at| (s.id, at)))
            .collect();
        due.sort_by_key(|&(id, at)| (at, id));
        due.truncate(limit);
        Ok(due)
    }

    async fn create_webhook(
        &self,
        user: UserId,
        new: docket_core::NewWebhook,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let mut st = self.state()?;
        let hook = docket_core::Webhook {
            id: new.id,
            user_id: user,
            url: new.url,
            events: new.events,
            active: new.active,
            created_at: now,
            updated_at: now,
        };
        st.webhooks.push((hook.clone(), new.secret));
        Ok(hook)
    }

    async fn list_webhooks(&self, user: UserId) -> Result<Vec<docket_core::Webhook>, StoreError> {
        let st = self.state()?;
        Ok(st.webhooks.iter().filter(|(w, _)| w.user_id == user).map(|(w, _)| w.clone()).collect())
    }

    async fn get_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<docket_core::Webhook, StoreError> {
        let st = self.state()?;
        st.webhooks
            .iter()
            .find(|(w, _)| w.id == id && w.user_id == user)
            .map(|(w, _)| w.clone())
            .ok_or(StoreError::NotFound("webhook"))
    }

    async fn update_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
        patch: docket_core::WebhookPatch,
        now: Timestamp,
    ) -> Result<docket_core::Webhook, StoreError> {
        let mut st = self.state()?;
        let (hook, _) = st
            .webhooks
            .iter_mut()
            .find(|(w, _)| w.id == id && w.user_id == user)
            .ok_or(StoreError::NotFound("webhook"))?;
        patch.apply(hook, now);
        Ok(hook.clone())
    }

    async fn delete_webhook(
        &self,
        user: UserId,
        id: docket_core::WebhookId,
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let before = st.webhooks.len();
        st.webhooks.retain(|(w, _)| !(w.id == id && w.user_id == user));
        if st.webhooks.len() == before {
            return Err(StoreError::NotFound("webhook"));
        }
        st.deliveries.retain(|d| d.webhook_id != Some(id));
        Ok(())
    }

    async fn webhook_secrets(
        &self,
        after: Option<docket_core::WebhookId>,
        limit: usize,
    ) -> Result<Vec<(docket_core::WebhookId, String)>, StoreError> {
        let st = self.state()?;
        let mut out: Vec<_> = st
            .webhooks
            .iter()
            .filter(|(w, _)| after.is_none_or(|a| w.id > a))
            .map(|(w, s)| (w.id, s.clone()))
            .collect();
        out.sort_by_key(|&(id, _)| id);
        out.truncate(limit);
        Ok(out)
    }

    async fn replace_webhook_secret(
        &self,
        id: docket_core::WebhookId,
        old: String,
        new: String,
    ) -> Result<bool, StoreError> {
        let mut st = self.state()?;
        match st.webhooks.iter_mut().find(|(w, s)| w.id == id && *s == old) {
            Some((_, secret)) => {
                *secret = new;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn list_deliveries(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        limit: usize,
    ) -> Result<Vec<docket_core::Delivery>, StoreError> {
        let st = self.state()?;
        if !st.webhooks.iter().any(|(w, _)| w.id == webhook && w.user_id == user) {
            return Err(StoreError::NotFound("webhook"));
        }
        let mut out: Vec<_> =
            st.deliveries.iter().filter(|d| d.webhook_id == Some(webhook)).cloned().collect();
        out.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
        out.truncate(limit.min(docket_store::webhooks::MAX_LIST));
        Ok(out)
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: Vec<docket_core::NewDelivery>,
    ) -> Result<u64, StoreError> {
        let mut st = self.state()?;
        let mut added = 0;
        for d in deliveries {
            if st
                .deliveries
                .iter()
                .any(|e| e.event_id == d.event_id && e.channel == d.channel && e.target == d.target)
            {
                continue;
            }
            st.deliveries.push(docket_core::Delivery {
                id: d.id,
                user_id: d.user_id,
                channel: d.channel,
                webhook_id: d.webhook_id,
                reminder_id: d.reminder_id,
                event_id: d.event_id,
                event_type: d.event_type,
                target: d.target,
                payload: d.payload,
                status: docket_core::DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: Some(d.created_at),
                last_error: None,
                created_at: d.created_at,
                delivered_at: None,
            });
            added += 1;
        }
        Ok(added)
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<docket_store::webhooks::ClaimedDelivery>, StoreError> {
        let mut st = self.state()?;
        let until = now
            .checked_add(jiff::SignedDuration::try_from(lease).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        let mut due: Vec<usize> = (0..st.deliveries.len())
            .filter(|&i| {
                let d = &st.deliveries[i];
                d.status == docket_core::DeliveryStatus::Pending
                    && d.next_attempt_at.is_some_and(|t| t <= now)
            })
            .collect();
        due.sort_by_key(|&i| (st.deliveries[i].next_attempt_at, st.deliveries[i].id));
        let mut out = Vec::new();
        for i in due.into_iter().take(limit) {
            let d = &mut st.deliveries[i];
            d.attempts += 1;
            d.next_attempt_at = Some(until);
            let delivery = d.clone();
            let secret = delivery
                .webhook_id
                .and_then(|w| st.webhooks.iter().find(|(h, _)| h.id == w).map(|(_, s)| s.clone()));
            out.push(docket_store::webhooks::ClaimedDelivery { delivery, secret });
        }
        Ok(out)
    }

    async fn settle_delivery(
        &self,
        id: docket_core::DeliveryId,
        outcome: docket_core::DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        use docket_core::{DeliveryOutcome, DeliveryStatus};
        let mut st = self.state()?;
        let Some(d) =
            st.deliveries.iter_mut().find(|d| d.id == id && d.status == DeliveryStatus::Pending)
        else {
            return Ok(false);
        };
        let reminder = d.reminder_id;
        let failed = match &outcome {
            DeliveryOutcome::Delivered => {
                d.status = DeliveryStatus::Delivered;
                d.delivered_at = Some(now);
                d.next_attempt_at = None;
                None
            }
            DeliveryOutcome::Retry { error, at } => {
                d.last_error = Some(error.clone());
                d.next_attempt_at = Some(*at);
                Some((error.clone(), false))
            }
            DeliveryOutcome::GiveUp { error } => {
                d.status = DeliveryStatus::Failed;
                d.last_error = Some(error.clone());
                d.next_attempt_at = None;
                Some((error.clone(), true))
            }
        };
        let others_failed = st.deliveries.iter().any(|d| {
            d.reminder_id.is_some()
                && d.reminder_id == reminder
                && d.status == DeliveryStatus::Failed
        });
        if let Some(r) = reminder.and_then(|r| st.reminders.iter_mut().find(|x| x.id == r)) {
            match failed {
                Some((error, give_up)) => {
                    r.attempts += 1;
                    r.last_error = Some(error);
                    if give_up && r.status == ReminderStatus::Fired {
                        r.status = ReminderStatus::Failed;
                    }
                }
                None if r.status == ReminderStatus::Failed && !others_failed => {
                    r.status = ReminderStatus::Fired;
                }
                None => {}
            }
        }
        Ok(true)
    }

    async fn retry_delivery(
        &self,
        user: UserId,
        webhook: docket_core::WebhookId,
        id: docket_core::DeliveryId,
        now: Timestamp,
    ) -> Result<docket_core::Delivery, StoreError> {
        let mut st = self.state()?;
        let d = st
            .deliveries
            .iter_mut()
            .find(|d| d.id == id && d.user_id == user && d.webhook_id == Some(webhook))
            .ok_or(StoreError::NotFound("delivery"))?;
        if d.status == docket_core::DeliveryStatus::Failed {
            d.status = docket_core::DeliveryStatus::Pending;
            d.attempts = 0;
            d.next_attempt_at = Some(now);
        }
        Ok(d.clone())
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let st = self.state()?;
        Ok(st
            .deliveries
            .iter()
            .filter(|d| d.status == docket_core::DeliveryStatus::Pending)
            .filter_map(|d| d.next_attempt_at)
            .min())
    }

    async fn create_task(
        &self,
        user: UserId,
        new: NewTask,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let mut st = self.state()?;
        let category = match &new.category {
            Some(c) => Some(resolve_category(&mut st, user, c, now)?),
            None => None,
        };
        let task = new.into_task(TaskId::new(), user, category, now);
        st.tasks.push(task.clone());
        st.append(TaskChange::Created(&task), now);
        Ok(task)
    }

    async fn get_task(&self, user: UserId, id: TaskId) -> Result<Task, StoreError> {
        self.state()?
            .tasks
            .iter()
            .find(|t| t.id == id && t.user_id == user)
            .cloned()
            .ok_or(StoreError::NotFound("task"))
    }

    async fn update_task(
        &self,
        user: UserId,
        id: TaskId,
        patch: TaskPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let mut st = self.state()?;
        let Some(pos) = st.tasks.iter().position(|t| t.id == id && t.user_id == user) else {
            return Err(StoreError::NotFound("task"));
        };
        let current = st.tasks[pos].version;
        if expected_version.is_some_and(|v| v != current) {
            return Err(StoreError::VersionMismatch { current });
        }
        let category = match &patch.category {
            Some(Some(c)) => Some(resolve_category(&mut st, user, c, now)?),
            _ => None,
        };
        let before = st.tasks[pos].clone();
        let mut task = before.clone();
        let mut patch = patch;
        let recurrence = patch.recurrence.take();
        patch.apply(&mut task, category, now);
        match recurrence {
            None => {}
            // Ending the task's series, as the real stores do; making or changing one is
            // theirs alone (this store makes no series from an update).
            Some(None) => {
                if let Some(link) = task.series.take() {
                    st.series.retain(|s| s.id != link.series_id);
                    detach_instances(&mut st, link.series_id, Some(id), now);
                    if task.version == before.version {
                        task.version += 1;
                        task.updated_at = now;
                    }
                }
            }
            Some(Some(_)) => {
                return Err(StoreError::unavailable(
                    "memory",
                    "the in-memory store does not make or change series from an update",
                ));
            }
        }
        st.tasks[pos] = task.clone();
        if let Some(change) = TaskChange::update(&before, &task) {
            st.append(change, now);
        }
        Ok(task)
    }

    async fn delete_task(
        &self,
        user: UserId,
        id: TaskId,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let mut st = self.state()?;
        let Some(pos) = st.tasks.iter().position(|t| t.id == id && t.user_id == user) else {
            return Err(StoreError::NotFound("task"));
        };
        let current = st.tasks[pos].version;
        if expected_version.is_some_and(|v| v != current) {
            return Err(StoreError::VersionMismatch { current });
        }
        let task = st.tasks.remove(pos);
        st.append(TaskChange::Deleted(&task), now);
        Ok(task)
    }

    async fn list_tasks(
        &self,
        user: UserId,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        let st = self.state()?;
        let mut items: Vec<(CursorKey, Task)> = st
            .tasks
            .iter()
            .filter(|t| t.user_id == user && matches(t, query, now, &st.categories))
            .map(|t| (sort_key(t, query.sort), t.clone()))
            .collect();
        items.sort_by(|(ka, a), (kb, b)| {
            let o = cmp_keys(ka, kb).then(a.id.cmp(&b.id));
            if query.order == Order::Desc { o.reverse() } else { o }
        });
        if let Some(c) = &query.cursor {
            items.retain(|(k, t)| {
                let o = cmp_keys(k, &c.key).then(t.id.as_uuid().cmp(&c.id));
                let o = if query.order == Order::Desc { o.reverse() } else { o };
                o == std::cmp::Ordering::Greater
            });
        }
        let limit = query.limit.get() as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more {
            items.last().map(|(k, t)| Cursor {
                sort: query.sort,
                order: query.order,
                key: k.clone(),
                id: t.id.as_uuid(),
            })
        } else {
            None
        };
        Ok(Page { items: items.into_iter().map(|(_, t)| t).collect(), next_cursor })
    }

    async fn list_tags(&self, user: UserId) -> Result<Vec<TagCount>, StoreError> {
        let st = self.state()?;
        let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
        for t in st.tasks.iter().filter(|t| t.user_id == user) {
            for tag in t.tags.iter() {
                *counts.entry(tag.as_str().to_owned()).or_default() += 1;
            }
        }
        let mut out: Vec<TagCount> =
            counts.into_iter().map(|(name, count)| TagCount { name, count }).collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    async fn create_category(
        &self,
        user: UserId,
        new: NewCategory,
        now: Timestamp,
    ) -> Result<Category, StoreError> {
        let mut st = self.state()?;
        if st.categories.iter().any(|c| c.user_id == user && c.name.key() == new.name.key()) {
            return Err(StoreError::Conflict("category name is taken".to_owned()));
        }
        let c = Category {
            id: CategoryId::new(),
            user_id: user,
            name: new.name,
            color: new.color,
            created_at: now,
        };
        st.categories.push(c.clone());
        Ok(c)
    }

    async fn list_categories(&self, user: UserId) -> Result<Vec<Category>, StoreError> {
        let mut out: Vec<Category> =
            self.state()?.categories.iter().filter(|c| c.user_id == user).cloned().collect();
        out.sort_by_key(|c| c.name.key());
        Ok(out)
    }

    async fn get_category(&self, user: UserId, id: CategoryId) -> Result<Category, StoreError> {
        self.state()?
            .categories
            .iter()
            .find(|c| c.id == id && c.user_id == user)
            .cloned()
            .ok_or(StoreError::NotFound("category"))
    }

    async fn update_category(
        &self,
        user: UserId,
        id: CategoryId,
        patch: CategoryPatch,
    ) -> Result<Category, StoreError> {
        let mut st = self.state()?;
        if let Some(name) = &patch.name
            && st
                .categories
                .iter()
                .any(|c| c.user_id == user && c.id != id && c.name.key() == name.key())
        {
            return Err(StoreError::Conflict("category name is taken".to_owned()));
        }
        let Some(c) = st.categories.iter_mut().find(|c| c.id == id && c.user_id == user) else {
            return Err(StoreError::NotFound("category"));
        };
        if let Some(n) = patch.name {
            c.name = n;
        }
        if let Some(col) = patch.color {
            c.color = col;
        }
        let c = c.clone();
        for t in st.tasks.iter_mut().filter(|t| t.category.as_ref().is_some_and(|x| x.id == id)) {
            t.category = Some(c.clone());
        }
        Ok(c)
    }

    async fn delete_category(
        &self,
        user: UserId,
        id: CategoryId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let before = st.categories.len();
        st.categories.retain(|c| !(c.id == id && c.user_id == user));
        if st.categories.len() == before {
            return Err(StoreError::NotFound("category"));
        }
        let cleared: Vec<Task> = st
            .tasks
            .iter()
            .filter(|t| t.category.as_ref().is_some_and(|x| x.id == id))
            .cloned()
            .collect();
        for before in &cleared {
            let after = Task { category: None, ..before.clone() };
            if let Some(t) = st.tasks.iter_mut().find(|t| t.id == before.id) {
                t.category = None;
            }
            st.append(TaskChange::Updated { before, after: &after }, now);
        }
        Ok(())
    }

    async fn read_outbox(
        &self,
        after_seq: i64,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        let st = self.state()?;
        let log = topics::log_topics(topic);
        Ok(st
            .outbox
            .iter()
            .filter(|(seq, t, _)| *seq > after_seq && log.contains(t))
            .take(limit)
            .map(|(seq, _, e)| {
                let mut e = e.clone();
                e.sequence = Some(sequence_string(*seq));
                (*seq, e)
            })
            .collect())
    }

    async fn outbox_head(&self, topic: &str) -> Result<i64, StoreError> {
        let st = self.state()?;
        let log = topics::log_topics(topic);
        let stored =
            st.outbox.iter().rev().find(|(_, t, _)| log.contains(t)).map_or(0, |(seq, _, _)| *seq);
        Ok(stored.max(st.tail(topic)))
    }

    async fn outbox_tail(&self, topic: &str) -> Result<i64, StoreError> {
        Ok(self.state()?.tail(topic))
    }

    /// The contract's rule over the in-memory rows: per topic, the oldest rows appended
    /// (their event `time`) before `older_than` and passed by every group reading them,
    /// where a group whose position was last saved before `older_than` (it stopped) holds
    /// nothing. This store records no retry attempts, so only positions hold rows.
    async fn prune_outbox(&self, older_than: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut st = self.state()?;
        let mut budget = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut names: Vec<&'static str> = st.outbox.iter().map(|(_, t, _)| *t).collect();
        names.sort_unstable();
        names.dedup();
        let mut pruned = 0u64;
        for topic in names {
            let bound = st
                .offsets
                .iter()
                .filter(|((_, x), (_, saved))| {
                    *saved >= older_than && topics::log_topics(x).contains(&topic)
                })
                .map(|(_, (p, _))| *p)
                .min()
                .unwrap_or(i64::MAX);
            let cut = st
                .outbox
                .iter()
                .filter(|(_, t, _)| *t == topic)
                .take(budget)
                .take_while(|(seq, _, e)| *seq <= bound && e.time.is_some_and(|at| at < older_than))
                .last()
                .map(|(seq, _, _)| *seq);
            let Some(cut) = cut else { continue };
            let before = st.outbox.len();
            st.outbox.retain(|(seq, t, _)| *t != topic || *seq > cut);
            let n = before - st.outbox.len();
            let through = st.pruned.entry(topic).or_default();
            *through = (*through).max(cut);
            budget -= n;
            pruned += n as u64;
        }
        Ok(pruned)
    }

    async fn save_consumer_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let saved = st.offsets.entry((group.to_owned(), topic.to_owned())).or_insert((0, now));
        *saved = (saved.0.max(position), now);
        Ok(())
    }

    async fn consumer_position(&self, group: &str, topic: &str) -> Result<i64, StoreError> {
        let st = self.state()?;
        Ok(st.offsets.get(&(group.to_owned(), topic.to_owned())).map_or(0, |(p, _)| *p))
    }

    async fn create_reminder(
        &self,
        user: UserId,
        task: TaskId,
        new: NewReminder,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let mut st = self.state()?;
        let task = st
            .tasks
            .iter()
            .find(|t| t.id == task && t.user_id == user)
            .cloned()
            .ok_or(StoreError::NotFound("task"))?;
        let user_zone =
            st.users.iter().find(|(u, _)| u.id == user).and_then(|(u, _)| u.timezone.clone());
        let reminder = docket_store::reminders::planned(&task, new, user_zone, now);
        st.reminders.push(reminder.clone());
        Ok(reminder)
    }

    async fn list_reminders(
        &self,
        user: UserId,
        task: TaskId,
    ) -> Result<Vec<Reminder>, StoreError> {
        let st = self.state()?;
        if !st.tasks.iter().any(|t| t.id == task && t.user_id == user) {
            return Err(StoreError::NotFound("task"));
        }
        Ok(st.reminders.iter().filter(|r| r.task_id == task).cloned().collect())
    }

    async fn get_reminder(&self, user: UserId, id: ReminderId) -> Result<Reminder, StoreError> {
        let st = self.state()?;
        st.reminders
            .iter()
            .find(|r| r.id == id && r.user_id == user)
            .cloned()
            .ok_or(StoreError::NotFound("reminder"))
    }

    async fn delete_reminder(
        &self,
        user: UserId,
        task: TaskId,
        id: ReminderId,
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        if !st.tasks.iter().any(|t| t.id == task && t.user_id == user) {
            return Err(StoreError::NotFound("task"));
        }
        let before = st.reminders.len();
        st.reminders.retain(|r| !(r.id == id && r.task_id == task));
        if st.reminders.len() == before { Err(StoreError::NotFound("reminder")) } else { Ok(()) }
    }

    async fn retry_reminder(
        &self,
        user: UserId,
        id: ReminderId,
        now: Timestamp,
    ) -> Result<Reminder, StoreError> {
        let mut st = self.state()?;
        let r = st
            .reminders
            .iter_mut()
            .find(|r| r.id == id && r.user_id == user)
            .ok_or(StoreError::NotFound("reminder"))?;
        if r.status != ReminderStatus::Failed {
            return Err(StoreError::Conflict(format!(
                "only a failed reminder can be retried; this one is {}",
                r.status.as_str()
            )));
        }
        r.status = ReminderStatus::Pending;
        r.fire_at = Some(now);
        Ok(r.clone())
    }

    async fn fire_due_reminders(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Reminder>, StoreError> {
        let mut st = self.state()?;
        let mut fired = Vec::new();
        let mut due: Vec<usize> = (0..st.reminders.len())
            .filter(|&i| {
                let r = &st.reminders[i];
                r.status == ReminderStatus::Pending && r.fire_at.is_some_and(|t| t <= now)
            })
            .collect();
        due.sort_by_key(|&i| (st.reminders[i].fire_at, st.reminders[i].id));
        for i in due.into_iter().take(limit) {
            let r = &mut st.reminders[i];
            r.status = ReminderStatus::Fired;
            r.fired_at = Some(now);
            r.attempts += 1;
            let r = r.clone();
            let task = st.tasks.iter().find(|t| t.id == r.task_id).cloned();
            if let Some(task) = task {
                let OutboxEvent { topic, event } =
                    docket_events::reminder_triggered(&r, &task, now, "/docket/scheduler");
                st.push_outbox(topic, event);
            }
            fired.push(r);
        }
        Ok(fired)
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let st = self.state()?;
        Ok(st
            .reminders
            .iter()
            .filter(|r| r.status == ReminderStatus::Pending)
            .filter_map(|r| r.fire_at)
            .min())
    }

    async fn upcoming_reminders(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ReminderId, Timestamp)>, StoreError> {
        let st = self.state()?;
        let mut due: Vec<(ReminderId, Timestamp)> = st
            .reminders
            .iter()
            .filter(|r| r.status == ReminderStatus::Pending)
            .filter_map(|r| r.fire_at.filter(|at| *at <= until).map(|at| (r.id, at)))
            .collect();
        due.sort_by_key(|&(id, at)| (at, id));
        due.truncate(limit);
        Ok(due)
    }

    async fn append_notification(
        &self,
        n: Notification,
        source_event: String,
    ) -> Result<bool, StoreError> {
        let mut st = self.state()?;
        if st.notifications.iter().any(|(_, e)| *e == source_event) {
            return Ok(false);
        }
        let OutboxEvent { topic, event } =
            docket_events::notification_created(&n, n.created_at, "/docket/worker");
        st.push_outbox(topic, event);
        st.notifications.push((n, source_event));
        Ok(true)
    }

    async fn list_notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let st = self.state()?;
        let mut out: Vec<Notification> = st
            .notifications
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.user_id == user && (!unread_only || n.read_at.is_none()))
            .cloned()
            .collect();
        out.sort_by_key(|n| std::cmp::Reverse((n.created_at, n.id)));
        out.truncate(limit.min(docket_store::notifications::MAX_LIST));
        Ok(out)
    }

    async fn mark_notification_read(
        &self,
        user: UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let mut st = self.state()?;
        let (n, _) = st
            .notifications
            .iter_mut()
            .find(|(n, _)| n.id == id && n.user_id == user)
            .ok_or(StoreError::NotFound("notification"))?;
        n.read_at = n.read_at.or(Some(now));
        Ok(n.clone())
    }

    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut st = self.state()?;
        let mut count = 0;
        for (n, _) in st.notifications.iter_mut() {
            if n.user_id == user && n.read_at.is_none() {
                n.read_at = Some(now);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn read_outbox_for(
        &self,
        topic: &str,
        key: &str,
        after_seq: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError> {
        let mut events = self.read_outbox(after_seq, topic, usize::MAX).await?;
        events.retain(|(seq, e)| *seq <= until && e.partitionkey.as_deref() == Some(key));
        events.truncate(limit);
        Ok(events)
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<bool, StoreError> {
        let mut st = self.state()?;
        if st.audit.iter().any(|e| e.event_id == entry.event_id) {
            return Ok(false);
        }
        let at = st.audit.partition_point(|e| e.seq < entry.seq);
        st.audit.insert(at, entry);
        Ok(true)
    }

    async fn task_history(
        &self,
        user: UserId,
        task: TaskId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let st = self.state()?;
        let id = task.as_uuid();
        Ok(audit_page(
            st.audit.iter().filter(|e| e.entity_type == "task" && e.entity_id == id),
            user,
            after,
            limit,
        ))
    }

    async fn activity(
        &self,
        user: UserId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let st = self.state()?;
        Ok(audit_page(st.audit.iter(), user, after, limit))
    }
}

/// A page of `user`'s entries of `entries` (in `seq` order) after cursor `after`.
fn audit_page<'a>(
    entries: impl Iterator<Item = &'a AuditEntry>,
    user: UserId,
    after: Option<i64>,
    limit: usize,
) -> AuditPage {
    let mut items: Vec<AuditEntry> = entries
        .filter(|e| e.user_id == user && after.is_none_or(|a| e.seq > a))
        .take(limit.saturating_add(1))
        .cloned()
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|e| e.seq)
    } else {
        None
    };
    AuditPage { items, next_cursor }
}
