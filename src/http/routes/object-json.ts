// How objects and revisions look in JSON (SPEC §3.3), for writes, reads, listings and exports alike, and
// `?fields=` selection. What a public reader sees is decided here too: the public fields only.
import { z } from '@hono/zod-openapi';
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord, RevisionRecord } from '../../storage/metadata-store.ts';
import { isoTime } from './schemas.ts';

export const ObjectJson = z
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

/** Fields a public reader (or a write-only writer) does not see: who owns it, its tags and properties, who wrote it. */
export const PRIVATE_FIELDS = ['owner', 'tags', 'properties', 'created_by'] as const;

/** A partial object: metadata fields are left out for callers who may not read the bucket. */
export const PartialObject = ObjectJson.partial({
  content_type: true, filename: true, owner: true, tags: true, properties: true, created_by: true, expires_at: true,
}).openapi('PartialObject');

export const RevisionJson = z
  .object({
    revision: z.number().int(),
    digest: z.string(),
    size: z.number().int(),
    content_type: z.string().nullable(),
    filename: z.string().nullable(),
    created_at: z.string(),
    created_by: z.string().nullable().optional(),
  })
  .openapi('Revision');

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

/** What a public reader of a public_read bucket sees of an object. */
export function publicObjectJson(o: ObjectRecord) {
  const full: Record<string, unknown> = objectJson(o);
  for (const f of PRIVATE_FIELDS) delete full[f];
  return full;
}

export function revisionJson(r: RevisionRecord, full: boolean) {
  return {
    revision: r.revision,
    digest: r.digest,
    size: r.size,
    content_type: r.contentType,
    filename: r.filename,
    created_at: isoTime(r.createdAt)!,
    ...(full ? { created_by: r.createdBy } : {}),
  };
}

export const FIELDS = Object.keys(ObjectJson.shape);

/** `?fields=a,b,-c`: keep only the named fields, or drop the ones with a minus. */
export function selectFields(item: Record<string, unknown>, spec: string | undefined): Record<string, unknown> {
  if (!spec) return item;
  const names = spec.split(',').map((f) => f.trim()).filter(Boolean);
  for (const n of names) {
    if (!FIELDS.includes(n.replace(/^-/, ''))) throw new BlobdError('invalid_request', `unknown field ${n.replace(/^-/, '')}`, { fields: FIELDS });
  }
  const keep = [...new Set(names.filter((n) => !n.startsWith('-')))];
  const drop = new Set(names.filter((n) => n.startsWith('-')).map((n) => n.slice(1)));
  // Named fields come in the order named (a csv export's columns too); otherwise the item's own order.
  const order = keep.length > 0 ? keep.filter((k) => k in item) : Object.keys(item);
  return Object.fromEntries(order.filter((k) => !drop.has(k)).map((k) => [k, item[k]]));
}
