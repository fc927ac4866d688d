-- 0007_reminders: reminders of tasks (§2.4) and the scheduler's index.
--
-- `trigger_at` (absolute) or `before_due` (ISO 8601 offset) says when; `fire_at` is the
-- instant it fires, null for a relative reminder of a task without a due date. Deleting a
-- task deletes its reminders. The partial index holds only what the scheduler still has to
-- fire; schedulers claim from it with `FOR UPDATE SKIP LOCKED`.

create table reminders (
    id          uuid primary key,
    task_id     uuid not null references tasks (id) on delete cascade,
    user_id     uuid not null,
    trigger_at  timestamptz,
    before_due  text,
    channels    text not null,
    status      text not null check (status in ('pending', 'fired', 'canceled', 'failed')),
    fire_at     timestamptz,
    fired_at    timestamptz,
    attempts    integer not null default 0,
    last_error  text,
    created_at  timestamptz not null,
    check ((trigger_at is null) <> (before_due is null))
);

create index reminders_by_task on reminders (task_id, created_at, id);
create index reminders_due on reminders (fire_at, id) where status = 'pending' and fire_at is not null;
