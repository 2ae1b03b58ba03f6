// After a restart, or when a session is taken over from a node that crashed: every open session cut back to
// its acknowledged offset (bytes past it were never acknowledged), interrupted completions finished or
// reopened, stray session bytes removed. Hash states are rebuilt lazily, on the next append or complete.
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore, UploadRecord } from '../storage/metadata-store.ts';
import type { NodeCoordination } from './coordination.ts';
import { BlobdError } from './errors.ts';
import type { UploadCompletion } from './upload-completion.ts';

/** On a shared store, session bytes without a row are left alone for this long (another node's creation). */
const SHARED_STRAY_AGE_MS = 24 * 3600 * 1000;

/** The creation time of a UUIDv7 id (ms), or NaN for anything else. */
function idTime(id: string): number {
  const hex = id.replace(/-/g, '');
  return /^[0-9a-f]{12}7/.test(hex) ? parseInt(hex.slice(0, 12), 16) : NaN;
}

export class UploadRecovery {
  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly completion: UploadCompletion,
    private readonly nodes: NodeCoordination,
  ) {}

  /**
   * After a restart: every open session is cut back to its acknowledged offset (bytes past it were never
   * acknowledged), interrupted completions are finished or reopened, and stray session bytes are removed.
   * Hash states are rebuilt lazily, on the next append or complete.
   */
  async recover(): Promise<{ resumed: number; removed: number }> {
    const keep = new Set<string>();
    let removed = 0;
    for (const found of await this.meta.listUnfinishedUploads()) {
      // With bytes other nodes write too (S3), only sessions whose holder did not let go (this node's previous
      // run, or a node that crashed): one let go cleanly has its cursor recorded and nothing to recover; one
      // a live node is using is kept as it is (its lease is live: busy). Local bytes are all this process's.
      if (this.nodes.shared && !this.bytes.local && found.leaseHolder === null) {
        keep.add(found.id);
        continue;
      }
      let hold;
      try {
        hold = await this.nodes.holdSession(found.id);
      } catch (err) {
        if (!(err instanceof BlobdError && err.code === 'upload_locked')) throw err;
        keep.add(found.id);
        continue;
      }
      if (!hold) continue; // gone meanwhile
      try {
        const outcome = await this.recoverOne(found, hold.holder);
        if (outcome === 'kept') keep.add(found.id);
        if (outcome === 'removed') removed++;
      } finally {
        await hold.release();
      }
    }
    // Session bytes without a row: a crash between the two. On a shared store another node may be creating
    // one right now (bytes first, then its row), so only those older than a day go (ids are UUIDv7: they
    // tell their age).
    const othersWrite = this.nodes.shared && !this.bytes.local;
    const youngest = Date.now() - (othersWrite ? SHARED_STRAY_AGE_MS : 0);
    for await (const id of this.bytes.listUploads()) {
      if (keep.has(id) || (othersWrite && !(idTime(id) < youngest))) continue;
      if (othersWrite && (await this.meta.getUpload(id))) continue;
      await this.bytes.deleteUpload(id, null);
      removed++;
    }
    return { resumed: keep.size, removed };
  }

  /** One session, under its lease (`fence`) on a shared store: kept, removed (its bytes are gone), or done. */
  async recoverOne(found: UploadRecord, fence: string | undefined): Promise<'kept' | 'removed' | 'done'> {
    let row: UploadRecord;
    try {
      row = await this.completion.settle((await this.meta.getUpload(found.id)) ?? found, fence);
    } catch (err) {
      // A completion whose rows are refused now (its bucket filled up or went away meanwhile) reopened the
      // session with its bytes, as a complete would; one with no bytes left was removed. Neither may keep
      // the daemon from starting.
      if (!(err instanceof BlobdError)) throw err;
      const now = await this.meta.getUpload(found.id);
      if (!now) return 'removed';
      row = now;
    }
    if (row.state !== 'open') return 'done';
    const recovered = await this.bytes.recoverUpload(row.id, row.offset, row.cursor);
    if (!recovered) {
      // Acknowledged bytes are gone: the session cannot honestly resume.
      await this.meta.deleteUpload(row.id);
      await this.bytes.deleteUpload(row.id, row.cursor);
      return 'removed';
    }
    if (recovered.cursor !== row.cursor) await this.meta.advanceUpload(row.id, row.offset, row.expiresAt, recovered.cursor, fence);
    return 'kept';
  }
}
