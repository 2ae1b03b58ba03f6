-- Pins keyed by digest, then principal: every lookup by digest (is the blob referenced? its pins deleted)
-- and by (principal, digest) uses the key itself, so the separate pins_by_digest index goes. One B-tree
-- fewer to write per pinned upload: each touched a leaf at a random place, a page for the WAL each.
CREATE TABLE pins_by_digest_first (
  principal  TEXT NOT NULL,
  digest     TEXT NOT NULL REFERENCES blobs(digest),
  temporary  INTEGER NOT NULL DEFAULT 0 CHECK (temporary IN (0, 1)),
  expires_at INTEGER,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (digest, principal)
) WITHOUT ROWID;
INSERT INTO pins_by_digest_first (principal, digest, temporary, expires_at, created_at)
  SELECT principal, digest, temporary, expires_at, created_at FROM pins;
DROP TABLE pins;
ALTER TABLE pins_by_digest_first RENAME TO pins;
CREATE INDEX pins_by_principal_created ON pins(principal, created_at DESC, digest DESC);
CREATE INDEX pins_by_expiry ON pins(expires_at) WHERE expires_at IS NOT NULL;
