-- A session's running-hash state that another process can go on from (see UploadRecord.hashState).
ALTER TABLE upload_sessions ADD COLUMN hash_state TEXT;
