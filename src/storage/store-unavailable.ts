// What "the byte store cannot be reached or failed this request" looks like, recognised in one place so that
// core can answer 503 (retry later; nothing acknowledged was lost) instead of 500. An object store throws
// it for network failures, timeouts and its own 5xx answers; a bad request of ours is never one.

export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
  readonly code = 'STORE_UNAVAILABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** True when `err` says the byte store is unreachable or failing right now. */
export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof StoreUnavailableError || (err as { code?: unknown } | null)?.code === 'STORE_UNAVAILABLE';
}

/** postgres.js's own codes for a connection that went or never came, and the network's. */
const CONNECTION_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);

/**
 * True when `err` says the metadata database cannot be reached or is going away right now (a restart, a
 * failover, too many connections): the request failed before anything was acknowledged, and the same
 * request later will do. SQLSTATE class 08 (connection exception), 57P01–57P03 (shutting down, cannot
 * connect now), 53300 (too many connections), 25006 (read-only: a failover in progress), a database that
 * allows no connections for now.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (CONNECTION_CODES.has(code)) return true;
  // A socket reset under a query. Requests' own sockets never get here (a client gone is request_aborted),
  // and the byte store wraps its failures (StoreUnavailableError): what is left is the database's.
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  if (e?.name !== 'PostgresError') return false;
  // 25006: a read-only server — a failover's old primary, or a replica the name still points at.
  return (
    code.startsWith('08') || /^57P0[123]$/.test(code) || code === '53300' || code === '25006' ||
    (code === '55000' && /accepting connections|allow connections/.test(String(e.message)))
  );
}
