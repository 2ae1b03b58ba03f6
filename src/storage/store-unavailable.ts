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
