-- 0001_init: users, personal access tokens, categories and tasks.
--
-- Applied by `postgres::migrate` inside one transaction together with its row in
-- `schema_migrations`; never edit it once released, add a new numbered file instead.
-- Instants are `timestamptz` (microsecond precision, what `docket_core::Timestamp` keeps).

create table users (
    id               uuid primary key,
    email            text,
    name             text not null,
    timezone         text,
    password_hash    text,
    external_subject text,
    created_at       timestamptz not null
);
-- Emails arrive lower-cased already (`Email::parse`); the index on `lower(email)` keeps the
-- rule even for rows written by hand.
create unique index users_email_key on users (lower(email));
create unique index users_external_subject_key on users (external_subject);

create table tokens (
    id         uuid primary key,
    user_id    uuid not null references users (id) on delete cascade,
    name       text not null,
    prefix     text not null,
    token_hash text not null,
    created_at timestamptz not null,
    expires_at timestamptz,
    constraint tokens_token_hash_key unique (token_hash)
);
create index tokens_user_idx on tokens (user_id, created_at, id);

create table categories (
    id         uuid primary key,
    user_id    uuid not null references users (id) on delete cascade,
    name       text not null,
    -- `CategoryName::key()` (Rust's lower-casing), so uniqueness and order are the same on
    -- every store and do not depend on the database's locale.
    name_key   text collate "C" not null,
    color      text not null,
    created_at timestamptz not null,
    -- Target of the tasks' composite foreign key: a task can only reference a category of
    -- its own user.
    constraint categories_id_user_key unique (id, user_id)
);
create unique index categories_user_name_key on categories (user_id, name_key);

-- The full-text document of a task: title and tags weigh more than the description.
-- Every run of non-alphanumeric characters becomes a space before parsing, so words split
-- exactly where `SearchText` splits them (PostgreSQL's parser would otherwise keep
-- `a@b.com` or `e-mail` as tokens of their own). Declared immutable, which holds because
-- it only calls immutable functions on its arguments (`array_to_string` is merely stable
-- because of arbitrary element types; on `text[]` it is not).
create function docket_search_document(title text, description text, tags text[])
returns tsvector
language sql
immutable
parallel safe
as $$
    select setweight(to_tsvector('simple'::regconfig, regexp_replace(title, '[^[:alnum:]]+', ' ', 'g')), 'A')
        || setweight(to_tsvector('simple'::regconfig, regexp_replace(array_to_string(tags, ' '), '[^[:alnum:]]+', ' ', 'g')), 'A')
        || setweight(to_tsvector('simple'::regconfig, regexp_replace(coalesce(description, ''), '[^[:alnum:]]+', ' ', 'g')), 'B')
$$;

create table tasks (
    id           uuid primary key,
    user_id      uuid not null references users (id) on delete cascade,
    title        text not null,
    -- `Title::sort_key()`; "C" collation makes title order byte order, as on SQLite.
    title_key    text collate "C" not null,
    description  text,
    status       text not null check (status in ('pending', 'completed')),
    completed_at timestamptz,
    -- `Priority::rank()`: 0 low … 3 urgent.
    priority     smallint not null check (priority between 0 and 3),
    category_id  uuid,
    tags         text[] not null default '{}',
    due_at       timestamptz,
    -- Sort keys for due date: undated tasks come after every dated one in both orders, so
    -- ascending lists read `due_asc` forwards and descending lists read `due_desc` backwards.
    due_asc      timestamptz not null generated always as (coalesce(due_at, 'infinity'::timestamptz)) stored,
    due_desc     timestamptz not null generated always as (coalesce(due_at, '-infinity'::timestamptz)) stored,
    timezone     text,
    series_id    uuid,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    version      bigint not null,
    search       tsvector not null generated always as (docket_search_document(title, description, tags)) stored,
    constraint tasks_category_fkey foreign key (category_id, user_id) references categories (id, user_id)
);

-- One btree per sort, `(user_id, key, id)`: a page is one index range scan in either
-- direction, and the keyset condition `(key, id) > ($k, $id)` is an index bound.
create index tasks_due_asc_idx on tasks (user_id, due_asc, id);
create index tasks_due_desc_idx on tasks (user_id, due_desc, id);
create index tasks_priority_idx on tasks (user_id, priority, id);
create index tasks_title_idx on tasks (user_id, title_key, id);
create index tasks_created_idx on tasks (user_id, created_at, id);
create index tasks_updated_idx on tasks (user_id, updated_at, id);
create index tasks_category_idx on tasks (user_id, category_id) where category_id is not null;
create index tasks_series_idx on tasks (user_id, series_id) where series_id is not null;
create index tasks_tags_idx on tasks using gin (tags);
create index tasks_search_idx on tasks using gin (search);
