// Disk accounting for /api/admin/stats: blobs stored, bytes stored and referenced, and open sessions.
import type { MetadataStore } from '../storage/metadata-store.ts';
import { MULTIPART_BUCKET } from './multipart-records.ts';

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
  /** Of the blobs stored, those small enough to be kept inside the metadata database, and their bytes. */
  readonly inlineBlobs: number;
  readonly inlineBytes: number;
}

/**
 * The store's figures as users see them: objects and logical bytes are those of their buckets, so core's
 * own bucket (open S3 multipart uploads: a record and a part each an object) is taken out, from its
 * bucket counters rather than in each store's SQL. Blobs and stored bytes stay as they are: the parts'
 * bytes are on disk (and a blob may be shared with a user's object); the dedup ratio is the store's, parts
 * on both sides, so that open uploads do not make it look as if stored bytes served nothing.
 */
export async function storeStats(meta: MetadataStore): Promise<Stats> {
  const [s, system, inline] = await Promise.all([meta.stats(), meta.getBucket(MULTIPART_BUCKET), meta.inline?.totals()]);
  const objects = Math.max(0, s.objects - (system?.objectCount ?? 0));
  const logicalBytes = Math.max(0, s.logicalBytes - (system?.storedBytes ?? 0));
  const dedupRatio = s.storedBytes === 0 ? 1 : Math.round((s.logicalBytes / s.storedBytes) * 1000) / 1000;
  return { ...s, objects, logicalBytes, dedupRatio, inlineBlobs: inline?.blobs ?? 0, inlineBytes: inline?.bytes ?? 0 };
}
