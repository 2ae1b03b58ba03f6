-- An entity tag per revision, as SQLite's migration 011: written by the front that computed it (the S3
-- front: an MD5), NULL for revisions written without one. A nullable column without a default: no rewrite.
ALTER TABLE revisions ADD COLUMN etag TEXT;
