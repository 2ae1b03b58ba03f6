// The one table from error code to HTTP status and the one renderer of `{"error": {code, message, …}}`.
// Every non-2xx blobd answers goes through here; unknown exceptions become a 500 that names the request
// id and nothing else — the stack goes to the log only.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { storageErrorFrom } from '../core/disk-budget.ts';
import { BlobdError, type ErrorCode } from '../core/errors.ts';
import type { AppEnv } from './env.ts';

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  invalid_request: 400,
  invalid_digest: 400,
  digest_mismatch: 400,
  unauthorized: 401,
  token_expired: 401,
  token_not_found: 404,
  signature_expired: 403,
  signature_invalid: 403,
  idempotency_key_reused: 422,
  idempotency_key_in_use: 409,
  forbidden: 403,
  blob_not_found: 404,
  pin_not_found: 404,
  upload_not_found: 404,
  // tus: an upload that expired (its row may still exist until GC) is Gone.
  upload_gone: 410,
  // tus checksum extension: 460 Checksum Mismatch.
  checksum_mismatch: 460 as ContentfulStatusCode,
  invalid_bucket_name: 400,
  invalid_key: 400,
  bucket_not_found: 404,
  bucket_not_empty: 409,
  object_not_found: 404,
  quota_exceeded: 413,
  upload_locked: 409,
  maintenance_running: 409,
  offset_mismatch: 409,
  size_mismatch: 400,
  insufficient_storage: 507,
  not_found: 404,
  too_large: 413,
  range_not_satisfiable: 416,
  precondition_failed: 412,
  unsupported_media_type: 415,
  // nginx's "client closed request": nobody reads it, but the access log says what happened.
  request_aborted: 499 as ContentfulStatusCode,
  internal_error: 500,
  not_implemented: 501,
  unavailable: 503,
  store_unavailable: 503,
  database_unavailable: 503,
};

/** Codes for errors Hono itself raises (malformed JSON and the like), by status. */
function codeForHttpException(status: number): ErrorCode {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 413) return 'too_large';
  if (status === 415) return 'unsupported_media_type';
  return status >= 500 ? 'internal_error' : 'invalid_request';
}

/** What an answered request's unread body may still cost before its connection is cut: bytes, and time. */
const LINGER_BYTES = 256 * 1024 * 1024;
const LINGER_MS = 10_000;

/**
 * What to do with a request body we did not read before answering (a refusal: 409, 413, 401…). Closing the
 * socket with unread input makes the kernel send a reset, which can eat our answer — a proxy such as nginx
 * then shows its client a 502 and marks this healthy node failed. So a body of bounded size is read and
 * discarded after the answer ("lingering close", as nginx does itself) and the connection stays usable;
 * only a body declared larger than the bound is refused with Connection: close at once.
 */
function unreadBody(c: Context<AppEnv>): 'none' | 'drain' | 'close' {
  const incoming = c.env?.incoming;
  if (!incoming || incoming.readableEnded || incoming.destroyed) return 'none';
  const length = incoming.headers['content-length'];
  if (length === undefined && incoming.headers['transfer-encoding'] === undefined) return 'none';
  if (length !== undefined && Number(length) > LINGER_BYTES) return 'close';
  return 'drain';
}

/** Read and discard the rest of the body, at most LINGER_BYTES or LINGER_MS; past either, cut the connection. */
function drainBounded(incoming: NonNullable<AppEnv['Bindings']>['incoming']): void {
  let seen = 0;
  const cut = () => incoming.socket?.destroy();
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  const done = () => clearTimeout(timer);
  incoming.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_BYTES) {
      done();
      cut();
    }
  });
  incoming.once('end', done);
  incoming.once('close', done);
  incoming.resume();
}

/**
 * For any front's error answer: drains a bounded unread request body after the answer, and returns the
 * `Connection: close` header when the connection is not to be kept (a body too large to drain, or `close`).
 */
export function settleUnreadBody(c: Context<AppEnv>, close = false): Record<string, string> {
  const unread = unreadBody(c);
  if (unread === 'drain') drainBounded(c.env!.incoming);
  // A body declared too large to drain: this connection is not kept.
  return close || unread === 'close' ? { Connection: 'close' } : {};
}

export function renderError(c: Context<AppEnv>, err: unknown, headers: Record<string, string> = {}): Response {
  let error: BlobdError;
  let storage: BlobdError | null;
  if (err instanceof BlobdError) {
    error = err;
  } else if ((storage = storageErrorFrom(err))) {
    // A store found its disk full where core did not check first: still a 507 for the client, not a 500;
    // an object store that could not be reached: a 503 to retry.
    c.get('log')?.warn(
      { err: { message: (err as Error).message, code: (err as { code?: unknown }).code } },
      storage.code === 'store_unavailable' ? 'byte store unavailable' : storage.code === 'database_unavailable' ? 'metadata database unavailable' : 'disk full',
    );
    error = storage;
  } else if (err instanceof HTTPException && err.status < 500) {
    // zod-openapi's gate before a JSON body is validated: say what the route takes.
    const message = err.status === 415 ? `${c.req.method} ${c.req.path} takes a JSON body (Content-Type: application/json)` : err.message;
    error = new BlobdError(codeForHttpException(err.status), message || 'bad request');
  } else {
    c.get('log')?.error({ err }, 'unhandled error');
    error = new BlobdError('internal_error', 'internal error; the request id is in the log', {
      request_id: c.get('requestId'),
    });
  }
  // tus: an upload busy with another request is 423 Locked, as tusd answers, which tus clients wait out and
  // retry; a 409 (any 4xx but 423) makes tus-js-client drop the upload and send everything again.
  const status = error.code === 'upload_locked' && c.req.path.startsWith('/api/tus/') ? (423 as ContentfulStatusCode) : STATUS[error.code];
  headers = { ...settleUnreadBody(c, status >= 500 && status !== 507), ...headers };
  if (error.code === 'offset_mismatch' && typeof error.details.offset === 'number') {
    headers = { 'Upload-Offset': String(error.details.offset), ...headers };
  }
  if (error.code === 'store_unavailable' || error.code === 'database_unavailable') headers = { 'Retry-After': '5', ...headers };
  if (STATUS[error.code] === 401) headers = { 'WWW-Authenticate': 'Bearer realm="blobd"', ...headers };
  return c.json({ error: { code: error.code, message: error.message, ...error.details } }, status, headers);
}
