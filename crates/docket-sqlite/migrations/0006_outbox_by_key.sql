-- 0006_outbox_by_key: one partition key's events in log order, for replaying a user's
-- real-time stream from a `Last-Event-ID` without scanning other users' events.

CREATE INDEX outbox_by_key ON outbox (partition_key, topic, seq);
