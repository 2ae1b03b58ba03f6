// Readiness: can this process take writes right now? Asks each store to prove it, never guesses.
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';

export interface Readiness {
  readonly ready: boolean;
  readonly checks: { readonly database: 'ok' | 'failing'; readonly data_dir: 'ok' | 'failing' };
}

export async function checkReadiness(meta: MetadataStore, bytes: ByteStore): Promise<Readiness> {
  const [db, dir] = await Promise.allSettled([meta.ping(), bytes.ping()]);
  const checks = {
    database: db.status === 'fulfilled' ? 'ok' : 'failing',
    data_dir: dir.status === 'fulfilled' ? 'ok' : 'failing',
  } as const;
  return { ready: checks.database === 'ok' && checks.data_dir === 'ok', checks };
}
