// Buckets and objects: bucket + key → a blob, with metadata and a history of revisions. Names and keys
// are validated here (SPEC §1); limits and quotas are enforced while the body streams and again in the
// transaction that records the revision. It never buffers a body and never knows a table name.
import { v7 as uuidv7 } from 'uuid';
import { Readable } from 'node:stream';
import type {
  BlobCommitTicket,
  BucketRecord,
  BucketSettings,
  MetadataStore,
  ObjectMeta,
  ObjectRecord,
  RevisionRecord,
  IfMatch,
} from '../storage/metadata-store.ts';
import { can, type Principal } from './auth.ts';
import type { BlobService, ByteRange, StoredBlob } from './blobs.ts';
import { tooLarge, type BodySource } from './byte-limit.ts';
import type { Digest } from './digest.ts';
import { BlobdError } from './errors.ts';
import { exportAll, listPage, type ListOptions, type ListPage } from './object-listing.ts';
import { applyMetaPatch, META_FIELDS, metaAsJson, type Comparison, type MetaPatch } from './object-meta.ts';
import { decodeCursor, encodeCursor, isPositiveInteger, isString, pageOf, type Page, type PageRequest } from './paging.ts';
import { LONE_SURROGATE, refuseNul } from './text.ts';
import { ifMatchHolds } from '../storage/metadata-store.ts';

const preconditionFailed = () => new BlobdError('precondition_failed', 'the object does not match If-Match / If-None-Match');

export { propertyFilter, type ListOptions, type ListPage } from './object-listing.ts';
export { applyMetaPatch, META_FIELDS, type Comparison, type MetaField, type MetaPatch } from './object-meta.ts';

const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
// Controls (C0, DEL, C1), U+FFFE and U+FFFF (no XML 1.0 document can hold them: an S3 listing would be
// unreadable), and U+10FFFF, which listing uses as its "after every key" bound.
const KEY_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\uFFFE\uFFFF\u{10FFFF}]/u;

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
        ? 'a key holds no NUL, control characters, U+FFFE or U+FFFF'
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


/** How much of a bucket's objects a reader sees: all of it, or (a public reader) the public part. */
export interface ReadAccess {
  /** Metadata beyond the public fields (owner, tags, properties, created_by). */
  readonly full: boolean;
}

export interface PutObjectOptions {
  readonly principal: Principal;
  readonly declaredSize?: number;
  readonly contentType?: string;
  readonly filename?: string;
  /** `If-Match`: digests (`sha256:…`), any of which the current content must have, or `*`. */
  readonly ifMatch?: IfMatch;
  /** `If-None-Match: *`. */
  readonly ifNoneMatch?: boolean;
  /** The largest content this write may name (a signed URL's max_size), also by digest. */
  readonly sizeLimit?: number;
  /**
   * Metadata sent with the content, applied in the same transaction as the revision (a function: known
   * only once the content has been stored, e.g. form parts after the file; asked before the revision).
   */
  readonly meta?: MetaPatch | (() => Promise<MetaPatch>);
  /**
   * An entity tag stored with the revision (the S3 front's MD5 ETag); none for native writes. A function
   * when it is known only once the body ended: asked when the revision is recorded, after the bytes.
   */
  readonly etag?: string | (() => string);
  /**
   * The new revision's properties, exactly (S3 PutObject: `x-amz-meta-*` replace the whole set), applied
   * after `meta` in the same transaction; owner, tags and expiry carry over as for any write.
   */
  readonly replaceProperties?: Readonly<Record<string, string>>;
  /**
   * The content's digest as the client vouched for it (S3's signed x-amz-content-sha256): the store's own
   * hash of the bytes is compared with it before anything commits (digest_mismatch), so the front need not
   * hash the body a second time.
   */
  readonly expected?: Digest;
}

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
    let after = page.cursor === undefined ? null : decodeCursor(page.cursor, isBucketPosition);
    const items: BucketRecord[] = [];
    // Buckets the principal may not read are skipped: keep reading until the page is full or none are left.
    for (;;) {
      const rows = await this.meta.listBuckets(page.limit + 1, after);
      for (const b of rows) {
        // A name no user can give (see putSystemBucket) is core's own bucket: never listed.
        if (!BUCKET_RE.test(b.name) || !can(principal, { action: 'bucket:read', bucket: b.name })) continue;
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
    checkWriteText(opts);
    await this.checkPreconditions(bucket.name, key, opts);
    const limits = [
      ...(bucket.maxObjectSize !== null
        ? [{ bytes: bucket.maxObjectSize, error: () => tooLarge(bucket.maxObjectSize!, "bucket's max_object_size") }]
        : []),
      ...(bucket.quotaBytes !== null
        ? [{ bytes: Math.max(0, bucket.quotaBytes - bucket.storedBytes), error: () => quotaExceeded(bucket) }]
        : []),
    ].sort((a, b) => a.bytes - b.bytes);
    // Metadata known only once the body has been read (form parts after the file) is awaited after the
    // bytes are staged and before the digest lock: a client that stalls there holds up no other writer.
    let meta = typeof opts.meta === 'function' ? undefined : opts.meta;
    const awaitMeta = typeof opts.meta === 'function' ? opts.meta : undefined;
    return this.storeAnnounced(
      body,
      {
        declaredSize: opts.declaredSize,
        limit: limits[0],
        ...(opts.expected !== undefined ? { expected: opts.expected } : {}),
        ...(awaitMeta ? { beforeCommit: async () => void (meta = await awaitMeta()) } : {}),
      },
      async (blob, ticket) => {
        const written = await this.recordRevision(bucket, key, blob, { ...opts, meta }, ticket);
        this.blobs.noteStored(written.blobCreated);
        return written;
      },
    );
  }

  /**
   * blobs.store with the revision announced to the metadata store once the digest lock is held (as ingest
   * announces its blob row): concurrent object writes then share one durable commit (see announceBlobCommit).
   */
  private async storeAnnounced<T>(
    body: BodySource,
    opts: Omit<Parameters<BlobService['store']>[1], 'onLocked'>,
    record: (blob: StoredBlob, ticket: BlobCommitTicket | undefined) => Promise<T>,
  ): Promise<T> {
    let ticket: BlobCommitTicket | undefined;
    const announce = () => {
      ticket = this.meta.announceBlobCommit();
      return () => ticket!.cancel();
    };
    try {
      return await this.blobs.store(body, { ...opts, onLocked: announce }, (blob) => record(blob, ticket));
    } finally {
      // Used by the revision, or given back: a ticket left out would make every later group wait its window.
      ticket?.cancel();
    }
  }

  /**
   * If-Match / If-None-Match checked before any byte is read, so a doomed write costs no upload; the
   * revision transaction checks them again (the object may change while the body streams).
   */
  private async checkPreconditions(bucket: string, key: string, opts: PutObjectOptions): Promise<void> {
    if (opts.ifMatch === undefined && !opts.ifNoneMatch) return;
    const current = await this.meta.getObject(bucket, key);
    const fails = opts.ifNoneMatch ? current !== null : !current || !ifMatchHolds(opts.ifMatch!, current.digest);
    if (fails) throw preconditionFailed();
  }

  /** The revision row for a blob whose bytes are in place; runs under the blob's digest lock. */
  private async recordRevision(
    bucket: BucketRecord,
    key: string,
    blob: StoredBlob & { readonly mustExist?: boolean },
    opts: PutObjectOptions,
    ticket?: BlobCommitTicket,
  ): Promise<{ object: ObjectRecord; created: boolean; blobCreated: boolean }> {
    const patch = typeof opts.meta === 'function' ? undefined : opts.meta;
    const replace = opts.replaceProperties;
    const meta =
      patch === undefined && replace === undefined
        ? undefined
        : (current: ObjectMeta): ObjectMeta => {
            const patched = patch === undefined ? current : applyMetaPatch(current, patch);
            // Through applyMetaPatch again for its checks (NUL, 64 KiB); from no properties, so none survive.
            return replace === undefined ? patched : applyMetaPatch({ ...patched, properties: {} }, { properties: { ...replace } });
          };
    const result = await (ticket ?? this.meta).addRevision({
      bucket: bucket.name,
      key,
      newObjectId: uuidv7(),
      blob,
      contentType: opts.contentType ?? null,
      filename: opts.filename ?? null,
      createdBy: opts.principal.id,
      ifMatch: opts.ifMatch,
      ifNoneMatch: opts.ifNoneMatch,
      ...(meta !== undefined ? { meta } : {}),
      ...(opts.etag !== undefined ? { etag: typeof opts.etag === 'function' ? opts.etag() : opts.etag } : {}),
    });
    if (!result.ok) {
      if (result.reason === 'bucket_not_found') throw new BlobdError('bucket_not_found', `no bucket ${bucket.name}`, { bucket: bucket.name });
      if (result.reason === 'quota_exceeded') throw quotaExceeded(bucket);
      if (result.reason === 'blob_not_found') throw new BlobdError('blob_not_found', `no blob ${blob.digest}`, { digest: blob.digest });
      throw preconditionFailed();
    }
    return { object: result.object, created: result.object.revision === 1, blobCreated: result.blobCreated };
  }

  /** Point an object at a blob the caller may read (no bytes sent), as its next revision. */
  putObjectByDigest(bucketName: string, key: string, digest: Digest, opts: PutObjectOptions): Promise<{ object: ObjectRecord; created: boolean }> {
    return this.reference(bucketName, key, digest, can(opts.principal, { action: 'blobs:read' }), opts);
  }

  /**
   * A copy of an object's content (no bytes copied: the new revision references the same blob). `source` is
   * what getObject gave a caller allowed to read it, so its blob is one the caller may read, whatever its
   * blobs: scopes; writing the target is the caller's own check, as for any write.
   */
  copyObject(source: ObjectRecord, bucketName: string, key: string, opts: PutObjectOptions): Promise<{ object: ObjectRecord; created: boolean }> {
    return this.reference(bucketName, key, source.digest as Digest, true, opts);
  }

  private async reference(bucketName: string, key: string, digest: Digest, mayRead: boolean, opts: PutObjectOptions): Promise<{ object: ObjectRecord; created: boolean }> {
    const bucket = await this.getBucket(bucketName);
    parseKey(key);
    checkWriteText(opts);
    // Found and referenced under the digest lock: GC in this process cannot remove the blob in between.
    return this.blobs.lockDigest(digest, async () => {
      const blob = mayRead ? await this.blobs.find(digest) : null;
      if (!blob) throw new BlobdError('blob_not_found', `no blob ${digest} that this token may read`, { digest });
      if (opts.sizeLimit !== undefined && blob.size > opts.sizeLimit) throw tooLarge(opts.sizeLimit, "signed URL's max_size");
      if (bucket.maxObjectSize !== null && blob.size > bucket.maxObjectSize) {
        throw tooLarge(bucket.maxObjectSize, "bucket's max_object_size");
      }
      // No bytes come with this write: it may only reference the row that is there. On another node GC may
      // remove the row after the look above; the store then refuses (blob_not_found) instead of making a row
      // at a location queued for deletion.
      return this.recordRevision(bucket, key, { ...blob, mustExist: true }, opts);
    });
  }

  /**
   * A bucket of core's own (S3 multipart state): its name fails parseBucketName, so no user can create,
   * list or reach it; only the System methods below touch it. Created with `settings` when missing.
   */
  async putSystemBucket(name: string, settings: BucketSettings): Promise<BucketRecord> {
    if (BUCKET_RE.test(name)) throw new BlobdError('invalid_bucket_name', 'a system bucket has a name no user can give');
    return (await this.meta.getBucket(name)) ?? (await this.meta.putBucket(name, settings), (await this.meta.getBucket(name))!);
  }

  /**
   * Content for an object in a system bucket: no key rules beyond the caller's, no bucket limits (the
   * caller enforces its own); If-Match/If-None-Match as for any write. `etag` may be known only once the
   * body ended (it is asked for after the bytes are staged).
   */
  async putSystemObject(bucket: BucketRecord, key: string, body: BodySource, opts: PutObjectOptions): Promise<ObjectRecord> {
    checkWriteText(opts);
    await this.checkPreconditions(bucket.name, key, opts);
    return this.storeAnnounced(body, { declaredSize: opts.declaredSize, ...(opts.expected !== undefined ? { expected: opts.expected } : {}) }, async (blob, ticket) => {
      const written = await this.recordRevision(bucket, key, blob, opts, ticket);
      this.blobs.noteStored(written.blobCreated);
      return written.object;
    });
  }

  /** A system bucket's object referencing a live blob (no bytes sent; no blobs:read asked: core's own write). */
  async putSystemObjectByDigest(bucket: BucketRecord, key: string, digest: Digest, opts: PutObjectOptions): Promise<ObjectRecord> {
    return this.blobs.lockDigest(digest, async () => {
      const blob = await this.blobs.find(digest);
      if (!blob) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
      return (await this.recordRevision(bucket, key, { ...blob, mustExist: true }, opts)).object;
    });
  }

  /** Small content sent inline as base64 (at most 10 MiB decoded): stored like any other body. */
  putObjectInline(bucketName: string, key: string, content: Buffer, opts: PutObjectOptions) {
    if (content.length > 10 * 1024 * 1024) throw tooLarge(10 * 1024 * 1024, 'content_base64 limit');
    return this.putObject(bucketName, key, () => Readable.from([content]), { ...opts, declaredSize: content.length });
  }

  /**
   * Change metadata only (JSON merge patch); the content and the revision number stay. With `ifMatch`, only
   * while the content is one of those digests (412 otherwise, nothing changed).
   */
  async patchObject(bucket: string, key: string, patch: MetaPatch, ifMatch?: IfMatch): Promise<ObjectRecord> {
    const current = await this.getObject(bucket, key);
    if (ifMatch !== undefined && !ifMatchHolds(ifMatch, current.digest)) throw preconditionFailed();
    const updated = await this.meta.setObjectMeta(current.bucket, current.key, applyMetaPatch(current, patch), ifMatch);
    if (updated === 'precondition_failed') throw preconditionFailed();
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

  /** With `ifMatch`, only while the content deleted (the current one, or revision N's) is one of those digests. */
  async deleteObject(bucket: string, key: string, revision?: number, ifMatch?: IfMatch): Promise<void> {
    const deleted = await this.meta.deleteObject(parseBucketName(bucket), parseKey(key), revision, ifMatch);
    if (deleted === 'precondition_failed') throw preconditionFailed();
    if (!deleted) {
      await this.getBucket(bucket);
      if (revision !== undefined) throw new BlobdError('object_not_found', `no revision ${revision} of ${key}`, { bucket, key, revision });
      throw new BlobdError('object_not_found', `no object ${key}`, { bucket, key });
    }
  }

  openContent(obj: ObjectRecord, range?: ByteRange) {
    return this.blobs.openContent(obj.digest as Digest, range);
  }

  /** One page of a listing in key order (see object-listing.ts). */
  async listObjects(bucketName: string, opts: ListOptions): Promise<ListPage> {
    return listPage(this.meta, (await this.getBucket(bucketName)).name, opts);
  }

  /**
   * Every matching object, page by page, for exports of any size. The bucket and the options are checked
   * when this resolves — before an answer starts streaming — not when the first row is read.
   */
  async exportObjects(bucketName: string, opts: ListOptions): Promise<AsyncIterable<ObjectRecord>> {
    return exportAll(this.meta, (await this.getBucket(bucketName)).name, opts);
  }
}

/** A bucket name a cursor may hold: a NUL one is no name this server gave out (and PostgreSQL cannot compare it). */
const isBucketPosition = (v: unknown): v is string => isString(v) && !v.includes('\u0000');

/** The text a write stores beside its metadata patch (checked by applyMetaPatch): no NUL, as in every stored string. */
function checkWriteText(opts: PutObjectOptions): void {
  refuseNul(opts.filename, 'filename');
  refuseNul(opts.contentType, 'content type');
}

function quotaExceeded(bucket: BucketRecord): BlobdError {
  return new BlobdError('quota_exceeded', `the bucket's quota of ${bucket.quotaBytes} bytes would be exceeded`, {
    quota_bytes: bucket.quotaBytes,
    stored_bytes: bucket.storedBytes,
  });
}
