-- What a client attached to its upload session for itself (tus Upload-Metadata), kept as sent so that HEAD
-- can return it as sent — keys blobd does not interpret (Uppy's name, type, relativePath) included.
ALTER TABLE upload_sessions ADD COLUMN client_metadata TEXT;
