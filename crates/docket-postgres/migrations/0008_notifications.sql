-- 0008_notifications: in-app notifications (§2.5), written by the notifier consumer.
--
-- `source_event` is the id of the event that caused the notification (unique): a redelivered
-- event finds its notification already there and adds nothing.

create table notifications (
    id            uuid primary key,
    user_id       uuid not null references users (id) on delete cascade,
    source_event  text not null unique,
    task_id       uuid,
    reminder_id   uuid,
    title         text not null,
    body          text not null,
    created_at    timestamptz not null,
    read_at       timestamptz
);

create index notifications_by_user on notifications (user_id, created_at, id);
create index notifications_unread on notifications (user_id, created_at, id) where read_at is null;
