// Blobs by digest: download (GET/HEAD), one-shot upload (POST), upload that must hash to a digest (PUT).
// Translation only: parse, call core/blobs, shape the answer.
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { BlobService, IngestResult } from '../../core/blobs.ts';
import { parseDigest } from '../../core/digest.ts';
import { BlobdError } from '../../core/errors.ts';
import type { AppEnv } from '../env.ts';
import { principalOf, requires } from '../middleware/authenticate.ts';
import { idempotent } from '../middleware/idempotency.ts';
import { createRouter } from '../router.ts';
import { isMultipart, withFilePart } from '../multipart.ts';
import { declaredLength, requestBody } from '../request-body.ts';
import { sendBlob } from '../send-blob.ts';
import type { Need } from '../../core/auth.ts';
import { BinaryBody, DigestParam, errors, jsonContent, isoTime, pageJson, PageQuery, pageRequest } from './schemas.ts';

const IngestBody = z
  .object({ digest: z.string(), size: z.number().int(), deduplicated: z.boolean() })
  .openapi('BlobUploaded');

const download = createRoute({
  method: 'get',
  path: '/api/blobs/{digest}',
  summary: 'Download a blob by digest (HEAD answers the same headers)',
  middleware: [requires({ action: 'blobs:read' })] as const,
  request: {
    params: z.object({ digest: DigestParam }),
    query: z.object({ filename: z.string().max(1024).optional() }),
    headers: z.object({ 'if-match': z.string().optional(), 'if-none-match': z.string().optional(), range: z.string().optional() }),
  },
  responses: {
    200: { description: 'the bytes', content: BinaryBody },
    206: { description: 'one range of the bytes', content: BinaryBody },
    304: { description: 'not modified (If-None-Match)' },
    ...errors(400, 401, 404, 412, 416),
  },
});

const upload = createRoute({
  method: 'post',
  path: '/api/blobs',
  summary: 'One-shot upload of the raw body; pins the blob for the caller',
  middleware: [requires({ action: 'blobs:write' }), idempotent(() => 'stream')] as const,
  request: {
    query: z.object({ temporary: z.enum(['true', 'false']).optional() }),
    body: { content: BinaryBody, required: false },
  },
  responses: { 201: { description: 'stored', content: { 'application/json': { schema: IngestBody } } }, ...errors(400, 401, 413, 415) },
});

const put = createRoute({
  method: 'put',
  path: '/api/blobs/{digest}',
  summary: 'One-shot upload that must hash to {digest}; nothing is kept otherwise',
  middleware: [requires({ action: 'blobs:write' }), idempotent(() => 'stream')] as const,
  request: {
    params: z.object({ digest: DigestParam }),
    query: z.object({ temporary: z.enum(['true', 'false']).optional() }),
    body: { content: BinaryBody, required: false },
  },
  responses: { 201: { description: 'stored', content: { 'application/json': { schema: IngestBody } } }, ...errors(400, 401, 413, 415) },
});

const PinJson = z
  .object({ digest: z.string(), size: z.number().int(), temporary: z.boolean(), expires_at: z.string().nullable(), created_at: z.string() })
  .openapi('Pin');

const listPins = createRoute({
  method: 'get',
  path: '/api/blobs',
  summary: "The caller's pins, newest first",
  middleware: [requires({ action: 'blobs:read' })] as const,
  request: {
    query: z.object(PageQuery),
  },
  responses: {
    200: jsonContent(pageJson(PinJson), 'a page of pins'),
    ...errors(400, 401, 403),
  },
});

/** Dropping one's own pin needs blobs:delete; purging a blob for everyone (`force=true`) is the admin's. */
function deleteNeed(c: Context<AppEnv>): Need {
  return c.req.query('force') === 'true' ? { action: 'admin' } : { action: 'blobs:delete' };
}

const remove = createRoute({
  method: 'delete',
  path: '/api/blobs/{digest}',
  summary: "Drop the caller's pin (GC removes the blob once nothing references it); force=true (admin) purges it now",
  middleware: [requires(deleteNeed)] as const,
  request: { params: z.object({ digest: DigestParam }), query: z.object({ force: z.enum(['true', 'false']).optional() }) },
  responses: { 204: { description: 'dropped (or purged)' }, ...errors(400, 401, 403, 404) },
});

function created(c: Context<AppEnv>, result: IngestResult) {
  c.header('Location', `/api/blobs/${result.digest}`);
  c.header('ETag', `"${result.digest}"`);
  return c.json({ digest: result.digest, size: result.size, deduplicated: result.deduplicated }, 201);
}

export function blobRoutes(blobs: BlobService) {
  const app = createRouter();

  app.openapi(download, async (c) => {
    const digest = parseDigest(c.req.valid('param').digest);
    const { size, location } = await blobs.describe(digest);
    return sendBlob(c, {
      digest,
      size,
      filename: c.req.valid('query').filename,
      open: (range) => blobs.openContent(digest, range, location),
    }) as never;
  });

  app.openapi(upload, async (c) => {
    const opts = { principal: principalOf(c), temporary: c.req.valid('query').temporary === 'true' };
    if (isMultipart(c)) {
      const { result } = await withFilePart(c, (file) => blobs.ingest(() => file.stream, opts));
      return created(c, result);
    }
    return created(c, await blobs.ingest(() => requestBody(c), { ...opts, declaredSize: declaredLength(c) }));
  });

  app.openapi(put, async (c) => {
    const expected = parseDigest(c.req.valid('param').digest);
    if (isMultipart(c)) {
      throw new BlobdError('unsupported_media_type', 'PUT /api/blobs/{digest} takes the raw bytes; use POST for a form');
    }
    const result = await blobs.ingest(() => requestBody(c), {
      principal: principalOf(c),
      expected,
      declaredSize: declaredLength(c),
      temporary: c.req.valid('query').temporary === 'true',
    });
    return created(c, result);
  });

  app.openapi(listPins, async (c) => {
    const page = await blobs.listPins(principalOf(c).id, pageRequest(c.req.valid('query')));
    const items = page.items.map((p) => ({ digest: p.digest, size: p.size, temporary: p.temporary, expires_at: isoTime(p.expiresAt), created_at: isoTime(p.createdAt)! }));
    return c.json({ items, next_cursor: page.nextCursor }, 200);
  });

  app.openapi(remove, async (c) => {
    const digest = parseDigest(c.req.valid('param').digest);
    if (c.req.valid('query').force === 'true') await blobs.purge(digest);
    else await blobs.dropPin(principalOf(c).id, digest);
    return c.body(null, 204);
  });

  return app;
}
