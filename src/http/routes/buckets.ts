// Buckets (SPEC §3.3): list, create or update settings, settings + usage, delete. Translation only.
import { createRoute, z } from '@hono/zod-openapi';
import type { CatalogService } from '../../core/catalog.ts';
import type { BucketRecord } from '../../storage/metadata-store.ts';
import { onBucket, principalOf, requires } from '../middleware/authenticate.ts';
import { idempotent, jsonBody } from '../middleware/idempotency.ts';
import { limitJsonBody } from '../request-body.ts';
import { createRouter } from '../router.ts';
import { errors, jsonContent, pageJson, PageQuery, pageRequest } from './schemas.ts';

const BucketParam = z.object({
  bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' }, description: '[a-z0-9][a-z0-9._-]{0,62}' }),
});

const Settings = z
  .object({
    max_object_size: z.number().int().min(0).nullable().optional(),
    quota_bytes: z.number().int().min(0).nullable().optional(),
    max_revisions: z.number().int().min(1).nullable().optional(),
    public_read: z.boolean().optional(),
    public_revisions: z.boolean().optional().openapi({ description: 'with public_read: anyone may also read older revisions, ?revisions and ?compare' }),
  })
  .strict()
  .openapi('BucketSettings');

const Bucket = z
  .object({
    name: z.string(),
    max_object_size: z.number().int().nullable(),
    quota_bytes: z.number().int().nullable(),
    max_revisions: z.number().int().nullable(),
    public_read: z.boolean(),
    public_revisions: z.boolean(),
    usage: z.object({ objects: z.number().int(), bytes: z.number().int() }),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi('Bucket');

export function bucketJson(b: BucketRecord) {
  return {
    name: b.name,
    max_object_size: b.maxObjectSize,
    quota_bytes: b.quotaBytes,
    max_revisions: b.maxRevisions,
    public_read: b.publicRead,
    public_revisions: b.publicRevisions,
    usage: { objects: b.objectCount, bytes: b.storedBytes },
    created_at: new Date(b.createdAt).toISOString(),
    updated_at: new Date(b.updatedAt).toISOString(),
  };
}

const list = createRoute({
  method: 'get',
  path: '/api/buckets',
  summary: 'List the buckets the caller may read, in name order',
  middleware: [requires({ action: 'authenticated' })] as const,
  request: { query: z.object(PageQuery) },
  responses: { 200: jsonContent(pageJson(Bucket), 'a page of buckets'), ...errors(400, 401, 403) },
});

const put = createRoute({
  method: 'put',
  path: '/api/buckets/{bucket}',
  summary: 'Create a bucket or replace its settings',
  middleware: [requires({ action: 'admin' }), limitJsonBody(64 * 1024), idempotent(jsonBody)] as const,
  request: { params: BucketParam, body: { content: { 'application/json': { schema: Settings } }, required: false } },
  responses: { 201: jsonContent(Bucket, 'created'), 200: jsonContent(Bucket, 'updated'), ...errors(400, 401, 403, 415) },
});

const get = createRoute({
  method: 'get',
  path: '/api/buckets/{bucket}',
  summary: 'Settings and usage of a bucket',
  middleware: [requires(onBucket('bucket:read'))] as const,
  request: { params: BucketParam },
  responses: { 200: jsonContent(Bucket, 'the bucket'), ...errors(400, 401, 403, 404) },
});

const del = createRoute({
  method: 'delete',
  path: '/api/buckets/{bucket}',
  summary: 'Delete a bucket (409 bucket_not_empty unless force=true)',
  middleware: [requires({ action: 'admin' })] as const,
  request: { params: BucketParam, query: z.object({ force: z.enum(['true', 'false']).optional() }) },
  responses: { 204: { description: 'deleted' }, ...errors(400, 401, 403, 404, 409) },
});

export function bucketRoutes(catalog: CatalogService) {
  const app = createRouter();

  app.openapi(list, async (c) => {
    const page = await catalog.listBuckets(principalOf(c), pageRequest(c.req.valid('query')));
    return c.json({ items: page.items.map(bucketJson), next_cursor: page.nextCursor }, 200);
  });

  app.openapi(put, async (c) => {
    const body = c.req.valid('json') ?? {};
    const { bucket, created } = await catalog.putBucket(c.req.valid('param').bucket, {
      maxObjectSize: body.max_object_size ?? null,
      quotaBytes: body.quota_bytes ?? null,
      maxRevisions: body.max_revisions ?? null,
      publicRead: body.public_read ?? false,
      publicRevisions: body.public_revisions ?? false,
    });
    return created ? c.json(bucketJson(bucket), 201) : c.json(bucketJson(bucket), 200);
  });

  app.openapi(get, async (c) => c.json(bucketJson(await catalog.getBucket(c.req.valid('param').bucket)), 200));

  app.openapi(del, async (c) => {
    await catalog.deleteBucket(c.req.valid('param').bucket, c.req.valid('query').force === 'true');
    return c.body(null, 204);
  });

  return app;
}
