// zod schemas shared by several route declarations (they also name the components in /openapi.json).
import { z } from '@hono/zod-openapi';
import { BlobdError } from '../../core/errors.ts';
import { MAX_PAGE, type PageRequest } from '../../core/paging.ts';
import { parseDuration } from '../../config.ts';

export const ErrorBody = z
  .object({
    error: z.object({ code: z.string(), message: z.string() }).passthrough(),
  })
  .openapi('Error');

export const DigestParam = z.string().openapi({
  param: { name: 'digest', in: 'path' },
  description: '`sha256:<64 hex>` or the bare 64 hex',
  example: 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
});

export const BinaryBody = {
  'application/octet-stream': { schema: z.string().openapi({ type: 'string', format: 'binary' }) },
};

/** A JSON response declaration. */
export function jsonContent<T extends z.ZodTypeAny>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

export function errors(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((s) => [s, { description: 'error', content: { 'application/json': { schema: ErrorBody } } }]),
  );
}

/** A time as the API shows it: ISO 8601, or null. */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** `?limit=&cursor=`, the same on every listing. */
export const PageQuery = {
  limit: z.string().regex(/^\d{1,4}$/, '1 to 1000').optional().openapi({ description: '1 to 1000 (default 100; objects 1000)' }),
  cursor: z.string().max(4096).optional().openapi({ description: "the previous page's next_cursor" }),
};

/** The page a listing asks for; `limit` is 1 to 1000. */
export function pageRequest(q: { limit?: string; cursor?: string }, defaultLimit = 100): PageRequest {
  const limit = q.limit === undefined ? defaultLimit : Number(q.limit);
  if (limit < 1 || limit > MAX_PAGE) throw new BlobdError('invalid_request', `limit is 1 to ${MAX_PAGE}`);
  return { limit, ...(q.cursor !== undefined ? { cursor: q.cursor } : {}) };
}

/** Every listing answers `{ items, next_cursor }` (next_cursor null on the last page). */
export function pageJson<T extends z.ZodTypeAny>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() });
}

/** An `expires_in` as the API takes it: seconds, or a duration such as "90s", "24h", "30d". */
export const ExpiresIn = z.union([z.number().int().min(1), z.string().max(32)]);

/** `expires_in` as milliseconds: a number of seconds or a duration string. */
export function lifetimeMs(value: number | string): number {
  if (typeof value === 'number') return value * 1000;
  try {
    return parseDuration(value);
  } catch {
    throw new BlobdError('invalid_request', 'expires_in is a number of seconds or a duration such as "24h"', { field: 'expires_in' });
  }
}
