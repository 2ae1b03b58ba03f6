// Seeds a data directory with N objects in bucket "bench" through the MetadataStore API, on a connection
// without fsync (seeding speed is not what the bench measures). Shared by the listing and start-up rows.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { openDatabase } from '../../src/storage/sqlite/db.ts';
import { SqliteMetadataStore } from '../../src/storage/sqlite/sqlite-metadata-store.ts';

/** Resolves with the seconds seeding took. */
export async function seedObjects(dataDir: string, n: number): Promise<number> {
  // 0700: blobd refuses to start on a data directory other users can enter.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const db = openDatabase(path.join(dataDir, 'blobd.db'));
  db.pragma('synchronous = OFF');
  const store = new SqliteMetadataStore(db);
  const t0 = performance.now();
  try {
    await store.putBucket('bench', { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false });
    for (let i = 0; i < n; i++) {
      const key = `dir${i % 100}/file-${String(i).padStart(7, '0')}.bin`;
      const digest = `sha256:${i.toString(16).padStart(64, '0')}`;
      await store.addRevision({
        bucket: 'bench',
        key,
        newObjectId: `00000000-0000-7000-8000-${i.toString(16).padStart(12, '0')}`,
        blob: { digest, size: i, location: digest },
        contentType: null,
        filename: null,
        createdBy: 'bench',
      });
      // One object in ten carries a numeric property, for the listing's filter rows.
      if (i % 10 === 0) {
        await store.setObjectMeta('bench', key, { contentType: null, filename: null, owner: null, tags: [], properties: { size: i }, expiresAt: null });
      }
    }
  } finally {
    await store.close();
  }
  return (performance.now() - t0) / 1000;
}
