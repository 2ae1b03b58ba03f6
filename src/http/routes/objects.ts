// Objects (SPEC §3.3): write content (raw body), download it (the shared send-blob path), metadata,
// revisions, delete, and list / export a bucket. Keys may hold '/', so the key parameter takes the rest
// of the path. Translation only: the rules live in core/catalog.
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { v7 as uuidv7 } from 'uuid';
import { applyMetaPatch, type CatalogService, type PutObjectOptions } from '../../core/catalog.ts';
import { can } from '../../core/auth.ts';
import { parseDigest } from '../../core/digest.ts';
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord } from '../../storage/metadata-store.ts';
import type { AppEnv } from '../env.ts';
import { onBucket, principalOf, requires } from '../middleware/authenticate.ts';
import { idempotent, type BodyKind } from '../middleware/idempotency.ts';
import { declaredLength, isJson, limitJsonBody, requestBody } from '../request-body.ts';
import { isMultipart, withFilePart } from '../multipart.ts';
import { checkKeyTarget } from '../key-target.ts';
import { createRouter } from '../router.ts';
import { ifMatchOf, sendBlob } from '../send-blob.ts';
import { objectJson, PartialObject, PRIVATE_FIELDS, publicObjectJson, RevisionJson, revisionJson, selectFields } from './object-json.ts';
import { BinaryBody, errors, jsonContent, pageJson, PageQuery, pageRequest } from './schemas.ts';

const Revision = z.string().regex(/^[1-9]\d{0,9}$/, 'a revision number');

const ObjectParams = z.object({
  bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' } }),
  key: z.string().openapi({ param: { name: 'key', in: 'path' }, description: 'the object key (UTF-8 in NFC); may contain /' }),
});

/**
 * What a write answers: the whole object to a caller who may read the bucket; to a write-only caller
 * only what its own write decided (write does not imply read: others' metadata stays unseen).
 */
function writeAnswer(c: Context<AppEnv>, o: ObjectRecord) {
  const full = objectJson(o);
  if (can(principalOf(c), { action: 'object:read', bucket: o.bucket })) return full;
  const { id, bucket, key, revision, digest, size, created_at, updated_at } = full;
  return { id, bucket, key, revision, digest, size, created_at, updated_at };
}

// `{key{[^]+}}`: Hono's syntax for "the rest of the path" (`[^]`, not `.`: a key may hold U+2028, and
// a decoded %0A must reach the key check as 400, not fall through to 404); /openapi.json shows `{key}`.
const OBJECT_PATH = '/api/buckets/{bucket}/objects/{key{[^]+}}';

/** The longest Content-Type an object keeps, however it is written. */
const MAX_CONTENT_TYPE = 255;

/** A JSON write: point at a blob by digest, or send small content inline, with optional metadata. */
const ObjectWrite = z
  .object({
    digest: z.string().optional(),
    // Strict base64, checked by a linear round trip (a regex backtracked out of stack on megabytes), since
    // Node's decoder would silently skip anything else and store different bytes.
    content_base64: z
      .string()
      .refine((v) => v.length % 4 === 0 && Buffer.from(v, 'base64').toString('base64') === v, 'standard base64')
      .optional(),
    content_type: z.string().max(MAX_CONTENT_TYPE).nullable().optional(),
    filename: z.string().max(1024).nullable().optional(),
    owner: z.string().max(1024).nullable().optional(),
    tags: z.array(z.string().max(256)).max(64).nullable().optional(),
    // Taken as parsed (z.record would copy it member by member, and drop one named __proto__).
    properties: z
      .custom<Record<string, unknown>>((v) => v !== null && typeof v === 'object' && !Array.isArray(v), 'properties is a JSON object')
      .nullable()
      .openapi({ type: ['object', 'null'], additionalProperties: {} })
      .optional(),
    expires_at: z.string().datetime({ offset: true }).nullable().optional(),
  })
  .strict()
  .openapi('ObjectWrite');

const MetaPatchBody = ObjectWrite.omit({ digest: true, content_base64: true }).openapi('ObjectMetadataPatch');

// content_base64 of 10 MiB is 13.4 MiB of text, plus metadata.
const JSON_LIMIT = 16 * 1024 * 1024;

// Raw bytes of any type, or an `application/json` ObjectWrite. Declared as binary only: a second media type
// would make the validator refuse every other Content-Type, and JSON writes are parsed (bounded) by hand.
const WriteBody = {
  'application/octet-stream': {
    schema: z.string().openapi({ type: 'string', format: 'binary', description: 'any Content-Type; application/json → ObjectWrite' }),
  },
};

/** JSON writes are parsed whole (bounded); every other body streams to the store. */
const writeBodyKind = (c: Context<AppEnv>): BodyKind => (isJson(c) ? 'json' : 'stream');

const putObject = createRoute({
  method: 'put',
  path: OBJECT_PATH,
  summary: "Write the object's next revision: the raw body (its Content-Type kept), or JSON by digest / content_base64",
  middleware: [checkKeyTarget, requires(onBucket('bucket:write')), limitJsonBody(JSON_LIMIT), idempotent(writeBodyKind)] as const,
  request: {
    params: ObjectParams,
    query: z.object({ filename: z.string().min(1).max(1024).optional() }),
    headers: z.object({ 'if-match': z.string().optional(), 'if-none-match': z.literal('*').optional() }),
    body: { content: WriteBody, required: false },
  },
  responses: {
    201: jsonContent(PartialObject, 'created (revision 1)'),
    200: jsonContent(PartialObject, 'a new revision'),
    ...errors(400, 401, 403, 404, 412, 413, 415, 507),
  },
});

const postObject = createRoute({
  method: 'post',
  path: '/api/buckets/{bucket}/objects',
  summary: 'Write a new object under a server-chosen key (UUIDv7); same bodies as PUT',
  middleware: [requires(onBucket('bucket:write')), limitJsonBody(JSON_LIMIT), idempotent(writeBodyKind)] as const,
  request: {
    params: z.object({ bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' } }) }),
    query: z.object({ filename: z.string().min(1).max(1024).optional() }),
    body: { content: WriteBody, required: false },
  },
  responses: { 201: jsonContent(PartialObject, 'created'), ...errors(400, 401, 403, 404, 413, 415, 507) },
});

const patchObject = createRoute({
  method: 'patch',
  path: OBJECT_PATH,
  summary: 'JSON merge patch of metadata (filename, content_type, owner, tags, properties, expires_at; expires_at also needs bucket:delete)',
  middleware: [checkKeyTarget, requires(onBucket('bucket:write')), limitJsonBody(JSON_LIMIT)] as const,
  request: {
    params: ObjectParams,
    headers: z.object({ 'if-match': z.string().optional() }),
    body: { content: { 'application/json': { schema: MetaPatchBody }, 'application/merge-patch+json': { schema: MetaPatchBody } }, required: true },
  },
  responses: { 200: jsonContent(PartialObject, 'updated'), ...errors(400, 401, 403, 404, 412, 415) },
});

const getObject = createRoute({
  method: 'get',
  path: OBJECT_PATH,
  summary: 'Content (HEAD: headers only), or ?metadata, or ?revisions (paged); ?revision=N for an older one',
  middleware: [checkKeyTarget, requires(onBucket('object:read'))] as const,
  request: {
    params: ObjectParams,
    query: z.object({
      metadata: z.string().optional(),
      revisions: z.string().optional(),
      revision: Revision.optional(),
      filename: z.string().max(1024).optional(),
      compare: z.string().regex(/^[1-9]\d{0,9}\.\.[1-9]\d{0,9}$/, 'N..M').optional(),
      fields: z.string().max(1024).optional(),
      ...PageQuery,
    }),
  },
  responses: {
    200: {
      description: 'content, or JSON for ?metadata (a public reader gets the public fields only) / ?revisions (a page)',
      content: { ...BinaryBody, 'application/json': { schema: z.union([PartialObject, pageJson(RevisionJson)]) } },
    },
    206: { description: 'one range of the content', content: BinaryBody },
    304: { description: 'not modified' },
    ...errors(400, 401, 403, 404, 412, 416),
  },
});

const deleteObject = createRoute({
  method: 'delete',
  path: OBJECT_PATH,
  summary: 'Delete the object (all revisions), or ?revision=N only',
  middleware: [checkKeyTarget, requires(onBucket('bucket:delete'))] as const,
  request: { params: ObjectParams, query: z.object({ revision: Revision.optional() }), headers: z.object({ 'if-match': z.string().optional() }) },
  responses: { 204: { description: 'deleted' }, ...errors(400, 401, 403, 404, 412) },
});

const EMPTY_META = { contentType: null, filename: null, owner: null, tags: [], properties: {}, expiresAt: null };

/** The `owner` and `metadata` (JSON) parts of a multipart write, as a metadata patch. */
function formMetadata(fields: Record<string, string>) {
  let meta: unknown = {};
  if (fields.metadata !== undefined) {
    try {
      meta = JSON.parse(fields.metadata);
    } catch {
      throw new BlobdError('invalid_request', 'the metadata part is not JSON');
    }
  }
  const parsed = MetaPatchBody.safeParse(meta);
  if (!parsed.success) throw new BlobdError('invalid_request', `invalid metadata part: ${parsed.error.issues[0]?.message}`);
  return fields.owner !== undefined ? { ...parsed.data, owner: fields.owner } : parsed.data;
}

function checkContentType(type: string | undefined): string | undefined {
  if (type !== undefined && type.length > MAX_CONTENT_TYPE) {
    throw new BlobdError('invalid_request', `a Content-Type is at most ${MAX_CONTENT_TYPE} characters`, { field: 'content_type' });
  }
  return type;
}

/**
 * An expiry deletes the object with every revision once it comes (GC reclaims it): a write or PATCH that
 * sets expires_at needs the bucket's delete scope besides write, as a DELETE would.
 */
async function mayExpire(c: Context<AppEnv>, bucket: string, meta: { expires_at?: string | null } | undefined): Promise<void> {
  if (meta?.expires_at === undefined || meta.expires_at === null) return;
  try {
    await c.get('access').authorize(c.get('principal'), c.get('credentialError'), { action: 'bucket:delete', bucket });
  } catch (err) {
    if (err instanceof BlobdError && err.code === 'forbidden') {
      throw new BlobdError('forbidden', `setting expires_at deletes the object when it comes: it needs bucket:${bucket}:delete too`, { bucket });
    }
    throw err;
  }
}

/** JSON bodies are small by contract (content_base64 ≤ 10 MiB decoded): read them whole, but bounded. */
async function readObjectWrite(c: Context<AppEnv>) {
  const parsed = ObjectWrite.safeParse(await c.req.json().catch(() => undefined));
  if (!parsed.success) throw new BlobdError('invalid_request', `invalid JSON object write: ${parsed.error.issues[0]?.message ?? 'not an object'}${JSON_IS_A_COMMAND}`);
  const w = parsed.data;
  if ((w.digest === undefined) === (w.content_base64 === undefined)) {
    throw new BlobdError('invalid_request', `a JSON object write has exactly one of digest and content_base64${JSON_IS_A_COMMAND}`);
  }
  return w;
}

/** Said when a JSON body is not a write: most likely a JSON document sent as the content. */
const JSON_IS_A_COMMAND =
  ' (an application/json body here is a write by digest or content_base64, not the content itself; to store a JSON document, ' +
  'send it as {"content_base64": …, "content_type": "application/json"}, in a multipart form, or as a raw body of another Content-Type)';

export function objectRoutes(catalog: CatalogService) {
  const app = createRouter();
  app.openAPIRegistry.register('ObjectWrite', ObjectWrite);

  /**
   * Raw body, multipart, or JSON by digest / inline. Metadata that comes with the content is written in
   * the same transaction as the revision: checked first where it can be (JSON, form parts before `file`),
   * and a form's parts after `file` once the form has ended, before the revision is recorded.
   */
  async function write(c: Context<AppEnv>, bucket: string, key: string, writeOpts: PutObjectOptions) {
    const opts = { ...writeOpts, sizeLimit: c.get('grant')?.maxSize };
    // A signed URL's content_type binds the stored type: only a raw body's header is that type. A JSON write
    // or a form carries the type it stores inside (and metadata besides), which the envelope does not bind.
    if (c.get('grant')?.contentType !== undefined && (isJson(c) || isMultipart(c))) {
      throw new BlobdError('signature_invalid', 'a signed URL with content_type takes the content as the raw body, not a JSON write or a form');
    }
    if (isMultipart(c)) {
      const { result } = await withFilePart(c, async (file, before, allFields) => {
        const early = formMetadata(before);
        applyMetaPatch(EMPTY_META, early); // parts before the file: checked before any byte is stored
        await mayExpire(c, bucket, early);
        return catalog.putObject(bucket, key, () => file.stream, {
          ...opts,
          contentType: checkContentType(file.contentType),
          filename: opts.filename ?? file.filename,
          meta: async () => {
            const all = formMetadata(await allFields);
            await mayExpire(c, bucket, all);
            return all;
          },
        });
      });
      return result;
    }
    if (!isJson(c)) {
      return catalog.putObject(bucket, key, () => requestBody(c), { ...opts, declaredSize: declaredLength(c), contentType: checkContentType(c.req.header('content-type')) });
    }
    const { digest, content_base64, ...meta } = await readObjectWrite(c);
    applyMetaPatch(EMPTY_META, meta); // bounds (tags, properties size, dates) checked before anything is written
    await mayExpire(c, bucket, meta);
    const typed = { ...opts, contentType: meta.content_type ?? undefined, filename: meta.filename ?? opts.filename, meta };
    return digest !== undefined
      ? catalog.putObjectByDigest(bucket, key, parseDigest(digest), typed)
      : catalog.putObjectInline(bucket, key, Buffer.from(content_base64!, 'base64'), typed);
  }

  app.openapi(putObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const h = c.req.valid('header');
    const { object, created } = await write(c, bucket, key, {
      principal: principalOf(c),
      filename: c.req.valid('query').filename,
      ifMatch: ifMatchOf(h['if-match']),
      ifNoneMatch: h['if-none-match'] === '*',
    });
    c.header('ETag', `"${object.digest}"`);
    return created ? c.json(writeAnswer(c, object), 201) : c.json(writeAnswer(c, object), 200);
  });

  app.openapi(postObject, async (c) => {
    const { bucket } = c.req.valid('param');
    const key = uuidv7();
    const { object } = await write(c, bucket, key, { principal: principalOf(c), filename: c.req.valid('query').filename, ifNoneMatch: true });
    c.header('Location', `/api/buckets/${bucket}/objects/${key}`);
    c.header('ETag', `"${object.digest}"`);
    return c.json(writeAnswer(c, object), 201);
  });

  app.openapi(patchObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const body = c.req.valid('json');
    await mayExpire(c, bucket, body);
    return c.json(writeAnswer(c, await catalog.patchObject(bucket, key, body, ifMatchOf(c.req.valid('header')['if-match']))), 200);
  });

  app.openapi(getObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const q = c.req.valid('query');
    const history = q.revisions !== undefined || q.compare !== undefined || q.revision !== undefined;
    const { full } = await catalog.readAccess(bucket, c.get('principal'), history);
    if (q.revisions !== undefined) {
      const page = await catalog.listRevisions(bucket, key, pageRequest(q));
      return c.json({ items: page.items.map((r) => selectFields(revisionJson(r, full), q.fields)), next_cursor: page.nextCursor }, 200);
    }
    if (q.compare !== undefined) {
      const [from, to] = q.compare.split('..').map(Number) as [number, number];
      const d = await catalog.compare(bucket, key, from, to);
      // A public reader does not learn that private fields changed either.
      const fields = full ? d.fieldsChanged : d.fieldsChanged.filter((f) => !(PRIVATE_FIELDS as readonly string[]).includes(f));
      return c.json({ content_changed: d.contentChanged, digest_from: d.digestFrom, digest_to: d.digestTo, fields_changed: fields }, 200);
    }
    const obj = await catalog.getObject(bucket, key, q.revision === undefined ? undefined : Number(q.revision));
    if (q.metadata !== undefined) return c.json(selectFields(full ? objectJson(obj) : publicObjectJson(obj), q.fields), 200);
    return sendBlob(c, {
      digest: obj.digest,
      size: obj.size,
      contentType: obj.contentType ?? undefined,
      filename: q.filename || obj.filename || undefined,
      lastModified: new Date(obj.revisionCreatedAt),
      // Revalidated (ETag, Last-Modified) even for ?revision=N: its number comes back when the object is
      // deleted and written again, with other content.
      cacheControl: 'private, no-cache',
      open: (range) => catalog.openContent(obj, range),
    }) as never;
  });

  app.openapi(deleteObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const { revision } = c.req.valid('query');
    await catalog.deleteObject(bucket, key, revision === undefined ? undefined : Number(revision), ifMatchOf(c.req.valid('header')['if-match']));
    return c.body(null, 204);
  });

  return app;
}
