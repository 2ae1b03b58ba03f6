// The bytes of open upload sessions: appending a body at a session's offset under every limit (size,
// bucket, quota, disk), with the running SHA-256 of exactly the durable bytes, and an optional checksum of
// the chunk (tus). It must never acknowledge an offset whose bytes are not durable, and never let the hash
// and the stored bytes disagree. Used by UploadService only, under its one-request-per-session lock.
import { createHash } from 'node:crypto';
import type { AppendResult, ByteStore, UploadCursor } from '../storage/byte-store.ts';
import type { MetadataStore, UploadRecord } from '../storage/metadata-store.ts';
import { limitBytes, tooLarge, type BodySource } from './byte-limit.ts';
import type { CatalogService } from './catalog.ts';
import { isStorageFull } from '../storage/storage-full.ts';
import { insufficientStorage, type DiskBudget } from './disk-budget.ts';
import { BlobdError } from './errors.ts';
import { NO_EVENTS, type StoreEvents } from './metrics.ts';
import { fastHash, loadHash, portableHash, type RunningHash } from './running-hash.ts';

/** A checksum of one request's body (tus `Upload-Checksum`): the bytes are kept only if it matches. */
export interface ChunkChecksum {
  readonly algorithm: 'sha256' | 'sha1' | 'md5';
  readonly digest: Buffer;
}

export interface AppendLimits {
  readonly maxBlobSize: number;
  readonly uploadTtlMs: number;
  /** Sessions read back go on with a portable hash (a store several nodes share). */
  readonly portable?: boolean;
}

export class UploadAppender {
  /**
   * Running hash of exactly the durable bytes of each open session, and the offset it covers; built lazily
   * after a restart. A fast one (node:crypto) lives in this process only: a process that lacks it loads the
   * session's portable state from its row if it has one, else reads the bytes back once (running-hash.ts).
   */
  private readonly hashes = new Map<string, { hash: RunningHash; offset: number }>();
  /** Sessions taken over from a lapsed lease: read back at their next request (see distrust). */
  private readonly readBack = new Set<string>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly catalog: CatalogService,
    private readonly disk: DiskBudget,
    private readonly options: AppendLimits,
    private readonly events: StoreEvents = NO_EVENTS,
  ) {}

  /** A new, empty session: its hash starts now. */
  started(id: string): void {
    this.hashes.set(id, { hash: fastHash(), offset: 0 });
  }

  forget(id: string): void {
    this.hashes.delete(id);
  }

  /**
   * The session was taken over from a node whose lease ran out (it crashed, or lost touch and may still be
   * writing): its next request reads the bytes back even if a state would do. Reading back seals an object
   * store's multipart upload, so parts the old holder still sends land nowhere.
   */
  distrust(id: string): void {
    this.hashes.delete(id);
    this.readBack.add(id);
  }

  /**
   * `sha256:<hex>` of the session's durable bytes, and the cursor they are under now (it changes when this
   * process had to read them back).
   */
  async digestOf(row: UploadRecord, fence?: string): Promise<{ digest: string; cursor: UploadCursor }> {
    const { hash, cursor } = await this.hashOf(row, fence);
    return { digest: `sha256:${hash.hex()}`, cursor };
  }

  /**
   * Append a body at the session's offset. Over a limit (413) or the disk budget (507): nothing of the
   * request is kept. A client that goes away keeps what arrived — the offset is committed — and the
   * request then fails with `request_aborted`, so a complete never finishes on a cut-short body; with a
   * checksum, a cut-short body cannot be verified and is dropped like a mismatching one (460).
   */
  async append(row: UploadRecord, body: BodySource, length: number | undefined, checksum?: ChunkChecksum, fence?: string): Promise<number> {
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

    const { hash, cursor } = await this.hashOf(row, fence);
    const before = hash.mark();
    const chunkHash = checksum ? createHash(checksum.algorithm) : null;
    let result: AppendResult | undefined;
    const rollback = async () => {
      this.hashes.delete(row.id); // rebuilt from the durable prefix if putting the bytes back fails
      await this.bytes.abandonAppend(row.id, row.offset, cursor, result?.cursor);
      hash.restore(before);
      this.hashes.set(row.id, { hash, offset: row.offset });
    };
    try {
      const limited = limitBytes(body(), Math.min(sizeRoom, diskRoom), refuse);
      // Hashed as read, beside the writes: once appendUpload resolves, every chunk seen is durable; if it
      // rejects, the rollback puts the hash back to `before`.
      result = await this.bytes.appendUpload(row.id, row.offset, cursor, limited, (chunk) => {
        hash.update(chunk);
        chunkHash?.update(chunk);
      });
    } catch (err) {
      await rollback();
      if (isStorageFull(err)) throw insufficientStorage({ offset: row.offset });
      throw err;
    }
    const cut = result.sourceError;
    if ((cut instanceof BlobdError && cut.code !== 'request_aborted') || (checksum && cut !== undefined)) {
      await rollback();
      throw cut instanceof BlobdError ? cut : new BlobdError('request_aborted', 'the client closed the connection before the body ended');
    }
    if (checksum && !chunkHash!.digest().equals(checksum.digest)) {
      await rollback();
      throw new BlobdError('checksum_mismatch', `the body does not match its ${checksum.algorithm} checksum; nothing of it was kept`, { offset: row.offset });
    }
    // Written and durable: now, and only now, the offset may be acknowledged, with the cursor that covers
    // it. If recording it fails, the bytes and the hash go back to the last acknowledged offset, so hash and
    // stored bytes never disagree. What only the old cursor needed is freed after the record, never before.
    const offset = row.offset + result.written;
    try {
      // A portable hash's state goes into the same update as the offset it covers.
      await this.meta.advanceUpload(row.id, offset, Date.now() + this.options.uploadTtlMs, result.cursor, fence, hash.exportState(offset));
    } catch (err) {
      await rollback();
      throw err;
    }
    this.hashes.set(row.id, { hash, offset });
    await this.bytes.settleAppend(row.id, cursor, result.cursor);
    this.events.received(result.written);
    if (cut !== undefined) throw cut instanceof BlobdError ? cut : new BlobdError('request_aborted', 'the client closed the connection before the body ended');
    return offset;
  }

  /**
   * The running hash of the session's durable bytes, rebuilt from the store when this process lacks it, and
   * the cursor to go on from: the store may give a new one while reading back (an object store seals its
   * multipart upload to read it), recorded here before anything is appended to it.
   */
  private async hashOf(row: UploadRecord, fence: string | undefined): Promise<{ hash: RunningHash; cursor: UploadCursor }> {
    // Kept for the offset it covers: if another node appended since (a shared store), it covers too little.
    const kept = this.hashes.get(row.id);
    if (kept && kept.offset === row.offset) return { hash: kept.hash, cursor: row.cursor };
    this.hashes.delete(row.id);
    // Another node's portable state for exactly these bytes: go on from it, nothing to read.
    const distrusted = this.readBack.delete(row.id);
    const loaded = distrusted ? null : await loadHash(row.hashState, row.offset);
    if (loaded) {
      this.hashes.set(row.id, { hash: loaded, offset: row.offset });
      return { hash: loaded, cursor: row.cursor };
    }
    // Nothing acknowledged yet (a session started on another node, or before a restart): nothing to read
    // back, nothing lost; the fast hash starts here.
    if (row.offset === 0 && !distrusted) {
      const hash = fastHash();
      this.hashes.set(row.id, { hash, offset: 0 });
      return { hash, cursor: row.cursor };
    }
    // Read back. On a shared store the session has moved between nodes (or this one restarted): it may well
    // move again, so it goes on with a portable hash from here, its state saved with every offset.
    const hash = this.options.portable ? await portableHash() : fastHash();
    let seen = 0;
    const read = await this.bytes.readUpload(row.id, row.offset, row.cursor);
    for await (const chunk of read.bytes) {
      hash.update(chunk as Buffer);
      seen += (chunk as Buffer).length;
    }
    if (seen !== row.offset) throw new Error(`upload ${row.id} holds ${seen} of its ${row.offset} acknowledged bytes`);
    const state = hash.exportState(row.offset);
    if (read.cursor !== row.cursor || state !== undefined) {
      await this.meta.advanceUpload(row.id, row.offset, Date.now() + this.options.uploadTtlMs, read.cursor, fence, state);
      if (read.cursor !== row.cursor) await this.bytes.settleAppend(row.id, row.cursor, read.cursor);
    }
    this.hashes.set(row.id, { hash, offset: row.offset });
    return { hash, cursor: read.cursor };
  }

}
