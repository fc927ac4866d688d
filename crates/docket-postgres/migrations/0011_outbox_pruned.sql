-- 0011_outbox_pruned: how far housekeeping has pruned each outbox topic.
--
-- `through` is the highest position of `topic` that pruning deleted; it only grows. A log's
-- tail (`Store::outbox_tail`) is the highest `through` of its topics: every event above it
-- is still stored, so a reader resuming below it knows it may have missed events instead of
-- skipping them silently. It also keeps a log's head where it was when every row is pruned.
-- No index on `created_at` is needed: pruning walks each topic from its oldest position
-- (`outbox_by_topic`) and stops at the first row it must keep.

create table outbox_pruned (
    topic   text   not null primary key,
    through bigint not null
);
