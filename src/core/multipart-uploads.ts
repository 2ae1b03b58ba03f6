// S3 multipart uploads over the catalog, with no storage of their own: an upload's state is objects in a
// system bucket no user can name or list. Its record `u/<bucket>/<key>\x01<uploadId>` (content: a state
// marker; properties: who started it and the final object's metadata) and one object per part
// `p/<uploadId>/<00001>` (content: the part's bytes, etag: its MD5), so a part is a deduplicated, durable,
// GC-safe blob like any write. Complete streams the parts' blobs into the target object as one write —
// usually begun already while the parts arrived (multipart-assembly.ts), so that little is left to do
// (that write: multipart-complete.ts).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import type { BucketRecord, MetadataStore, ObjectRecord } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { BlobService, ByteRange } from './blobs.ts';
import { limitBytes, type BodySource } from './byte-limit.ts';
import { parseBucketName, parseKey, type CatalogService } from './catalog.ts';
import { concatContent, writingFrom } from './content-stream.ts';
import type { Digest } from './digest.ts';
import { BlobdError } from './errors.ts';
import {
  ABORTING,
  ABORTING_DIGEST,
  checkPartNumber,
  COMPLETING,
  digestOf,
  listUploadsPage,
  MAX_PART_NUMBER,
  MIN_PART_SIZE,
  MULTIPART_BUCKET,
  noSuchUpload,
  OPEN,
  OPEN_DIGEST,
  PAGE,
  partKey,
  partOf,
  partProblem,
  recordKey,
  sameIncarnation,
  uploadOf,
  UUID_RE,
  type CompletedPart,
  type MultipartUpload,
  type StoredPart,
  type UploadMeta,
  type UploadPage,
} from './multipart-records.ts';
import { Completions, type WriteConditions } from './multipart-complete.ts';
import { partLimit, PartSizes } from './multipart-limits.ts';
import { applyMetaPatch } from './object-meta.ts';
import { refuseNul } from './text.ts';

export {
  MAX_PART_NUMBER,
  MIN_PART_SIZE,
  MULTIPART_BUCKET,
  type CompletedPart,
  type MultipartUpload,
  type PartProblem,
  type StoredPart,
  type UploadMeta,
  type UploadPage,
} from './multipart-records.ts';

/** With several nodes, a record left `completing` this long is taken for a crashed node's (none can tell). */
const STALE_COMPLETING_MS = 86_400_000;
const NO_META = { contentType: null, filename: null, owner: null, tags: [], properties: {}, expiresAt: null } as const;

export interface MultipartOptions {
  /** How long an upload lives from its start; its parts expire with it and GC frees their blobs. */
  readonly ttlMs: number;
  /** Every part but the last is at least this big (S3: 5 MiB). */
  readonly minPartSize?: number;
  /** --max-blob-size: the parts of one upload together may not exceed it (the object could not be stored). */
  readonly maxBlobSize?: number;
}

interface OpenedUpload {
  readonly info: MultipartUpload;
  readonly recordKey: string;
  /** The record's current content digest: what a change of state names in If-Match. */
  readonly digest: string;
  readonly state: 'open' | 'completing' | 'aborting';
}

export class MultipartUploads {
  private system: Promise<BucketRecord> | undefined;
  /** The target objects' writes, and which completes run in this process (multipart-complete.ts). */
  private readonly completions: Completions;
  /** What each upload's parts hold so far, for the limits of its next part. */
  private readonly partSizes: PartSizes;

  constructor(
    private readonly meta: MetadataStore,
    private readonly catalog: CatalogService,
    private readonly blobs: BlobService,
    private readonly options: MultipartOptions,
  ) {
    this.completions = new Completions(catalog, blobs, options.minPartSize ?? MIN_PART_SIZE, (uploadId) => this.partRows(uploadId));
    this.partSizes = new PartSizes(meta, (uploadId) => this.partRows(uploadId));
  }

  /** Created on first use, with one revision per key: a part uploaded again drops its older bytes. */
  private systemBucket(): Promise<BucketRecord> {
    this.system ??= this.catalog
      .putSystemBucket(MULTIPART_BUCKET, { maxObjectSize: null, quotaBytes: null, maxRevisions: 1, publicRead: false, publicRevisions: false })
      .catch((err: unknown) => {
        this.system = undefined;
        throw err;
      });
    return this.system;
  }

  async create(bucket: string, key: string, principal: Principal, meta: UploadMeta): Promise<MultipartUpload> {
    const target = await this.catalog.getBucket(bucket);
    parseKey(key);
    refuseNul(meta.contentType, 'content type');
    refuseNul(meta.filename, 'filename');
    // The final object's checks (NUL, 64 KiB), now rather than after every part was sent.
    applyMetaPatch(NO_META, { properties: { ...meta.properties } });
    const uploadId = uuidv7();
    const expiresAt = Date.now() + this.options.ttlMs;
    const properties = {
      initiator: principal.id,
      // The bucket's incarnation: a bucket deleted and made again under this name does not inherit the upload.
      bucket_created: target.createdAt,
      ...(meta.contentType !== undefined ? { content_type: meta.contentType } : {}),
      ...(meta.filename !== undefined ? { filename: meta.filename } : {}),
      ...(meta.properties !== undefined ? { meta: meta.properties } : {}),
    };
    const record = await this.catalog.putSystemObject(await this.systemBucket(), recordKey(bucket, key, uploadId), () => Readable.from([OPEN]), {
      principal,
      declaredSize: OPEN.length,
      meta: { expires_at: new Date(expiresAt).toISOString(), properties },
    });
    return uploadOf(bucket, key, uploadId, record);
  }

  /** The upload's record, or upload_not_found; a `completing` left by a crashed run counts as open. */
  private async open(bucket: string, key: string, uploadId: string): Promise<OpenedUpload> {
    if (!UUID_RE.test(uploadId)) throw noSuchUpload(uploadId.slice(0, 100));
    parseBucketName(bucket);
    parseKey(key);
    const rk = recordKey(bucket, key, uploadId);
    const rec = await this.meta.getObject(MULTIPART_BUCKET, rk);
    if (!rec) throw noSuchUpload(uploadId);
    if (!sameIncarnation(rec, await this.meta.getBucket(bucket))) {
      // Its bucket was deleted (and maybe made again): the upload died with it. Removed now that it is met,
      // unless a complete of this process still runs on it (that one ends by itself).
      if (!this.completions.runningHere(uploadId)) await this.forget(rk, uploadId).catch(() => {});
      throw noSuchUpload(uploadId);
    }
    let state: OpenedUpload['state'] = rec.digest === OPEN_DIGEST ? 'open' : rec.digest === ABORTING_DIGEST ? 'aborting' : 'completing';
    const stale = !this.completions.runningHere(uploadId) && (!this.meta.shared || Date.now() - rec.revisionCreatedAt > STALE_COMPLETING_MS);
    if (state === 'completing' && stale) state = 'open';
    return { info: uploadOf(bucket, key, uploadId, rec), recordKey: rk, digest: rec.digest, state };
  }

  private async openForWrite(bucket: string, key: string, uploadId: string): Promise<OpenedUpload> {
    const up = await this.open(bucket, key, uploadId);
    if (up.state !== 'open') throw noSuchUpload(uploadId);
    return up;
  }

  /** Move the record to the state `content` names if it is still at `from`; false when another write won. */
  private async setState(up: OpenedUpload, from: string, content: Buffer, principal: Principal): Promise<boolean> {
    try {
      await this.catalog.putSystemObject(await this.systemBucket(), up.recordKey, () => Readable.from([content]), {
        principal,
        declaredSize: content.length,
        ifMatch: from,
      });
      return true;
    } catch (err) {
      if (err instanceof BlobdError && err.code === 'precondition_failed') return false;
      throw err;
    }
  }

  /**
   * A part's bytes, stored as the part object (the last upload of a number wins). `md5` is asked once the
   * body ended: the hex MD5 the front computed of it, the part's ETag.
   */
  async uploadPart(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    body: BodySource,
    opts: { principal: Principal; declaredSize?: number; md5: () => string; expected?: Digest },
  ): Promise<StoredPart> {
    checkPartNumber(partNumber);
    const up = await this.openForWrite(bucket, key, uploadId);
    const limit = await partLimit(await this.catalog.getBucket(bucket), this.options.maxBlobSize, () => this.partSizes.others(uploadId, partNumber));
    if (limit && opts.declaredSize !== undefined && opts.declaredSize > limit.bytes) throw limit.error();
    const pk = partKey(uploadId, partNumber);
    const part = await this.catalog.putSystemObject(await this.systemBucket(), pk, limit ? () => limitBytes(body(), limit.bytes, limit.error) : body, {
      principal: opts.principal,
      declaredSize: opts.declaredSize,
      meta: { expires_at: new Date(up.info.expiresAt).toISOString() },
      etag: () => opts.md5().toLowerCase(),
      ...(opts.expected !== undefined ? { expected: opts.expected } : {}),
    });
    this.partSizes.note(uploadId, part);
    await this.confirmPart(up, pk);
    this.completions.assemble(up.info, part);
    return partOf(part);
  }

  /**
   * A part from an object's content (one range of it, or all); the caller read `src` with the right to.
   * A whole object whose ETag is an MD5 is referenced by digest: no byte is read or written.
   */
  async uploadPartCopy(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    src: ObjectRecord,
    range: ByteRange | undefined,
    principal: Principal,
  ): Promise<StoredPart> {
    checkPartNumber(partNumber);
    const up = await this.openForWrite(bucket, key, uploadId);
    if (range && (range.start > range.end || range.end >= src.size)) {
      throw new BlobdError('range_not_satisfiable', `the range is not within the source object of ${src.size} bytes`, { size: src.size });
    }
    const size = range ? range.end - range.start + 1 : src.size;
    const limit = await partLimit(await this.catalog.getBucket(bucket), this.options.maxBlobSize, () => this.partSizes.others(uploadId, partNumber));
    if (limit && size > limit.bytes) throw limit.error();
    const sys = await this.systemBucket();
    const pk = partKey(uploadId, partNumber);
    const meta = { expires_at: new Date(up.info.expiresAt).toISOString() };
    let part: ObjectRecord;
    if (!range || (range.start === 0 && size === src.size)) {
      const md5 = src.etag !== null && /^[0-9a-f]{32}$/.test(src.etag) ? src.etag : await this.md5Of(src.digest as Digest, src.size);
      part = await this.catalog.putSystemObjectByDigest(sys, pk, src.digest as Digest, { principal, meta, etag: md5 });
    } else {
      const hash = createHash('md5');
      const open = () => this.blobs.openContent(src.digest as Digest, range);
      part = await writingFrom(
        () => concatContent([{ open, size }], (chunk) => hash.update(chunk)),
        (body) => this.catalog.putSystemObject(sys, pk, body, { principal, declaredSize: size, meta, etag: () => hash.digest('hex') }),
      );
    }
    this.partSizes.note(uploadId, part);
    await this.confirmPart(up, pk);
    this.completions.assemble(up.info, part);
    return partOf(part);
  }

  private async md5Of(digest: Digest, size: number): Promise<string> {
    const hash = createHash('md5');
    const copied = await (await this.blobs.openContent(digest)).pipeTo(async (chunk) => void hash.update(chunk));
    if (copied !== size) throw new BlobdError('blob_not_found', `the stored bytes of ${digest} are short`, { digest });
    return hash.digest('hex');
  }

  /**
   * After a part was written: if the upload was aborted or completed meanwhile, say so. A part written after
   * the record went is removed here; one written while the record still stood is swept by the abort or
   * complete that removed it (they delete the record first, then sweep).
   */
  private async confirmPart(up: OpenedUpload, pk: string): Promise<void> {
    const rec = await this.meta.getObject(MULTIPART_BUCKET, up.recordKey);
    if (!rec) await this.meta.deleteObject(MULTIPART_BUCKET, pk).catch(() => {});
    if (!rec || rec.digest !== up.digest) throw noSuchUpload(up.info.uploadId);
  }

  /** One page of the upload's parts in part-number order, after part `marker`. */
  async listParts(
    bucket: string,
    key: string,
    uploadId: string,
    page: { marker: number; maxParts: number },
  ): Promise<{ upload: MultipartUpload; parts: StoredPart[]; truncated: boolean }> {
    const up = await this.open(bucket, key, uploadId);
    if (up.state === 'aborting') throw noSuchUpload(uploadId);
    const max = Math.max(0, Math.min(PAGE, page.maxParts));
    const marker = Math.max(0, Math.min(MAX_PART_NUMBER, Math.trunc(page.marker)));
    const rows = await this.meta.listObjects({
      bucket: MULTIPART_BUCKET,
      prefix: `p/${uploadId}/`,
      after: marker > 0 ? partKey(uploadId, marker) : null,
      limit: max + 1,
    });
    return { upload: up.info, parts: rows.slice(0, max).map(partOf), truncated: rows.length > max };
  }

  /** One page of a bucket's uploads (see listUploadsPage). */
  async listUploads(
    bucket: string,
    q: { prefix?: string; delimiter?: string; keyMarker?: string; uploadIdMarker?: string; maxUploads: number },
  ): Promise<UploadPage> {
    const b = await this.catalog.getBucket(bucket);
    const stale: { recordKey: string; uploadId: string }[] = [];
    const page = await listUploadsPage(this.meta, b.name, q, (row, uploadId) => {
      if (sameIncarnation(row, b)) return true;
      if (stale.length < PAGE) stale.push({ recordKey: row.key, uploadId });
      return false;
    });
    // An earlier bucket's uploads, hidden above: removed as they are met (their TTL would, later).
    for (const s of stale) if (!this.completions.runningHere(s.uploadId)) await this.forget(s.recordKey, s.uploadId).catch(() => {});
    return page;
  }

  /** Remove an upload's record and parts without a change of state (an upload whose bucket is gone). */
  private async forget(recordKey: string, uploadId: string): Promise<void> {
    this.completions.takeAssembly(uploadId)?.abandon();
    this.partSizes.forget(uploadId);
    await this.meta.deleteObject(MULTIPART_BUCKET, recordKey);
    await this.sweepParts(uploadId);
  }


  /** Remove the upload and its parts (their blobs go with the next GC). */
  async abort(bucket: string, key: string, uploadId: string, principal: Principal): Promise<void> {
    const up = await this.open(bucket, key, uploadId);
    if (up.state === 'completing') throw new BlobdError('upload_locked', 'the upload is being completed', { upload_id: uploadId });
    if (up.state !== 'open' || !(await this.setState(up, up.digest, ABORTING, principal))) throw noSuchUpload(uploadId);
    this.completions.takeAssembly(uploadId)?.abandon();
    this.partSizes.forget(uploadId);
    await this.meta.deleteObject(MULTIPART_BUCKET, up.recordKey);
    await this.sweepParts(uploadId);
  }

  /**
   * Check the parts the client lists (they exist with those ETags, in ascending order, all but the last at
   * least 5 MiB), then write the target object from them as one write — its limits, quota and dedup as for
   * any write — and remove the upload. The ETag is S3's: the MD5 of the parts' binary MD5s, `-N`.
   */
  async complete(
    bucket: string,
    key: string,
    uploadId: string,
    listed: readonly CompletedPart[],
    principal: Principal,
    /** The target's write conditions, checked when its revision is recorded: 412, and the upload stays open. */
    conditions: WriteConditions = {},
  ): Promise<{ object: ObjectRecord; etag: string }> {
    if (listed.length === 0) throw partProblem('no_parts', 'a complete names at least one part');
    listed.forEach((p, i) => {
      checkPartNumber(p.partNumber);
      if (i > 0 && p.partNumber <= listed[i - 1]!.partNumber) {
        throw partProblem('invalid_part_order', 'the parts are not in ascending order of part number', { part_number: p.partNumber });
      }
    });
    const up = await this.openForWrite(bucket, key, uploadId);
    // Claimed before the state change, so that no read between the winning write and this continuation
    // takes the record for a crashed run's; a loser drops its own claim, nothing else.
    const claim = this.completions.claimCompleting(uploadId);
    try {
      if (!(await this.setState(up, up.digest, COMPLETING, principal))) throw noSuchUpload(uploadId);
      let written: { object: ObjectRecord; etag: string };
      try {
        written = await this.completions.writeTarget(up.info, listed, principal, conditions);
      } catch (err) {
        // Nothing was written: the upload stays usable (fix the list, upload parts again, complete again).
        await this.setState(up, digestOf(COMPLETING), OPEN, principal).catch(() => {});
        throw err;
      }
      this.partSizes.forget(uploadId);
      await this.meta.deleteObject(MULTIPART_BUCKET, up.recordKey);
      await this.sweepParts(uploadId);
      return written;
    } finally {
      claim.release();
    }
  }

  /** Every part object of an upload, in part-number order. */
  private async *partRows(uploadId: string): AsyncIterable<ObjectRecord> {
    let after: string | null = null;
    for (let round = 0; round <= MAX_PART_NUMBER / PAGE; round++) {
      const rows = await this.meta.listObjects({ bucket: MULTIPART_BUCKET, prefix: `p/${uploadId}/`, after, limit: PAGE });
      yield* rows;
      if (rows.length < PAGE) return;
      after = rows.at(-1)!.key;
    }
  }

  /** Delete the parts of an upload whose record is gone (a part landing later removes itself: confirmPart). */
  private async sweepParts(uploadId: string): Promise<void> {
    for (let round = 0; round <= MAX_PART_NUMBER / PAGE + 1; round++) {
      const rows = await this.meta.listObjects({ bucket: MULTIPART_BUCKET, prefix: `p/${uploadId}/`, after: null, limit: PAGE });
      for (const row of rows) await this.meta.deleteObject(MULTIPART_BUCKET, row.key);
      if (rows.length < PAGE) return;
    }
  }
}
