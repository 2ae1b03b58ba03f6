// fsck: re-hash every blob and compare rows with stored bytes — corrupt (bytes that do not hash to their
// digest), missing (a row without bytes), orphans (bytes no row names and that are not on their way out in the
// deletion queue, or things that are no blob at all).
// With repair, corrupt bytes are moved to quarantine and their rows marked; fsck never deletes bytes.
import { createHash } from 'node:crypto';
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { BlobService } from './blobs.ts';
import { NodeCoordination } from './coordination.ts';
import { BlobdError } from './errors.ts';

export interface FsckReport {
  readonly checked: number;
  readonly corrupt: string[];
  readonly missing: string[];
  /** Names relative to the data directory. */
  readonly orphans: string[];
  /** Blobs marked unreadable by a repair (their bytes moved to quarantine, or missing): this run's or earlier. */
  readonly quarantined: string[];
  /**
   * Blobs whose bytes are there but cannot be read (permissions, an I/O error): reported, never
   * quarantined by a repair — the bytes may be whole, and fixing the access brings them back.
   */
  readonly unreadable: string[];
}

/** Errors that say the bytes are there but this process cannot read them: not a verdict on the bytes. */
const UNREADABLE = new Set(['EACCES', 'EPERM', 'EIO']);
const unreadable = (err: unknown) => UNREADABLE.has((err as NodeJS.ErrnoException)?.code ?? '');

const PAGE = 500;
/**
 * Bytes queued for deletion this long ago and still there are reported as orphans: a drain follows every
 * GC pass (every --gc-interval, 10 minutes by default) and takes seconds.
 */
export const STUCK_MS = 60 * 60_000;

export class FsckService {
  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly blobs: BlobService,
    private readonly nodes: NodeCoordination = new NodeCoordination(meta, 'local'),
  ) {}

  /** One node at a time on a shared store (a lease): on the others this is 409 maintenance_running. */
  async run(opts: { repair?: boolean } = {}): Promise<FsckReport> {
    const done = await this.nodes.exclusive('fsck', () => this.check(opts));
    if (!done) throw new BlobdError('maintenance_running', 'fsck is running on another node; retry when it is done');
    return done.value;
  }

  private async check(opts: { repair?: boolean }): Promise<FsckReport> {
    // Rows first, then bytes: a blob committed meanwhile has its bytes by the time they are listed.
    const report = { checked: 0, corrupt: [] as string[], missing: [] as string[], orphans: [] as string[], quarantined: [] as string[], unreadable: [] as string[] };
    const rows = new Set<string>();
    for (let page = await this.meta.listBlobsAfter('', PAGE); page.length > 0; page = await this.meta.listBlobsAfter(page.at(-1)!.digest, PAGE)) {
      for (const blob of page) {
        rows.add(blob.location);
        if (blob.quarantined) {
          report.quarantined.push(blob.digest); // moved aside by an earlier repair; heals with the next upload of it
          continue;
        }
        report.checked++;
        const verdict = await this.verify(blob.location, blob.digest, blob.size);
        // Removed since its page was read (GC on another node): not missing, just gone.
        if (verdict === 'missing' && (await this.meta.getBlob(blob.digest))?.location !== blob.location) continue;
        if (verdict === 'ok') continue;
        report[verdict].push(blob.digest);
        if (verdict === 'unreadable') continue;
        if (opts.repair && (await this.quarantine(blob.location, blob.digest, blob.size))) report.quarantined.push(blob.digest);
      }
    }
    for await (const location of this.bytes.list()) {
      if (rows.has(location)) continue;
      // A blob committed since its page was read is no orphan: ask the store again before saying so. Nor are
      // bytes whose row went and that wait in the deletion queue (GC deletes rows first, bytes after; a crash
      // or a backup's snapshot can come in between): the next GC pass deletes them. Bytes queued for longer
      // than STUCK_MS are reported: their deletion keeps failing (a store that refuses deletes), or no GC
      // pass ran meanwhile.
      if (await this.meta.isLocationClaimed(location)) continue;
      const queuedAt = await this.meta.deletionQueuedAt(location);
      if (queuedAt !== null && Date.now() - queuedAt < STUCK_MS) continue;
      report.orphans.push(await this.bytes.nameOf(location));
    }
    for await (const name of this.bytes.strays()) report.orphans.push(name);
    report.orphans.sort();
    return report;
  }

  private async verify(location: string, digest: string, size: number): Promise<'ok' | 'missing' | 'corrupt' | 'unreadable'> {
    let st;
    try {
      st = await this.bytes.stat(location);
    } catch (err) {
      if (unreadable(err)) return 'unreadable';
      throw err;
    }
    if (!st) return 'missing';
    if (!st.regular || st.size !== size) return 'corrupt';
    const hash = createHash('sha256');
    try {
      for await (const chunk of await this.bytes.openRead(location)) hash.update(chunk as Buffer);
    } catch (err) {
      return unreadable(err) ? 'unreadable' : 'missing';
    }
    return `sha256:${hash.digest('hex')}` === digest ? 'ok' : 'corrupt';
  }

  /**
   * Under the digest lock, and only if the bytes are still bad (an upload may have healed them). The row
   * is marked before the bytes move: a crash in between leaves a marked row whose bytes are still there
   * (the next upload of them replaces the file), never an unmarked row without bytes. Missing bytes are
   * marked too, so the blob reads as absent and its next upload heals it.
   */
  private quarantine(location: string, digest: string, size: number): Promise<boolean> {
    return this.blobs.lockDigest(digest, async () => {
      // The row as it is now: an upload may have healed it (new bytes, or a new location) meanwhile.
      const row = await this.meta.getBlob(digest);
      if (!row || row.location !== location || (await this.verify(location, digest, size)) === 'ok') return false;
      // Another copy of it verified and serves it now: nothing to mark.
      if ((await this.bytes.dropDamagedCopy?.(location)) && (await this.verify(location, digest, size)) === 'ok') return false;
      await this.meta.markQuarantined(digest);
      await this.bytes.quarantine(location);
      return true;
    });
  }
}
