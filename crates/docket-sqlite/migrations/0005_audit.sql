-- 0005_audit: the audit log (§2.5), one entry per task event, written by the audit consumer.
--
-- `event_id` is unique, so appending an event twice keeps one entry. `seq` is the event's
-- outbox position, the order entries are listed in (oldest first) and the keyset cursor.
-- `user_id` is the owner of the entity, for scoping. `data` is JSON. Ids are 16-byte
-- blobs, instants INTEGER microseconds.

CREATE TABLE audit_log (
    id          BLOB    NOT NULL PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    entity_type TEXT    NOT NULL,
    entity_id   BLOB    NOT NULL,
    user_id     BLOB    NOT NULL,
    actor       TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    seq         INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_log_user_seq ON audit_log (user_id, seq);
CREATE INDEX audit_log_entity_seq ON audit_log (user_id, entity_type, entity_id, seq);
