-- 0007_reminders: reminders of tasks (§2.4) and the scheduler's index.
--
-- `trigger_at` (absolute) or `before_due` (ISO 8601 offset) says when; `fire_at` is the
-- instant it fires, NULL for a relative reminder of a task without a due date. Deleting a
-- task deletes its reminders. The partial index holds only what the scheduler still has to
-- fire, so finding the next deadline is one index probe however many reminders exist.

CREATE TABLE reminders (
    id          BLOB    NOT NULL PRIMARY KEY,
    task_id     BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id     BLOB    NOT NULL,
    trigger_at  INTEGER,
    before_due  TEXT,
    channels    TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'fired', 'canceled', 'failed')),
    fire_at     INTEGER,
    fired_at    INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    CHECK ((trigger_at IS NULL) <> (before_due IS NULL))
) STRICT, WITHOUT ROWID;

CREATE INDEX reminders_by_task ON reminders (task_id, created_at, id);
CREATE INDEX reminders_due ON reminders (fire_at, id) WHERE status = 'pending' AND fire_at IS NOT NULL;
