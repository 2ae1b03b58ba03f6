// Buckets and objects: bucket + key → a blob, with metadata and a history of revisions. Names and keys
// are validated here (SPEC §1); limits and quotas are enforced while the body streams and again in the
// transaction that records the revision. It never buffers a body and never knows a table name.
import { v7 as uuidv7 } from 'uuid';
import { Readable } from 'node:stream';
import type {
  BucketRecord,
  BucketSettings,
  MetadataStore,
  ObjectMeta,
  ObjectRecord,
  PropertyFilter,
  RevisionRecord,
} from '../storage/metadata-store.ts';
import { KEY_END } from '../storage/metadata-store.ts';
import { can, type Principal } from './auth.ts';
import type { BlobService, ByteRange } from './blobs.ts';
import { tooLarge, type BodySource } from './byte-limit.ts';
import type { Digest } from './digest.ts';
import { BlobdError } from './errors.ts';
import { decodeCursor, encodeCursor, isPositiveInteger, isString, pageOf, type Page, type PageRequest } from './paging.ts';

const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
// Controls (C0, DEL, C1) and U+10FFFF, which listing uses as its "after every key" bound.
const KEY_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u{10FFFF}]/u;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const PROPERTY_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

export function parseBucketName(name: string): string {
  if (!BUCKET_RE.test(name)) {
    throw new BlobdError('invalid_bucket_name', 'a bucket name is [a-z0-9][a-z0-9._-]{0,62}', { bucket: name.slice(0, 100) });
  }
  return name;
}

/**
 * A key as SPEC §1 has it, and in Unicode NFC: a key not in NFC is refused (never normalized), so that one
 * key has one spelling and one URL. `é` as U+00E9 is a key; as `e` + U+0301 it is `400 invalid_key`.
 */
export function parseKey(key: string): string {
  const bytes = Buffer.byteLength(key, 'utf8');
  const why =
    bytes === 0 || bytes > 1024
      ? 'a key is 1 to 1024 bytes of UTF-8'
      : KEY_FORBIDDEN.test(key) || LONE_SURROGATE.test(key)
        ? 'a key holds no NUL or control characters'
        : key.normalize('NFC') !== key
          ? 'a key is in Unicode normalization form C (NFC)'
        : key.startsWith('/')
          ? 'a key does not start with /'
          : key.split('/').some((seg) => seg === '.' || seg === '..')
            ? 'a key has no . or .. segment'
            : null;
  if (why) throw new BlobdError('invalid_key', why, { key: key.slice(0, 100) });
  return key;
}

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
    else base[k] = mergePatch(base[k], v);
  }
  return base;
}

function metaAsJson(m: ObjectMeta): Record<MetaField, unknown> {
  return {
    content_type: m.contentType,
    filename: m.filename,
    owner: m.owner,
    tags: m.tags,
    properties: m.properties,
    expires_at: m.expiresAt === null ? null : new Date(m.expiresAt).toISOString(),
  };
}

/** Apply a merge patch to metadata and check the result against SPEC §3.3's bounds. */
export function applyMetaPatch(current: ObjectMeta, patch: MetaPatch): ObjectMeta {
  const merged = mergePatch(metaAsJson(current), patch) as Record<string, unknown>;
  const tags = (merged.tags ?? []) as string[];
  const properties = (merged.properties ?? {}) as Record<string, unknown>;
  if (tags.length > MAX_TAGS) throw new BlobdError('invalid_request', `at most ${MAX_TAGS} tags`);
  if (Buffer.byteLength(JSON.stringify(properties)) > MAX_PROPERTIES_BYTES) {
    throw new BlobdError('invalid_request', 'properties are at most 64 KiB of JSON');
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

export interface ListOptions {
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly limit?: number;
  readonly cursor?: string;
  readonly owner?: string;
  readonly tag?: string;
  readonly properties?: readonly PropertyFilter[];
}

const PROPERTY_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'exists'] as const;

/**
 * `property.NAME_OP=VALUE` → a filter: a trailing `_eq`, `_ne`, `_gt`, `_gte`, `_lt`, `_lte` or `_exists`
 * is the operator, and without one the operator is `eq` (so a property named `size_gt` is matched with
 * `property.size_gt_eq=…`). `_exists` takes `true` or `false`.
 */
export function propertyFilter(param: string, value: string): PropertyFilter {
  const m = /^(.+)_(eq|ne|gt|gte|lt|lte|exists)$/.exec(param);
  const name = m ? m[1]! : param;
  const op = (m ? m[2]! : 'eq') as (typeof PROPERTY_OPS)[number];
  if (!PROPERTY_NAME_RE.test(name)) {
    throw new BlobdError('invalid_request', 'a property name is [A-Za-z0-9_.-]{1,128}', { property: name.slice(0, 100) });
  }
  if (op === 'exists' && value !== 'true' && value !== 'false') {
    throw new BlobdError('invalid_request', `property.${name}_exists is true or false`);
  }
  return { name, op, value };
}

/** How much of a bucket's objects a reader sees: all of it, or (a public reader) the public part. */
export interface ReadAccess {
  /** Metadata beyond the public fields (owner, tags, properties, created_by). */
  readonly full: boolean;
}

export interface ListPage {
  readonly items: ObjectRecord[];
  readonly commonPrefixes: string[];
  readonly nextCursor: string | null;
}

export interface PutObjectOptions {
  readonly principal: Principal;
  readonly declaredSize?: number;
  readonly contentType?: string;
  readonly filename?: string;
  /** `If-Match`: a digest (`sha256:…`) or `*`. */
  readonly ifMatch?: string;
  /** `If-None-Match: *`. */
  readonly ifNoneMatch?: boolean;
  /** The largest content this write may name (a signed URL's max_size), also by digest. */
  readonly sizeLimit?: number;
  /**
   * Metadata sent with the content, applied in the same transaction as the revision (a function: known
   * only once the content has been stored, e.g. form parts after the file; asked before the revision).
   */
  readonly meta?: MetaPatch | (() => Promise<MetaPatch>);
}

const encodeKeyCursor = (after: string) => encodeCursor({ a: after });
const decodeKeyCursor = (cursor: string) =>
  decodeCursor(cursor, (v): v is { a: string } => typeof v === 'object' && v !== null && typeof (v as { a?: unknown }).a === 'string').a;

export class CatalogService {
  constructor(
    private readonly meta: MetadataStore,
    private readonly blobs: BlobService,
  ) {}

  async putBucket(name: string, settings: BucketSettings): Promise<{ bucket: BucketRecord; created: boolean }> {
    const { created } = await this.meta.putBucket(parseBucketName(name), settings);
    return { bucket: (await this.meta.getBucket(name))!, created };
  }

  async getBucket(name: string): Promise<BucketRecord> {
    const bucket = await this.meta.getBucket(parseBucketName(name));
    if (!bucket) throw new BlobdError('bucket_not_found', `no bucket ${name}`, { bucket: name });
    return bucket;
  }

  /** True when anyone may read the bucket's objects (public_read); false for unknown or invalid names. */
  async isPublic(name: string): Promise<boolean> {
    return BUCKET_RE.test(name) && (await this.meta.getBucket(name))?.publicRead === true;
  }

  /**
   * What a reader of an object may see. One with `read` on the bucket sees everything. A public reader of
   * a public_read bucket (anonymous, or a token without that scope) sees the current revision's content
   * and public metadata only; `history` (older revisions, ?revisions, ?compare) needs a credential unless
   * the bucket sets public_revisions.
   */
  async readAccess(bucketName: string, principal: Principal | undefined, history: boolean): Promise<ReadAccess> {
    if (principal && can(principal, { action: 'object:read', bucket: bucketName })) return { full: true };
    const bucket = await this.getBucket(bucketName);
    if (history && !(bucket.publicRead && bucket.publicRevisions)) {
      throw principal
        ? new BlobdError('forbidden', `this token may not read the history of objects in bucket ${bucketName}`)
        : new BlobdError('unauthorized', "reading an object's history in this bucket needs a token");
    }
    return { full: false };
  }

  /** The buckets this principal may read, in name order. */
  async listBuckets(principal: Principal, page: PageRequest): Promise<Page<BucketRecord>> {
    let after = page.cursor === undefined ? null : decodeCursor(page.cursor, isString);
    const items: BucketRecord[] = [];
    // Buckets the principal may not read are skipped: keep reading until the page is full or none are left.
    for (;;) {
      const rows = await this.meta.listBuckets(page.limit + 1, after);
      for (const b of rows) {
        if (!can(principal, { action: 'bucket:read', bucket: b.name })) continue;
        if (items.length === page.limit) return { items, nextCursor: encodeCursor(items.at(-1)!.name) };
        items.push(b);
      }
      if (rows.length <= page.limit) return { items, nextCursor: null };
      after = rows.at(-1)!.name;
    }
  }

  async deleteBucket(name: string, force: boolean): Promise<void> {
    const outcome = await this.meta.deleteBucket(parseBucketName(name), force);
    if (outcome === 'not_found') throw new BlobdError('bucket_not_found', `no bucket ${name}`, { bucket: name });
    if (outcome === 'not_empty') {
      throw new BlobdError('bucket_not_empty', 'the bucket still holds objects; delete them or pass force=true', { bucket: name });
    }
  }

  /** Write new content for an object: its next revision (the first one creates it). */
  async putObject(bucketName: string, key: string, body: BodySource, opts: PutObjectOptions): Promise<{ object: ObjectRecord; created: boolean }> {
    const bucket = await this.getBucket(bucketName);
    parseKey(key);
    await this.checkPreconditions(bucket.name, key, opts);
    const limits = [
      ...(bucket.maxObjectSize !== null
        ? [{ bytes: bucket.maxObjectSize, error: () => tooLarge(bucket.maxObjectSize!, "bucket's max_object_size") }]
        : []),
      ...(bucket.quotaBytes !== null
        ? [{ bytes: Math.max(0, bucket.quotaBytes - bucket.storedBytes), error: () => quotaExceeded(bucket) }]
        : []),
    ].sort((a, b) => a.bytes - b.bytes);
    return this.blobs.store(body, { declaredSize: opts.declaredSize, limit: limits[0] }, (blob) =>
      this.recordRevision(bucket, key, blob, opts),
    );
  }

  /**
   * If-Match / If-None-Match checked before any byte is read, so a doomed write costs no upload; the
   * revision transaction checks them again (the object may change while the body streams).
   */
  private async checkPreconditions(bucket: string, key: string, opts: PutObjectOptions): Promise<void> {
    if (opts.ifMatch === undefined && !opts.ifNoneMatch) return;
    const current = await this.meta.getObject(bucket, key);
    const fails = opts.ifNoneMatch ? current !== null : !current || (opts.ifMatch !== '*' && opts.ifMatch !== current.digest);
    if (fails) throw new BlobdError('precondition_failed', 'the object does not match If-Match / If-None-Match');
  }

  /** The revision row for a blob whose bytes are in place; runs under the blob's digest lock. */
  private async recordRevision(
    bucket: BucketRecord,
    key: string,
    blob: { digest: string; size: number },
    opts: PutObjectOptions,
  ): Promise<{ object: ObjectRecord; created: boolean }> {
    const patch = typeof opts.meta === 'function' ? await opts.meta() : opts.meta;
    const result = await this.meta.addRevision({
      bucket: bucket.name,
      key,
      newObjectId: uuidv7(),
      blob,
      contentType: opts.contentType ?? null,
      filename: opts.filename ?? null,
      createdBy: opts.principal.id,
      ifMatch: opts.ifMatch,
      ifNoneMatch: opts.ifNoneMatch,
      ...(patch !== undefined ? { meta: (current: ObjectMeta) => applyMetaPatch(current, patch) } : {}),
    });
    if (!result.ok) {
      if (result.reason === 'bucket_not_found') throw new BlobdError('bucket_not_found', `no bucket ${bucket.name}`, { bucket: bucket.name });
      if (result.reason === 'quota_exceeded') throw quotaExceeded(bucket);
      throw new BlobdError('precondition_failed', 'the object does not match If-Match / If-None-Match');
    }
    return { object: result.object, created: result.object.revision === 1 };
  }

  /** Point an object at a blob the caller may read (no bytes sent), as its next revision. */
  async putObjectByDigest(bucketName: string, key: string, digest: Digest, opts: PutObjectOptions): Promise<{ object: ObjectRecord; created: boolean }> {
    const bucket = await this.getBucket(bucketName);
    parseKey(key);
    const mayRead = can(opts.principal, { action: 'blobs:read' });
    // Found and referenced under the digest lock: GC cannot remove the blob in between.
    return this.blobs.lockDigest(digest, async () => {
      const blob = mayRead ? await this.blobs.find(digest) : null;
      if (!blob) throw new BlobdError('blob_not_found', `no blob ${digest} that this token may read`, { digest });
      if (opts.sizeLimit !== undefined && blob.size > opts.sizeLimit) throw tooLarge(opts.sizeLimit, "signed URL's max_size");
      if (bucket.maxObjectSize !== null && blob.size > bucket.maxObjectSize) {
        throw tooLarge(bucket.maxObjectSize, "bucket's max_object_size");
      }
      return this.recordRevision(bucket, key, blob, opts);
    });
  }

  /** Small content sent inline as base64 (at most 10 MiB decoded): stored like any other body. */
  putObjectInline(bucketName: string, key: string, content: Buffer, opts: PutObjectOptions) {
    if (content.length > 10 * 1024 * 1024) throw tooLarge(10 * 1024 * 1024, 'content_base64 limit');
    return this.putObject(bucketName, key, () => Readable.from([content]), { ...opts, declaredSize: content.length });
  }

  /** Change metadata only (JSON merge patch); the content and the revision number stay. */
  async patchObject(bucket: string, key: string, patch: MetaPatch): Promise<ObjectRecord> {
    const current = await this.getObject(bucket, key);
    const updated = await this.meta.setObjectMeta(current.bucket, current.key, applyMetaPatch(current, patch));
    if (!updated) throw new BlobdError('object_not_found', `no object ${key}`, { bucket, key });
    return updated;
  }

  /** What changed between two revisions: the content (by digest) and which metadata fields. */
  async compare(bucket: string, key: string, from: number, to: number): Promise<Comparison> {
    const pick = async (n: number) => {
      const [r] = (await this.meta.listRevisions(parseBucketName(bucket), parseKey(key), 1, n + 1)) ?? [];
      if (r?.revision !== n) throw new BlobdError('object_not_found', `no revision ${n} of ${key}`, { bucket, key, revision: n });
      return r;
    };
    const a = await pick(from);
    const b = await pick(to);
    const ja = metaAsJson(a.metadata);
    const jb = metaAsJson(b.metadata);
    return {
      contentChanged: a.digest !== b.digest,
      digestFrom: a.digest,
      digestTo: b.digest,
      fieldsChanged: META_FIELDS.filter((f) => JSON.stringify(ja[f]) !== JSON.stringify(jb[f])),
    };
  }

  async getObject(bucket: string, key: string, revision?: number): Promise<ObjectRecord> {
    const obj = await this.meta.getObject(parseBucketName(bucket), parseKey(key), revision);
    if (!obj) {
      await this.getBucket(bucket);
      throw new BlobdError('object_not_found', revision === undefined ? `no object ${key}` : `no revision ${revision} of ${key}`, {
        bucket,
        key,
        ...(revision === undefined ? {} : { revision }),
      });
    }
    return obj;
  }

  /** Revisions newest first; the cursor is the last revision number of the previous page. */
  async listRevisions(bucket: string, key: string, page: PageRequest): Promise<Page<RevisionRecord>> {
    const before = page.cursor === undefined ? null : decodeCursor(page.cursor, isPositiveInteger);
    const revisions = await this.meta.listRevisions(parseBucketName(bucket), parseKey(key), page.limit + 1, before);
    if (!revisions) {
      await this.getBucket(bucket);
      throw new BlobdError('object_not_found', `no object ${key}`, { bucket, key });
    }
    return pageOf(revisions, page.limit, (r) => r.revision);
  }

  async deleteObject(bucket: string, key: string, revision?: number): Promise<void> {
    if (!(await this.meta.deleteObject(parseBucketName(bucket), parseKey(key), revision))) {
      await this.getBucket(bucket);
      throw new BlobdError('object_not_found', `no object ${key}`, { bucket, key });
    }
  }

  openContent(obj: ObjectRecord, range?: ByteRange) {
    return this.blobs.openContent(obj.digest as Digest, range);
  }

  /**
   * One page of a listing in key order. With a delimiter, keys that share the part of their name up to the
   * next delimiter after the prefix are rolled into one common prefix (as S3 does), and the page skips
   * past the whole group. The cursor is the last key (or group end) emitted: keyset pagination, so
   * concurrent writes never make a page repeat or skip an existing key.
   */
  async listObjects(bucketName: string, opts: ListOptions): Promise<ListPage> {
    const bucket = (await this.getBucket(bucketName)).name;
    const prefix = opts.prefix ?? '';
    const limit = opts.limit ?? 1000;
    const filters = this.filters(opts);
    let after = opts.cursor ? decodeKeyCursor(opts.cursor) : '';
    const items: ObjectRecord[] = [];
    const commonPrefixes: string[] = [];
    // With a delimiter every common prefix restarts the scan past its group, so fetch in small batches.
    const batch = opts.delimiter ? Math.min(limit + 1, 32) : limit + 1;
    scan: for (;;) {
      const rows = await this.meta.listObjects({ bucket, prefix, after, limit: batch, ...filters });
      for (const row of rows) {
        // A full page with a row still to come: there is more.
        if (items.length + commonPrefixes.length === limit) return { items, commonPrefixes, nextCursor: encodeKeyCursor(after) };
        const at = opts.delimiter ? row.key.indexOf(opts.delimiter, prefix.length) : -1;
        if (at >= 0) {
          const group = row.key.slice(0, at + opts.delimiter!.length);
          commonPrefixes.push(group);
          after = group + KEY_END; // past every key of the group: query again from there
          continue scan;
        }
        items.push(row);
        after = row.key;
      }
      if (rows.length === batch && batch <= limit) continue; // a short batch was full: there may be more
      return { items, commonPrefixes, nextCursor: null };
    }
  }

  /** Every matching object, page by page, for exports of any size. */
  async *exportObjects(bucketName: string, opts: ListOptions): AsyncIterable<ObjectRecord> {
    const bucket = (await this.getBucket(bucketName)).name;
    const filters = this.filters(opts);
    let after = '';
    for (;;) {
      const rows = await this.meta.listObjects({ bucket, prefix: opts.prefix ?? '', after, limit: 1000, ...filters });
      yield* rows;
      if (rows.length < 1000) return;
      after = rows[rows.length - 1]!.key;
    }
  }

  private filters(opts: ListOptions) {
    return {
      ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
      ...(opts.tag !== undefined ? { tag: opts.tag } : {}),
      ...(opts.properties?.length ? { properties: opts.properties } : {}),
    };
  }
}

function quotaExceeded(bucket: BucketRecord): BlobdError {
  return new BlobdError('quota_exceeded', `the bucket's quota of ${bucket.quotaBytes} bytes would be exceeded`, {
    quota_bytes: bucket.quotaBytes,
    stored_bytes: bucket.storedBytes,
  });
}
