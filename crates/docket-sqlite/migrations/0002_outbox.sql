-- 0002_outbox: the transactional outbox, the log the event bus reads.
--
-- Every task write appends its CloudEvents here in its own transaction (the same group
-- commit), so an event exists exactly when its write committed. `seq` is the log position:
-- AUTOINCREMENT so a position is never reused, even after old rows are pruned; the single
-- writer commits in order, so readers see positions appear in increasing order.
-- `payload` is the full CloudEvent JSON (without `sequence`, which is `seq` on read).

CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic         TEXT    NOT NULL,
    partition_key TEXT    NOT NULL,
    event_id      TEXT    NOT NULL UNIQUE,
    event_type    TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX outbox_by_topic ON outbox (topic, seq);
