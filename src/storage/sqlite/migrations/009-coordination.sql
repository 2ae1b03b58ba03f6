-- What N processes sharing one metadata store coordinate through. SQLite serves one process (the data
-- directory lock), but it keeps the same rows so that core has one code path and one contract suite.
-- A session's lease: the request (on whichever node) that may change the session, until lease_until (ms).
ALTER TABLE upload_sessions ADD COLUMN lease_holder TEXT;
ALTER TABLE upload_sessions ADD COLUMN lease_until INTEGER;
-- Named leases: one runner at a time ('gc', 'fsck', …) and nodes' liveness ('node:<id>').
CREATE TABLE leases (
  name   TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  until  INTEGER NOT NULL
) WITHOUT ROWID;
-- Secrets every node shares (signing keys, the admin token).
CREATE TABLE secrets (
  name       TEXT PRIMARY KEY,
  value      BLOB NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
-- The holder (node) of a pending idempotency claim.
ALTER TABLE idempotency_records ADD COLUMN claimed_by TEXT;
