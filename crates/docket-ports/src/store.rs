//! The `Store` contract.

use async_trait::async_trait;
use docket_core::{
    Category, CategoryId, CategoryPatch, NewCategory, NewReminder, NewSeries, NewTask, NewUser,
    Notification, NotificationId, Page, Reminder, ReminderId, Series, SeriesId, Task, TaskId,
    TaskPatch, TaskQuery, Timestamp, TokenId, User, UserId,
};
use docket_events::CloudEvent;

use crate::StoreError;
use crate::audit::{AuditEntry, AuditPage};
use crate::webhooks::ClaimedDelivery;
use docket_core::{
    Delivery, DeliveryId, DeliveryOutcome, NewDelivery, NewWebhook, Webhook, WebhookId,
    WebhookPatch,
};

/// A user with the password hash needed to check a login.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A personal access token as listed (never its secret; only the hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the token, so a user can tell tokens apart.
    pub prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A tag of the user's and how many of their tasks carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCount {
    pub name: String,
    pub count: i64,
}

/// Durable storage of users, tokens, tasks and categories.
///
/// # Contract
/// * Every operation is atomic: it commits whole or not at all. A write that returned `Ok`
///   is durable (it survives a crash of the process or the machine right after).
/// * Every task and category operation is scoped by `user`: another user's rows behave
///   exactly as missing ones (`NotFound`), never `Forbidden`, so existence is not revealed.
/// * Instants are stored at microsecond precision; what is read back equals what was written.
/// * `expected_version: Some(v)` makes a write conditional: when the stored version is not `v`
///   the operation MUST fail with `VersionMismatch { current }` and change nothing.
/// * A write that changes nothing (a patch equal to the stored values, completing a
///   completed task) MUST succeed without bumping `version` or `updated_at`.
/// * `CategoryRef::Name` resolves case-insensitively to the user's category of that name
///   and creates it (default colour) in the same transaction when there is none;
///   `CategoryRef::Id` of a category the user does not own fails with
///   `InvalidReference { field: "category_id" }`.
/// * Deleting a category clears it from the user's tasks (tasks are kept, not versioned).
/// * `list_tasks` MUST honour every filter of `TaskQuery` (see its docs), order by
///   `(sort key, id)` in the query's order, nulls of `due_date` sorting after every date in
///   both orders, title ordering by `Title::sort_key`, priority by rank, rank by relevance
///   (best first); return at most `limit` items and `next_cursor` exactly when more items
///   follow. Paging with `next_cursor` never skips or repeats an item whose sort key did not
///   change, even when tasks are inserted between pages. Full-text search matches every word
///   of `SearchText` as a prefix of a word of the title, description or tags.
/// * Email addresses and external subjects are unique (`Conflict`); category names are
///   unique per user, case-insensitively (`Conflict`).
///
/// # Outbox (§5)
/// * Every task write appends its events (`docket_events::task_events`) to the outbox in the
///   same transaction as its rows: `create_task` → created; `update_task` → completed or
///   reopened when the status moved, else updated (with `changes`); `delete_task` → deleted;
///   `delete_category` → updated (`changes.category`) for every task it clears;
///   `delete_series` → updated (`changes.series_id`) for every instance it detaches. A write
///   that changes nothing, or fails, appends nothing; an event is readable exactly when its
///   write committed. Events carry the task's user id as `partitionkey` and its id as
///   `subject`. Renaming or recolouring a category appends nothing: it is not a task change
///   (the tasks' rows and versions do not change); task events carry the category as it was
///   at the task's last write.
/// * `read_outbox(after, topic, limit)` returns the events of `topic`'s log
///   (`docket_events::topics::log_topics`) with position > `after`, in increasing position,
///   at most `limit`, each with `sequence` set to its position. Positions only grow and may
///   have gaps. A reader that advances to the last position it read MUST NOT miss an event
///   that commits later: an event becomes readable only once no event at a lower position
///   can still commit. `outbox_head(topic)` is the highest position `read_outbox` could
///   return now (0 when there is none).
///
/// # Outbox pruning (§6 housekeeping)
/// * `prune_outbox(older_than, limit)` deletes outbox rows and returns how many. It MUST NOT
///   delete a row of topic `T` at position `p` unless the row was appended before
///   `older_than` and every consumer group holding it has passed it: for every topic `X`
///   whose log holds `T`'s rows (`docket_events::topics::log_topics(X)` contains `T`; a
///   group on `task-updates` reads the `task-events` rows), each group's committed position
///   in `X` saved at or after `older_than` is ≥ `p`, and no group has an attempt recorded
///   at or after `older_than` at or below `p`. Rows no group reads go by age alone. A group
///   that never committed a position in `X` holds nothing, and neither does a position or
///   attempt last saved before `older_than`: the retention also bounds how long a stopped
///   group holds the log (see `Store::prune_outbox` for why a live group loses nothing).
/// * Per topic it MUST delete a prefix in position order, stopping at the first row it must
///   keep, and MUST NOT delete a row a reader could still be about to read (on PostgreSQL,
///   nothing above the settled horizon). One call deletes at most `limit` rows and holds
///   the writer or its locks for that long only; a call that deleted fewer than `limit`
///   left nothing more to prune at `older_than` (call again while it returns `limit`). It
///   also forgets recorded attempts at or below their group's committed position, and
///   attempts on events no longer stored (pruned: they are never delivered again).
/// * Pruning changes nothing else: `outbox_head` stays where it was (also when every row
///   of a log is gone), positions are never reused, and `read_outbox`/`read_outbox_for`
///   return the kept rows exactly as before.
/// * `outbox_tail(topic)` is the highest position pruning has deleted from `topic`'s log,
///   0 while it deleted none; it only grows. Every event of the log above the tail is still
///   stored, so a reader resuming after `p ≥ tail` misses nothing; one after `p < tail` may
///   have missed events. Read the tail after reading the log: a read that found the tail
///   at or below where it started was complete.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and `/readyz` (`"sqlite"`, `"postgres"`).
    fn backend(&self) -> &'static str;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- users and tokens

    async fn create_user(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// The user provisioned for an external identity `subject`, created from `new` on first
    /// sight (atomic: two concurrent calls yield one user).
    async fn user_for_subject(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError>;

    async fn create_token(&self, info: TokenInfo, token_hash: String) -> Result<(), StoreError>;
    async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError>;
    async fn delete_token(&self, user: UserId, id: TokenId) -> Result<(), StoreError>;
    /// The owner of an unexpired token with this hash.
    async fn user_by_token_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;

    // --- tasks

    async fn create_task(
        &self,
        user: UserId,
        new: NewTask,
        now: Timestamp,
    ) -> Result<Task, StoreError>;
    async fn get_task(&self, user: UserId, id: TaskId) -> Result<Task, StoreError>;
    /// Applies `patch` (see `TaskPatch::apply`) and returns the task after it; its
    /// `recurrence` MUST be applied in the same transaction by the rules in
    /// `docket_core::plan::series` (make recurring, replace the series' rule, or end the series),
    /// the task's link change
    /// being part of its one version bump and event.
    async fn update_task(
        &self,
        user: UserId,
        id: TaskId,
        patch: TaskPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError>;
    /// Deletes the task and returns it as it was; its deleted event is stamped `now`.
    async fn delete_task(
        &self,
        user: UserId,
        id: TaskId,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> Result<Task, StoreError>;
    async fn list_tasks(
        &self,
        user: UserId,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError>;
    /// Tags of the user's tasks with their counts, most used first, then by name.
    async fn list_tags(&self, user: UserId) -> Result<Vec<TagCount>, StoreError>;

    // --- categories

    async fn create_category(
        &self,
        user: UserId,
        new: NewCategory,
        now: Timestamp,
    ) -> Result<Category, StoreError>;
    /// The user's categories by name (case-insensitive order).
    async fn list_categories(&self, user: UserId) -> Result<Vec<Category>, StoreError>;
    async fn get_category(&self, user: UserId, id: CategoryId) -> Result<Category, StoreError>;
    async fn update_category(
        &self,
        user: UserId,
        id: CategoryId,
        patch: CategoryPatch,
    ) -> Result<Category, StoreError>;
    /// Deletes the category; its tasks lose it, each with an updated event stamped `now`.
    async fn delete_category(
        &self,
        user: UserId,
        id: CategoryId,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    // --- outbox

    /// The events of `topic` after position `after_seq` (see the outbox rules above).
    async fn read_outbox(
        &self,
        after_seq: i64,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError>;

    /// The highest readable position of `topic`, 0 when it has none.
    async fn outbox_head(&self, topic: &str) -> Result<i64, StoreError>;

    /// The highest position pruning has deleted from `topic`'s log, 0 while none (see the
    /// pruning rules above).
    async fn outbox_tail(&self, topic: &str) -> Result<i64, StoreError>;

    /// Deletes at most `limit` outbox rows appended before `older_than` that every consumer
    /// group holding them has passed (see the pruning rules above); returns how many it
    /// deleted.
    ///
    /// A group's position or attempt saved before `older_than` does not hold rows back, as in
    /// Kafka, where the retention bounds how long a stopped consumer keeps the log: the
    /// embedded consumers of a database switched to Dapr mode, or a group no longer
    /// deployed, would otherwise stop pruning for ever. A live group loses nothing by it:
    /// * Only rows appended before `older_than` go, so a group can lose only a row it has
    ///   not read although it was appended more than the whole retention ago.
    /// * The embedded bus saves a position only when it has acknowledged something new
    ///   (`docket-bus` `embedded.rs`: when a fetched batch is used up, before waiting, on
    ///   close, with a dead letter; the Dapr inbox's groups are such subscriptions, and the
    ///   Dapr relay saves after each batch it publishes), so a caught-up idle group keeps
    ///   an old `updated_at`.
    ///   That is safe: it saved its position and then read the log and found nothing
    ///   after it, so every row it has not passed became readable after that save; a live
    ///   group is woken (or polls every few seconds) and reads, acknowledges and saves
    ///   again soon after such a row appears, long before the row is older than the
    ///   retention. An idle group's old position thus holds only rows it has passed.
    /// * A group retrying an event records each failed attempt (`updated_at` is renewed),
    ///   so it holds the log from that event on while it retries at least once per
    ///   retention; the rows before that event it has already settled.
    /// * A group saving nothing for the whole retention while it has unread rows has
    ///   stopped (or takes longer than the retention over one batch or between retries):
    ///   it no longer holds the log, and when it comes back it reads on from its position
    ///   past the pruned rows, like a Kafka consumer whose log segments were deleted.
    /// * Its recorded attempts stop holding the log the same way, and once the event an
    ///   attempt is on has been pruned the attempt is forgotten.
    ///
    /// So the retention (`--outbox-retention`) must comfortably exceed the longest time a
    /// live consumer goes without saving while it has work: seconds to minutes.
    async fn prune_outbox(&self, older_than: Timestamp, limit: u32) -> Result<u64, StoreError>;

    /// Commits `position` for consumer `group` in `topic` in a transaction of its own, never
    /// moving it back, and forgets the group's attempts at or below it: what a consumer's
    /// own commit does (`crate::bus`), for operators and tests.
    async fn save_consumer_position(
        &self,
        group: &str,
        topic: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Consumer `group`'s committed position in `topic`, 0 when it has none.
    async fn consumer_position(&self, group: &str, topic: &str) -> Result<i64, StoreError>;

    /// The events of `topic`'s log whose partition key is `key` (a user id) with a position
    /// in `(after_seq, until]`, in order, at most `limit`. `until` MUST be a position the
    /// caller already read as readable (from `read_outbox` or `outbox_head`), so the range is
    /// settled: reading it twice gives the same events, unless pruning deleted some in
    /// between (`outbox_tail` tells). Served by an index on the key.
    async fn read_outbox_for(
        &self,
        topic: &str,
        key: &str,
        after_seq: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, CloudEvent)>, StoreError>;

    // --- reminders (rules in `crate::reminders`)

    /// Creates a reminder of the user's task `task` (`NotFound` when it is not theirs);
    /// `fire_at` follows from the trigger and the task's due date; pending, or canceled while
    /// the task is completed.
    async fn create_reminder(
        &self,
        user: UserId,
        task: TaskId,
        new: NewReminder,
        now: Timestamp,
    ) -> Result<Reminder, StoreError>;
    /// The reminders of the user's task, oldest first (`NotFound` when it is not theirs).
    async fn list_reminders(&self, user: UserId, task: TaskId)
    -> Result<Vec<Reminder>, StoreError>;
    /// The user's reminder `id`.
    async fn get_reminder(&self, user: UserId, id: ReminderId) -> Result<Reminder, StoreError>;
    /// Deletes reminder `id` of the user's task `task`.
    async fn delete_reminder(
        &self,
        user: UserId,
        task: TaskId,
        id: ReminderId,
    ) -> Result<(), StoreError>;
    /// Fires up to `limit` reminders due at `now` (earliest first): each MUST move from
    /// pending to fired and append its `reminder.triggered` event in one transaction, and MUST
    /// be returned by exactly one call however many callers (processes) race.
    async fn fire_due_reminders(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Reminder>, StoreError>;
    /// The earliest fire time of a pending reminder.
    async fn next_reminder_at(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Retries the user's `failed` reminder: it MUST become `pending` with `fire_at = now`
    /// (so the next firing sends it again, on every channel) and change nothing else; a
    /// reminder in any other state is a `Conflict` and stays as it is.
    async fn retry_reminder(
        &self,
        user: UserId,
        id: ReminderId,
        now: Timestamp,
    ) -> Result<Reminder, StoreError>;
    /// Up to `limit` pending reminders with a fire time at or before `until` (overdue ones
    /// included), as `(id, fire_at)`, earliest first, ties by id. MUST list exactly what
    /// [`Store::fire_due_reminders`] at `until` would claim (none canceled, fired, without a
    /// fire time, or of a deleted task), MUST be served by the index of pending fire times
    /// (what a Dapr job registrar reads every round), and MUST NOT change anything.
    async fn upcoming_reminders(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ReminderId, Timestamp)>, StoreError>;

    // --- notifications (rules in `crate::notifications`)

    /// Appends `n`, caused by event `source_event`, with its `notification.created` event, in
    /// its own transaction, unless that event already made one; true when it was new.
    /// Consumers append inside their own commit instead (`consume::Effect::AddNotification`).
    async fn append_notification(
        &self,
        n: Notification,
        source_event: String,
    ) -> Result<bool, StoreError>;
    /// The user's notifications, newest first (at most `notifications::MAX_LIST`).
    async fn list_notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Marks the user's notification read (idempotent) and returns it.
    async fn mark_notification_read(
        &self,
        user: UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError>;
    /// Marks all the user's unread notifications read; returns how many.
    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    // --- audit log

    /// Appends `entry` in its own transaction unless an entry for its event id exists (then
    /// it changes nothing); true when it was new. Consumers append inside their own commit
    /// instead (`consume::Effect::AppendAudit`).
    async fn append_audit(&self, entry: AuditEntry) -> Result<bool, StoreError>;

    /// The audit entries of `user`'s task `task`, oldest first (by `seq`), those after
    /// cursor `after`, at most `limit`; `next_cursor` exactly when more follow. Another
    /// user's task has no entries (an empty page), never theirs. Entries outlive the task.
    async fn task_history(
        &self,
        user: UserId,
        task: TaskId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError>;

    /// Every audit entry of `user`'s, oldest first, paged like `task_history`.
    async fn activity(
        &self,
        user: UserId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError>;

    // --- series (rules in `crate::series`)

    /// Creates a series from `new` and `series` and the task as its first instance, due at
    /// the first occurrence (whatever `new.due_date` says), in one transaction with the
    /// task's created event. The task is returned with its series link.
    async fn create_recurring_task(
        &self,
        user: UserId,
        new: NewTask,
        series: NewSeries,
        now: Timestamp,
    ) -> Result<Task, StoreError>;
    /// The user's series, oldest first.
    async fn list_series(&self, user: UserId) -> Result<Vec<Series>, StoreError>;
    /// The user's series `id` (`NotFound` for another user's).
    async fn get_series(&self, user: UserId, id: SeriesId) -> Result<Series, StoreError>;
    /// Pauses (`active = false`) or resumes the user's series and returns it; idempotent.
    /// A paused series MUST NOT make instances.
    async fn set_series_active(
        &self,
        user: UserId,
        id: SeriesId,
        active: bool,
        now: Timestamp,
    ) -> Result<Series, StoreError>;
    /// Deletes the user's series: no instance is made after; existing instances MUST stay,
    /// detached in the same transaction (no `series_id`, `instance_date` or recurrence),
    /// each with its version bumped and an updated event stamped `now` (`changes.series_id`).
    async fn delete_series(
        &self,
        user: UserId,
        id: SeriesId,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Makes the instances of up to `limit` fixed-mode series due at `now`, each in one
    /// transaction with its created event; an occurrence MUST be made at most once however
    /// many callers race (the claim moves `next_occurrence`; `(series_id, instance_date)` is
    /// unique).
    async fn spawn_due_instances(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// The earliest `next_occurrence` of an active fixed-mode series.
    async fn next_series_at(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Up to `limit` active fixed-mode series whose `next_occurrence` is at or before `until`
    /// (overdue ones included), as `(id, next_occurrence)`, earliest first, ties by id. MUST
    /// list exactly the series [`Store::spawn_due_instances`] at `until` would consider (none
    /// paused, ended, deleted or in `after_completion` mode), MUST be served by the index of
    /// due series, and MUST NOT change anything.
    async fn upcoming_series(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(SeriesId, Timestamp)>, StoreError>;

    // --- webhooks and deliveries (rules in `crate::webhooks`)

    /// Creates a webhook of the user.
    async fn create_webhook(
        &self,
        user: UserId,
        new: NewWebhook,
        now: Timestamp,
    ) -> Result<Webhook, StoreError>;
    /// The user's webhooks, oldest first.
    async fn list_webhooks(&self, user: UserId) -> Result<Vec<Webhook>, StoreError>;
    /// The user's webhook `id` (`NotFound` for another user's).
    async fn get_webhook(&self, user: UserId, id: WebhookId) -> Result<Webhook, StoreError>;
    /// Applies `patch` to the user's webhook and returns it.
    async fn update_webhook(
        &self,
        user: UserId,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError>;
    /// Deletes the user's webhook and its deliveries.
    async fn delete_webhook(&self, user: UserId, id: WebhookId) -> Result<(), StoreError>;
    /// Every user's webhooks with their stored secrets, ordered by id, the first `limit`
    /// after `after`: for re-encoding stored secrets (the API never reads a secret back).
    async fn webhook_secrets(
        &self,
        after: Option<WebhookId>,
        limit: usize,
    ) -> Result<Vec<(WebhookId, String)>, StoreError>;
    /// Replaces webhook `id`'s stored secret with `new` only while it is still `old`, and
    /// says whether it did; MUST be one conditional write, so that of several callers racing
    /// with the same `old` exactly one replaces it. Changes nothing else (not `updated_at`).
    async fn replace_webhook_secret(
        &self,
        id: WebhookId,
        old: String,
        new: String,
    ) -> Result<bool, StoreError>;
    /// The deliveries to the user's webhook, newest first (at most `webhooks::MAX_LIST`).
    async fn list_deliveries(
        &self,
        user: UserId,
        webhook: WebhookId,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Enqueues deliveries in their own transaction (consumers enqueue inside their commit:
    /// `consume::Effect::Deliver`); a delivery whose
    /// (event, channel, target) exists MUST NOT be added again. Returns how many were new.
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>) -> Result<u64, StoreError>;
    /// Claims up to `limit` pending deliveries due at `now`, earliest first: a claim MUST
    /// count an attempt and make the delivery not due before `now + lease`, so no two callers
    /// hold it at once, and one whose worker died is claimed again after the lease.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records how the attempt of a pending delivery ended, with its effect on the reminder
    /// that caused it (see `crate::webhooks`); false (and no change) when it is not pending.
    async fn settle_delivery(
        &self,
        id: DeliveryId,
        outcome: DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Puts the user's failed delivery to webhook `webhook` back in line, due at `now`,
    /// attempts counted afresh (`NotFound` when it is not that webhook's or not theirs).
    async fn retry_delivery(
        &self,
        user: UserId,
        webhook: WebhookId,
        id: DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, StoreError>;
    /// When the next pending delivery is due.
    async fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError>;
}
