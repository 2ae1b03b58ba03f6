// The local-filesystem ByteStore: stage to tmp/ while hashing, fsync, then rename into blobs/ and fsync the
// directory (commit by rename, as distribution does). A file under blobs/ therefore always holds exactly
// the bytes its name says (G2): a location here is the digest itself. It must never expose a path to its
// callers. Sessions are one file each under uploads/; their cursor is always null (the file is the state).
import { createHash, randomUUID } from 'node:crypto';
import { constants, createReadStream, type Dirent } from 'node:fs';
import { copyFile, lstat, open, readdir, rename, rm, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { makeDirDurable, ShardDirs, syncChain, syncDir } from './durable-dirs.ts';
import { closeFd, fdatasyncFd, fstatFd, fsyncFd, ftruncateFd, IO_CHUNK, openFd } from './fd.ts';
import { drainInto, FileSink } from './positional-writer.ts';
import { BytesNotFoundError, type AppendResult, type BlobCopy, type ByteRange, type ByteStore, type Location, type StagedBlob, type UploadCursor } from '../byte-store.ts';
import { ChunkPool } from './chunk-pool.ts';
import { FileCopy } from './file-copy.ts';
import type { DiskReserve } from './disk-reserve.ts';
import { BLOB_MODE, FILE_MODE, type DataLayout } from './layout.ts';

const SHARD_RE = /^[0-9a-f]{2}$/;

/** An entry under blobs/: a blob file, or something that is none (a stray: odd name, directory, symlink). */
type BlobEntry = { readonly digest: string } | { readonly stray: string };

export class FsByteStore implements ByteStore {
  readonly kind = 'fs';
  readonly local = true;
  readonly contentAddressed = true;
  /** Staging files of this process not yet renamed into blobs/ nor discarded (their handles). */
  private readonly staged = new Set<string>();
  /** The statfs in flight, shared by every caller that asks meanwhile. */
  private freeSpaceInFlight: Promise<number> | undefined;
  /** The buffers downloads copy through, shared by all of them and bounded in number. */
  private readonly downloadBuffers = new ChunkPool();

  private readonly shards: ShardDirs;

  private constructor(
    private readonly layout: DataLayout,
    private readonly reserve: DiskReserve | undefined,
  ) {
    this.shards = new ShardDirs(layout);
  }

  /**
   * Create the directories and drop staging files a previous process left behind. Space the `reserve`
   * should hold but does not is not free for blobs (see freeSpace).
   */
  static async open(layout: DataLayout, reserve?: DiskReserve): Promise<FsByteStore> {
    await rm(layout.tmpDir, { recursive: true, force: true });
    await makeDirDurable(layout.tmpDir);
    await makeDirDurable(layout.blobsDir);
    // Once per start, whoever created it: shard directories are synced into blobs/sha256, not beyond.
    await syncChain(layout.blobsDir, layout.root);
    await makeDirDurable(layout.uploadsDir);
    // Session files are written, cut back and deleted by name at every start: never through a link out of
    // the data directory (G6), as blobs/ and quarantine/ are not.
    for (const dir of [layout.tmpDir, layout.uploadsDir, path.dirname(layout.blobsDir), layout.blobsDir]) {
      if (!(await lstat(dir)).isDirectory()) {
        throw new Error(`${path.relative(layout.root, dir)}/ in the data directory is not a real directory (a symbolic link?): blobd follows nothing out of its data directory`);
      }
    }
    return new FsByteStore(layout, reserve);
  }

  async stage(source: Readable): Promise<StagedBlob> {
    // randomUUID: a staging name needs no order, and node:crypto's is far cheaper than uuid's v7 per call.
    const handle = randomUUID();
    const file = this.layout.tmpFile(handle);
    const hash = createHash('sha256');
    let size = 0;
    // The body may fail while the file is being opened: keep its error on the stream for the loop to throw.
    const quiet = () => {};
    source.on('error', quiet);
    let fd: number;
    try {
      // Created read-only (0400, what a blob file must be), so no chmod after the fsync is needed: the fd
      // opened at creation may still write.
      fd = await openFd(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, BLOB_MODE);
    } catch (err) {
      source.destroy();
      throw err;
    } finally {
      source.off('error', quiet);
    }
    const sink = new FileSink(fd, 0);
    try {
      // A loop over the body instead of pipeline(source, Transform, WriteStream): on 4 KiB uploads the three
      // streams, and the AbortError pipeline builds each time it finishes, cost more CPU than the write
      // (npm run bench). A body that fails leaves nothing: its error is thrown and the file unlinked.
      const { sourceError } = await drainInto(source, sink, (chunk) => {
        hash.update(chunk);
        size += chunk.length;
      });
      if (sourceError !== undefined) throw sourceError;
      await sink.settled();
      // Durable before it may be renamed into blobs/ and a row may name it (G1, G2).
      await fsyncFd(fd);
    } catch (err) {
      await sink.settled().catch(() => {});
      await closeFd(fd).catch(() => {});
      await unlink(file).catch(() => {});
      throw err;
    }
    await closeFd(fd);
    this.staged.add(handle);
    return { digest: `sha256:${hash.digest('hex')}`, size, handle };
  }

  async commit(staged: StagedBlob): Promise<Location> {
    const tmp = this.layout.tmpFile(staged.handle);
    const final = this.layout.blobFile(staged.digest);
    const dir = await this.shards.durable(staged.digest);
    await rename(tmp, final);
    this.staged.delete(staged.handle);
    await syncDir(dir);
    return staged.digest;
  }

  async discard(staged: StagedBlob): Promise<void> {
    // Committed (renamed away) or discarded before: nothing to unlink, and no ENOENT to build and catch.
    if (!this.staged.delete(staged.handle)) return;
    await unlink(this.layout.tmpFile(staged.handle)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async stat(digest: string): Promise<{ size: number; modifiedAt: number; regular: boolean } | null> {
    if (!(await this.shards.isReal(digest))) return null;
    try {
      // lstat: a symlink or a directory where the blob file belongs is reported, never followed.
      const st = await lstat(this.layout.blobFile(digest));
      return { size: st.size, modifiedAt: st.mtimeMs, regular: st.isFile() };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async openRead(digest: string, range?: ByteRange): Promise<Readable> {
    // A numeric fd and fs.createReadStream: FileHandle streams read through promises and were measurably
    // slower on a 1 GiB download (npm run bench).
    const fd = await this.openBlobFile(digest);
    return createReadStream('', { fd, start: range?.start, end: range?.end, highWaterMark: IO_CHUNK });
  }

  async openCopy(digest: string, range?: ByteRange): Promise<BlobCopy> {
    const fd = await this.openBlobFile(digest);
    if (range) return new FileCopy(fd, range.start, range.end, this.downloadBuffers);
    try {
      return new FileCopy(fd, 0, (await fstatFd(fd)).size - 1, this.downloadBuffers);
    } catch (err) {
      await closeFd(fd);
      throw err;
    }
  }

  /** An fd of the blob's file, read-only; BytesNotFoundError when there is no regular file to open. */
  private async openBlobFile(digest: string): Promise<number> {
    let fd: number;
    if (!(await this.shards.isReal(digest))) throw new BytesNotFoundError(digest);
    try {
      // O_NOFOLLOW: a symlink planted in place of a blob file is not followed out of the data directory.
      fd = await openFd(this.layout.blobFile(digest), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP') throw new BytesNotFoundError(digest);
      throw err;
    }
    if (!(await fstatFd(fd)).isFile()) {
      await closeFd(fd);
      throw new BytesNotFoundError(digest);
    }
    return fd;
  }

  async delete(digest: string): Promise<void> {
    if (!(await this.shards.isReal(digest))) return; // never unlink through a symlinked directory
    await unlink(this.layout.blobFile(digest)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async ping(): Promise<void> {
    const probe = this.layout.tmpFile(uuidv7());
    const fh = await open(probe, 'wx', FILE_MODE);
    await fh.close();
    await unlink(probe);
  }

  /**
   * Free bytes on the data directory's filesystem, less the disk reserve's size while it is released.
   * Callers that ask while a statfs is in flight share its answer (as if they had asked a moment earlier):
   * one syscall instead of one per concurrent upload.
   */
  freeSpace(): Promise<number> {
    this.freeSpaceInFlight ??= statfs(this.layout.root)
      .then((st) => this.reserve?.account(st.bavail * st.bsize) ?? st.bavail * st.bsize)
      .finally(() => (this.freeSpaceInFlight = undefined));
    return this.freeSpaceInFlight;
  }

  async createUpload(id: string): Promise<UploadCursor> {
    const fh = await open(this.layout.uploadFile(id), 'wx', FILE_MODE);
    await fh.close();
    await syncDir(this.layout.uploadsDir);
    return null;
  }

  async appendUpload(id: string, offset: number, _cursor: UploadCursor, source: Readable, onChunk: (chunk: Buffer) => void): Promise<AppendResult> {
    // The body may fail while the file is being opened: its error stays on the stream for the loop to return.
    const quiet = () => {};
    source.on('error', quiet);
    let fd: number;
    try {
      fd = await openFd(this.layout.uploadFile(id), 'r+');
    } finally {
      source.off('error', quiet);
    }
    const sink = new FileSink(fd, offset);
    try {
      const { sourceError } = await drainInto(source, sink, onChunk);
      // Durable before anyone records the new offset (G1): an acknowledged offset survives a crash.
      await sink.settled();
      await fdatasyncFd(fd);
      return sourceError === undefined ? { written: sink.written, cursor: null } : { written: sink.written, cursor: null, sourceError };
    } finally {
      await sink.settled().catch(() => {});
      await closeFd(fd);
    }
  }

  async settleAppend(): Promise<void> {}

  /** Past the acknowledged offset the file holds only bytes nobody acknowledged: cut them off, durably. */
  async abandonAppend(id: string, offset: number): Promise<void> {
    await this.truncateUpload(id, offset);
  }

  async recoverUpload(id: string, offset: number): Promise<{ cursor: UploadCursor } | null> {
    const onDisk = await this.uploadSize(id);
    if (onDisk === null || onDisk < offset) return null; // acknowledged bytes are gone
    if (onDisk > offset) await this.truncateUpload(id, offset);
    return { cursor: null };
  }

  private async truncateUpload(id: string, length: number): Promise<void> {
    const fd = await openFd(this.layout.uploadFile(id), 'r+');
    try {
      await ftruncateFd(fd, length);
      await fdatasyncFd(fd);
    } finally {
      await closeFd(fd);
    }
  }

  private async uploadSize(id: string): Promise<number | null> {
    try {
      return (await stat(this.layout.uploadFile(id))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async readUpload(id: string, length: number): Promise<{ bytes: Readable; cursor: UploadCursor }> {
    const fd = await openFd(this.layout.uploadFile(id), 'r');
    if (length === 0) {
      await closeFd(fd);
      return { bytes: Readable.from([]), cursor: null };
    }
    return { bytes: createReadStream('', { fd, start: 0, end: length - 1, highWaterMark: IO_CHUNK }), cursor: null };
  }

  uploadLocation(_id: string, digest: string): Location {
    return digest;
  }

  /** A session's bytes are a file in uploads/ until they are committed under their digest: no location. */
  sessionLocation(): Location | null {
    return null;
  }

  async commitUpload(id: string, offset: number, _cursor: UploadCursor, digest: string): Promise<void> {
    if ((await this.uploadSize(id)) !== offset) await this.truncateUpload(id, offset);
    const from = this.layout.uploadFile(id);
    const final = this.layout.blobFile(digest);
    const dir = await this.shards.durable(digest);
    await rename(from, final);
    // Read-only like every blob once it is one (never while it is a session's file, which a failed or
    // interrupted completion may hand back to appends); fsync, not fdatasync, makes the mode durable.
    const fh = await open(final, 'r');
    try {
      await fh.chmod(BLOB_MODE);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await syncDir(dir);
  }

  async uploadCommitted(id: string, _offset: number, _cursor: UploadCursor, digest: string): Promise<boolean | null> {
    if ((await this.uploadSize(id)) !== null) return false; // still in uploads/: the rename did not happen
    return (await this.stat(digest)) !== null ? true : null;
  }

  async restoreUpload(id: string, digest: Location): Promise<UploadCursor> {
    // A copy, never a link: the session's file is appended to, the blob's must not change.
    const tmp = this.layout.tmpFile(uuidv7());
    try {
      await copyFile(this.layout.blobFile(digest), tmp);
      // The copy has the blob's mode (0400): opened read-only, which is all fchmod and fsync need.
      const fh = await open(tmp, 'r');
      try {
        await fh.chmod(FILE_MODE);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.layout.uploadFile(id));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await syncDir(this.layout.uploadsDir);
    return null;
  }

  async deleteUpload(id: string): Promise<void> {
    await unlink(this.layout.uploadFile(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async *listUploads(): AsyncIterable<string> {
    for (const name of await readdir(this.layout.uploadsDir)) {
      if (this.layout.isUploadName(name)) yield name;
    }
  }

  nameOf(digest: string): string {
    return path.relative(this.layout.root, this.layout.blobFile(digest));
  }

  /**
   * Every entry under blobs/ as lstat sees it: blob files (regular files with a digest's name in its shard)
   * and strays (anything else under blobs/, but a mount's lost+found). Symlinks are strays and never descended into.
   */
  private async *walk(): AsyncIterable<BlobEntry> {
    const rel = (p: string) => path.relative(this.layout.root, p);
    const dirents = (dir: string) => readdir(dir, { withFileTypes: true }).catch(() => []);
    // A filesystem mounted at blobs/ or blobs/sha256/ has its lost+found there: the filesystem's, not a stray.
    const mountRoot = (e: Dirent) => e.name === 'lost+found' && e.isDirectory();
    // blobs/ holds sha256/ alone: anything beside it was put there by hand (or by another tool).
    const algorithms = path.dirname(this.layout.blobsDir);
    for (const e of await dirents(algorithms)) {
      const p = path.join(algorithms, e.name);
      if ((p !== this.layout.blobsDir || !e.isDirectory()) && !mountRoot(e)) yield { stray: rel(p) };
    }
    for (const a of await dirents(this.layout.blobsDir)) {
      if (mountRoot(a)) continue;
      const pa = path.join(this.layout.blobsDir, a.name);
      if (!a.isDirectory() || !SHARD_RE.test(a.name)) {
        yield { stray: rel(pa) };
        continue;
      }
      for (const b of await dirents(pa)) {
        const pb = path.join(pa, b.name);
        if (!b.isDirectory() || !SHARD_RE.test(b.name)) {
          yield { stray: rel(pb) };
          continue;
        }
        for (const f of await dirents(pb)) {
          const pf = path.join(pb, f.name);
          const digest = f.isFile() ? this.layout.digestOfBlobFile(pf) : null;
          yield digest ? { digest } : { stray: rel(pf) };
        }
      }
    }
  }

  async *strays(): AsyncIterable<string> {
    for await (const e of this.walk()) if ('stray' in e) yield e.stray;
  }

  async quarantine(digest: string): Promise<string | null> {
    if (!(await this.shards.isReal(digest))) return null;
    await makeDirDurable(this.layout.quarantineDir);
    if (!(await lstat(this.layout.quarantineDir)).isDirectory()) throw new Error('quarantine/ is not a real directory; refusing to move bytes through it');
    const to = path.join(this.layout.quarantineDir, `${digest.slice('sha256:'.length)}.${Date.now()}`);
    try {
      await rename(this.layout.blobFile(digest), to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    await syncDir(this.layout.quarantineDir);
    await syncDir(path.dirname(this.layout.blobFile(digest)));
    return path.relative(this.layout.root, to);
  }

  async *list(): AsyncIterable<string> {
    for await (const e of this.walk()) if ('digest' in e) yield e.digest;
  }
}
