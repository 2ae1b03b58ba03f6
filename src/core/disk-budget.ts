// How many more bytes may be written: free space in the byte store (the disk, for the local store), minus
// --min-free, minus what open upload sessions were promised (their declared size not yet received). Every
// write path asks here before and while it writes; writes that only add rows ask the metadata's own disk
// (the same disk for the local store), since the database's growth takes disk like blob bytes.
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { isStorageFull } from '../storage/storage-full.ts';
import { isDatabaseUnavailable, isStoreUnavailable } from '../storage/store-unavailable.ts';
import { KeyedLock } from './keyed-lock.ts';
import { BlobdError } from './errors.ts';

export function insufficientStorage(details: Record<string, unknown> = {}): BlobdError {
  return new BlobdError('insufficient_storage', 'not enough free disk for this (writes leave --min-free free); nothing of it was kept', details);
}

/**
 * A store's "disk full" (SQLite or the filesystem) as blobd's 507, its "cannot reach the byte store" as a
 * 503, or null when `err` is something else.
 */
export function storageErrorFrom(err: unknown): BlobdError | null {
  if (isStoreUnavailable(err)) {
    return new BlobdError('store_unavailable', 'the byte store could not be reached or failed; nothing unacknowledged was kept: retry (a session resumes at its offset)');
  }
  if (isDatabaseUnavailable(err)) {
    return new BlobdError('database_unavailable', 'the metadata database could not be reached; nothing unacknowledged was kept: retry (a session resumes at its offset)');
  }
  return isStorageFull(err) ? insufficientStorage() : null;
}

/** Free bytes below which the disk counts as full for readiness: a commit needs a few blocks at once. */
const FULL_BELOW = 64 * 1024;

export class DiskBudget {
  private readonly reservations = new KeyedLock();

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly minFree: number,
    /** Free bytes where the database grows, when that is not where the bytes go (an object store). */
    private readonly rowsDisk?: () => Promise<number>,
  ) {}

  private get rowsApart(): boolean {
    return this.rowsDisk !== undefined;
  }

  /** Free bytes where the database grows: the byte store's disk unless the bytes are elsewhere. */
  private rowsFree(): Promise<number> {
    return this.rowsDisk ? this.rowsDisk() : this.bytes.freeSpace();
  }

  /**
   * Bytes a write may take now. `ownReserved` is the caller's own promised remainder (a session writing
   * into its own reservation must not be refused because of it).
   */
  async room(ownReserved = 0): Promise<number> {
    if (this.rowsApart) {
      // Bytes elsewhere (an object store): the promises are the store's to keep, but an upload still adds
      // rows, so the data directory's disk at --min-free refuses it as it refuses every write of rows.
      // A store without a known limit (S3) has nothing to promise from: no need to ask the database.
      const [free, rows] = await Promise.all([this.bytes.freeSpace(), this.rowsFree()]);
      if (rows <= this.minFree) return 0;
      if (!Number.isFinite(free)) return free;
      const reserved = await this.meta.reservedUploadBytes(Date.now());
      return Math.max(0, free - (reserved - ownReserved));
    }
    const [free, reserved] = await Promise.all([this.bytes.freeSpace(), this.meta.reservedUploadBytes(Date.now())]);
    return Math.max(0, free - this.minFree - (reserved - ownReserved));
  }

  /**
   * Refuses (507) a write that adds rows once free disk is down to --min-free. Open sessions' promises do
   * not count here: a declared 10 GiB upload must not stop a PATCH of metadata.
   */
  async requireRoomForRows(): Promise<void> {
    const free = await this.rowsFree();
    // A few free blocks hold no commit either (see FULL_BELOW).
    if (free <= this.minFree || free < FULL_BELOW) throw insufficientStorage({ available: 0 });
  }

  /** Free bytes where rows grow when they are already at or below --min-free (every write refused), else null. */
  async atMinFree(): Promise<number | null> {
    const free = await this.rowsFree();
    return free <= this.minFree ? free : null;
  }

  /**
   * True when the disk has no room beyond the disk reserve (or, with the reserve released, not even for
   * it): any write to the database may fail now, so the daemon is not ready. "No room" is less than
   * FULL_BELOW: a few free blocks do not hold a commit (its WAL pages, a staged file and the blob's own).
   */
  async full(): Promise<boolean> {
    return (await this.rowsFree()) < FULL_BELOW;
  }

  /**
   * Runs `create` (which records a new reservation of `size`) only if `size` fits, one reservation at a
   * time: a check and an insert separated by an await would let concurrent requests promise the same
   * bytes twice.
   */
  reserve<T>(size: number, create: () => Promise<T>): Promise<T> {
    return this.reservations.run('reserve', async () => {
      const room = await this.room();
      if (room < size) throw insufficientStorage({ available: room });
      return create();
    });
  }
}
