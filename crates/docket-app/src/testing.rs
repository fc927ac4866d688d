//! An in-memory [`Store`] for the tests of this crate and of the HTTP edge (feature
//! `test-support`). It follows the contract closely enough for use-case and router tests
//! (scoping, versions, no-op writes, category resolution, filters, keyset paging, outbox
//! events, reminders without the task write rules, series without instances made after the first) but is no adapter: no durability, linear
//! scans, and a constant search rank. Never use it to serve.

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
    /// `(position, topic, event)`; positions start at 1.
    outbox: Vec<(i64, &'static str, CloudEvent)>,
}

impl State {
    fn append(&mut self, change: TaskChange<'_>, now: Timestamp) {
        for OutboxEvent { topic, event } in task_events(change, now, "/docket/api") {
            let seq = self.outbox.len() as i64 + 1;
            self.outbox.push((seq, topic, event));
        }
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
    ) -> Result<(), StoreError> {
        let mut st = self.state()?;
        let before = st.series.len();
        st.series.retain(|s| !(s.id == id && s.user_id == user));
        if st.series.len() == before { Err(StoreError::NotFound("series")) } else { Ok(()) }
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
        patch.apply(&mut task, category, now);
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
        Ok(st.outbox.iter().rev().find(|(_, t, _)| log.contains(t)).map_or(0, |(seq, _, _)| *seq))
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
                let seq = st.outbox.len() as i64 + 1;
                st.outbox.push((seq, topic, event));
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
        let seq = st.outbox.len() as i64 + 1;
        st.outbox.push((seq, topic, event));
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
