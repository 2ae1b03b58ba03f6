// The admin token file: read it, or create it once (0600) with a fresh random token. The caller decides
// whether an environment-provided token overrides it; this module never logs the value.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { syncDir } from './durable-dirs.ts';
import type { DataLayout } from './layout.ts';

export async function loadOrCreateAdminToken(layout: DataLayout): Promise<{ token: string; created: boolean }> {
  try {
    const token = (await readFile(layout.adminTokenFile, 'utf8')).trim();
    if (token) return { token, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = `blobd_${randomBytes(32).toString('base64url')}`;
  await writeFile(layout.adminTokenFile, `${token}\n`, { mode: 0o600, flag: 'w', flush: true });
  await syncDir(layout.root);
  return { token, created: true };
}
