-- 0003_state: the key-value state store (Dapr semantics: ETags, TTL).
--
-- `etag` is a fresh random token per write (never a counter, so a key deleted and set again
-- never matches an old ETag). `expires_at` is INTEGER microseconds; expired rows behave as
-- missing until `purge_expired` removes them.

CREATE TABLE state (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      BLOB    NOT NULL,
    etag       TEXT    NOT NULL,
    expires_at INTEGER,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX state_by_expiry ON state (expires_at) WHERE expires_at IS NOT NULL;
