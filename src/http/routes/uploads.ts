// Upload sessions (SPEC §3.1): initiate, append, complete, status, destroy. Translation only: headers and
// query in, one call to core/uploads, headers and JSON out. The session token is checked by core.
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { parseDigest } from '../../core/digest.ts';
import type { CompletedUpload, SessionStatus, UploadService } from '../../core/uploads.ts';
import type { AppEnv } from '../env.ts';
import type { Need } from '../../core/auth.ts';
import { principalOf, requires, uploadToken } from '../middleware/authenticate.ts';
import { idempotent } from '../middleware/idempotency.ts';
import { declaredLength, hasBody, requestBody } from '../request-body.ts';
import { checkKeyQuery } from '../key-target.ts';
import { createRouter } from '../router.ts';
import { BinaryBody, errors, isoTime, jsonContent, pageJson, PageQuery, pageRequest } from './schemas.ts';

// At most 15 digits: every such number is exact in a JS number (and 1 PB is plenty for one blob).
const Decimal = z.string().regex(/^\d{1,15}$/, 'a non-negative integer of at most 15 digits');

const IdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, description: 'upload session id (UUIDv7)' }),
});

const TokenHeaders = z.object({
  'upload-token': z.string().optional().openapi({ description: 'the session token (alias: PortSIP-Upload-Token)' }),
  'upload-offset': Decimal.optional().openapi({ description: 'precondition: the offset the client believes current' }),
});

const Session = z
  .object({ id: z.string(), token: z.string(), offset: z.number().int(), size: z.number().int().nullable(), expires_at: z.string() })
  .openapi('UploadSession');

const Completed = z
  .object({
    id: z.string(),
    digest: z.string(),
    size: z.number().int(),
    filename: z.string().nullable(),
    deduplicated: z.boolean(),
    bucket: z.string().optional(),
    key: z.string().optional(),
    revision: z.number().int().optional(),
  })
  .openapi('UploadCompleted');

const Status = z
  .object({
    id: z.string(),
    offset: z.number().int(),
    size: z.number().int().nullable(),
    state: z.enum(['open', 'completed']),
    expires_at: z.string(),
    filename: z.string().nullable(),
  })
  .openapi('UploadStatus');

function initiateNeed(c: Context<AppEnv>): Need {
  const bucket = c.req.query('bucket');
  return bucket === undefined ? { action: 'blobs:write' } : { action: 'bucket:write', bucket };
}

const initiate = createRoute({
  method: 'post',
  path: '/api/blobs/uploads',
  summary: 'Start a resumable upload session',
  // Into a bucket: the bucket's write scope; otherwise a pin, which needs blobs:write.
  middleware: [checkKeyQuery('key'), requires(initiateNeed), idempotent(() => 'none')] as const,
  request: {
    query: z.object({
      filename: z.string().max(1024).optional(),
      temporary: z.enum(['true', 'false']).optional(),
      size: Decimal.optional(),
      digest: z.string().optional(),
      bucket: z.string().optional(),
      key: z.string().optional(),
      content_type: z.string().max(255).optional(),
    }),
  },
  responses: {
    202: jsonContent(Session, 'session started; send bytes to …/append'),
    201: jsonContent(Completed, 'the digest exists already: nothing to send'),
    ...errors(400, 401, 403, 404, 413, 507),
  },
});

const append = createRoute({
  method: 'post',
  path: '/api/blobs/uploads/{id}/append',
  summary: 'Append the body at the current offset',
  middleware: [requires('upload-token')] as const,
  request: { params: IdParam, headers: TokenHeaders, body: { content: BinaryBody, required: false } },
  responses: {
    203: { description: 'appended; Upload-Offset is the new offset' },
    ...errors(400, 401, 403, 404, 409, 413, 507),
  },
});

const complete = createRoute({
  method: 'post',
  path: '/api/blobs/uploads/{id}/complete',
  summary: 'Append an optional final body, verify size and digest, and store the blob',
  middleware: [requires('upload-token')] as const,
  request: {
    params: IdParam,
    headers: TokenHeaders,
    query: z.object({ digest: z.string().optional() }),
    body: { content: BinaryBody, required: false },
  },
  responses: { 201: jsonContent(Completed, 'stored'), ...errors(400, 401, 403, 404, 409, 413, 507) },
});

const statusRoute = createRoute({
  method: 'get',
  path: '/api/blobs/uploads/{id}/status',
  summary: 'Where the session is: Upload-Offset, Upload-Length, Upload-Expires, Upload-State',
  middleware: [requires('upload-token')] as const,
  request: { params: IdParam, headers: TokenHeaders },
  responses: { 204: { description: 'see the headers' }, ...errors(401, 403, 404) },
});

const show = createRoute({
  method: 'get',
  path: '/api/blobs/uploads/{id}',
  summary: 'The session as JSON (HEAD: the status headers, 204)',
  middleware: [requires('upload-token')] as const,
  request: { params: IdParam, headers: TokenHeaders },
  responses: { 200: jsonContent(Status, 'the session'), 204: { description: 'HEAD: see the headers' }, ...errors(401, 403, 404) },
});

const destroyPost = createRoute({
  method: 'post',
  path: '/api/blobs/uploads/{id}/destroy',
  summary: "Cancel the session and free its bytes now: with its Upload-Token, or the creator's (or an admin's) own credential",
  middleware: [requires('upload-token-or-principal')] as const,
  request: { params: IdParam, headers: TokenHeaders },
  responses: { 204: { description: 'destroyed' }, ...errors(401, 403, 404, 409) },
});

const destroyDelete = createRoute({ ...destroyPost, method: 'delete', path: '/api/blobs/uploads/{id}' });

const OpenSession = z
  .object({
    id: z.string(),
    offset: z.number().int(),
    size: z.number().int().nullable(),
    filename: z.string().nullable(),
    content_type: z.string().nullable(),
    temporary: z.boolean(),
    bucket: z.string().nullable(),
    key: z.string().nullable(),
    created_at: z.string(),
    expires_at: z.string(),
  })
  .openapi('OpenUploadSession');

const list = createRoute({
  method: 'get',
  path: '/api/blobs/uploads',
  summary: "The caller's open upload sessions, newest first (never their tokens)",
  middleware: [requires({ action: 'authenticated' })] as const,
  request: { query: z.object(PageQuery) },
  responses: { 200: jsonContent(pageJson(OpenSession), 'a page of sessions'), ...errors(400, 401, 403) },
});

/** The `Upload-Offset` precondition, if the client sent one. */
function expectedOffset(c: Context<AppEnv>): number | undefined {
  const value = c.req.header('upload-offset');
  return value === undefined ? undefined : Number(value);
}

function statusHeaders(s: SessionStatus): Record<string, string> {
  const headers: Record<string, string> = {
    'Upload-Offset': String(s.offset),
    'Upload-Expires': new Date(s.expiresAt).toUTCString(),
    'Upload-State': s.state,
    'Cache-Control': 'no-store',
  };
  if (s.size !== null) headers['Upload-Length'] = String(s.size);
  return headers;
}

function completedBody(r: CompletedUpload) {
  const object = r.bucket !== undefined ? { bucket: r.bucket, key: r.key, revision: r.revision } : {};
  return { id: r.id, digest: r.digest, size: r.size, filename: r.filename, deduplicated: r.deduplicated, ...object };
}

export function uploadRoutes(uploads: UploadService) {
  const app = createRouter();
  const token = (c: Context<AppEnv>) => uploadToken((name) => c.req.header(name));

  app.openapi(initiate, async (c) => {
    const q = c.req.valid('query');
    const grant = c.get('grant');
    const started = await uploads.initiate({
      principal: principalOf(c),
      filename: q.filename,
      // A signed URL's constraints bind the whole session it starts.
      contentType: grant?.contentType ?? q.content_type,
      sizeLimit: grant?.maxSize,
      temporary: q.temporary === 'true',
      size: q.size === undefined ? undefined : Number(q.size),
      digest: q.digest === undefined ? undefined : parseDigest(q.digest),
      bucket: q.bucket,
      key: q.key,
    });
    if (started.kind === 'completed') return c.json(completedBody(started.result), 201);
    c.header('Location', `/api/blobs/uploads/${started.id}`);
    c.header('Upload-Token', started.token);
    c.header('Upload-Offset', '0');
    c.header('Upload-Expires', new Date(started.expiresAt).toUTCString());
    const expires_at = new Date(started.expiresAt).toISOString();
    return c.json({ id: started.id, token: started.token, offset: 0, size: started.size, expires_at }, 202);
  });

  app.openapi(append, async (c) => {
    const { id } = c.req.valid('param');
    const offset = await uploads.append(id, token(c), () => requestBody(c), {
      expectedOffset: expectedOffset(c),
      length: declaredLength(c),
    });
    return c.body(null, 203, { 'Upload-Offset': String(offset), 'Content-Length': '0' });
  });

  app.openapi(complete, async (c) => {
    const { id } = c.req.valid('param');
    const { digest } = c.req.valid('query');
    const result = await uploads.complete(id, token(c), hasBody(c) ? () => requestBody(c) : null, {
      expectedOffset: expectedOffset(c),
      length: declaredLength(c),
      digest: digest === undefined ? undefined : parseDigest(digest),
    });
    return c.json(completedBody(result), 201);
  });

  app.openapi(statusRoute, async (c) => {
    const s = await uploads.status(c.req.valid('param').id, token(c));
    return c.body(null, 204, statusHeaders(s));
  });

  app.openapi(show, async (c) => {
    const s = await uploads.status(c.req.valid('param').id, token(c));
    if (c.req.method === 'HEAD') return c.body(null, 204, statusHeaders(s));
    const body = { id: s.id, offset: s.offset, size: s.size, state: s.state, expires_at: new Date(s.expiresAt).toISOString(), filename: s.filename };
    return c.json(body, 200, statusHeaders(s));
  });

  app.openapi(list, async (c) => {
    const page = await uploads.listSessions(principalOf(c), pageRequest(c.req.valid('query')));
    const items = page.items.map((s) => ({
      id: s.id,
      offset: s.offset,
      size: s.declaredSize,
      filename: s.filename,
      content_type: s.contentType,
      temporary: s.temporary,
      bucket: s.bucket,
      key: s.key,
      created_at: isoTime(s.createdAt)!,
      expires_at: isoTime(s.expiresAt)!,
    }));
    return c.json({ items, next_cursor: page.nextCursor }, 200);
  });

  for (const route of [destroyPost, destroyDelete]) {
    app.openapi(route, async (c) => {
      const { id } = c.req.valid('param');
      const sessionToken = token(c);
      // Without the session's token, the caller's own credential: core lets its creator or an admin cancel it.
      if (sessionToken !== null) await uploads.destroy(id, sessionToken);
      else await uploads.cancel(id, principalOf(c));
      return c.body(null, 204);
    });
  }

  return app;
}
