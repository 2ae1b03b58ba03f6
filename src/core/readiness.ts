// Readiness: can this process take writes right now? Asks each store to prove it, never guesses, and the
// disk budget whether the disk has room beyond the reserve (SQLite may refuse any write below it).
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { DiskBudget } from './disk-budget.ts';

type Check = 'ok' | 'failing';

export interface Readiness {
  readonly ready: boolean;
  readonly checks: { readonly database: Check; readonly data_dir: Check; readonly disk: Check };
}

export async function checkReadiness(meta: MetadataStore, bytes: ByteStore, disk: DiskBudget): Promise<Readiness> {
  // A write lock (BEGIN IMMEDIATE) and an empty file prove nothing on a full disk: both need no new blocks.
  const [db, dir, full] = await Promise.allSettled([meta.ping(), bytes.ping(), disk.full()]);
  const checks = {
    database: db.status === 'fulfilled' ? 'ok' : 'failing',
    data_dir: dir.status === 'fulfilled' ? 'ok' : 'failing',
    disk: full.status === 'fulfilled' && !full.value ? 'ok' : 'failing',
  } as const;
  return { ready: Object.values(checks).every((c) => c === 'ok'), checks };
}
