-- Small blobs' bytes, kept in the database instead of a file each (see --inline-max). A row here is
-- written in the same transaction as its blob row; the blob's location is its digest in both tiers.
CREATE TABLE inline_blobs (
  digest     TEXT PRIMARY KEY,
  content    BLOB NOT NULL,
  created_at INTEGER NOT NULL
);

-- Inline bytes fsck found corrupt, moved aside (never served, never deleted by blobd).
CREATE TABLE inline_quarantine (
  digest         TEXT NOT NULL,
  content        BLOB NOT NULL,
  quarantined_at INTEGER NOT NULL
);
