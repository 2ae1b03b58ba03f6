// Directories made durable: fsync of a directory, mkdir -p with every new level synced into its parent, and
// the blob shard directories (blobs/sha256/ab/cd), each made durable once per process and checked to be a
// real directory, never a symlink out of the data directory (G6).
import { constants } from 'node:fs';
import { lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { closeFd, fsyncFd, openFd } from './fd.ts';
import { DIR_MODE, type DataLayout } from './layout.ts';

/** fsync a directory so that a rename or create inside it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  // A numeric fd, not a FileHandle: half the CPU per call, and a commit makes one or two of these.
  const fd = await openFd(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/** mkdir -p (every level it creates 0700: it is only used under the data directory) that also makes every
 * directory it created durable in its parent. */
export async function makeDirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (first === undefined) return;
  await syncChain(dir, path.dirname(first));
}

/** fsync `dir` and each parent up to and including `top`. */
export async function syncChain(dir: string, top: string): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    await syncDir(d);
    if (d === top || d === path.dirname(d)) break;
  }
}

/** The shard directories of blobs/sha256: made durable in their parents, checked to be real directories. */
export class ShardDirs {
  /**
   * Shard directories (blobs/sha256/ab and blobs/sha256/ab/cd) made durable in their parents by this
   * process: the promise of that work, shared by concurrent commits into the same shard. "mkdir found it"
   * is not enough: a concurrent commit may have created it and still be fsyncing its parent, or a crashed
   * process may have created it without ever syncing. So each one is synced into its parent once per process.
   */
  private readonly durableDirs = new Map<string, Promise<void>>();
  /**
   * Shard directories checked to be real directories, not symlinks (G6: nothing under blobs/ may lead
   * outside the data directory). Checked once per process; a symlink planted meanwhile is the operator's.
   */
  private readonly realShards = new Set<string>();

  /** blobs/sha256 must itself be durable (FsByteStore.open syncs it up to the root at every start). */
  constructor(private readonly layout: DataLayout) {}

  /**
   * The digest's shard directory, there and durable in its parent. The directory's own entries are the
   * caller's to sync (a commit fsyncs it after its rename), so a new shard costs one mkdir, one lstat and
   * one fsync of its parent — it was a sync of every level up to blobs/ (4 directory fsyncs per new shard).
   */
  async durable(digest: string): Promise<string> {
    const dir = this.layout.shardDir(digest);
    await this.durableDir(dir);
    this.realShards.add(dir);
    return dir;
  }

  /** True when both shard directories of the digest exist and are directories, not symlinks. */
  async isReal(digest: string): Promise<boolean> {
    const dir = this.layout.shardDir(digest);
    if (this.realShards.has(dir)) return true;
    for (const d of [path.dirname(dir), dir]) {
      const st = await lstat(d).catch(() => null);
      if (!st?.isDirectory()) return false;
    }
    this.realShards.add(dir);
    return true;
  }

  private durableDir(dir: string): Promise<void> {
    let done = this.durableDirs.get(dir);
    if (done === undefined) {
      done = this.makeDurableDir(dir);
      this.durableDirs.set(dir, done);
      done.catch(() => this.durableDirs.delete(dir));
    }
    return done;
  }

  /** mkdir `dir` (one or two levels under blobs/sha256), check it is a real directory, fsync its parent. */
  private async makeDurableDir(dir: string): Promise<void> {
    const parent = path.dirname(dir);
    if (parent !== this.layout.blobsDir) await this.durableDir(parent);
    await mkdir(dir, { recursive: true, mode: DIR_MODE }); // no EEXIST error to build when it is there (its parent is)
    if (!(await lstat(dir)).isDirectory()) throw new Error('a blob shard directory is not a real directory; refusing to write through it');
    await syncDir(parent);
  }
}
