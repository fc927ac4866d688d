-- 0008_notifications: in-app notifications (§2.5), written by the notifier consumer.
--
-- `source_event` is the id of the event that caused the notification (unique): a redelivered
-- event finds its notification already there and adds nothing.

CREATE TABLE notifications (
    id            BLOB    NOT NULL PRIMARY KEY,
    user_id       BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_event  TEXT    NOT NULL UNIQUE,
    task_id       BLOB,
    reminder_id   BLOB,
    title         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    read_at       INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX notifications_by_user ON notifications (user_id, created_at, id);
CREATE INDEX notifications_unread ON notifications (user_id, created_at, id) WHERE read_at IS NULL;
