-- Small blobs' bytes kept with their row (see --inline-max): written by the blob row's own write, gone
-- with the row, so that no node can delete the bytes of a row another node just wrote. NULL for a blob
-- whose bytes are in the byte store. A nullable column without a default: no rewrite of the table.
ALTER TABLE blobs ADD COLUMN content BYTEA;

-- Inline bytes fsck found corrupt, moved aside (never served, never deleted by blobd).
CREATE TABLE inline_quarantine (
  digest         TEXT COLLATE "C" NOT NULL,
  content        BYTEA NOT NULL,
  quarantined_at BIGINT NOT NULL
);
