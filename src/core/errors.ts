// The only error type core throws: a stable snake_case code, a human message, and optional details.
// The HTTP layer maps codes to statuses (src/http/errors.ts); core never thinks in status codes.

export type ErrorCode =
  | 'invalid_request'
  | 'invalid_digest'
  | 'digest_mismatch'
  | 'blob_not_found'
  | 'pin_not_found'
  | 'upload_not_found'
  | 'upload_gone'
  | 'checksum_mismatch'
  | 'invalid_bucket_name'
  | 'invalid_key'
  | 'bucket_not_found'
  | 'bucket_not_empty'
  | 'object_not_found'
  | 'quota_exceeded'
  | 'upload_locked'
  | 'maintenance_running'
  | 'offset_mismatch'
  | 'size_mismatch'
  | 'insufficient_storage'
  | 'not_found'
  | 'too_large'
  | 'range_not_satisfiable'
  | 'precondition_failed'
  | 'unsupported_media_type'
  | 'request_aborted'
  | 'unauthorized'
  | 'token_expired'
  | 'token_not_found'
  | 'signature_expired'
  | 'signature_invalid'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_use'
  | 'forbidden'
  | 'not_implemented'
  | 'unavailable'
  | 'store_unavailable'
  | 'database_unavailable'
  | 'internal_error';

export class BlobdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'BlobdError';
  }
}
