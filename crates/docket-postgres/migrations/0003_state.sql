-- 0003_state: the key-value state store (Dapr semantics: ETags, TTL).
--
-- `etag` is a fresh random token per write (never a counter, so a key deleted and set again
-- never matches an old ETag). Expired rows behave as missing until `purge_expired` removes
-- them.

create table state (
    key        text        primary key,
    value      bytea       not null,
    etag       text        not null,
    expires_at timestamptz,
    updated_at timestamptz not null
);

create index state_by_expiry on state (expires_at) where expires_at is not null;
