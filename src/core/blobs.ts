// Blob ingest and lookup by digest: stream in → verified digest → dedup → durable commit → row and pin.
// It must never make a row visible before the bytes are durable (G2), nor buffer a blob (G5).
import type { Readable } from 'node:stream';
import { BytesNotFoundError, type ByteRange, type ByteStore } from '../storage/byte-store.ts';

export type { ByteRange };
import type { MetadataStore, PinInput } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { Digest } from './digest.ts';
import { limitBytes, tooLarge, type BodySource } from './byte-limit.ts';
import { insufficientStorage, type DiskBudget } from './disk-budget.ts';
import { KeyedLock } from './keyed-lock.ts';
import { BlobdError } from './errors.ts';

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

export interface IngestOptions {
  readonly principal: Principal;
  /** The digest the bytes must hash to; anything else is `digest_mismatch` and nothing is kept. */
  readonly expected?: Digest;
  /** Length announced by the client, if any; checked against the limit before reading a byte. */
  readonly declaredSize?: number;
  readonly temporary?: boolean;
}

export interface IngestResult extends BlobInfo {
  readonly deduplicated: boolean;
}

export interface BlobServiceOptions {
  readonly maxBlobSize: number;
  readonly temporaryTtlMs: number;
}

export class BlobService {
  private readonly digestLock = new KeyedLock();

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly disk: DiskBudget,
    private readonly options: BlobServiceOptions,
  ) {}

  /** Stream a body into the store and pin it for the principal. */
  async ingest(body: BodySource, opts: IngestOptions): Promise<IngestResult> {
    const pin = this.pinFor(opts.principal.id, opts.temporary ?? false);
    return this.store(body, opts, async (blob) => {
      const { created } = await this.meta.commitBlob(blob, pin);
      return { ...blob, deduplicated: !created };
    });
  }

  /**
   * Stream a body in, verify it, put its bytes in place (unless the blob exists), and let `record` write
   * the row that references it — under the digest lock, so the bytes cannot change state in between.
   * `limit` narrows the byte budget (a bucket's size limit or quota) with its own error.
   */
  async store<T>(
    body: BodySource,
    opts: { expected?: Digest; declaredSize?: number; limit?: { bytes: number; error: () => BlobdError } },
    record: (blob: BlobInfo) => Promise<T>,
  ): Promise<T> {
    const max = this.options.maxBlobSize;
    const diskRoom = await this.disk.room();
    const budgets = [
      { bytes: max, error: () => tooLarge(max) },
      { bytes: diskRoom, error: () => insufficientStorage() },
      ...(opts.limit ? [opts.limit] : []),
    ].sort((a, b) => a.bytes - b.bytes);
    const tightest = budgets[0]!;
    if (opts.declaredSize !== undefined && opts.declaredSize > tightest.bytes) throw tightest.error();
    let staged;
    try {
      staged = await this.bytes.stage(limitBytes(body(), tightest.bytes, tightest.error));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw insufficientStorage();
      throw err;
    }
    try {
      if (opts.expected !== undefined && staged.digest !== opts.expected) {
        throw new BlobdError('digest_mismatch', 'the body does not hash to the expected digest', {
          expected: opts.expected,
          actual: staged.digest,
        });
      }
      const blob = { digest: staged.digest as Digest, size: staged.size };
      return await this.lockDigest(staged.digest, async () => {
        if (!(await this.meta.getBlob(staged.digest))) await this.bytes.commit(staged);
        return record(blob);
      });
    } finally {
      await this.bytes.discard(staged);
    }
  }

  /**
   * Runs `fn` while no other commit of `digest` runs in this process: the "is it there already?" answer
   * must still hold when the row is written. Every path that makes a blob row goes through here.
   */
  lockDigest<T>(digest: string, fn: () => Promise<T>): Promise<T> {
    return this.digestLock.run(digest, fn);
  }

  /** The blob row, or null. */
  async find(digest: string): Promise<BlobInfo | null> {
    const row = await this.meta.getBlob(digest);
    return row ? { digest: row.digest as Digest, size: row.size } : null;
  }

  /** Pin an existing blob for a principal (a dedup hit that sent no bytes). */
  async pinExisting(blob: BlobInfo, principalId: string, temporary: boolean): Promise<void> {
    await this.meta.commitBlob(blob, this.pinFor(principalId, temporary));
  }

  /** A pin for a principal; temporary pins expire after --temporary-ttl. */
  pinFor(principalId: string, temporary: boolean): PinInput {
    return {
      principal: principalId,
      temporary,
      expiresAt: temporary ? Date.now() + this.options.temporaryTtlMs : null,
    };
  }

  async describe(digest: Digest): Promise<BlobInfo> {
    const row = await this.meta.getBlob(digest);
    if (!row) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
    return { digest, size: row.size };
  }

  /** The blob's bytes, or one inclusive range of them. */
  async openContent(digest: Digest, range?: ByteRange): Promise<Readable> {
    try {
      return await this.bytes.openRead(digest, range);
    } catch (err) {
      if (err instanceof BytesNotFoundError) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
      throw err;
    }
  }
}
