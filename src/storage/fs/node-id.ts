// This node's id: a UUIDv7 made at its first start and kept in data/node-id (0600). Stable across restarts,
// so leases and idempotency claims its previous run left in a shared metadata store are recognised as its
// own (a restarted node resumes its sessions at once instead of waiting for their leases to run out).
import { open } from 'node:fs/promises';
import { v7 as uuidv7 } from 'uuid';
import { syncDir } from './durable-dirs.ts';
import { FILE_MODE, type DataLayout } from './layout.ts';
import { readPrivateFile } from './private-file.ts';

/** A UUID as uuid writes it; anything else in the file (a hand edit, a torn write) is replaced by a new id. */
const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export async function loadOrCreateNodeId(layout: DataLayout): Promise<string> {
  try {
    const id = (await readPrivateFile(layout.nodeIdFile)).trim();
    if (ID_RE.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const id = uuidv7();
  const fh = await open(layout.nodeIdFile, 'w', FILE_MODE);
  try {
    await fh.writeFile(`${id}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await syncDir(layout.root);
  return id;
}
