-- API tokens: stored only as the SHA-256 of the token. The token names its own id, so a lookup is by id
-- (not by secret) and the hash comparison happens in constant time in core.
CREATE TABLE api_tokens (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL,
  scopes       TEXT NOT NULL,
  created_by   TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,
  last_used_at INTEGER
) WITHOUT ROWID;

-- Idempotency-Key records: one per (principal, key). `response` is sealed (encrypted) by core and only
-- set once the first request succeeded; a row without it is a request still running.
CREATE TABLE idempotency_records (
  principal   TEXT NOT NULL,
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  body_hash   TEXT,
  response    BLOB,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (principal, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_records_by_created ON idempotency_records(created_at);

-- A signed URL's max_size caps the whole session it starts.
ALTER TABLE upload_sessions ADD COLUMN size_limit INTEGER CHECK (size_limit >= 0);
