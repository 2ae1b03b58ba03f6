// UploadService: the lifecycle of resumable upload sessions — initiate, append, complete, status, destroy,
// restart recovery and expiry — with one running SHA-256 per open session. It knows nothing of HTTP: the
// native routes and the tus front drive it alike. It must never acknowledge an offset that is not durable.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore, ObjectRecord, UploadRecord } from '../storage/metadata-store.ts';
import { can, hashToken, tokenMatches, type Principal } from './auth.ts';
import type { BlobService } from './blobs.ts';
import { parseKey, type CatalogService } from './catalog.ts';
import { limitBytes, tooLarge, type BodySource } from './byte-limit.ts';
import type { Digest } from './digest.ts';
import { insufficientStorage, type DiskBudget } from './disk-budget.ts';
import { BlobdError } from './errors.ts';
import { decodeCursor, isString, pageOf, type Page, type PageRequest } from './paging.ts';

export interface UploadServiceOptions {
  readonly maxBlobSize: number;
  /** Inactivity after which a session expires. */
  readonly uploadTtlMs: number;
}

export interface InitiateInput {
  readonly principal: Principal;
  readonly filename?: string;
  readonly contentType?: string;
  readonly temporary?: boolean;
  readonly size?: number;
  readonly digest?: Digest;
  readonly bucket?: string;
  readonly key?: string;
  /** The most bytes the session may ever hold (a signed URL's max_size). */
  readonly sizeLimit?: number;
}

/** What a finished session answers (and answers again, for a repeated complete). */
export interface CompletedUpload {
  /** The digest for a pinned blob; the object's id for an upload into a bucket. */
  readonly id: string;
  readonly digest: string;
  readonly size: number;
  readonly filename: string | null;
  readonly deduplicated: boolean;
  readonly bucket?: string;
  readonly key?: string;
  readonly revision?: number;
}

export type Initiated =
  | { readonly kind: 'session'; readonly id: string; readonly token: string; readonly size: number | null; readonly expiresAt: number }
  | { readonly kind: 'completed'; readonly result: CompletedUpload };

export interface SessionStatus {
  readonly id: string;
  readonly offset: number;
  readonly size: number | null;
  readonly state: 'open' | 'completed';
  readonly expiresAt: number;
  readonly filename: string | null;
}

export interface AppendOptions {
  /** The client's idea of the current offset (`Upload-Offset`); a mismatch writes nothing. */
  readonly expectedOffset?: number;
  /** The body length the client announced, if any. */
  readonly length?: number;
}

function notFound(id: string): BlobdError {
  return new BlobdError('upload_not_found', 'no such upload session (it may have expired or been destroyed)', { id });
}

export class UploadService {
  /** Sessions with a request in flight: one at a time per session. */
  private readonly busy = new Set<string>();
  /** Running hash of exactly the durable bytes of each open session, built lazily after a restart. */
  private readonly hashes = new Map<string, Hash>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly blobs: BlobService,
    private readonly catalog: CatalogService,
    private readonly disk: DiskBudget,
    private readonly options: UploadServiceOptions,
  ) {}

  async initiate(input: InitiateInput): Promise<Initiated> {
    if ((input.bucket === undefined) !== (input.key === undefined)) {
      throw new BlobdError('invalid_request', 'bucket and key go together');
    }
    const size = input.size ?? null;
    if (size !== null && size > this.options.maxBlobSize) throw tooLarge(this.options.maxBlobSize, 'maximum blob size');
    if (size !== null && input.sizeLimit !== undefined && size > input.sizeLimit) throw tooLarge(input.sizeLimit, "signed URL's max_size");
    if (input.bucket !== undefined) {
      parseKey(input.key!);
      const bucket = await this.catalog.getBucket(input.bucket);
      if (size !== null && bucket.maxObjectSize !== null && size > bucket.maxObjectSize) {
        throw tooLarge(bucket.maxObjectSize, "bucket's max_object_size");
      }
    }

    // A known digest the caller may read is done already — but only for callers who may read blobs by
    // digest, so that existence never leaks across tenants.
    if (input.digest !== undefined && input.bucket === undefined && can(input.principal, { action: 'blobs:read' })) {
      const existing = await this.blobs.pinExisting(input.digest, input.principal.id, input.temporary ?? false, size ?? undefined);
      if (existing) {
        return {
          kind: 'completed',
          result: { id: existing.digest, digest: existing.digest, size: existing.size, filename: input.filename ?? null, deduplicated: true },
        };
      }
    }

    const id = uuidv7();
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = now + this.options.uploadTtlMs;
    const create = async () => {
      // File first, then row: a row always has its file; a file without a row is swept at the next start.
      await this.bytes.createUpload(id);
      await this.meta.createUpload({
      id,
      tokenHash: hashToken(token),
      principal: input.principal.id,
      filename: input.filename ?? null,
      contentType: input.contentType ?? null,
      temporary: input.temporary ?? false,
      declaredSize: size,
      sizeLimit: input.sizeLimit ?? null,
      expectedDigest: input.digest ?? null,
      bucket: input.bucket ?? null,
      key: input.key ?? null,
      createdAt: now,
      expiresAt,
    });
    };
    // A declared size is a promise of disk space: checked and recorded as one step.
    await (size !== null ? this.disk.reserve(size, create) : create());
    this.hashes.set(id, createHash('sha256'));
    return { kind: 'session', id, token, size, expiresAt };
  }

  async append(id: string, token: string | null, body: BodySource, opts: AppendOptions = {}): Promise<number> {
    await this.authorize(id, token);
    return this.locked(id, async () => {
      const row = await this.settled(await this.load(id));
      if (row.state !== 'open') throw new BlobdError('upload_not_found', 'this upload session is already completed', { id });
      this.checkOffset(row, opts.expectedOffset);
      return this.appendBody(row, body, opts.length);
    });
  }

  async complete(
    id: string,
    token: string | null,
    body: BodySource | null,
    opts: AppendOptions & { digest?: Digest } = {},
  ): Promise<CompletedUpload> {
    await this.authorize(id, token);
    return this.locked(id, async () => {
      let row = await this.settled(await this.load(id));
      if (row.state === 'completed') {
        const done = JSON.parse(row.result!) as CompletedUpload;
        if (opts.digest !== undefined && opts.digest !== done.digest) {
          throw new BlobdError('digest_mismatch', 'this session completed with another digest', { expected: opts.digest, actual: done.digest });
        }
        return done;
      }
      this.checkOffset(row, opts.expectedOffset);
      if (body) {
        // A final body cut short throws (request_aborted) after keeping what arrived: never complete on it.
        await this.appendBody(row, body, opts.length);
        row = await this.load(id);
      }
      if (row.declaredSize !== null && row.offset !== row.declaredSize) {
        throw new BlobdError('size_mismatch', `the session declared ${row.declaredSize} bytes but holds ${row.offset}`, {
          expected: row.declaredSize,
          actual: row.offset,
        });
      }
      const digest = `sha256:${(await this.hashOf(row)).copy().digest('hex')}`;
      // Both the digest named at initiate and the one named now are preconditions.
      for (const expected of [row.expectedDigest, opts.digest]) {
        if (expected && expected !== digest) {
          throw new BlobdError('digest_mismatch', 'the uploaded bytes do not hash to the expected digest', { expected, actual: digest });
        }
      }
      return this.commit(row, digest);
    });
  }

  async status(id: string, token: string | null): Promise<SessionStatus> {
    const row = await this.authorize(id, token);
    return {
      id: row.id,
      offset: row.offset,
      size: row.declaredSize,
      state: row.state === 'completed' ? 'completed' : 'open',
      expiresAt: row.expiresAt,
      filename: row.filename,
    };
  }

  /** The principal's open sessions, newest first (the records: callers show what they choose, never a token hash). */
  async listSessions(principal: Principal, page: PageRequest): Promise<Page<UploadRecord>> {
    const before = page.cursor === undefined ? null : decodeCursor(page.cursor, isString);
    return pageOf(await this.meta.listUploads(principal.id, page.limit + 1, before), page.limit, (s) => s.id);
  }

  /** Cancel a session and free its bytes now. */
  async destroy(id: string, token: string | null): Promise<void> {
    await this.authorize(id, token);
    await this.locked(id, async () => {
      const row = await this.settled(await this.load(id));
      await this.forget(row);
    });
  }

  /**
   * After a restart: every open session is cut back to its acknowledged offset (bytes past it were never
   * acknowledged), interrupted completions are finished or reopened, and stray files are removed.
   * Hash states are rebuilt lazily, on the next append or complete.
   */
  async recover(): Promise<{ resumed: number; removed: number }> {
    const keep = new Set<string>();
    let removed = 0;
    for (const found of await this.meta.listUnfinishedUploads()) {
      const row = await this.settled(found);
      if (row.state !== 'open') continue;
      const onDisk = await this.bytes.uploadSize(row.id);
      if (onDisk === null || onDisk < row.offset) {
        // Acknowledged bytes are gone: the session cannot honestly resume.
        await this.meta.deleteUpload(row.id);
        await this.bytes.deleteUpload(row.id);
        removed++;
        continue;
      }
      if (onDisk > row.offset) await this.bytes.truncateUpload(row.id, row.offset);
      keep.add(row.id);
    }
    for await (const id of this.bytes.listUploads()) {
      if (!keep.has(id)) {
        await this.bytes.deleteUpload(id);
        removed++;
      }
    }
    return { resumed: keep.size, removed };
  }

  /** How many sessions `expire(now)` would remove. */
  async countExpired(now = Date.now()): Promise<number> {
    return (await this.meta.listExpiredUploads(now)).length;
  }

  /** Remove sessions idle past the upload TTL (and completed ones past their replay window). */
  async expire(now = Date.now()): Promise<number> {
    let n = 0;
    for (const { id } of await this.meta.listExpiredUploads(now)) {
      if (this.busy.has(id)) continue; // a request is using it; it will push the expiry out
      await this.locked(id, async () => {
        const row = await this.meta.getUpload(id);
        if (row && row.state !== 'completing' && row.expiresAt <= now) {
          await this.forget(row);
          n++;
        }
      });
    }
    return n;
  }

  // ---- internals ----

  /** The session, if the token opens it. Missing token 401, unknown or expired session 404, wrong token 403. */
  private async authorize(id: string, token: string | null): Promise<UploadRecord> {
    if (!token) throw new BlobdError('unauthorized', 'this route needs the session token in Upload-Token');
    const row = await this.load(id);
    if (!tokenMatches(token, row.tokenHash)) {
      throw new BlobdError('forbidden', 'the upload token does not open this session');
    }
    return row;
  }

  private async load(id: string): Promise<UploadRecord> {
    const row = await this.meta.getUpload(id);
    // A session with a request in flight is not expired: that request will push its expiry out.
    if (!row || (row.expiresAt <= Date.now() && !this.busy.has(id))) throw notFound(id);
    return row;
  }

  /**
   * A session left "completing" (a crash, or a failure between the rename and the rows) is finished or
   * reopened according to where its bytes are: still in uploads/ → the move did not happen; under their
   * digest → it did. Run under the session lock, or before the server takes requests.
   */
  private async settled(row: UploadRecord): Promise<UploadRecord> {
    if (row.state !== 'completing') return row;
    if ((await this.bytes.uploadSize(row.id)) !== null) {
      await this.meta.reopenUpload(row.id);
    } else if (await this.bytes.stat(row.digest!)) {
      await this.blobs.lockDigest(row.digest!, () => this.finish(row, row.digest!, false));
    } else {
      await this.meta.deleteUpload(row.id); // neither place has the bytes: nothing honest to resume
      throw notFound(row.id);
    }
    return (await this.meta.getUpload(row.id))!;
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(id)) {
      throw new BlobdError('upload_locked', 'another request is using this upload session; retry when it is done', { id });
    }
    this.busy.add(id);
    try {
      return await fn();
    } finally {
      this.busy.delete(id);
    }
  }

  private checkOffset(row: UploadRecord, expected: number | undefined): void {
    if (expected !== undefined && expected !== row.offset) {
      throw new BlobdError('offset_mismatch', `the session is at offset ${row.offset}, not ${expected}`, { offset: row.offset });
    }
  }

  /**
   * Append a body at the session's offset. Over a limit (413) or the disk budget (507): nothing of the
   * request is kept. A client that goes away keeps what arrived — the offset is committed — and the
   * request then fails with `request_aborted`, so a complete never finishes on a cut-short body.
   */
  private async appendBody(row: UploadRecord, body: BodySource, length: number | undefined): Promise<number> {
    const bucket = row.bucket !== null ? await this.catalog.getBucket(row.bucket) : null;
    const cap = Math.min(this.options.maxBlobSize, row.declaredSize ?? Infinity, bucket?.maxObjectSize ?? Infinity, row.sizeLimit ?? Infinity);
    // A bucket's quota bounds the whole object; what it already stores is checked again at complete.
    const quotaRoom = bucket?.quotaBytes != null ? bucket.quotaBytes - bucket.storedBytes : Infinity;
    const sizeRoom = Math.min(cap, quotaRoom) - row.offset;
    const ownReserved = row.declaredSize !== null ? row.declaredSize - row.offset : 0;
    const diskRoom = await this.disk.room(ownReserved);
    const limitName =
      cap === bucket?.maxObjectSize ? "bucket's max_object_size"
      : cap === row.sizeLimit ? "signed URL's max_size"
      : row.declaredSize !== null && row.declaredSize <= this.options.maxBlobSize ? 'declared size'
      : 'maximum blob size';
    const refuse = () =>
      sizeRoom > diskRoom ? insufficientStorage({ offset: row.offset })
      : quotaRoom < cap ? new BlobdError('quota_exceeded', `the bucket's quota of ${bucket!.quotaBytes} bytes would be exceeded`, { quota_bytes: bucket!.quotaBytes })
      : tooLarge(cap, limitName);
    if (length !== undefined && length > Math.min(sizeRoom, diskRoom)) throw refuse();

    const hash = await this.hashOf(row);
    const before = hash.copy();
    const rollback = async () => {
      this.hashes.delete(row.id); // rebuilt from the durable prefix if the truncate below fails
      await this.bytes.truncateUpload(row.id, row.offset);
      this.hashes.set(row.id, before);
    };
    let result: { written: number; sourceError?: unknown };
    try {
      const limited = limitBytes(body(), Math.min(sizeRoom, diskRoom), refuse);
      result = await this.bytes.appendUpload(row.id, row.offset, limited, (chunk) => hash.update(chunk));
    } catch (err) {
      await rollback();
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw insufficientStorage({ offset: row.offset });
      throw err;
    }
    const cut = result.sourceError;
    if (cut instanceof BlobdError && cut.code !== 'request_aborted') {
      await rollback();
      throw cut;
    }
    // Written and fdatasync'd: now, and only now, the offset may be acknowledged. If recording it fails,
    // the bytes and the hash go back to the last acknowledged offset, so hash and file never disagree.
    const offset = row.offset + result.written;
    try {
      await this.meta.advanceUpload(row.id, offset, Date.now() + this.options.uploadTtlMs);
    } catch (err) {
      await rollback();
      throw err;
    }
    if (cut !== undefined) throw cut instanceof BlobdError ? cut : new BlobdError('request_aborted', 'the client closed the connection before the body ended');
    return offset;
  }

  /** The running hash of the session's durable bytes, rebuilt from disk when this process lacks it. */
  private async hashOf(row: UploadRecord): Promise<Hash> {
    let hash = this.hashes.get(row.id);
    if (hash) return hash;
    hash = createHash('sha256');
    let seen = 0;
    for await (const chunk of await this.bytes.readUpload(row.id, row.offset)) {
      hash.update(chunk as Buffer);
      seen += (chunk as Buffer).length;
    }
    if (seen !== row.offset) throw new Error(`upload ${row.id} holds ${seen} of its ${row.offset} acknowledged bytes`);
    this.hashes.set(row.id, hash);
    return hash;
  }

  /**
   * Before an upload into a bucket moves its bytes: the bucket must still exist and have room for them.
   * Refused here, the session stays open with its bytes, and a complete after the quota was raised (or
   * the bucket made again) finishes it.
   */
  private async checkTarget(row: UploadRecord): Promise<void> {
    if (row.bucket === null) return;
    const bucket = await this.catalog.getBucket(row.bucket);
    if (bucket.quotaBytes !== null && bucket.storedBytes + row.offset > bucket.quotaBytes) {
      throw new BlobdError('quota_exceeded', `the bucket's quota of ${bucket.quotaBytes} bytes would be exceeded; the session stays open`, {
        quota_bytes: bucket.quotaBytes,
        stored_bytes: bucket.storedBytes,
        offset: row.offset,
      });
    }
  }

  /** Move the verified bytes into the blob store (or drop them for an existing blob) and finish. */
  private async commit(row: UploadRecord, digest: string): Promise<CompletedUpload> {
    await this.checkTarget(row);
    const onDisk = await this.bytes.uploadSize(row.id);
    if (onDisk !== row.offset) await this.bytes.truncateUpload(row.id, row.offset);
    return this.blobs.lockDigest(digest, async () => {
      // The verified bytes move in place even when the blob exists (same content; it heals a blob file
      // that went missing or bad): one path for new and deduplicated blobs.
      const deduplicated = (await this.blobs.find(digest)) !== null;
      // Two steps that a crash can split: "completing" records the digest first, so recovery knows
      // whether the rename happened (file gone from uploads/) and can finish or reopen the session.
      await this.meta.beginCompletion(row.id, digest);
      try {
        await this.bytes.commitUpload(row.id, digest);
        return await this.finish(row, digest, deduplicated);
      } catch (err) {
        // Still in uploads/ → the move did not happen: reopen. Otherwise the session stays "completing"
        // and the next request on it (or the next start) finishes it — not here, under this digest's lock.
        if ((await this.bytes.uploadSize(row.id).catch(() => null)) !== null) await this.meta.reopenUpload(row.id).catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Record the blob's reference (a pin, or the object's next revision) and complete the session, in one
   * transaction. `checkTarget` refused a full or missing bucket before the bytes moved; only a write that
   * fills the quota (or a bucket deleted) in the milliseconds between that check and this transaction gets
   * here — then the session cannot be resumed: it is dropped and the error returned, and the unreferenced
   * blob is left to garbage collection.
   */
  private async finish(row: UploadRecord, digest: string, deduplicated: boolean): Promise<CompletedUpload> {
    const blob = { digest, size: row.offset };
    const base = { digest, size: row.offset, filename: row.filename, deduplicated };
    let result: CompletedUpload | undefined;
    const build = (object: ObjectRecord | null): string => {
      result = object
        ? { ...base, id: object.id, bucket: object.bucket, key: object.key, revision: object.revision }
        : { ...base, id: digest };
      return JSON.stringify(result);
    };
    const target =
      row.bucket !== null
        ? {
            revision: {
              bucket: row.bucket,
              key: row.key!,
              newObjectId: uuidv7(),
              contentType: row.contentType,
              filename: row.filename,
              createdBy: row.principal,
            },
          }
        : { pin: this.blobs.pinFor(row.principal, row.temporary) };
    const done = await this.meta.finishUpload(row.id, blob, target, build, Date.now() + this.options.uploadTtlMs);
    if (!done.ok) {
      await this.forget(row); // its bytes were moved: nothing left to resume
      throw done.reason === 'quota_exceeded'
        ? new BlobdError('quota_exceeded', "the bucket's quota would be exceeded", { bucket: row.bucket })
        : done.reason === 'bucket_not_found'
          ? new BlobdError('bucket_not_found', `no bucket ${row.bucket}`, { bucket: row.bucket })
          : new BlobdError('precondition_failed', 'the object changed in a way that refuses this write');
    }
    this.hashes.delete(row.id);
    return result!;
  }

  /** Drop a session: its row first (so nobody resumes it), then its bytes. */
  private async forget(row: UploadRecord): Promise<void> {
    await this.meta.deleteUpload(row.id);
    this.hashes.delete(row.id);
    if (row.state !== 'completed') await this.bytes.deleteUpload(row.id);
  }
}
