-- An entity tag per revision, written by the front that computed it (the S3 front: the MD5 of the content,
-- or md5-of-part-md5s-N for a multipart upload). NULL for revisions written without one (the native API
-- does not pay for an MD5).
ALTER TABLE revisions ADD COLUMN etag TEXT;
