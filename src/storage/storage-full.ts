// What "the disk is full" looks like from each store (SQLite's SQLITE_FULL, the filesystem's ENOSPC and
// EDQUOT), recognised in one place so that core can answer 507 instead of 500; and the shape of the space
// reserve a store may spend so that deletes still commit on a full disk.

// STORE_FULL: an object store out of room for the bucket (its quota or capacity; storage/s3).
const FULL_CODES = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT', 'STORE_FULL']);

/** True when `err` says the store ran out of disk (or quota). */
export function isStorageFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && FULL_CODES.has(code);
}

/**
 * Disk space held back from blobs (a preallocated file, for the local filesystem) and given up when a
 * write that frees space finds the disk full: SQLite must append to its write-ahead log even to delete.
 */
export interface SpaceReserve {
  /** Gives the held space back to the filesystem now; false when nothing was held. */
  release(): boolean;
}
