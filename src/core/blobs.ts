// Blob ingest and lookup by digest: stream in → verified digest → dedup → durable commit → row and pin.
// It must never make a row visible before the bytes are durable (G2), nor buffer a blob (G5).
import { finished, Transform, type Readable } from 'node:stream';
import { BytesNotFoundError, type ByteRange, type ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { Digest } from './digest.ts';
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

/** Serialises async work per key; used so that commit-or-dedup of one digest happens one at a time. */
class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn, fn);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/**
 * `source` as a stream that fails with `too_large` once more than `max` bytes went by, and with the
 * source's own error when the client goes away. The source is only unpiped, never destroyed, on a limit
 * failure, so the transport can still answer 413 before it closes the connection.
 */
function limitBytes(source: Readable, max: number): Readable {
  let seen = 0;
  const limited = new Transform({
    // As large as the store's own buffers: the 16 KiB default forced a backpressure turn per socket chunk.
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) done(new BlobdError('too_large', `the body exceeds the limit of ${max} bytes`, { limit: max }));
      else done(null, chunk);
    },
  });
  finished(source, (err) => {
    if (err && !limited.destroyed) limited.destroy(err);
  });
  return source.pipe(limited);
}

export class BlobService {
  private readonly digestLock = new KeyedLock();

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly options: BlobServiceOptions,
  ) {}

  /** Stream a body into the store and pin it for the principal. */
  async ingest(source: Readable, opts: IngestOptions): Promise<IngestResult> {
    const max = this.options.maxBlobSize;
    if (opts.declaredSize !== undefined && opts.declaredSize > max) {
      source.resume(); // let the transport drain or drop the body; nothing of it is kept
      throw new BlobdError('too_large', `the body exceeds the limit of ${max} bytes`, { limit: max });
    }
    const staged = await this.bytes.stage(limitBytes(source, max));
    try {
      if (opts.expected !== undefined && staged.digest !== opts.expected) {
        throw new BlobdError('digest_mismatch', 'the body does not hash to the expected digest', {
          expected: opts.expected,
          actual: staged.digest,
        });
      }
      const pin = {
        principal: opts.principal.id,
        temporary: opts.temporary ?? false,
        expiresAt: opts.temporary ? Date.now() + this.options.temporaryTtlMs : null,
      };
      // One digest at a time: the "is it there already?" answer must still hold when the row is written.
      return await this.digestLock.run(staged.digest, async () => {
        const existing = await this.meta.getBlob(staged.digest);
        if (!existing) await this.bytes.commit(staged);
        const { created } = await this.meta.commitBlob({ digest: staged.digest, size: staged.size }, pin);
        return { digest: staged.digest as Digest, size: staged.size, deduplicated: !created };
      });
    } finally {
      await this.bytes.discard(staged);
    }
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
