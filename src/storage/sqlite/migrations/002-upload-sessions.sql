-- Upload sessions: resumable uploads. Bytes live in uploads/<id>; `offset` is how many of them are durable.
CREATE TABLE upload_sessions (
  id              TEXT PRIMARY KEY,
  token_hash      TEXT NOT NULL,
  principal       TEXT NOT NULL,
  filename        TEXT,
  content_type    TEXT,
  temporary       INTEGER NOT NULL DEFAULT 0 CHECK (temporary IN (0, 1)),
  declared_size   INTEGER CHECK (declared_size >= 0),
  expected_digest TEXT,
  bucket          TEXT,
  key             TEXT,
  upload_offset   INTEGER NOT NULL DEFAULT 0 CHECK (upload_offset >= 0),
  state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completing', 'completed')),
  digest          TEXT,
  result          TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX upload_sessions_by_expiry ON upload_sessions(expires_at);
CREATE INDEX upload_sessions_by_state ON upload_sessions(state);
