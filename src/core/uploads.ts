// UploadService: the lifecycle of resumable upload sessions — initiate, append, complete, status, destroy,
// restart recovery and expiry — with one running SHA-256 per open session. It knows nothing of HTTP: the
// native routes and the tus front drive it alike. It must never acknowledge an offset that is not durable.
import { createHash, randomBytes, timingSafeEqual, type Hash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore, UploadRecord } from '../storage/metadata-store.ts';
import { can, type Principal } from './auth.ts';
import type { BlobService } from './blobs.ts';
import { limitBytes, tooLarge, type BodySource } from './byte-limit.ts';
import type { Digest } from './digest.ts';
import { BlobdError } from './errors.ts';

export interface UploadServiceOptions {
  readonly maxBlobSize: number;
  /** Free bytes that must remain on the store after any write. */
  readonly minFree: number;
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
}

/** What a finished session answers (and answers again, for a repeated complete). */
export interface CompletedUpload {
  readonly id: string;
  readonly digest: string;
  readonly size: number;
  readonly filename: string | null;
  readonly deduplicated: boolean;
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

function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
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
    private readonly options: UploadServiceOptions,
  ) {}

  async initiate(input: InitiateInput): Promise<Initiated> {
    if (input.bucket !== undefined || input.key !== undefined) {
      throw new BlobdError('not_implemented', 'uploads into a bucket arrive with buckets and objects');
    }
    const size = input.size ?? null;
    if (size !== null && size > this.options.maxBlobSize) throw tooLarge(this.options.maxBlobSize, 'maximum blob size');

    // A known digest the caller may read is done already — but only for callers who may read blobs by
    // digest, so that existence never leaks across tenants.
    if (input.digest !== undefined && can(input.principal, 'blobs:read')) {
      const existing = await this.blobs.find(input.digest);
      if (existing && (size === null || size === existing.size)) {
        await this.blobs.pinExisting(existing, input.principal.id, input.temporary ?? false);
        return {
          kind: 'completed',
          result: { id: existing.digest, digest: existing.digest, size: existing.size, filename: input.filename ?? null, deduplicated: true },
        };
      }
    }

    const now = Date.now();
    if (size !== null) await this.reserve(size, now);
    const id = uuidv7();
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + this.options.uploadTtlMs;
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
      expectedDigest: input.digest ?? null,
      bucket: null,
      key: null,
      createdAt: now,
      expiresAt,
    });
    this.hashes.set(id, createHash('sha256'));
    return { kind: 'session', id, token, size, expiresAt };
  }

  async append(id: string, token: string | null, body: BodySource, opts: AppendOptions = {}): Promise<number> {
    await this.authorize(id, token);
    return this.locked(id, async () => {
      const row = await this.load(id);
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
      let row = await this.load(id);
      if (row.state === 'completed') return JSON.parse(row.result!) as CompletedUpload;
      this.checkOffset(row, opts.expectedOffset);
      if (body) {
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
      const expected = opts.digest ?? row.expectedDigest ?? undefined;
      if (expected !== undefined && expected !== digest) {
        throw new BlobdError('digest_mismatch', 'the uploaded bytes do not hash to the expected digest', { expected, actual: digest });
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

  /** Cancel a session and free its bytes now. */
  async destroy(id: string, token: string | null): Promise<void> {
    await this.authorize(id, token);
    await this.locked(id, async () => {
      const row = await this.load(id);
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
    for (const row of await this.meta.listUnfinishedUploads()) {
      const onDisk = await this.bytes.uploadSize(row.id);
      if (row.state === 'completing') {
        if (onDisk !== null) {
          await this.meta.reopenUpload(row.id); // the move into the blob store never happened
        } else if (await this.bytes.stat(row.digest!)) {
          await this.finish(row, row.digest!, false); // moved, but the rows were not written
          continue;
        } else {
          await this.meta.deleteUpload(row.id);
          removed++;
          continue;
        }
      }
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
    const given = Buffer.from(hashToken(token), 'hex');
    if (!timingSafeEqual(given, Buffer.from(row.tokenHash, 'hex'))) {
      throw new BlobdError('forbidden', 'the upload token does not open this session');
    }
    return row;
  }

  private async load(id: string): Promise<UploadRecord> {
    const row = await this.meta.getUpload(id);
    if (!row || row.expiresAt <= Date.now()) throw notFound(id);
    return row;
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

  /** Refuse a declared size that the disk cannot promise, counting what open sessions were promised. */
  private async reserve(size: number, now: number): Promise<void> {
    const [free, reserved] = await Promise.all([this.bytes.freeSpace(), this.meta.reservedUploadBytes(now)]);
    if (free - this.options.minFree - reserved < size) {
      throw new BlobdError('insufficient_storage', 'not enough free disk for the declared size', {
        available: Math.max(0, free - this.options.minFree - reserved),
      });
    }
  }

  /** Append a body at the session's offset; keeps what arrived if the client goes away, nothing on 413/507. */
  private async appendBody(row: UploadRecord, body: BodySource, length: number | undefined): Promise<number> {
    const cap = Math.min(this.options.maxBlobSize, row.declaredSize ?? Infinity);
    const room = cap - row.offset;
    const limitName = row.declaredSize !== null && row.declaredSize <= this.options.maxBlobSize ? 'declared size' : 'maximum blob size';
    const refuse = () => tooLarge(cap, limitName);
    if (length !== undefined && length > room) throw refuse();
    if ((await this.bytes.freeSpace()) - (length ?? 0) < this.options.minFree) {
      throw new BlobdError('insufficient_storage', 'the disk is too full to take more bytes; retry later', { offset: row.offset });
    }
    const hash = await this.hashOf(row);
    const before = hash.copy();
    const rollback = async () => {
      this.hashes.delete(row.id); // rebuilt from the durable prefix if the truncate below fails
      await this.bytes.truncateUpload(row.id, row.offset);
      this.hashes.set(row.id, before);
    };
    let result: { written: number; sourceError?: unknown };
    try {
      result = await this.bytes.appendUpload(row.id, row.offset, limitBytes(body(), room, refuse), (chunk) => hash.update(chunk));
    } catch (err) {
      await rollback();
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw new BlobdError('insufficient_storage', 'the disk filled up; nothing of this request was kept', { offset: row.offset });
      }
      throw err;
    }
    // Over a limit: nothing of this request is kept. A client that went away keeps what arrived.
    if (result.sourceError instanceof BlobdError && result.sourceError.code === 'too_large') {
      await rollback();
      throw result.sourceError;
    }
    // Written and fdatasync'd: now, and only now, the offset may be acknowledged.
    const offset = row.offset + result.written;
    await this.meta.advanceUpload(row.id, offset, Date.now() + this.options.uploadTtlMs);
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

  /** Move the verified bytes into the blob store (or drop them for an existing blob) and finish. */
  private async commit(row: UploadRecord, digest: string): Promise<CompletedUpload> {
    const onDisk = await this.bytes.uploadSize(row.id);
    if (onDisk !== row.offset) await this.bytes.truncateUpload(row.id, row.offset);
    return this.blobs.lockDigest(digest, async () => {
      const existing = await this.blobs.find(digest);
      if (existing) {
        const result = await this.finish(row, digest, true);
        await this.bytes.deleteUpload(row.id);
        return result;
      }
      // Two steps that a crash can split: "completing" records the digest first, so recovery knows
      // whether the rename happened (file gone from uploads/) and can finish or reopen the session.
      await this.meta.beginCompletion(row.id, digest);
      try {
        await this.bytes.commitUpload(row.id, digest);
      } catch (err) {
        await this.meta.reopenUpload(row.id);
        throw err;
      }
      return this.finish(row, digest, false);
    });
  }

  private async finish(row: UploadRecord, digest: string, deduplicated: boolean): Promise<CompletedUpload> {
    const result: CompletedUpload = { id: digest, digest, size: row.offset, filename: row.filename, deduplicated };
    const pin = this.blobs.pinFor(row.principal, row.temporary);
    await this.meta.finishUpload(row.id, { digest, size: row.offset }, pin, JSON.stringify(result), Date.now() + this.options.uploadTtlMs);
    this.hashes.delete(row.id);
    return result;
  }

  /** Drop a session: its row first (so nobody resumes it), then its bytes. */
  private async forget(row: UploadRecord): Promise<void> {
    await this.meta.deleteUpload(row.id);
    this.hashes.delete(row.id);
    if (row.state !== 'completed') await this.bytes.deleteUpload(row.id);
  }
}
