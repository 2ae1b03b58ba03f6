// The partial file of `blobd get -o FILE` (FILE.blobd-part), kept safe from whatever else sits at its name:
// it is never opened through a symlink, a resume reuses only a regular file of this user's that has no
// other name (no hard link to some other file), and it becomes FILE only while it still is this download's
// file — another get into the same FILE may have replaced it meanwhile.
import { constants, type Stats } from 'node:fs';
import { lstat, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { getSystemErrorMap } from 'node:util';
import { ApiError } from './client.ts';

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_RDWR } = constants;

/** `cannot write FILE: no space left on device` (local_file): the user's FILE, in the system's words. */
export function cannotWrite(file: string, err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as NodeJS.ErrnoException;
  const words = typeof e.errno === 'number' ? getSystemErrorMap().get(e.errno)?.[1] : undefined;
  return new ApiError(0, 'local_file', `cannot write ${file}: ${words ?? e.code ?? e.message}`);
}

const anotherGet = (file: string) => new ApiError(0, 'local_file', `another blobd get is writing ${file}`);

/** A partial file this user may write into: a regular file of theirs whose only name is this one. */
function ours(st: Stats): boolean {
  return st.isFile() && st.uid === process.getuid?.() && st.nlink === 1;
}

const sameInode = (a: Stats, b: Stats) => a.dev === b.dev && a.ino === b.ino;

/** How many bytes of a partial file at `partial` could be resumed: 0 unless it is one of ours. */
export async function resumableLength(partial: string): Promise<number> {
  const st = await lstat(partial).catch(() => null);
  return st && ours(st) ? st.size : 0;
}

export class PartialFile {
  private constructor(
    readonly fh: FileHandle,
    /** The opened file's identity (device and inode), to know it again at `partial` or at FILE. */
    private readonly st: Stats,
    private readonly file: string,
    private readonly partial: string,
  ) {}

  /**
   * A new, empty partial file: whatever is at its name (a stale partial, a planted symlink or someone else's
   * file) is unlinked — which never touches a link's target — and the file is created exclusively.
   */
  static async create(file: string, partial: string): Promise<PartialFile> {
    try {
      await rm(partial, { force: true });
      const fh = await open(partial, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      return new PartialFile(fh, await fh.stat(), file, partial);
    } catch (err) {
      // Something got there between the unlink and the exclusive create: another get of the same FILE.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw anotherGet(file);
      throw cannotWrite(file, err);
    }
  }

  /** The partial file of an interrupted download, at least `length` bytes, checked once opened (fstat). */
  static async reopen(file: string, partial: string, length: number): Promise<PartialFile> {
    const fh = await open(partial, O_RDWR | O_NOFOLLOW).catch((err: unknown) => {
      throw cannotWrite(file, err);
    });
    const st = await fh.stat();
    if (!ours(st) || st.size < length) {
      await fh.close();
      throw new ApiError(0, 'local_file', `${partial} was replaced while this download resumed it; rerun the same command`);
    }
    return new PartialFile(fh, st, file, partial);
  }

  /**
   * Renames the partial file to FILE if it is still this download's file. When FILE already is (another
   * get resuming the same download renamed it into place), that is done too; anything else at the partial
   * file's name belongs to another get and is left alone.
   */
  async commit(): Promise<void> {
    const here = await lstat(this.partial).catch(() => null);
    if (here && sameInode(here, this.st)) {
      await rename(this.partial, this.file).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOENT' ? anotherGet(this.file) : cannotWrite(this.file, err);
      });
    }
    const there = await lstat(this.file).catch(() => null);
    if (!there || !sameInode(there, this.st)) throw anotherGet(this.file);
  }

  /** Removes the partial file (its bytes were wrong), unless another get's file has taken its name. */
  async discard(): Promise<void> {
    const here = await lstat(this.partial).catch(() => null);
    if (here && sameInode(here, this.st)) await rm(this.partial, { force: true });
  }
}
