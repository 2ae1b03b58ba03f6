// S3's error answers: an XML body with S3's code and message, the HTTP status S3 gives that code, and the
// request id. A front translates core's BlobdError into these (toS3Error); nothing here decides a rule.
import { storageErrorFrom } from '../../core/disk-budget.ts';
import { BlobdError } from '../../core/errors.ts';

export class S3Error extends Error {
  override name = 'S3Error';
  constructor(
    /** S3's code, e.g. NoSuchKey, SignatureDoesNotMatch. */
    readonly code: string,
    readonly status: number,
    message: string,
    /** Extra elements S3 puts in the error body (BucketName, Key, …), in order. */
    readonly extra: Readonly<Record<string, string>> = {},
    /** Headers the answer carries besides the request id (Retry-After, …). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/**
 * Escapes text for an XML element or attribute. Characters XML 1.0 cannot carry at all, not even as
 * references (C0 controls but tab, LF and CR; U+FFFE, U+FFFF), become U+FFFD: a request's path echoed in an
 * error, or a key an older blobd accepted, must not make the whole answer unreadable to a strict parser.
 */
export function xmlEscape(text: string): string {
  return text.replace(/[&<>"'\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, (ch) => ENTITIES[ch] ?? '\uFFFD');
}

/** The body of an S3 error answer. */
export function errorXml(err: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(err.extra)
    .map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`)
    .join('');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${xmlEscape(err.code)}</Code><Message>${xmlEscape(err.message)}</Message>${extra}` +
    `<Resource>${xmlEscape(resource)}</Resource><RequestId>${xmlEscape(requestId)}</RequestId></Error>`
  );
}

/** Core's error codes in S3's words. Anything unknown is InternalError (500), which must never happen for bad input. */
const FROM_CORE: Partial<Record<string, [string, number]>> = {
  invalid_request: ['InvalidRequest', 400],
  invalid_digest: ['InvalidArgument', 400],
  digest_mismatch: ['BadDigest', 400],
  checksum_mismatch: ['BadDigest', 400],
  invalid_bucket_name: ['InvalidBucketName', 400],
  invalid_key: ['KeyTooLongError', 400],
  bucket_not_found: ['NoSuchBucket', 404],
  bucket_not_empty: ['BucketNotEmpty', 409],
  object_not_found: ['NoSuchKey', 404],
  blob_not_found: ['NoSuchKey', 404],
  not_found: ['NoSuchKey', 404],
  upload_not_found: ['NoSuchUpload', 404],
  upload_gone: ['NoSuchUpload', 404],
  quota_exceeded: ['QuotaExceeded', 403],
  too_large: ['EntityTooLarge', 400],
  size_mismatch: ['IncompleteBody', 400],
  range_not_satisfiable: ['InvalidRange', 416],
  precondition_failed: ['PreconditionFailed', 412],
  request_aborted: ['RequestTimeout', 400],
  unauthorized: ['AccessDenied', 403],
  forbidden: ['AccessDenied', 403],
  token_expired: ['ExpiredToken', 400],
  signature_expired: ['AccessDenied', 403],
  signature_invalid: ['SignatureDoesNotMatch', 403],
  upload_locked: ['OperationAborted', 409],
  maintenance_running: ['OperationAborted', 409],
  insufficient_storage: ['ServiceUnavailable', 503],
  store_unavailable: ['ServiceUnavailable', 503],
  database_unavailable: ['ServiceUnavailable', 503],
  unavailable: ['ServiceUnavailable', 503],
  not_implemented: ['NotImplemented', 501],
};

/** Any error a handler met, as the S3 answer to give. */
export function toS3Error(err: unknown): S3Error {
  if (err instanceof S3Error) return err;
  // A store that found its disk full or could not be reached, where core did not check first.
  err = err instanceof BlobdError ? err : (storageErrorFrom(err) ?? err);
  if (err instanceof BlobdError) {
    const [code, status] = FROM_CORE[err.code] ?? ['InternalError', 500];
    const headers: Record<string, string> = status === 503 ? { 'Retry-After': '5' } : {};
    // invalid_key covers more than length: say KeyTooLongError only when it is the length.
    if (err.code === 'invalid_key' && !/1024 bytes/.test(err.message)) return new S3Error('InvalidArgument', 400, err.message, {}, headers);
    // Core speaks of tokens; an S3 client holds a key and signs with it.
    if (err.code === 'unauthorized') return new S3Error(code, status, 'Access Denied: this request needs an AWS Signature Version 4 signature made with an S3 key');
    if (err.code === 'forbidden') return new S3Error(code, status, `Access Denied: ${err.message.replace(/\btoken\b/g, 'key')}`);
    return new S3Error(code, status, err.message, {}, headers);
  }
  return new S3Error('InternalError', 500, 'We encountered an internal error. Please try again.');
}
