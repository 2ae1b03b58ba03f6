// tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length, termination, checksum,
// expiration) at /api/tus/, as a second front over core/uploads — never a second implementation: a tus
// upload IS an upload session. Its URL, /api/tus/<session id>.<upload token>, is the capability (as in
// tusd, whoever holds the URL may continue it); `<session id>` with an Upload-Token header works too, and
// the same id and token open /api/blobs/uploads/<id>/status. Translation only: headers in, one core call,
// headers out.
import { createRoute, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import type { Need } from '../core/auth.ts';
import { parseDigest } from '../core/digest.ts';
import { BlobdError } from '../core/errors.ts';
import type { SessionStatus, UploadService } from '../core/uploads.ts';
import type { ChunkChecksum } from '../core/upload-appender.ts';
import type { AppEnv } from './env.ts';
import { principalOf, requires, uploadToken } from './middleware/authenticate.ts';
import { idempotent } from './middleware/idempotency.ts';
import { declaredLength, hasBody, requestBody } from './request-body.ts';
import { createRouter } from './router.ts';
import { encodeMetadata, parseMetadata } from './tus-metadata.ts';
import { errors } from './routes/schemas.ts';

const VERSION = '1.0.0';
const EXTENSIONS = 'creation,creation-with-upload,creation-defer-length,termination,checksum,expiration';
const CHECKSUMS = ['sha256', 'sha1', 'md5'] as const;
const OFFSET_TYPE = 'application/offset+octet-stream';
const Decimal = /^\d{1,15}$/;

/** `Upload-Checksum: <algorithm> <base64>`; an algorithm we do not offer is 400 (tus checksum extension). */
function parseChecksum(header: string | undefined): ChunkChecksum | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})\s*$/.exec(header);
  const algorithm = m?.[1]?.toLowerCase();
  if (!m || !(CHECKSUMS as readonly string[]).includes(algorithm!)) {
    throw new BlobdError('invalid_request', `Upload-Checksum is "<algorithm> <base64>" with one of ${CHECKSUMS.join(', ')}`);
  }
  return { algorithm: algorithm as ChunkChecksum['algorithm'], digest: Buffer.from(m[2]!, 'base64') };
}

function decimalHeader(c: Context<AppEnv>, name: string): number | undefined {
  const value = c.req.header(name);
  if (value === undefined) return undefined;
  if (!Decimal.test(value.trim())) throw new BlobdError('invalid_request', `${name} is a non-negative integer`);
  return Number(value);
}

/** `<id>.<token>` from the URL, or `<id>` with the token in Upload-Token. */
function sessionRef(c: Context<AppEnv>): { id: string; token: string | null } {
  const ref = c.req.param('ref') ?? '';
  const dot = ref.indexOf('.');
  const header = uploadToken((name) => c.req.header(name));
  return dot < 0 ? { id: ref, token: header } : { id: ref.slice(0, dot), token: ref.slice(dot + 1) || header };
}

/**
 * Every tus answer says Tus-Resumable; every request but OPTIONS must say it too (412 otherwise, with the
 * versions we speak). An expired session is 410 Gone here (404 for one that never was or was terminated).
 */
const tusProtocol: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.header('Tus-Resumable', VERSION);
  c.header('Cache-Control', 'no-store');
  // A dry run asks only "may this principal do it?" (before signing a URL): there is no protocol to check.
  if (c.req.method !== 'OPTIONS' && c.env?.dryRun === undefined && c.req.header('tus-resumable') !== VERSION) {
    c.header('Tus-Version', VERSION);
    throw new BlobdError('precondition_failed', `this server speaks tus ${VERSION}: send Tus-Resumable: ${VERSION}`);
  }
  await next();
};

/** An expired session (its row still there) is 410 Gone to tus clients; unknown or terminated ones 404. */
async function goneIfExpired<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof BlobdError && err.code === 'upload_not_found' && (err.details as { expired?: boolean } | undefined)?.expired) {
      throw new BlobdError('upload_gone', err.message, err.details);
    }
    throw err;
  }
}

/**
 * Where a creation writes: `?bucket=&key=` of the URL (what a signed URL fixes), else the `bucket` and
 * `key` metadata. A signed request may write only where its URL says: metadata naming another target, or a
 * target when the URL names none, is refused — the signature does not cover the headers.
 */
function creationTarget(c: Context<AppEnv>, meta: Record<string, string>): { bucket?: string; key?: string } {
  const q = { bucket: c.req.query('bucket'), key: c.req.query('key') };
  const named = q.bucket !== undefined || q.key !== undefined;
  const differs = (meta.bucket !== undefined && meta.bucket !== q.bucket) || (meta.key !== undefined && meta.key !== q.key);
  if (named && differs) {
    throw c.get('grant')
      ? new BlobdError('signature_invalid', 'the bucket and key metadata must be the ones the signed URL names')
      : new BlobdError('invalid_request', 'the bucket and key metadata differ from ?bucket= and ?key=');
  }
  if (named) return q;
  if (c.get('grant') && (meta.bucket !== undefined || meta.key !== undefined)) {
    throw new BlobdError('signature_invalid', 'this signed URL names no bucket: sign /api/tus/?bucket=B&key=K to upload into one');
  }
  return { bucket: meta.bucket, key: meta.key };
}

/** Creating into a bucket needs the bucket's write scope; otherwise a pin, which needs blobs:write. */
function creationNeed(c: Context<AppEnv>): Need {
  let bucket: string | undefined;
  try {
    bucket = creationTarget(c, parseMetadata(c.req.header('upload-metadata'))).bucket;
  } catch {
    bucket = c.req.query('bucket'); // the handler answers a malformed header or a mismatch
  }
  return bucket === undefined ? { action: 'blobs:write' } : { action: 'bucket:write', bucket };
}

const RefParam = z.object({
  ref: z.string().openapi({ param: { name: 'ref', in: 'path' }, description: '<session id>.<upload token>, as Location gave it' }),
});
const tusHeaders = (extra: Record<string, string> = {}) => ({
  'Tus-Resumable': { schema: { type: 'string' as const }, description: '1.0.0' },
  ...Object.fromEntries(Object.entries(extra).map(([k, d]) => [k, { schema: { type: 'string' as const }, description: d }])),
});

const options = (path: string) =>
  createRoute({
    method: 'options',
    path,
    summary: 'tus discovery: version, extensions, checksum algorithms, largest upload',
    middleware: [tusProtocol, requires('public')] as const,
    responses: { 204: { description: 'see the headers', headers: tusHeaders({ 'Tus-Version': '', 'Tus-Extension': '', 'Tus-Max-Size': '', 'Tus-Checksum-Algorithm': '' }) } },
  });

const create = (path: string) =>
  createRoute({
    method: 'post',
    path,
    summary: 'tus creation (Upload-Length or Upload-Defer-Length: 1; Upload-Metadata of at most 8192 bytes, blobd reads filename, filetype, bucket, key, temporary, digest), optionally with the first bytes; a refused body creates nothing',
    middleware: [tusProtocol, requires(creationNeed), idempotent((c) => (hasBody(c) ? 'stream' : 'none'))] as const,
    responses: {
      201: { description: 'created; Location is the upload URL', headers: tusHeaders({ Location: '', 'Upload-Offset': '', 'Upload-Expires': '' }) },
      ...errors(400, 401, 403, 404, 412, 413, 415, 460, 507),
    },
  });

const head = createRoute({
  method: 'get',
  path: '/api/tus/{ref}',
  summary: 'tus HEAD: Upload-Offset, Upload-Length (or Upload-Defer-Length), Upload-Metadata (as the client sent it), Upload-Expires',
  middleware: [tusProtocol, requires('upload-token')] as const,
  request: { params: RefParam },
  responses: { 200: { description: 'see the headers', headers: tusHeaders({ 'Upload-Offset': '', 'Upload-Length': '', 'Blobd-Digest': 'once completed' }) }, ...errors(401, 403, 404, 410, 412) },
});

const APPENDED_HEADERS = tusHeaders({ 'Upload-Offset': '', 'Upload-Expires': '', 'Blobd-Digest': 'when this request completed it' });

const patch = createRoute({
  method: 'patch',
  path: '/api/tus/{ref}',
  summary: 'tus PATCH: append the body (application/offset+octet-stream) at Upload-Offset; the upload completes when it reaches its length',
  middleware: [tusProtocol, requires('upload-token')] as const,
  request: { params: RefParam },
  responses: { 204: { description: 'appended', headers: APPENDED_HEADERS }, ...errors(400, 401, 403, 404, 409, 410, 412, 413, 415, 460, 507) },
});

const terminate = createRoute({
  method: 'delete',
  path: '/api/tus/{ref}',
  summary: 'tus termination: cancel the upload and free its bytes',
  middleware: [tusProtocol, requires('upload-token')] as const,
  request: { params: RefParam },
  responses: { 204: { description: 'terminated' }, ...errors(401, 403, 404, 410, 412) },
});

/** X-HTTP-Method-Override (tus-js-client's overridePatchMethod, for proxies that drop PATCH or DELETE). */
const overridden = createRoute({
  method: 'post',
  path: '/api/tus/{ref}',
  summary: 'tus PATCH or termination sent as POST with X-HTTP-Method-Override: PATCH or DELETE',
  middleware: [tusProtocol, requires('upload-token')] as const,
  request: { params: RefParam },
  // A PATCH's answers (a DELETE's are among them).
  responses: { ...patch.responses, 204: { description: 'as PATCH or DELETE', headers: APPENDED_HEADERS } },
});

export function tusRoutes(uploads: UploadService, opts: { maxBlobSize: number }) {
  const app = createRouter();

  const statusHeaders = (s: SessionStatus): Record<string, string> => ({
    'Upload-Offset': String(s.offset),
    ...(s.size !== null ? { 'Upload-Length': String(s.size) } : { 'Upload-Defer-Length': '1' }),
    'Upload-Expires': new Date(s.expiresAt).toUTCString(),
    ...(s.digest !== null ? { 'Blobd-Digest': s.digest } : {}),
  });

  /**
   * An open session that holds its whole length is completed now. To a tus client offset == length means
   * done, so it is never reported for a session whose completion fails (digest, quota): that error is.
   */
  async function settle(id: string, token: string | null, s: SessionStatus): Promise<SessionStatus> {
    if (s.state !== 'open' || s.size === null || s.offset !== s.size) return s;
    await uploads.complete(id, token, null);
    return uploads.status(id, token);
  }

  /** Append the request body (its type and checksum checked by the caller), then settle. */
  async function appendBody(
    c: Context<AppEnv>,
    id: string,
    token: string | null,
    expectedOffset: number | undefined,
    checksum: ChunkChecksum | undefined,
  ): Promise<SessionStatus> {
    if (hasBody(c) || expectedOffset !== undefined) {
      // takeOver: a PATCH stalled on a dead connection is cut, as tusd releases its lock for a new request.
      await uploads.append(id, token, () => requestBody(c), { expectedOffset, length: declaredLength(c), checksum, takeOver: true });
    }
    return settle(id, token, await uploads.status(id, token));
  }

  for (const path of ['/api/tus', '/api/tus/']) {
    app.openapi(options(path), (c) =>
      c.body(null, 204, {
        'Tus-Version': VERSION,
        'Tus-Extension': EXTENSIONS,
        'Tus-Max-Size': String(opts.maxBlobSize),
        'Tus-Checksum-Algorithm': CHECKSUMS.join(','),
      }),
    );

    app.openapi(create(path), async (c) => {
      // Partial and final uploads would each become a whole blob (or overwrite an object with a part).
      if (c.req.header('upload-concat') !== undefined) throw new BlobdError('invalid_request', 'tus concatenation (Upload-Concat) is not offered');
      // An override names PATCH or DELETE of an upload URL; on the creation URL the client meant something
      // other than a creation, so none is made (a DELETE here must never start an upload).
      const override = c.req.header('x-http-method-override')?.trim().toUpperCase();
      if (override !== undefined && override !== 'POST') {
        throw new BlobdError('invalid_request', 'X-HTTP-Method-Override (PATCH or DELETE) goes to an upload URL; a creation is a plain POST');
      }
      const meta = parseMetadata(c.req.header('upload-metadata'));
      const target = creationTarget(c, meta);
      // Everything that can refuse the request is decided before a session (and its disk reservation) exists.
      const checksum = parseChecksum(c.req.header('upload-checksum'));
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (hasBody(c) && type !== OFFSET_TYPE) throw new BlobdError('unsupported_media_type', `tus bodies are ${OFFSET_TYPE}`);
      const deferred = c.req.header('upload-defer-length');
      const length = decimalHeader(c, 'upload-length');
      if (deferred !== undefined && deferred !== '1') throw new BlobdError('invalid_request', 'Upload-Defer-Length is 1');
      if ((length === undefined) === (deferred === undefined)) throw new BlobdError('invalid_request', 'send Upload-Length, or Upload-Defer-Length: 1');
      if (meta.temporary !== undefined && meta.temporary !== 'true' && meta.temporary !== 'false') {
        throw new BlobdError('invalid_request', 'the temporary metadata is true or false');
      }
      const grant = c.get('grant');
      const started = await uploads.initiate({
        clientMetadata: c.req.header('upload-metadata')?.trim() || undefined,
        principal: principalOf(c),
        filename: meta.filename || undefined,
        // A signed URL's content_type binds the session's type (and any body it carries).
        contentType: grant?.contentType ?? (meta.filetype || undefined),
        sizeLimit: grant?.maxSize,
        temporary: meta.temporary === 'true',
        size: length,
        digest: meta.digest ? parseDigest(meta.digest) : undefined,
        bucket: target.bucket,
        key: target.key,
        completeKnownDigest: false,
      });
      if (started.kind !== 'session') throw new Error('a tus creation always makes a session');
      let s: SessionStatus;
      try {
        s = await appendBody(c, started.id, started.token, hasBody(c) ? 0 : undefined, checksum);
      } catch (err) {
        // A creation refused for its body (checksum, length, digest, disk) leaves nothing: the client never
        // learns the upload URL, so a session left behind would only hold its reservation until it expired.
        await uploads.destroy(started.id, started.token).catch(() => {});
        throw err;
      }
      return c.body(null, 201, { ...statusHeaders(s), Location: `/api/tus/${started.id}.${started.token}`, 'Content-Length': '0' });
    });
  }

  app.openapi(head, (c) =>
    goneIfExpired(async () => {
      const { id, token } = sessionRef(c);
      const s = await settle(id, token, await uploads.status(id, token));
      // What the client sent at creation, as sent (tus 1.0); for a session it attached nothing to, ours.
      const metadata = s.clientMetadata ?? encodeMetadata({
        filename: s.filename,
        filetype: s.contentType,
        bucket: s.bucket,
        key: s.key,
        temporary: s.temporary ? 'true' : null,
        digest: s.expectedDigest,
      });
      return c.body(null, 200, { ...statusHeaders(s), ...(metadata ? { 'Upload-Metadata': metadata } : {}) });
    }),
  );

  const appendUpload = (c: Context<AppEnv>) =>
    goneIfExpired(async () => {
      const { id, token } = sessionRef(c);
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== OFFSET_TYPE) throw new BlobdError('unsupported_media_type', `a tus PATCH body is ${OFFSET_TYPE}`);
      const offset = decimalHeader(c, 'upload-offset');
      if (offset === undefined) throw new BlobdError('invalid_request', 'a tus PATCH says its Upload-Offset');
      const checksum = parseChecksum(c.req.header('upload-checksum'));
      const length = decimalHeader(c, 'upload-length');
      const now = await uploads.status(id, token);
      // A retried last PATCH of a completed upload (its answer was lost) is answered again, as tusd does: 204
      // at the final offset (its body, if any, is not needed), 409 with the final offset from any other.
      if (now.state === 'completed') {
        if (offset !== now.offset) throw new BlobdError('offset_mismatch', `the upload is complete at offset ${now.offset}, not ${offset}`, { offset: now.offset });
        return c.body(null, 204, statusHeaders(now));
      }
      if (length !== undefined) {
        // A refused PATCH changes nothing: the offset is checked before the length is declared.
        if (offset !== now.offset) throw new BlobdError('offset_mismatch', `the upload is at offset ${now.offset}, not ${offset}`, { offset: now.offset });
        await uploads.declareSize(id, token, length);
      }
      const s = await appendBody(c, id, token, offset, checksum);
      return c.body(null, 204, statusHeaders(s));
    });

  const terminateUpload = (c: Context<AppEnv>) =>
    goneIfExpired(async () => {
      const { id, token } = sessionRef(c);
      await uploads.destroy(id, token);
      return c.body(null, 204);
    });

  app.openapi(patch, appendUpload);
  app.openapi(terminate, terminateUpload);
  app.openapi(overridden, (c) => {
    const method = c.req.header('x-http-method-override')?.trim().toUpperCase();
    if (method === 'PATCH') return appendUpload(c);
    if (method === 'DELETE') return terminateUpload(c);
    throw new BlobdError('invalid_request', 'POST to an upload URL is a PATCH or DELETE named in X-HTTP-Method-Override');
  });

  return app;
}
