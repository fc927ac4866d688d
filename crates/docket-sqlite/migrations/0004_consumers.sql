-- 0004_consumers: what the embedded event bus remembers per consumer group.
--
-- `consumer_offsets` holds each group's committed position in a topic's log (the outbox):
-- every event at or below it has been acknowledged or dead-lettered. `consumer_attempts`
-- holds the failed attempts of the event a group is retrying, so a restart resumes the
-- count instead of starting over; its row goes when the event is acknowledged or
-- dead-lettered. Instants are INTEGER microseconds.

CREATE TABLE consumer_offsets (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic)
) STRICT, WITHOUT ROWID;

CREATE TABLE consumer_attempts (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    last_error     TEXT    NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic, seq)
) STRICT, WITHOUT ROWID;
