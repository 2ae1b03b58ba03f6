// Small blobs stored as a file each (before the inline tier existed, or under a smaller --inline-max) moved
// into the inline tier: `blobd fsck --data DIR --repack`, with no daemon using the directory. Each file is
// read and checked against its digest, its bytes are stored inline in a durable transaction of their own,
// and only then is the file removed: a crash in between leaves both copies (reads take the inline one, and
// a later repack removes the file), never neither. Files that do not hash to their digest, or are missing,
// stay as they are, for fsck to report.
import type { FsByteStore } from './fs/fs-byte-store.ts';
import { sha256Of as sha256 } from './inline-blobs.ts';
import type { InlineRepo } from './sqlite/inline-repo.ts';

export interface RepackReport {
  /** Blobs now stored inline, and their bytes. */
  moved: number;
  bytes: number;
  /** Files removed because the database holds the same, intact bytes already (an earlier run cut short). */
  duplicates: number;
  /** Digests whose file did not hash to the digest (left in place). */
  corrupt: string[];
  /** Digests with no file (left to fsck). */
  missing: string[];
  /** Blobs the run could not handle ("digest: why"), left as they were. */
  failed: string[];
}

const PAGE = 1000;

export async function repackSmallFiles(inline: InlineRepo, files: FsByteStore, max: number): Promise<RepackReport> {
  const report: RepackReport = { moved: 0, bytes: 0, duplicates: 0, corrupt: [], missing: [], failed: [] };
  for (let page = inline.filedUpTo(max, '', PAGE); page.length > 0; page = inline.filedUpTo(max, page.at(-1)!.digest, PAGE)) {
    for (const { digest, size } of page) {
      try {
        const st = await files.stat(digest);
        if (!st) {
          report.missing.push(digest);
          continue;
        }
        const bytes = st.regular && st.size === size ? await readAll(files, digest, size) : null;
        if (!bytes || sha256(bytes) !== digest) {
          report.corrupt.push(digest);
          continue;
        }
        await inline.put(digest, bytes); // durable on return (synchronous=FULL)
        await files.delete(digest);
        report.moved++;
        report.bytes += size;
      } catch (err) {
        report.failed.push(`${digest}: ${(err as Error).message}`);
      }
    }
  }
  // Files whose bytes the database holds intact already: a run cut short between its two steps.
  for await (const digest of files.list()) {
    try {
      const held = await inline.read(digest);
      if (!held || sha256(held) !== digest) continue;
      await files.delete(digest);
      report.duplicates++;
    } catch (err) {
      report.failed.push(`${digest}: ${(err as Error).message}`);
    }
  }
  return report;
}

/** The file's `size` bytes, or null when it holds fewer (never more than size + 1 bytes are read). */
async function readAll(files: FsByteStore, digest: string, size: number): Promise<Buffer | null> {
  if (size === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let read = 0;
  for await (const chunk of await files.openRead(digest, { start: 0, end: size })) {
    chunks.push(chunk as Buffer);
    read += (chunk as Buffer).length;
  }
  return read === size ? Buffer.concat(chunks, read) : null;
}
