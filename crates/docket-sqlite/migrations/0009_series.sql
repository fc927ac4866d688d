-- Recurring series (DESIGN §2.3): the template of a recurring task's instances, and the
-- link from each instance to its series. At most one task per (series_id, instance_date):
-- the unique index is what makes a redelivered completion or a racing scheduler harmless.
CREATE TABLE series (
    id              BLOB    PRIMARY KEY,
    user_id         BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title           TEXT    NOT NULL,
    description     TEXT,
    priority        INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    category_id     BLOB    REFERENCES categories (id) ON DELETE SET NULL,
    tags            TEXT    NOT NULL,            -- comma-joined, as tasks.tags
    recurrence      TEXT    NOT NULL,            -- canonical RecurrenceSpec JSON
    mode            TEXT    NOT NULL CHECK (mode IN ('after_completion', 'fixed')),
    start_local     TEXT    NOT NULL,            -- local date-time the rule is anchored at
    active          INTEGER NOT NULL CHECK (active IN (0, 1)),
    next_occurrence INTEGER,
    instances       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX series_by_user ON series (user_id, id);
-- The scheduler's probe: the earliest due fixed-mode series.
CREATE INDEX series_due ON series (next_occurrence)
    WHERE active = 1 AND mode = 'fixed' AND next_occurrence IS NOT NULL;

-- No foreign key: deleting a series keeps its instances.
ALTER TABLE tasks ADD COLUMN series_id BLOB;
ALTER TABLE tasks ADD COLUMN instance_date TEXT;   -- local date-time of the occurrence in the series' zone, YYYY-MM-DDTHH:MM:SS
ALTER TABLE tasks ADD COLUMN recurrence TEXT;      -- the series' RecurrenceSpec JSON

CREATE UNIQUE INDEX tasks_series_instance ON tasks (series_id, instance_date);
CREATE INDEX tasks_by_series ON tasks (user_id, series_id) WHERE series_id IS NOT NULL;
