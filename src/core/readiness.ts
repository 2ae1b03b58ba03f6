// Readiness: can this process take writes right now? Asks each store to prove it, never guesses, and the
// disk budget whether the disk has room beyond the reserve (SQLite may refuse any write below it).
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { DiskBudget } from './disk-budget.ts';

type Check = 'ok' | 'failing';

export interface Readiness {
  readonly ready: boolean;
  /** `data_dir` with the local byte store, `store` (the S3 bucket) with an object store. */
  readonly checks: { readonly database: Check; readonly data_dir?: Check; readonly store?: Check; readonly disk: Check };
}

export async function checkReadiness(meta: MetadataStore, bytes: ByteStore, disk: DiskBudget): Promise<Readiness> {
  // A write lock (BEGIN IMMEDIATE) and an empty file prove nothing on a full disk: both need no new blocks.
  const [db, dir, full] = await Promise.allSettled([meta.ping(), bytes.ping(), disk.full()]);
  const checks = {
    database: db.status === 'fulfilled' ? 'ok' : 'failing',
    [bytes.kind === 'fs' ? 'data_dir' : 'store']: dir.status === 'fulfilled' ? 'ok' : 'failing',
    disk: full.status === 'fulfilled' && !full.value ? 'ok' : 'failing',
  } as Readiness['checks'];
  return { ready: Object.values(checks).every((c) => c === 'ok'), checks };
}
