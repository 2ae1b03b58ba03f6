// Garbage collection: expired temporary pins, expired objects, expired upload sessions, stale idempotency
// records, then every blob nothing references any more and that is older than the grace period — row first
// (queueing its bytes), bytes after, through the deletion queue — and bytes a crash left without a row. It
// must never remove a live blob (G4).
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { BlobService } from './blobs.ts';
import { NodeCoordination } from './coordination.ts';
import { BlobdError } from './errors.ts';
import type { IdempotencyService } from './idempotency.ts';
import { NO_EVENTS, type StoreEvents } from './metrics.ts';
import type { UploadService } from './uploads.ts';

export interface GcReport {
  readonly blobsRemoved: number;
  readonly bytesFreed: number;
  readonly sessionsExpired: number;
  readonly pinsExpired: number;
  readonly objectsExpired: number;
  /** Stored bytes that had no row (a crash between putting bytes in place and committing the row). */
  readonly strayFilesRemoved: number;
  /** The blobs removed (or, in a dry run, that a pass would remove). */
  readonly digests: readonly string[];
  readonly dryRun: boolean;
}

/** Blobs examined per batch: bounds memory on a store with many garbage blobs. */
const BATCH = 500;
/** On a shared store, bytes without a row stay at least this long: another node may be about to commit them. */
const SHARED_STRAY_GRACE_MS = 15 * 60 * 1000;

export class GcService {
  private running: Promise<GcReport> | undefined;

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly blobs: BlobService,
    private readonly uploads: UploadService,
    private readonly idempotency: IdempotencyService,
    private readonly graceMs: number,
    private readonly events: StoreEvents = NO_EVENTS,
    private readonly nodes: NodeCoordination = new NodeCoordination(meta, 'local'),
  ) {}

  /**
   * One pass; a pass asked for while one runs waits for that one (and a dry run gets its own). On a shared
   * store one node at a time runs a pass (a lease): on the others this is 409 maintenance_running.
   */
  run(opts: { dryRun?: boolean } = {}): Promise<GcReport> {
    if (opts.dryRun) return this.pass(true);
    this.running ??= this.nodes
      .exclusive('gc', () => this.pass(false))
      .then((done) => {
        if (!done) throw new BlobdError('maintenance_running', 'a garbage collection pass is running on another node; retry when it is done');
        return done.value;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(dryRun: boolean): Promise<GcReport> {
    const now = Date.now();
    const createdBefore = now - this.graceMs;
    const sessionsExpired = dryRun ? await this.uploads.countExpired(now) : await this.uploads.expire(now);
    const { pins: pinsExpired, objects: objectsExpired } = await this.meta.expirePinsAndObjects(now, dryRun);
    if (!dryRun) await this.idempotency.sweep(now);
    // Claims of nodes that died with requests in flight (their liveness lease ran out) would block their keys.
    if (!dryRun && this.nodes.shared) await this.meta.dropPendingIdempotencyKeys([this.nodes.nodeId, ...(await this.nodes.otherLiveNodes())]);

    const digests: string[] = [];
    let bytesFreed = 0;
    if (dryRun) {
      for (const blob of await this.meta.listGarbageBlobs(createdBefore, now, Number.MAX_SAFE_INTEGER, true)) {
        digests.push(blob.digest);
        bytesFreed += blob.size;
      }
      const strayFilesRemoved = await this.removeStrayFiles(this.strayBefore(createdBefore), true);
      return { blobsRemoved: digests.length, bytesFreed, sessionsExpired, pinsExpired, objectsExpired, strayFilesRemoved, digests, dryRun };
    }
    for (let batch = await this.meta.listGarbageBlobs(createdBefore, now, BATCH); batch.length > 0; ) {
      let removedInBatch = 0;
      for (const blob of batch) {
        if (await this.remove(blob.digest, createdBefore, now)) {
          digests.push(blob.digest);
          bytesFreed += blob.size;
          removedInBatch++;
        }
      }
      // Blobs that stayed (referenced meanwhile, or a hold) would come back first: stop rather than spin.
      if (removedInBatch < batch.length) break;
      batch = await this.meta.listGarbageBlobs(createdBefore, now, BATCH);
    }
    // The rows are gone and their bytes queued (by the same transactions): delete them now. Anything still
    // queued from before (a crash, a store that refused) goes too.
    await this.blobs.deletions.drain();
    const strayFilesRemoved = await this.removeStrayFiles(this.strayBefore(createdBefore), false);
    this.events.gcPass(digests.length, bytesFreed);
    return { blobsRemoved: digests.length, bytesFreed, sessionsExpired, pinsExpired, objectsExpired, strayFilesRemoved, digests, dryRun };
  }

  /**
   * G4 is enforced here, and only here. Every path that makes a new reference to an existing blob — a
   * dedup hit of an upload or a session's complete, an object write by digest, a pin of a known digest —
   * looks the blob up and commits its reference while holding the blob's digest lock
   * (`BlobService.lockDigest`). GC takes the same lock, and inside it deletes the row only in a transaction
   * that re-checks "no revision, no valid pin, older than the grace, no GC hold", and queues the row's
   * location for deletion in that same transaction. So either the reference committed first (the re-check
   * sees it and keeps the blob) or GC's delete committed first (then the lookup under the lock finds no row
   * and the writer commits its own bytes). The queued bytes are deleted after the row, by the deletion
   * queue, which no lock spans beyond one deletion: a row never outlives its bytes (G2), and the queue
   * re-checks that no row names them again before each delete (ByteDeletions). One daemon per data
   * directory (the OS lock on blobd.lock) makes the in-process lock enough.
   * Across nodes (a shared store, bytes in S3) the same two outcomes come from the store's transactions
   * alone: a reference locks the blob row in the transaction that writes it, deleteGarbageBlob locks it
   * before its re-check, a reference to an existing blob that sends no bytes fails if the row went
   * (pinExistingBlob, NewBlob.mustExist), and every staged copy has a key of its own, so a queued deletion
   * never hits bytes a row of another node names.
   */
  private remove(digest: string, createdBefore: number, now: number): Promise<boolean> {
    return this.blobs.lockDigest(digest, () => this.meta.deleteGarbageBlob(digest, createdBefore, now));
  }

  /**
   * Bytes without a row may be another node's commit in progress (staged, its row not written yet), which
   * this process cannot see: on a byte store other nodes write too they are left alone for at least SHARED_STRAY_GRACE_MS,
   * whatever --gc-grace says.
   */
  private strayBefore(createdBefore: number): number {
    const othersWrite = this.nodes.shared && !this.bytes.local;
    return othersWrite ? Math.min(createdBefore, Date.now() - SHARED_STRAY_GRACE_MS) : createdBefore;
  }

  /**
   * Stored bytes without a row, older than the grace (younger ones may be a commit in progress); counted
   * only in a dry run. Those that cannot be removed are left for fsck to report: they never fail the pass.
   * Locked by location: where locations are content addresses (the local store) that is the digest's lock.
   */
  private async removeStrayFiles(createdBefore: number, dryRun: boolean): Promise<number> {
    let removed = 0;
    for await (const location of this.bytes.list()) {
      if (await this.meta.isLocationClaimed(location)) continue;
      const gone = await this.blobs
        .lockDigest(location, async () => {
          const st = await this.bytes.stat(location);
          if (!st?.regular || st.modifiedAt >= createdBefore || (await this.meta.isLocationClaimed(location))) return false;
          if (!dryRun) await this.bytes.delete(location);
          return true;
        })
        .catch(() => false);
      if (gone) removed++;
    }
    return removed;
  }
}
