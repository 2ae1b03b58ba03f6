-- Buckets, objects and revisions: SQLite's catalog tables (its migrations 003, 005, 006) in one step.
-- Times are BIGINT milliseconds, sizes BIGINT bytes, revision numbers BIGINT (a request may name ten
-- digits). Keys and names are COLLATE "C": byte order of their UTF-8, as SQLite's BINARY compares them, so
-- listings, cursors and `prefix || U+10FFFF` bounds agree with it whatever the database's default collation is.
CREATE TABLE buckets (
  name             TEXT COLLATE "C" PRIMARY KEY,
  max_object_size  BIGINT CHECK (max_object_size >= 0),
  quota_bytes      BIGINT CHECK (quota_bytes >= 0),
  max_revisions    BIGINT CHECK (max_revisions >= 1),
  public_read      BOOLEAN NOT NULL DEFAULT false,
  -- With public_read: anonymous readers may also read older revisions, ?revisions and ?compare.
  public_revisions BOOLEAN NOT NULL DEFAULT false,
  -- Kept up to date by every revision insert and delete, under the bucket row's lock, so a quota check
  -- costs one row read and is exact among concurrent writers on every node. Expired objects still count
  -- here until they are deleted; readers subtract them.
  object_count     BIGINT NOT NULL DEFAULT 0,
  stored_bytes     BIGINT NOT NULL DEFAULT 0,
  created_at       BIGINT NOT NULL,
  updated_at       BIGINT NOT NULL
);

-- Metadata as the JSON it was written as: `json`, not `jsonb`, for properties and the revision snapshot,
-- so the members come back in the order the client gave them (jsonb sorts them) and an object's text is
-- the compact text a property filter compares (`property.x={"a":1}`), as on SQLite. Tags are an array of
-- strings (order kept by jsonb too) that the tag filter tests with @>.
CREATE TABLE objects (
  id            TEXT PRIMARY KEY,
  bucket        TEXT COLLATE "C" NOT NULL REFERENCES buckets(name),
  key           TEXT COLLATE "C" NOT NULL,
  revision      BIGINT NOT NULL,
  -- Highest revision number ever given: numbers are never reused, even after revisions are deleted.
  last_revision BIGINT NOT NULL DEFAULT 1,
  content_type  TEXT,
  filename      TEXT,
  owner         TEXT,
  tags          JSONB NOT NULL DEFAULT '[]',
  properties    JSON NOT NULL DEFAULT '{}',
  expires_at    BIGINT,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL,
  created_by    TEXT
);
-- Listing walks (bucket, key) in key order; the cursor is the last key seen. One object per key.
CREATE UNIQUE INDEX objects_by_key ON objects(bucket, key);
CREATE INDEX objects_by_owner ON objects(bucket, owner, key);
-- GC finds expired objects by index; a write into a bucket deletes that bucket's expired objects first,
-- and a bucket's usage leaves them out, both by the second one.
CREATE INDEX objects_by_expiry ON objects(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX objects_by_bucket_expiry ON objects(bucket, expires_at) WHERE expires_at IS NOT NULL;

-- Every content write is a revision. Revisions are the references that keep blobs alive.
CREATE TABLE revisions (
  object_id    TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
  revision     BIGINT NOT NULL,
  digest       TEXT NOT NULL REFERENCES blobs(digest),
  size         BIGINT NOT NULL CHECK (size >= 0),
  content_type TEXT,
  filename     TEXT,
  -- Snapshot of the object's metadata for this revision (what ?compare=N..M diffs).
  metadata     JSON NOT NULL DEFAULT '{}',
  created_at   BIGINT NOT NULL,
  created_by   TEXT,
  PRIMARY KEY (object_id, revision)
);
-- "Is this blob referenced?" is one indexed lookup.
CREATE INDEX revisions_by_digest ON revisions(digest);

-- "Parses as a finite number", as core's finiteNumber (JavaScript's Number) decides it, for property
-- filters: a decimal number (`12`, `-3.5`, `1e6`, surrounding blanks allowed) as a double, else NULL. A
-- value beyond a double's range is not finite (NULL); one too small for it is 0, as in JavaScript.
CREATE FUNCTION blobd_number(t TEXT) RETURNS DOUBLE PRECISION
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
  IF t !~* '^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$' THEN
    RETURN NULL;
  END IF;
  RETURN t::double precision;
EXCEPTION WHEN numeric_value_out_of_range THEN
  BEGIN
    RETURN CASE WHEN abs(t::numeric) < 1 THEN 0 END;
  EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
  END;
END
$$;
