-- Blobs: one row per digest whose bytes are durable under blobs/ (the row is committed after the rename).
CREATE TABLE blobs (
  digest     TEXT PRIMARY KEY,
  size       INTEGER NOT NULL CHECK (size >= 0),
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Pins: a principal's claim on a blob uploaded without a bucket.
CREATE TABLE pins (
  principal  TEXT NOT NULL,
  digest     TEXT NOT NULL REFERENCES blobs(digest),
  temporary  INTEGER NOT NULL DEFAULT 0 CHECK (temporary IN (0, 1)),
  expires_at INTEGER,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (principal, digest)
) WITHOUT ROWID;
CREATE INDEX pins_by_digest ON pins(digest);
CREATE INDEX pins_by_principal_created ON pins(principal, created_at DESC);
