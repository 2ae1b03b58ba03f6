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
import { BinaryBody, DigestParam, errors } from './schemas.ts';

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


function created(c: Context<AppEnv>, result: IngestResult) {
  c.header('Location', `/api/blobs/${result.digest}`);
  c.header('ETag', `"${result.digest}"`);
  return c.json({ digest: result.digest, size: result.size, deduplicated: result.deduplicated }, 201);
}

export function blobRoutes(blobs: BlobService) {
  const app = createRouter();

  app.openapi(download, async (c) => {
    const digest = parseDigest(c.req.valid('param').digest);
    const { size } = await blobs.describe(digest);
    return sendBlob(c, {
      digest,
      size,
      filename: c.req.valid('query').filename,
      open: (range) => blobs.openContent(digest, range),
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

  return app;
}
