// What the CLI remembers between runs, under $XDG_STATE_HOME/blobd (else ~/.local/state/blobd): one JSON
// file per unfinished upload, the digests of local files it has hashed (so an unchanged file is checked
// against the daemon by digest before any byte is sent), and the expected digest of each partial download.
// Files are 0600 in a 0700 directory: upload tokens are secrets. Losing this state only costs a restart.
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * One upload session carrying the bytes [start, end) of the file. Today a put has a single part covering
 * the whole file; a `--parallel N` put would keep N parts and upload them at once (given a daemon-side
 * concatenation of sessions), resuming each at its own offset.
 */
export interface UploadPart {
  start: number;
  end: number;
  id: string;
  token: string;
}

/** Where an upload goes: both are part of what identifies it (a different target is a new upload). */
export interface UploadTarget {
  url: string;
  bucket: string | null;
  key: string | null;
  temporary: boolean;
}

export interface UploadState extends UploadTarget {
  version: 1;
  path: string;
  size: number;
  mtime_ms: number;
  ctime_ms: number;
  ino: number;
  parts: UploadPart[];
  created_at: string;
}

interface KnownDigest {
  path: string;
  size: number;
  mtime_ms: number;
  ctime_ms: number;
  ino: number;
  digest: string;
}

/**
 * The file is the one the record describes: same size, modification time, change time and inode. The
 * ctime counts (as in git's index) because anyone can set the mtime back (`touch -d`) after rewriting a
 * file, but only the kernel sets the ctime. A record without one (an older blobd's) never matches.
 */
export function sameFile(record: { size: number; mtime_ms: number; ctime_ms?: number; ino: number }, st: Stats): boolean {
  return record.size === st.size && record.mtime_ms === st.mtimeMs && record.ctime_ms === st.ctimeMs && record.ino === st.ino;
}

const name = (...parts: unknown[]) => `${createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 40)}.json`;

export class LocalState {
  constructor(private readonly dir: string) {}

  private async read<T>(sub: string, file: string): Promise<T | null> {
    try {
      return JSON.parse(await readFile(path.join(this.dir, sub, file), 'utf8')) as T;
    } catch {
      return null; // missing or unreadable: start afresh
    }
  }

  /** Replaces the file whole (write a temp file, rename), so a reader never sees half a record. */
  private async write(sub: string, file: string, value: unknown): Promise<void> {
    const dir = path.join(this.dir, sub);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, `.${file}.${process.pid}.tmp`);
    await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path.join(dir, file));
  }

  private async remove(sub: string, file: string): Promise<void> {
    await rm(path.join(this.dir, sub, file), { force: true });
  }

  private uploadName(file: string, t: UploadTarget): string {
    return name('upload', t.url, file, t.bucket, t.key, t.temporary);
  }

  readUpload(file: string, t: UploadTarget): Promise<UploadState | null> {
    return this.read<UploadState>('uploads', this.uploadName(file, t));
  }

  writeUpload(s: UploadState): Promise<void> {
    return this.write('uploads', this.uploadName(s.path, s), s);
  }

  removeUpload(s: UploadState): Promise<void> {
    return this.remove('uploads', this.uploadName(s.path, s));
  }

  /** The remembered upload one of whose sessions is `id` on the daemon at `url` (`blobd uploads`). */
  async uploadOfSession(url: string, id: string): Promise<UploadState | null> {
    const names = await readdir(path.join(this.dir, 'uploads')).catch(() => [] as string[]);
    for (const file of names.filter((n) => n.endsWith('.json'))) {
      const s = await this.read<UploadState>('uploads', file);
      if (s?.url === url && Array.isArray(s.parts) && s.parts.some((p) => p.id === id)) return s;
    }
    return null;
  }

  /** The digest of `file` as last hashed, if the file has not changed since. */
  async knownDigest(file: string, st: Stats): Promise<string | null> {
    const known = await this.read<KnownDigest>('digests', name('digest', file));
    return known && sameFile(known, st) ? known.digest : null;
  }

  rememberDigest(file: string, st: Stats, digest: string): Promise<void> {
    const record: KnownDigest = { path: file, size: st.size, mtime_ms: st.mtimeMs, ctime_ms: st.ctimeMs, ino: st.ino, digest };
    return this.write('digests', name('digest', file), record);
  }

  /** The digest the bytes of a partial download (`FILE.blobd-part`) belong to. */
  async partialDigest(partial: string): Promise<string | null> {
    return (await this.read<{ digest: string }>('downloads', name('download', partial)))?.digest ?? null;
  }

  setPartialDigest(partial: string, digest: string): Promise<void> {
    return this.write('downloads', name('download', partial), { path: partial, digest });
  }

  clearPartial(partial: string): Promise<void> {
    return this.remove('downloads', name('download', partial));
  }
}
