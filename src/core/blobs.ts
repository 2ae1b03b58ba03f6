// Blob ingest and lookup by digest: stream in → verified digest → dedup → durable commit → row and pin.
// It must never make a row visible before the bytes are durable (G2), nor buffer a blob (G5).
import { BytesNotFoundError, type BlobCopy, type ByteRange, type ByteStore } from '../storage/byte-store.ts';
import { ByteDeletions } from './byte-deletions.ts';

export type { BlobCopy, ByteRange };
import type { BlobCommitTicket, MetadataStore, PinInput, PinRecord } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { Digest } from './digest.ts';
import { limitBytes, tooLarge, type BodySource } from './byte-limit.ts';
import { isStorageFull } from '../storage/storage-full.ts';
import { insufficientStorage, type DiskBudget } from './disk-budget.ts';
import { KeyedLock } from './keyed-lock.ts';
import { NO_EVENTS, type StoreEvents } from './metrics.ts';
import { BlobdError } from './errors.ts';
import { decodeCursor, pageOf, type Page, type PageRequest } from './paging.ts';

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/** A blob with where its bytes are (the byte store's location): what rows record. Never shown to clients. */
export interface StoredBlob extends BlobInfo {
  readonly location: string;
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
  /** Bytes no row points to any more (GC, purge, duplicates), deleted under the digest lock. */
  readonly deletions: ByteDeletions;

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly disk: DiskBudget,
    private readonly options: BlobServiceOptions,
    private readonly events: StoreEvents = NO_EVENTS,
  ) {
    this.deletions = new ByteDeletions(meta, bytes, (digest, fn) => this.lockDigest(digest, fn));
  }

  /**
   * Bytes were received for a blob that existed: one dedup hit for the metrics. A store that gives every
   * commit its own location has queued the duplicate's bytes for deletion: they go soon, in the background.
   */
  noteStored(created: boolean): void {
    if (created) return;
    this.events.dedupHit();
    this.deletions.soon();
  }

  /** Stream a body into the store and pin it for the principal. */
  async ingest(body: BodySource, opts: IngestOptions): Promise<IngestResult> {
    const pin = this.pinFor(opts.principal.id, opts.temporary ?? false);
    // Announced under the digest lock, ~a millisecond before the row is written (rename and directory fsync
    // come first): concurrent small uploads then share the store's commit (see commitBlob there). Not
    // before the lock: uploads of one digest queued on it would each hold the group open for nothing.
    let ticket: BlobCommitTicket | undefined;
    const announce = () => {
      ticket = this.meta.announceBlobCommit();
      return () => ticket!.cancel();
    };
    try {
      return await this.store(body, { ...opts, onLocked: announce }, async (blob) => {
        const { created } = await ticket!.commit(blob, pin);
        this.noteStored(created);
        return { ...blob, deduplicated: !created };
      });
    } finally {
      // A safety net: store() already gives the ticket back when the bytes cannot be put in place, and
      // record commits with it otherwise. A ticket left out would make every later group wait its window.
      ticket?.cancel();
    }
  }

  /**
   * Stream a body in, verify it, put its bytes in place (unless the blob exists), and let `record` write
   * the row that references it — under the digest lock, so the bytes cannot change state in between.
   * `limit` narrows the byte budget (a bucket's size limit or quota) with its own error.
   */
  async store<T>(
    body: BodySource,
    opts: {
      expected?: Digest;
      declaredSize?: number;
      limit?: { bytes: number; error: () => BlobdError };
      /** Runs once the bytes are staged and verified, before the digest lock is taken (it may wait). */
      beforeCommit?: () => Promise<void>;
      /**
       * Runs once the digest lock is held, before the bytes are put in place; what it returns runs at once
       * if putting them in place fails (before the lock is let go and the staged file is discarded).
       */
      onLocked?: () => (() => void) | void;
    },
    record: (blob: StoredBlob) => Promise<T>,
  ): Promise<T> {
    const max = this.options.maxBlobSize;
    const diskRoom = await this.disk.room();
    // No room for bytes: an empty body would still add rows, which --min-free holds too.
    if (diskRoom <= 0) await this.disk.requireRoomForRows();
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
      if (isStorageFull(err)) throw insufficientStorage();
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
      this.events.received(staged.size);
      await opts.beforeCommit?.();
      return await this.lockDigest(staged.digest, async () => {
        const failed = opts.onLocked?.();
        // Verified bytes are committed even when the blob exists: the same content by definition. A store
        // of content addresses puts them in place (healing a file that went missing or bad); a store of
        // unique locations keeps them apart, and the row write in `record` keeps the row's own location and
        // queues these for deletion, or adopts them for a quarantined row.
        let location: string;
        try {
          location = await this.bytes.commit(staged);
        } catch (err) {
          failed?.();
          throw err;
        }
        try {
          await this.healing(blob.digest, location);
          return await record({ ...blob, location });
        } catch (err) {
          await this.dropUnclaimed(location);
          throw err;
        }
      });
    } finally {
      await this.bytes.discard(staged);
    }
  }

  /**
   * Bytes put in place whose row did not commit (a full disk, a refused revision, a session's complete
   * refused after its bytes moved) are taken out again unless a blob row or a session completing into
   * the digest claims them — else they would sit as an orphan until GC's grace ran out. Call it only
   * under the lock of the blob's digest: every commit of this digest in this process holds it from its
   * rename to its row, so no other writer is in between (one daemon per data directory). A check that
   * cannot answer (the disk) keeps the bytes: GC judges them later.
   */
  async dropUnclaimed(location: string): Promise<void> {
    try {
      if (!(await this.meta.isLocationClaimed(location))) await this.bytes.delete(location);
    } catch {
      // left for GC's stray sweep and fsck
    }
  }

  /**
   * Before a row write that may deduplicate into an existing row, under the digest lock: a store of unique
   * locations keeps the row's own location (the new bytes are queued for deletion), so a row whose bytes
   * went missing or short is marked now and the write hands it the new, verified bytes instead — the heal
   * that a store of content addresses gets by putting the bytes in place. One stat, on a dedup only.
   */
  async healing(digest: string, location: string): Promise<void> {
    // Bytes committed at their digest in a store of content addresses are in place whatever the row says:
    // healed already. (Elsewhere a digest location is the inline tier's, and the row may name another.)
    if (location === digest && this.bytes.contentAddressed) return;
    const row = await this.meta.getBlob(digest);
    if (!row || row.quarantined || row.location === location) return;
    const st = await this.bytes.stat(row.location).catch(() => undefined); // cannot tell: leave it to fsck
    if (st === null || (st !== undefined && st.size !== row.size)) await this.meta.markQuarantined(digest);
  }

  /**
   * Runs `fn` while no other commit of `digest` runs in this process: the "is it there already?" answer
   * must still hold when the row is written. Every path that makes a blob row goes through here.
   */
  lockDigest<T>(digest: string, fn: () => Promise<T>): Promise<T> {
    return this.digestLock.run(digest, fn);
  }

  /**
   * The blob, or null when there is none that may be read: no row, quarantined by fsck, or not live (no
   * unexpired pin or object revision references it — it is garbage waiting for GC, gone for readers).
   */
  async find(digest: string): Promise<StoredBlob | null> {
    const row = await this.meta.getBlob(digest);
    if (!row || row.quarantined || !(await this.meta.isBlobLive(digest))) return null;
    return { digest: row.digest as Digest, size: row.size, location: row.location };
  }

  /**
   * Pin the blob for a principal if it exists (a dedup hit that sends no bytes); null when it does not.
   */
  pinExisting(digest: Digest, principalId: string, temporary: boolean, size?: number): Promise<BlobInfo | null> {
    // Looked up and pinned in one transaction of the store: a GC pass on any node either sees the pin or has
    // removed the row first (then this is a miss and the client uploads).
    return this.lockDigest(digest, async () => {
      const pinned = await this.meta.pinExistingBlob(digest, this.pinFor(principalId, temporary), size);
      return pinned && { digest: pinned.digest as Digest, size: pinned.size };
    });
  }

  /** The principal's pins, newest first. */
  async listPins(principalId: string, page: PageRequest): Promise<Page<PinRecord>> {
    const isPosition = (v: unknown): v is [number, string] =>
      Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === 'string';
    const at = page.cursor === undefined ? null : decodeCursor(page.cursor, isPosition);
    const pins = await this.meta.listPins(principalId, page.limit + 1, at && { createdAt: at[0], digest: at[1] });
    return pageOf(pins, page.limit, (p) => [p.createdAt, p.digest]);
  }

  /** Drop the principal's pin: the blob itself goes when GC finds it unreferenced. */
  async dropPin(principalId: string, digest: Digest): Promise<void> {
    if (!(await this.meta.dropPin(principalId, digest))) {
      throw new BlobdError('pin_not_found', `no pin of yours on ${digest}`, { digest });
    }
  }

  /** Remove a blob now with every revision and pin that uses it (admin's `?force=true`). */
  async purge(digest: Digest): Promise<void> {
    await this.lockDigest(digest, async () => {
      if (!(await this.meta.purgeBlob(digest))) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
    });
    // Queued by the purge's transaction; deleted now, each under its digest's lock.
    await this.deletions.drain();
  }

  /** A pin for a principal; temporary pins expire after --temporary-ttl. */
  pinFor(principalId: string, temporary: boolean): PinInput {
    return {
      principal: principalId,
      temporary,
      expiresAt: temporary ? Date.now() + this.options.temporaryTtlMs : null,
    };
  }

  async describe(digest: Digest): Promise<StoredBlob> {
    const blob = await this.find(digest);
    if (!blob) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
    return blob;
  }

  /**
   * The blob's bytes, or one inclusive range of them, to copy out (see BlobCopy). `location` saves a lookup
   * when the caller has the row already.
   */
  async openContent(digest: Digest, range?: ByteRange, location?: string): Promise<BlobCopy> {
    try {
      location ??= (await this.meta.getBlob(digest))?.location;
      if (location === undefined) throw new BytesNotFoundError(digest);
      return await this.bytes.openCopy(location, range);
    } catch (err) {
      if (err instanceof BytesNotFoundError) throw new BlobdError('blob_not_found', `no blob ${digest}`, { digest });
      throw err;
    }
  }
}
