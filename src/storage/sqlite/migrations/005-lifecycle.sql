-- fsck --repair moves a corrupt blob file to quarantine/ and marks its row: the blob reads as absent until
-- the same bytes are uploaded again (which clears the mark).
ALTER TABLE blobs ADD COLUMN quarantined_at INTEGER;

-- A hold pauses blob removal by GC (a backup copying files from a database snapshot takes one). Holds
-- expire by themselves, so a crashed holder cannot pause GC for ever.
CREATE TABLE gc_holds (
  id         TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- GC finds expired temporary pins and expired objects by index.
CREATE INDEX pins_by_expiry ON pins(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX objects_by_expiry ON objects(expires_at) WHERE expires_at IS NOT NULL;
-- Pins newest first per principal, with the digest as a tie-breaker for the cursor.
DROP INDEX pins_by_principal_created;
CREATE INDEX pins_by_principal_created ON pins(principal, created_at DESC, digest DESC);
