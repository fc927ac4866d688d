-- 0002_outbox: the transactional outbox, the log the event bus reads.
--
-- Every task write appends its CloudEvents here in its own transaction, so an event exists
-- exactly when its write committed. `seq` is the log position (identity: allocated at insert,
-- so concurrent transactions can commit their positions out of order; readers only read up
-- to a settled horizon, see postgres/outbox.rs). `payload` is the full CloudEvent JSON as
-- text (exactly as written; `sequence` is set from `seq` on read).

create table outbox (
    seq           bigint      generated always as identity primary key,
    topic         text        not null,
    partition_key text        not null,
    event_id      text        not null unique,
    event_type    text        not null,
    payload       text        not null,
    created_at    timestamptz not null
);

create index outbox_by_topic on outbox (topic, seq);
