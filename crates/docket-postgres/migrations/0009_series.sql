-- Recurring series (DESIGN §2.3): the template of a recurring task's instances, and the
-- link from each instance to its series (`tasks.series_id` exists since 0001). At most one
-- task per (series_id, instance_date): the unique index is what makes a redelivered
-- completion or racing schedulers harmless.
create table series (
    id              uuid primary key,
    user_id         uuid not null references users (id) on delete cascade,
    title           text not null,
    description     text,
    priority        smallint not null check (priority between 0 and 3),
    category_id     uuid references categories (id) on delete set null,
    tags            text[] not null default '{}',
    recurrence      text not null,         -- canonical RecurrenceSpec JSON
    mode            text not null check (mode in ('after_completion', 'fixed')),
    start_local     text not null,         -- local date-time the rule is anchored at
    active          boolean not null,
    next_occurrence timestamptz,
    instances       integer not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);

create index series_by_user on series (user_id, id);
-- The scheduler's probe: the earliest due fixed-mode series.
create index series_due on series (next_occurrence)
    where active and mode = 'fixed' and next_occurrence is not null;

-- No foreign key on series_id: deleting a series keeps its instances.
alter table tasks add column instance_date text,   -- local date-time of the occurrence in the series' zone, YYYY-MM-DDTHH:MM:SS
                  add column recurrence text;      -- the series' RecurrenceSpec JSON

create unique index tasks_series_instance on tasks (series_id, instance_date);
