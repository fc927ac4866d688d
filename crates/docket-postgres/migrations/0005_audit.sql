-- 0005_audit: the audit log (§2.5), one entry per task event, written by the audit consumer.
--
-- `event_id` is unique, so appending an event twice keeps one entry. `seq` is the event's
-- outbox position, the order entries are listed in (oldest first) and the keyset cursor.
-- `user_id` is the owner of the entity, for scoping.

create table audit_log (
    id          uuid        not null primary key,
    event_id    text        not null unique,
    event_type  text        not null,
    entity_type text        not null,
    entity_id   uuid        not null,
    user_id     uuid        not null,
    actor       text        not null,
    at          timestamptz not null,
    data        jsonb       not null,
    seq         bigint      not null
);

create index audit_log_user_seq on audit_log (user_id, seq);
create index audit_log_entity_seq on audit_log (user_id, entity_type, entity_id, seq);
