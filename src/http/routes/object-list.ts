// Listing, finding and exporting a bucket's objects (SPEC §3.3): one JSON page with S3-style prefix and
// delimiter, or every match streamed as ndjson or csv. Translation only: the rules live in core/catalog.
import { createRoute, z } from '@hono/zod-openapi';
import { Readable } from 'node:stream';
import { propertyFilter, type CatalogService, type ListOptions } from '../../core/catalog.ts';
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord } from '../../storage/metadata-store.ts';
import { onBucket, requires } from '../middleware/authenticate.ts';
import { checkKeyQuery } from '../key-target.ts';
import { createRouter } from '../router.ts';
import { ObjectJson, objectJson, selectFields } from './object-json.ts';
import { errors, PageQuery, pageRequest } from './schemas.ts';

const listObjects = createRoute({
  method: 'get',
  path: '/api/buckets/{bucket}/objects',
  summary: 'List, find and export objects (property.NAME[_OP]=VALUE filters; csv and ndjson stream everything)',
  middleware: [checkKeyQuery('prefix'), requires(onBucket('bucket:read'))] as const,
  request: {
    params: z.object({ bucket: z.string().openapi({ param: { name: 'bucket', in: 'path' } }) }),
    query: z
      .object({
        prefix: z.string().max(1024).optional(),
        delimiter: z.string().min(1).max(16).optional(),
        owner: z.string().optional(),
        tag: z.string().optional(),
        ...PageQuery,
        fields: z.string().max(1024).optional(),
        format: z.enum(['json', 'ndjson', 'csv']).optional(),
      })
      .passthrough()
      .openapi({
        description:
          'property.NAME=V, property.NAME_ne=V, _gt, _gte, _lt, _lte (numbers as numbers when both sides are finite numbers, else text), property.NAME_exists=true|false',
      }),
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

function listOptions(q: Record<string, string | string[] | undefined>): ListOptions {
  const properties = Object.entries(q)
    .filter(([k, v]) => k.startsWith('property.') && v !== undefined)
    .map(([k, v]) => {
      // A repeated parameter arrives as a list: one filter per name and operator.
      if (typeof v !== 'string') throw new BlobdError('invalid_request', `${k.slice(0, 140)} is given more than once`);
      return propertyFilter(k.slice('property.'.length), v);
    });
  const one = (name: string) => q[name] as string | undefined; // validated as single strings by the route
  const { limit, cursor } = pageRequest({ limit: one('limit'), cursor: one('cursor') }, 1000);
  return { prefix: one('prefix'), delimiter: one('delimiter'), owner: one('owner'), tag: one('tag'), cursor, limit, properties };
}

export function objectListRoutes(catalog: CatalogService) {
  const app = createRouter();

  app.openapi(listObjects, async (c) => {
    const { bucket } = c.req.valid('param');
    const q = c.req.valid('query') as Record<string, string | undefined>;
    const opts = listOptions(q as Record<string, string | string[] | undefined>);
    const format = q.format ?? 'json';
    if (format === 'json') {
      const page = await catalog.listObjects(bucket, opts);
      const items = page.items.map((o) => selectFields(objectJson(o), q.fields));
      return c.json({ items, common_prefixes: page.commonPrefixes, next_cursor: page.nextCursor }, 200);
    }
    selectFields({}, q.fields); // an unknown field name is a 400 before the export starts streaming
    const objects = await catalog.exportObjects(bucket, opts); // so are a missing bucket and a bad prefix
    const lines = Readable.from(exportLines(objects, format as 'ndjson' | 'csv', q.fields));
    const type = format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson';
    return c.body(Readable.toWeb(lines) as ReadableStream, 200, { 'Content-Type': type }) as never;
  });

  return app;
}
