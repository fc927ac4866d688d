-- 0010_webhooks: users' webhooks and the deliveries the notifier owes to outside channels
-- (email, webhook) (§2.5, §6).
--
-- A delivery is unique per (event, channel, target): a redelivered event enqueues nothing
-- twice. The partial index holds only pending deliveries, so the delivery worker finds the
-- next one due with one index probe. Deleting a webhook deletes its deliveries; deleting a
-- user deletes both.

CREATE TABLE webhooks (
    id          BLOB    NOT NULL PRIMARY KEY,
    user_id     BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    secret      TEXT    NOT NULL,
    active      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX webhooks_by_user ON webhooks (user_id, created_at, id);

CREATE TABLE deliveries (
    id               BLOB    NOT NULL PRIMARY KEY,
    user_id          BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel          TEXT    NOT NULL CHECK (channel IN ('email', 'webhook')),
    webhook_id       BLOB    REFERENCES webhooks (id) ON DELETE CASCADE,
    reminder_id      BLOB,
    event_id         TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    UNIQUE (event_id, channel, target)
) STRICT, WITHOUT ROWID;

CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at, id);
CREATE INDEX deliveries_by_reminder ON deliveries (reminder_id) WHERE reminder_id IS NOT NULL;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status = 'pending';
