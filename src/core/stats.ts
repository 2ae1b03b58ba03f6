// Disk accounting for /api/admin/stats: blobs stored, bytes stored and referenced, and open sessions.
import type { MetadataStore } from '../storage/metadata-store.ts';

export interface Stats {
  readonly blobs: number;
  readonly storedBytes: number;
  readonly logicalBytes: number;
  /** logical / stored: how many bytes each stored byte serves (1 for an empty store). */
  readonly dedupRatio: number;
  readonly pins: number;
  readonly objects: number;
  readonly openSessions: number;
  readonly openSessionBytes: number;
}

export async function storeStats(meta: MetadataStore): Promise<Stats> {
  const s = await meta.stats();
  const dedupRatio = s.storedBytes === 0 ? 1 : Math.round((s.logicalBytes / s.storedBytes) * 1000) / 1000;
  return { ...s, dedupRatio };
}
