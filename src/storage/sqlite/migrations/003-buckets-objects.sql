-- Buckets hold objects: bucket + key → the blob of the current revision, plus metadata.
CREATE TABLE buckets (
  name            TEXT PRIMARY KEY,
  max_object_size INTEGER CHECK (max_object_size >= 0),
  quota_bytes     INTEGER CHECK (quota_bytes >= 0),
  max_revisions   INTEGER CHECK (max_revisions >= 1),
  public_read     INTEGER NOT NULL DEFAULT 0 CHECK (public_read IN (0, 1)),
  -- Kept up to date by every revision insert and delete, so quota checks cost one row read.
  object_count    INTEGER NOT NULL DEFAULT 0,
  stored_bytes    INTEGER NOT NULL DEFAULT 0,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE objects (
  id           TEXT PRIMARY KEY,
  bucket       TEXT NOT NULL REFERENCES buckets(name),
  key          TEXT NOT NULL,
  revision     INTEGER NOT NULL,
  -- Highest revision number ever given: numbers are never reused, even after revisions are deleted.
  last_revision INTEGER NOT NULL DEFAULT 1,
  content_type TEXT,
  filename     TEXT,
  owner        TEXT,
  tags         TEXT NOT NULL DEFAULT '[]',
  properties   TEXT NOT NULL DEFAULT '{}',
  expires_at   INTEGER,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  created_by   TEXT
) WITHOUT ROWID;
-- Listing walks (bucket, key) in key order; the cursor is the last key seen.
CREATE UNIQUE INDEX objects_by_key ON objects(bucket, key);
CREATE INDEX objects_by_owner ON objects(bucket, owner, key);

-- Every content write is a revision. Revisions are the references that keep blobs alive.
CREATE TABLE revisions (
  object_id    TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
  revision     INTEGER NOT NULL,
  digest       TEXT NOT NULL REFERENCES blobs(digest),
  size         INTEGER NOT NULL CHECK (size >= 0),
  content_type TEXT,
  filename     TEXT,
  -- Snapshot of the object's metadata for this revision (what ?compare=N..M diffs).
  metadata     TEXT NOT NULL DEFAULT '{}',
  created_at   INTEGER NOT NULL,
  created_by   TEXT,
  PRIMARY KEY (object_id, revision)
) WITHOUT ROWID;
-- "Is this blob referenced?" is one indexed lookup.
CREATE INDEX revisions_by_digest ON revisions(digest);
