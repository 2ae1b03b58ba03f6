-- public_revisions: anonymous readers of a public_read bucket may also read older revisions, ?revisions and
-- ?compare (off by default: public_read alone opens the current content only).
ALTER TABLE buckets ADD COLUMN public_revisions INTEGER NOT NULL DEFAULT 0 CHECK (public_revisions IN (0, 1));

-- Objects past expires_at are gone for readers at once: a bucket's usage leaves them out, and a write into
-- the bucket deletes them first. Both look them up per bucket by this index.
CREATE INDEX objects_by_bucket_expiry ON objects(bucket, expires_at) WHERE expires_at IS NOT NULL;

-- A principal's upload sessions, newest first (GET /api/blobs/uploads).
CREATE INDEX upload_sessions_by_principal ON upload_sessions(principal, id);
