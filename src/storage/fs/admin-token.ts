// The admin token file: read it, or create it once (0600) with a fresh random token; a file others could
// read is made 0600 first. The caller decides whether an environment-provided token overrides it; this
// module never logs the value.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { syncDir } from './durable-dirs.ts';
import { FILE_MODE, type DataLayout } from './layout.ts';
import { makePrivate, readPrivateFile } from './private-file.ts';

export async function loadOrCreateAdminToken(layout: DataLayout): Promise<{ token: string; created: boolean }> {
  try {
    const token = (await readPrivateFile(layout.adminTokenFile)).trim();
    if (token) return { token, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = `blobd_${randomBytes(32).toString('base64url')}`;
  await saveAdminToken(layout, token);
  return { token, created: true };
}

/** Write the admin token file (0600), replacing what it held: a node's copy of the token all nodes share. */
export async function saveAdminToken(layout: DataLayout, token: string): Promise<void> {
  const fh = await open(layout.adminTokenFile, 'w', FILE_MODE);
  try {
    // An empty file that was there keeps its mode through open: made 0600 before the token goes in.
    await fh.chmod(FILE_MODE);
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await syncDir(layout.root);
}

/** With the token from the environment the file is not read, but a leftover one is made private all the same. */
export function secureAdminTokenFile(layout: DataLayout): Promise<void> {
  return makePrivate(layout.adminTokenFile);
}
