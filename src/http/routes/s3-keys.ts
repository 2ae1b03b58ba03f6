// S3 credentials for the S3 API front: create (the secret is in this answer and nowhere else, ever), list,
// delete. Admin only. Translation only: the rules live in core/s3-keys.
import { createRoute, z } from '@hono/zod-openapi';
import type { S3KeyRecord, S3Keys } from '../../core/s3-keys.ts';
import { idempotent, jsonBody } from '../middleware/idempotency.ts';
import { principalOf, requires } from '../middleware/authenticate.ts';
import { limitJsonBody } from '../request-body.ts';
import { createRouter } from '../router.ts';
import { errors, jsonContent, isoTime, pageJson } from './schemas.ts';

const S3KeyInfo = z
  .object({
    access_key_id: z.string(),
    name: z.string(),
    scopes: z.array(z.string()),
    created_at: z.string(),
    created_by: z.string(),
  })
  .openapi('S3Key');

const NewS3Key = z
  .object({
    name: z.string().max(128).optional(),
    scopes: z.array(z.string().max(200)).min(1).max(100),
  })
  .strict()
  .openapi('NewS3Key');

function s3KeyJson(k: S3KeyRecord) {
  return { access_key_id: k.accessKeyId, name: k.name, scopes: [...k.scopes], created_at: isoTime(k.createdAt)!, created_by: k.createdBy };
}

const create = createRoute({
  method: 'post',
  path: '/api/s3-keys',
  summary: 'Create an S3 access key; the secret access key is shown in this answer only',
  middleware: [requires({ action: 'admin' }, { signable: false }), limitJsonBody(64 * 1024), idempotent(jsonBody)] as const,
  request: { body: { content: { 'application/json': { schema: NewS3Key } }, required: true } },
  responses: {
    201: jsonContent(S3KeyInfo.extend({ secret_access_key: z.string() }).openapi('CreatedS3Key'), 'created'),
    ...errors(400, 401, 403, 409, 415, 422),
  },
});

const list = createRoute({
  method: 'get',
  path: '/api/s3-keys',
  summary: 'List S3 access keys by access key id (never their secrets)',
  middleware: [requires({ action: 'admin' }, { signable: false })] as const,
  responses: { 200: jsonContent(pageJson(S3KeyInfo), 'every S3 key'), ...errors(401, 403) },
});

const remove = createRoute({
  method: 'delete',
  path: '/api/s3-keys/{id}',
  summary: 'Delete an S3 access key (other nodes stop accepting it within 10 s)',
  middleware: [requires({ action: 'admin' }, { signable: false })] as const,
  request: { params: z.object({ id: z.string().max(64).openapi({ param: { name: 'id', in: 'path' } }) }) },
  responses: { 204: { description: 'deleted' }, ...errors(401, 403, 404) },
});

export function s3KeyRoutes(s3Keys: S3Keys) {
  const app = createRouter();

  app.openapi(create, async (c) => {
    const body = c.req.valid('json');
    const { record, secretAccessKey } = await s3Keys.create(principalOf(c), { name: body.name, scopes: body.scopes });
    c.header('Location', `/api/s3-keys/${record.accessKeyId}`);
    c.header('Cache-Control', 'no-store');
    return c.json({ ...s3KeyJson(record), secret_access_key: secretAccessKey }, 201);
  });

  app.openapi(list, async (c) => {
    // A handful of keys, read in one go: one page, no cursor.
    return c.json({ items: (await s3Keys.list()).map(s3KeyJson), next_cursor: null }, 200);
  });

  app.openapi(remove, async (c) => {
    await s3Keys.delete(c.req.valid('param').id);
    return c.body(null, 204);
  });

  return app;
}
