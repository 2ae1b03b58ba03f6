// Objects (SPEC §3.3): write content (raw body), download it (the shared send-blob path), metadata,
// revisions, delete, and list / export a bucket. Keys may hold '/', so the key parameter takes the rest
// of the path. Translation only: the rules live in core/catalog.
import { createRoute, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { applyMetaPatch, type CatalogService, type ListOptions, type PutObjectOptions } from '../../core/catalog.ts';
import { can } from '../../core/auth.ts';
import { parseDigest } from '../../core/digest.ts';
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord, RevisionRecord } from '../../storage/metadata-store.ts';
import type { AppEnv } from '../env.ts';
import { onBucket, principalOf, requires } from '../middleware/authenticate.ts';
import { idempotent, type BodyKind } from '../middleware/idempotency.ts';
import { declaredLength, isJson, limitJsonBody, requestBody } from '../request-body.ts';
import { isMultipart, withFilePart } from '../multipart.ts';
import { createRouter } from '../router.ts';
import { sendBlob } from '../send-blob.ts';
import { BinaryBody, errors, jsonContent, isoTime } from './schemas.ts';

const Revision = z.string().regex(/^[1-9]\d{0,9}$/, 'a revision number');

const ObjectParams = z.object({
  bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' } }),
  key: z.string().openapi({ param: { name: 'key', in: 'path' }, description: 'the object key; may contain /' }),
});

const ObjectJson = z
  .object({
    id: z.string(),
    bucket: z.string(),
    key: z.string(),
    revision: z.number().int(),
    digest: z.string(),
    size: z.number().int(),
    content_type: z.string().nullable(),
    filename: z.string().nullable(),
    owner: z.string().nullable(),
    tags: z.array(z.string()),
    properties: z.record(z.string(), z.unknown()),
    created_at: z.string(),
    updated_at: z.string(),
    created_by: z.string().nullable(),
    expires_at: z.string().nullable(),
  })
  .openapi('Object');

/** A write's answer: metadata fields are left out for a caller who may write but not read the bucket. */
const WrittenObject = ObjectJson.partial({
  content_type: true, filename: true, owner: true, tags: true, properties: true, created_by: true, expires_at: true,
}).openapi('WrittenObject');


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

export function objectJson(o: ObjectRecord) {
  return {
    id: o.id,
    bucket: o.bucket,
    key: o.key,
    revision: o.revision,
    digest: o.digest,
    size: o.size,
    content_type: o.contentType,
    filename: o.filename,
    owner: o.owner,
    tags: [...o.tags],
    properties: { ...o.properties },
    created_at: isoTime(o.createdAt)!,
    updated_at: isoTime(o.updatedAt)!,
    created_by: o.createdBy,
    expires_at: isoTime(o.expiresAt),
  };
}

function revisionJson(r: RevisionRecord) {
  return {
    revision: r.revision,
    digest: r.digest,
    size: r.size,
    content_type: r.contentType,
    filename: r.filename,
    created_at: isoTime(r.createdAt)!,
    created_by: r.createdBy,
  };
}

/**
 * URL parsing resolves percent-encoded dot segments (`a/%2e%2e/x` → `x`) before routing, which would
 * silently aim a request at another key. The raw request target still shows them: refuse those.
 */
const refuseDotSegments: MiddlewareHandler<AppEnv> = async (c, next) => {
  const raw = (c.env?.incoming?.url ?? '').split(/[?#]/)[0]!;
  if (/\/(?:\.|%2e){1,2}(?=\/|$)/i.test(raw)) throw new BlobdError('invalid_key', 'a key has no . or .. segment');
  await next();
};

// `{key{.+}}`: Hono's syntax for "the rest of the path"; /openapi.json shows it as `{key}`.
const OBJECT_PATH = '/api/buckets/{bucket}/objects/{key{.+}}';

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
    content_type: z.string().max(255).nullable().optional(),
    filename: z.string().max(1024).nullable().optional(),
    owner: z.string().max(1024).nullable().optional(),
    tags: z.array(z.string().max(256)).max(64).nullable().optional(),
    properties: z.record(z.string(), z.unknown()).nullable().optional(),
    expires_at: z.string().datetime({ offset: true }).nullable().optional(),
  })
  .strict()
  .openapi('ObjectWrite');

const MetaPatchBody = ObjectWrite.omit({ digest: true, content_base64: true }).openapi('ObjectMetadataPatch');

const FIELDS = Object.keys(ObjectJson.shape);
// content_base64 of 10 MiB is 13.4 MiB of text, plus metadata.
const JSON_LIMIT = 16 * 1024 * 1024;

/** `?fields=a,b,-c`: keep only the named fields, or drop the ones with a minus. */
function selectFields(item: Record<string, unknown>, spec: string | undefined): Record<string, unknown> {
  if (!spec) return item;
  const names = spec.split(',').map((f) => f.trim()).filter(Boolean);
  for (const n of names) {
    if (!FIELDS.includes(n.replace(/^-/, ''))) throw new BlobdError('invalid_request', `unknown field ${n.replace(/^-/, '')}`, { fields: FIELDS });
  }
  const keep = names.filter((n) => !n.startsWith('-'));
  const drop = new Set(names.filter((n) => n.startsWith('-')).map((n) => n.slice(1)));
  return Object.fromEntries(Object.entries(item).filter(([k]) => (keep.length === 0 || keep.includes(k)) && !drop.has(k)));
}

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
  middleware: [refuseDotSegments, requires(onBucket('bucket:write')), limitJsonBody(JSON_LIMIT), idempotent(writeBodyKind)] as const,
  request: {
    params: ObjectParams,
    query: z.object({ filename: z.string().min(1).max(1024).optional() }),
    headers: z.object({ 'if-match': z.string().optional(), 'if-none-match': z.literal('*').optional() }),
    body: { content: WriteBody, required: false },
  },
  responses: {
    201: jsonContent(WrittenObject, 'created (revision 1)'),
    200: jsonContent(WrittenObject, 'a new revision'),
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
  responses: { 201: jsonContent(WrittenObject, 'created'), ...errors(400, 401, 403, 404, 413, 415, 507) },
});

const patchObject = createRoute({
  method: 'patch',
  path: OBJECT_PATH,
  summary: 'JSON merge patch of metadata (filename, content_type, owner, tags, properties, expires_at)',
  middleware: [refuseDotSegments, requires(onBucket('bucket:write')), limitJsonBody(JSON_LIMIT)] as const,
  request: {
    params: ObjectParams,
    body: { content: { 'application/json': { schema: MetaPatchBody }, 'application/merge-patch+json': { schema: MetaPatchBody } }, required: true },
  },
  responses: { 200: jsonContent(WrittenObject, 'updated'), ...errors(400, 401, 403, 404) },
});

const getObject = createRoute({
  method: 'get',
  path: OBJECT_PATH,
  summary: 'Content (HEAD: headers only), or ?metadata, or ?revisions; ?revision=N for an older one',
  middleware: [refuseDotSegments, requires(onBucket('object:read'))] as const,
  request: {
    params: ObjectParams,
    query: z.object({
      metadata: z.string().optional(),
      revisions: z.string().optional(),
      revision: Revision.optional(),
      filename: z.string().max(1024).optional(),
      compare: z.string().regex(/^[1-9]\d{0,9}\.\.[1-9]\d{0,9}$/, 'N..M').optional(),
      fields: z.string().max(1024).optional(),
    }),
  },
  responses: {
    200: { description: 'content, or JSON for ?metadata / ?revisions', content: { ...BinaryBody, 'application/json': { schema: ObjectJson } } },
    206: { description: 'one range of the content', content: BinaryBody },
    304: { description: 'not modified' },
    ...errors(400, 401, 403, 404, 412, 416),
  },
});

const deleteObject = createRoute({
  method: 'delete',
  path: OBJECT_PATH,
  summary: 'Delete the object (all revisions), or ?revision=N only',
  middleware: [refuseDotSegments, requires(onBucket('bucket:delete'))] as const,
  request: { params: ObjectParams, query: z.object({ revision: Revision.optional() }) },
  responses: { 204: { description: 'deleted' }, ...errors(400, 401, 403, 404) },
});

const listObjects = createRoute({
  method: 'get',
  path: '/api/buckets/{bucket}/objects',
  summary: 'List, find and export objects (property.NAME=VALUE filters; csv and ndjson stream everything)',
  middleware: [requires(onBucket('bucket:read'))] as const,
  request: {
    params: z.object({ bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' } }) }),
    query: z
      .object({
        prefix: z.string().max(1024).optional(),
        delimiter: z.string().min(1).max(16).optional(),
        owner: z.string().optional(),
        tag: z.string().optional(),
        limit: z.string().regex(/^\d{1,4}$/).optional(),
        fields: z.string().max(1024).optional(),
        cursor: z.string().max(4096).optional(),
        format: z.enum(['json', 'ndjson', 'csv']).optional(),
      })
      .passthrough(),
  },
  responses: {
    200: {
      description: 'a page (json) or every match (ndjson, csv)',
      content: {
        'application/json': {
          schema: z.object({ items: z.array(ObjectJson), common_prefixes: z.array(z.string()), next_cursor: z.string().nullable() }),
        },
        'application/x-ndjson': { schema: z.string() },
        'text/csv': { schema: z.string() },
      },
    },
    ...errors(400, 401, 403, 404),
  },
});

const CSV_COLUMNS = ['id', 'bucket', 'key', 'revision', 'digest', 'size', 'content_type', 'filename', 'owner', 'tags', 'properties', 'created_at', 'updated_at', 'created_by', 'expires_at'] as const;

/** One RFC 4180 field: quoted when it must be; arrays and objects as JSON. */
function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

async function* exportLines(objects: AsyncIterable<ObjectRecord>, format: 'ndjson' | 'csv', fields: string | undefined): AsyncIterable<string> {
  const columns = Object.keys(selectFields(Object.fromEntries(CSV_COLUMNS.map((k) => [k, null])), fields));
  if (format === 'csv') yield `${columns.join(',')}\r\n`;
  for await (const o of objects) {
    const j = selectFields(objectJson(o), fields);
    yield format === 'csv' ? `${columns.map((k) => csvField(j[k])).join(',')}\r\n` : `${JSON.stringify(j)}\n`;
  }
}

function listOptions(q: Record<string, string | undefined>): ListOptions {
  const properties = Object.entries(q)
    .filter(([k, v]) => k.startsWith('property.') && v !== undefined)
    .map(([k, v]) => ({ name: k.slice('property.'.length), value: v! }));
  const limit = q.limit === undefined ? 1000 : Number(q.limit);
  if (limit < 1 || limit > 1000) throw new BlobdError('invalid_request', 'limit is 1 to 1000');
  return { prefix: q.prefix, delimiter: q.delimiter, owner: q.owner, tag: q.tag, cursor: q.cursor, limit, properties };
}

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

/** JSON bodies are small by contract (content_base64 ≤ 10 MiB decoded): read them whole, but bounded. */
async function readObjectWrite(c: Context<AppEnv>) {
  const parsed = ObjectWrite.safeParse(await c.req.json().catch(() => undefined));
  if (!parsed.success) throw new BlobdError('invalid_request', `invalid JSON object write: ${parsed.error.issues[0]?.message ?? 'not an object'}`);
  const w = parsed.data;
  if ((w.digest === undefined) === (w.content_base64 === undefined)) {
    throw new BlobdError('invalid_request', 'a JSON object write has exactly one of digest and content_base64');
  }
  return w;
}

export function objectRoutes(catalog: CatalogService) {
  const app = createRouter();
  app.openAPIRegistry.register('ObjectWrite', ObjectWrite);

  /** Raw body, multipart, or JSON by digest / inline; metadata that comes with it is applied after the content. */
  async function write(c: Context<AppEnv>, bucket: string, key: string, writeOpts: PutObjectOptions) {
    const opts = { ...writeOpts, sizeLimit: c.var.grant?.maxSize };
    if (isMultipart(c)) {
      const { result, fields } = await withFilePart(c, (file, before) => {
        // Parts sent before the file are checked before any byte is stored.
        applyMetaPatch(EMPTY_META, formMetadata(before));
        return catalog.putObject(bucket, key, () => file.stream, { ...opts, contentType: file.contentType, filename: opts.filename ?? file.filename });
      });
      const meta = formMetadata(fields);
      if (Object.keys(meta).length === 0) return result;
      return { object: await catalog.patchObject(bucket, key, meta), created: result.created };
    }
    if (!isJson(c)) {
      return catalog.putObject(bucket, key, () => requestBody(c), { ...opts, declaredSize: declaredLength(c), contentType: c.req.header('content-type') });
    }
    const { digest, content_base64, ...meta } = await readObjectWrite(c);
    applyMetaPatch(EMPTY_META, meta); // bounds (tags, properties size, dates) checked before anything is written
    const typed = { ...opts, contentType: meta.content_type ?? undefined, filename: meta.filename ?? opts.filename };
    const written =
      digest !== undefined
        ? await catalog.putObjectByDigest(bucket, key, parseDigest(digest), typed)
        : await catalog.putObjectInline(bucket, key, Buffer.from(content_base64!, 'base64'), typed);
    if (Object.keys(meta).length === 0) return written;
    return { object: await catalog.patchObject(bucket, key, meta), created: written.created };
  }

  app.openapi(putObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const h = c.req.valid('header');
    const { object, created } = await write(c, bucket, key, {
      principal: principalOf(c),
      filename: c.req.valid('query').filename,
      ifMatch: h['if-match']?.trim().replace(/^"(.*)"$/, '$1'),
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
    return c.json(writeAnswer(c, await catalog.patchObject(bucket, key, body)), 200);
  });

  app.openapi(getObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const q = c.req.valid('query');
    if (q.revisions !== undefined) return c.json({ revisions: (await catalog.listRevisions(bucket, key)).map(revisionJson) }, 200);
    if (q.compare !== undefined) {
      const [from, to] = q.compare.split('..').map(Number) as [number, number];
      const d = await catalog.compare(bucket, key, from, to);
      return c.json({ content_changed: d.contentChanged, digest_from: d.digestFrom, digest_to: d.digestTo, fields_changed: d.fieldsChanged }, 200);
    }
    const obj = await catalog.getObject(bucket, key, q.revision === undefined ? undefined : Number(q.revision));
    if (q.metadata !== undefined) return c.json(selectFields(objectJson(obj), q.fields), 200);
    return sendBlob(c, {
      digest: obj.digest,
      size: obj.size,
      contentType: obj.contentType ?? undefined,
      filename: q.filename || obj.filename || undefined,
      lastModified: new Date(obj.revisionCreatedAt),
      // A key's content changes; one revision's never does.
      cacheControl: q.revision === undefined ? 'private, no-cache' : undefined,
      open: (range) => catalog.openContent(obj, range),
    }) as never;
  });

  app.openapi(deleteObject, async (c) => {
    const { bucket, key } = c.req.valid('param');
    const { revision } = c.req.valid('query');
    await catalog.deleteObject(bucket, key, revision === undefined ? undefined : Number(revision));
    return c.body(null, 204);
  });

  app.openapi(listObjects, async (c) => {
    const { bucket } = c.req.valid('param');
    const q = c.req.valid('query') as Record<string, string | undefined>;
    const opts = listOptions(q);
    const format = q.format ?? 'json';
    if (format === 'json') {
      const page = await catalog.listObjects(bucket, opts);
      const items = page.items.map((o) => selectFields(objectJson(o), q.fields));
      return c.json({ items, common_prefixes: page.commonPrefixes, next_cursor: page.nextCursor }, 200);
    }
    await catalog.getBucket(bucket); // a missing bucket is a 404, not an empty export
    selectFields({}, q.fields); // an unknown field name is a 400 before the export starts streaming
    const lines = Readable.from(exportLines(catalog.exportObjects(bucket, opts), format as 'ndjson' | 'csv', q.fields));
    const type = format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson';
    return c.body(Readable.toWeb(lines) as ReadableStream, 200, { 'Content-Type': type }) as never;
  });

  return app;
}
