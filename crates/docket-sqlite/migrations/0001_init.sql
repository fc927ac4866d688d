-- Docket's first SQLite schema: users, tokens, categories, tasks, their tags and full-text index.
--
-- Ids are 16-byte UUIDv7 BLOBs (byte order = UUID order, so `(key, id)` keysets compare the
-- same way as on PostgreSQL). Instants are INTEGER microseconds since the Unix epoch.
-- Every list sort is served by an index `(user_id, <sort key>, id)`; see sqlite/list.rs.

CREATE TABLE users (
    id               BLOB    NOT NULL PRIMARY KEY,
    email            TEXT    UNIQUE,          -- lower-case (docket_core::Email)
    name             TEXT    NOT NULL,
    timezone         TEXT,                    -- IANA name
    password_hash    TEXT,                    -- argon2id PHC string; NULL for external users
    external_subject TEXT    UNIQUE,          -- the identity provider's `sub`
    created_at       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE tokens (
    id         BLOB    NOT NULL PRIMARY KEY,
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    prefix     TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX tokens_by_user ON tokens (user_id, created_at, id);

CREATE TABLE categories (
    id         BLOB    NOT NULL PRIMARY KEY,
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    -- CategoryName::key(): Unicode lower-case computed in Rust, since SQLite's lower() only
    -- folds ASCII.
    name_key   TEXT    NOT NULL,
    color      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE tasks (
    -- The rowid alias: stable across VACUUM, and the rowid of the task's tasks_fts row.
    seq          INTEGER PRIMARY KEY,
    id           BLOB    NOT NULL UNIQUE,
    user_id      BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        TEXT    NOT NULL,
    title_key    TEXT    NOT NULL,            -- Title::sort_key()
    description  TEXT,
    status       INTEGER NOT NULL CHECK (status IN (0, 1)),          -- 0 pending, 1 completed
    completed_at INTEGER,
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),  -- Priority::rank()
    category_id  BLOB    REFERENCES categories (id) ON DELETE SET NULL,
    tags         TEXT    NOT NULL,            -- comma-joined in order; tags never hold commas
    due_date     INTEGER,
    timezone     TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    -- Undated tasks sort after every date in both orders: ascending lists scan due_asc
    -- (NULL -> i64::MAX) forwards, descending lists scan due_desc (NULL -> i64::MIN) backwards.
    due_asc      INTEGER NOT NULL GENERATED ALWAYS AS (coalesce(due_date, 9223372036854775807)) VIRTUAL,
    due_desc     INTEGER NOT NULL GENERATED ALWAYS AS (coalesce(due_date, -9223372036854775808)) VIRTUAL
) STRICT;

CREATE INDEX tasks_by_due_asc  ON tasks (user_id, due_asc, id);
CREATE INDEX tasks_by_due_desc ON tasks (user_id, due_desc, id);
CREATE INDEX tasks_by_priority ON tasks (user_id, priority, id);
CREATE INDEX tasks_by_title    ON tasks (user_id, title_key, id);
CREATE INDEX tasks_by_created  ON tasks (user_id, created_at, id);
CREATE INDEX tasks_by_updated  ON tasks (user_id, updated_at, id);
-- Serves ON DELETE SET NULL when a category goes; partial, so uncategorised tasks cost nothing.
CREATE INDEX tasks_by_category ON tasks (category_id) WHERE category_id IS NOT NULL;

CREATE TABLE task_tags (
    task_id BLOB NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id BLOB NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
) STRICT, WITHOUT ROWID;

-- Tag filters (`tag = ? AND task_id = ?` probes) and list_tags (grouped by tag).
CREATE INDEX task_tags_by_tag ON task_tags (user_id, tag, task_id);

-- Contentless: the text lives in `tasks`; this holds only the index, keyed by tasks.seq.
-- contentless_delete lets the write path delete a row by rowid alone. Writes do not touch it
-- directly: they queue the task in fts_pending, and the writer refreshes the index from there
-- once per batch, before the batch commits (see refresh_fts in sqlite/mod.rs).
CREATE VIRTUAL TABLE tasks_fts USING fts5 (
    title,
    description,
    tags,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Tasks whose tasks_fts row the current write batch must refresh; empty between batches.
CREATE TABLE fts_pending (
    seq     INTEGER NOT NULL PRIMARY KEY,   -- tasks.seq
    indexed INTEGER NOT NULL                -- 1 when tasks_fts already holds a row for it
) STRICT;
