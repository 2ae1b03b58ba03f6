// One shape for every listing: a page of items and an opaque cursor for the next one (null at the end).
// Cursors are base64url JSON of where the page stopped; a cursor this server did not give out is a 400.
import { BlobdError } from './errors.ts';

export interface Page<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

export interface PageRequest {
  /** 1 to 1000. */
  readonly limit: number;
  readonly cursor?: string;
}

export const MAX_PAGE = 1000;

export function encodeCursor(position: unknown): string {
  return Buffer.from(JSON.stringify(position), 'utf8').toString('base64url');
}

/** The position a cursor holds, if `valid` accepts it. */
export function decodeCursor<T>(cursor: string, valid: (position: unknown) => position is T): T {
  try {
    const position: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // No cursor this server gives out holds a NUL (keys, names, ids and digests never do).
    if (valid(position) && !JSON.stringify(position).includes('\\u0000')) return position;
  } catch {
    // fall through
  }
  throw new BlobdError('invalid_request', 'the cursor is not one this server gave out', { field: 'cursor' });
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isPositiveInteger = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;

/**
 * A page from `fetch(limit + 1)`-style rows: the extra row only says "there is more"; the cursor is the
 * position of the last item kept.
 */
export function pageOf<T>(rows: T[], limit: number, positionOf: (last: T) => unknown): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null };
}
