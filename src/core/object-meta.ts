// Object metadata rules: which fields a write or a PATCH may set, a JSON merge patch (RFC 7386) of them,
// the bounds SPEC §3.3 puts on tags and properties, and the JSON form revisions are compared in.
import type { ObjectMeta } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';
import { refuseNulDeep } from './text.ts';

/** The metadata fields a PATCH may change, and that ?compare reports. */
export const META_FIELDS = ['content_type', 'filename', 'owner', 'tags', 'properties', 'expires_at'] as const;
export type MetaField = (typeof META_FIELDS)[number];

/** A JSON merge patch (RFC 7386) of object metadata, as the client sent it (already shape-checked). */
export type MetaPatch = Partial<Record<MetaField, unknown>>;

export interface Comparison {
  readonly contentChanged: boolean;
  readonly digestFrom: string;
  readonly digestTo: string;
  readonly fieldsChanged: MetaField[];
}

const MAX_TAGS = 64;
const MAX_PROPERTIES_BYTES = 64 * 1024;

/** RFC 7386: objects merge member by member, null removes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const base = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete base[k];
    // Defined, not assigned: a member named __proto__ is data like any other (assignment would set the prototype).
    else Object.defineProperty(base, k, { value: mergePatch(Object.hasOwn(base, k) ? base[k] : undefined, v), enumerable: true, writable: true, configurable: true });
  }
  return base;
}

export function metaAsJson(m: ObjectMeta): Record<MetaField, unknown> {
  return {
    content_type: m.contentType,
    filename: m.filename,
    owner: m.owner,
    tags: m.tags,
    properties: m.properties,
    expires_at: m.expiresAt === null ? null : new Date(m.expiresAt).toISOString(),
  };
}

const MAX_OWNER_BYTES = 1024;

/** Apply a merge patch to metadata and check the result against SPEC §3.3's bounds. */
export function applyMetaPatch(current: ObjectMeta, patch: MetaPatch): ObjectMeta {
  // The patch, not the result: what is stored already was accepted once and must not block other changes.
  for (const [field, value] of Object.entries(patch)) refuseNulDeep(value, field);
  const merged = mergePatch(metaAsJson(current), patch) as Record<string, unknown>;
  const tags = (merged.tags ?? []) as string[];
  const properties = (merged.properties ?? {}) as Record<string, unknown>;
  if (tags.length > MAX_TAGS) throw new BlobdError('invalid_request', `at most ${MAX_TAGS} tags`);
  if (Buffer.byteLength(JSON.stringify(properties)) > MAX_PROPERTIES_BYTES) {
    throw new BlobdError('invalid_request', 'properties are at most 64 KiB of JSON');
  }
  // An owner is indexed with its bucket and key: 1024 characters of 3-byte UTF-8 would not fit PostgreSQL's
  // index rows (2704 bytes), so the bound is in bytes.
  if (typeof patch.owner === 'string' && Buffer.byteLength(patch.owner) > MAX_OWNER_BYTES) {
    throw new BlobdError('invalid_request', `owner is at most ${MAX_OWNER_BYTES} bytes of UTF-8`);
  }
  const expires = merged.expires_at as string | null | undefined;
  const expiresAt = expires == null ? null : Date.parse(expires);
  if (expiresAt !== null && Number.isNaN(expiresAt)) throw new BlobdError('invalid_request', 'expires_at is an ISO 8601 date');
  return {
    contentType: (merged.content_type as string | null | undefined) ?? null,
    filename: (merged.filename as string | null | undefined) ?? null,
    owner: (merged.owner as string | null | undefined) ?? null,
    tags: [...new Set(tags)],
    properties,
    expiresAt,
  };
}

