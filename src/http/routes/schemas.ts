// zod schemas shared by several route declarations (they also name the components in /openapi.json).
import { z } from '@hono/zod-openapi';

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
