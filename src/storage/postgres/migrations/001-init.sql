-- blobd's PostgreSQL schema, every table but the catalog's (002-catalog.sql: buckets, objects, revisions).
-- Times are BIGINT milliseconds since the epoch; sizes BIGINT bytes. Applied by migrate.ts in one transaction.
-- Identifiers that are listed in order or paged by cursor are COLLATE "C": byte order, whatever the
-- database's locale (a cursor like U+10FFFF must sort after every id).

-- Blobs: one row per digest whose bytes are durable at `location` (the row is written after the bytes).
-- The location is always written out (the local store's is the digest itself); an object store's are unique
-- keys, never reused, so a queued deletion never hits bytes a live row names.
CREATE TABLE blobs (
  digest         TEXT COLLATE "C" PRIMARY KEY,
  size           BIGINT NOT NULL CHECK (size >= 0),
  location       TEXT NOT NULL,
  created_at     BIGINT NOT NULL,
  -- fsck moved the bytes to quarantine: the blob reads as absent until the same bytes are stored again.
  quarantined_at BIGINT
);
CREATE INDEX blobs_by_location ON blobs (location);
CREATE INDEX blobs_by_created ON blobs (created_at);

-- Pins: a principal's claim on a blob uploaded without a bucket.
CREATE TABLE pins (
  principal  TEXT NOT NULL,
  digest     TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
  temporary  BOOLEAN NOT NULL DEFAULT false,
  expires_at BIGINT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (principal, digest)
);
CREATE INDEX pins_by_digest ON pins (digest);
CREATE INDEX pins_by_principal_created ON pins (principal, created_at DESC, digest DESC);
CREATE INDEX pins_by_expiry ON pins (expires_at) WHERE expires_at IS NOT NULL;

-- Upload sessions. `cursor` is the byte store's cursor for the bytes up to upload_offset; `location` is
-- what the session claims (its own bytes while open, if the store gives it one; its commit target while
-- completing). lease_holder/lease_until: which node serves the session now (one at a time across nodes).
CREATE TABLE upload_sessions (
  id              TEXT COLLATE "C" PRIMARY KEY,
  token_hash      TEXT NOT NULL,
  principal       TEXT NOT NULL,
  filename        TEXT,
  content_type    TEXT,
  temporary       BOOLEAN NOT NULL DEFAULT false,
  declared_size   BIGINT CHECK (declared_size >= 0),
  size_limit      BIGINT CHECK (size_limit >= 0),
  expected_digest TEXT,
  bucket          TEXT,
  key             TEXT,
  client_metadata TEXT,
  upload_offset   BIGINT NOT NULL DEFAULT 0 CHECK (upload_offset >= 0),
  state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completing', 'completed')),
  digest          TEXT,
  result          TEXT,
  cursor          TEXT,
  location        TEXT,
  lease_holder    TEXT,
  lease_until     BIGINT,
  -- A running-hash state another node can go on from (opaque here; core's format says its offset).
  hash_state      TEXT,
  created_at      BIGINT NOT NULL,
  updated_at      BIGINT NOT NULL,
  expires_at      BIGINT NOT NULL
);
CREATE INDEX upload_sessions_by_expiry ON upload_sessions (expires_at);
CREATE INDEX upload_sessions_unfinished ON upload_sessions (state) WHERE state IN ('open', 'completing');
CREATE INDEX upload_sessions_by_principal ON upload_sessions (principal, id);
CREATE INDEX upload_sessions_by_location ON upload_sessions (location) WHERE location IS NOT NULL;

-- API tokens: stored only as the SHA-256 of the token; `scopes` is a JSON array.
CREATE TABLE api_tokens (
  id           TEXT COLLATE "C" PRIMARY KEY,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL,
  scopes       TEXT NOT NULL,
  created_by   TEXT NOT NULL,
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT,
  last_used_at BIGINT
);

-- Idempotency-Key records; a row without `response` is a request still running, on node `claimed_by`.
CREATE TABLE idempotency_records (
  principal   TEXT NOT NULL,
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  body_hash   TEXT,
  response    BYTEA,
  created_at  BIGINT NOT NULL,
  claimed_by  TEXT,
  PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_records_by_created ON idempotency_records (created_at);

-- A hold pauses blob removal by GC; holds expire by themselves.
CREATE TABLE gc_holds (
  id         TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL
);

-- Bytes no row points to any more, queued by the transaction that let go of them; any node drains it.
CREATE TABLE byte_deletions (
  seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  location  TEXT NOT NULL UNIQUE,
  digest    TEXT NOT NULL,
  queued_at BIGINT NOT NULL
);

-- Named leases: one holder at a time across nodes ('gc', 'fsck', 'node:<id>').
CREATE TABLE leases (
  name   TEXT COLLATE "C" PRIMARY KEY,
  holder TEXT NOT NULL,
  until  BIGINT NOT NULL
);

-- Secrets every node shares (signing keys, the admin token); the first writer wins.
CREATE TABLE secrets (
  name       TEXT COLLATE "C" PRIMARY KEY,
  value      BYTEA NOT NULL,
  created_at BIGINT NOT NULL
);
