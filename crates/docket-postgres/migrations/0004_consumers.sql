-- 0004_consumers: what the embedded event bus remembers per consumer group.
--
-- `consumer_offsets` holds each group's committed position in a topic's log (the outbox):
-- every event at or below it has been acknowledged or dead-lettered. `consumer_attempts`
-- holds the failed attempts of the event a group is retrying, so a restart resumes the
-- count instead of starting over; its row goes when the event is acknowledged or
-- dead-lettered.

create table consumer_offsets (
    consumer_group text        not null,
    topic          text        not null,
    position       bigint      not null,
    updated_at     timestamptz not null,
    primary key (consumer_group, topic)
);

create table consumer_attempts (
    consumer_group text        not null,
    topic          text        not null,
    seq            bigint      not null,
    attempts       integer     not null,
    last_error     text        not null,
    updated_at     timestamptz not null,
    primary key (consumer_group, topic, seq)
);
