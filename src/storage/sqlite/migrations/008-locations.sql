-- Where a blob's bytes are, as the byte store named them when it committed them. NULL means "the digest
-- itself" (the local store's content addresses), so every row written before this migration, and every
-- local-store row after it, stays as lean as it was; an object store's unique keys are written out.
ALTER TABLE blobs ADD COLUMN location TEXT;
-- isLocationClaimed: "does a row name this key?" is one indexed lookup (NULLs are found by digest).
CREATE INDEX blobs_by_location ON blobs(location) WHERE location IS NOT NULL;

-- The byte store's cursor for a session's bytes up to upload_offset (opaque; NULL for the local store),
-- written in the same UPDATE as the offset. `location`: set while completing, where the bytes are being
-- committed. Sessions completing at the upgrade were local-store ones: their location is their digest.
ALTER TABLE upload_sessions ADD COLUMN cursor TEXT;
ALTER TABLE upload_sessions ADD COLUMN location TEXT;
UPDATE upload_sessions SET location = digest WHERE state = 'completing';
CREATE INDEX upload_sessions_by_location ON upload_sessions(location) WHERE location IS NOT NULL;

-- Bytes that no row points to any more, queued by the transaction that let go of them (a GC delete, a
-- purge, a duplicate's bytes, a healed quarantined row's old copy); a worker deletes them and the entry.
-- seq is the queue order (oldest first); a location is queued once.
CREATE TABLE byte_deletions (
  seq       INTEGER PRIMARY KEY,
  location  TEXT NOT NULL UNIQUE,
  digest    TEXT NOT NULL,
  queued_at INTEGER NOT NULL
);
