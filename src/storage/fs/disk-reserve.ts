// The disk reserve, data/reserve: a file of real, written and fsync'd blocks that blobs never get. When a
// write that frees space finds the disk full (SQLite appends to its WAL even to delete), the metadata store
// releases it and retries; it is written again once the filesystem has room. Until then its size counts as
// taken, so blobs cannot eat the space it should hold.
import { randomBytes } from 'node:crypto';
import { constants, unlinkSync } from 'node:fs';
import { lstat, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import { isStorageFull, type SpaceReserve } from '../storage-full.ts';
import { syncDir } from './durable-dirs.ts';
import { closeFd, fsyncFd, IO_CHUNK, openFd, writeFd } from './fd.ts';
import type { DataLayout } from './layout.ts';

/** Free space a new reserve must leave behind, so that making it does not itself fill the disk. */
const RESTORE_SLACK = 1 << 20;

export class DiskReserve implements SpaceReserve {
  private held: boolean;
  private restoring: Promise<void> | undefined;

  private constructor(
    private readonly layout: DataLayout,
    /** Bytes to hold; 0 turns the reserve off. */
    readonly size: number,
    held: boolean,
  ) {
    this.held = held;
  }

  /** Takes up the reserve a previous process left (if it has the right size) or writes one if there is room. */
  static async open(layout: DataLayout, size: number): Promise<DiskReserve> {
    await rm(layout.reserveTempFile, { force: true });
    const st = await lstat(layout.reserveFile).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    // Blocks, not just the length: a file whose blocks were never written (sparse) holds nothing.
    const held = size > 0 && st !== null && st.isFile() && st.size === size && st.blocks * 512 >= size;
    // Another size (the setting changed) or not a real reserve: it is made anew.
    if (st !== null && !held) await rm(layout.reserveFile, { force: true, recursive: true });
    const reserve = new DiskReserve(layout, size, held);
    if (!held && size > 0) {
      const fs = await statfs(layout.root);
      if (fs.bavail * fs.bsize >= size + RESTORE_SLACK) await reserve.restore();
    }
    return reserve;
  }

  /** True while the reserve's blocks are held. */
  get isHeld(): boolean {
    return this.held || this.size === 0;
  }

  /**
   * Free bytes for everything else, given the filesystem's free bytes: less the reserve's size while it is
   * not held. When the filesystem has room for it again, it is written in the background.
   */
  account(rawFree: number): number {
    if (this.isHeld) return rawFree;
    if (rawFree >= this.size + RESTORE_SLACK) this.restoring ??= this.restore().catch(() => {}).finally(() => (this.restoring = undefined));
    return Math.max(0, rawFree - this.size);
  }

  release(): boolean {
    if (!this.held) return false;
    this.held = false;
    // Synchronous: the caller is between two attempts of one synchronous SQLite transaction, and the space
    // must be free before the second.
    try {
      unlinkSync(this.layout.reserveFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return true;
  }

  /** Writes the reserve under a temporary name and renames it into place once every block is on disk. */
  private async restore(): Promise<void> {
    const tmp = this.layout.reserveTempFile;
    let fd: number | undefined;
    try {
      fd = await openFd(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
      // Random bytes, not zeros: a compressing filesystem (ZFS, btrfs) would store zeros in no blocks at all.
      for (let written = 0; written < this.size; ) {
        const chunk = randomBytes(Math.min(IO_CHUNK, this.size - written));
        written += (await writeFd(fd, chunk, 0, chunk.length, written)).bytesWritten;
      }
      await fsyncFd(fd);
      await closeFd(fd);
      fd = undefined;
      await rename(tmp, this.layout.reserveFile);
      await syncDir(path.dirname(this.layout.reserveFile));
      this.held = true;
    } catch (err) {
      if (fd !== undefined) await closeFd(fd).catch(() => {});
      await rm(tmp, { force: true });
      // No room for it (yet): its size keeps counting as taken, and it is tried again later.
      if (!isStorageFull(err)) throw err;
    }
  }
}

/**
 * Free bytes on the data directory's filesystem, less the reserve's size while it is released: the room
 * the database has (and, with the local byte store, blob files too).
 */
export async function localFreeSpace(layout: DataLayout, reserve: DiskReserve | undefined): Promise<number> {
  const st = await statfs(layout.root);
  return reserve?.account(st.bavail * st.bsize) ?? st.bavail * st.bsize;
}
