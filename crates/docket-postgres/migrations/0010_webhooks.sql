-- 0010_webhooks: users' webhooks and the deliveries the notifier owes to outside channels
-- (email, webhook) (§2.5, §6).
--
-- A delivery is unique per (event, channel, target): a redelivered event enqueues nothing
-- twice. The partial index holds only pending deliveries, so the delivery worker finds the
-- next one due with one index probe. Deleting a webhook deletes its deliveries; deleting a
-- user deletes both.

create table webhooks (
    id          uuid primary key,
    user_id     uuid not null references users (id) on delete cascade,
    url         text not null,
    events      text[] not null,
    secret      text not null,
    active      boolean not null,
    created_at  timestamptz not null,
    updated_at  timestamptz not null
);

create index webhooks_by_user on webhooks (user_id, created_at, id);

create table deliveries (
    id               uuid primary key,
    user_id          uuid not null references users (id) on delete cascade,
    channel          text not null check (channel in ('email', 'webhook')),
    webhook_id       uuid references webhooks (id) on delete cascade,
    reminder_id      uuid,
    event_id         text not null,
    event_type       text not null,
    target           text not null,
    payload          text not null,
    status           text not null check (status in ('pending', 'delivered', 'failed')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz,
    last_error       text,
    created_at       timestamptz not null,
    delivered_at     timestamptz,
    unique (event_id, channel, target)
);

create index deliveries_by_webhook on deliveries (webhook_id, created_at, id);
create index deliveries_by_reminder on deliveries (reminder_id) where reminder_id is not null;
create index deliveries_due on deliveries (next_attempt_at, id) where status = 'pending';
