// The data directory's own permissions, settled once at start before anything is written into it: created
// 0700, an empty one adopted (made 0700), one that other users can enter refused as PostgreSQL refuses —
// or, when the operator insists (--insecure-data-dir), only reported. It never changes a directory holding data.
import { chmod, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncChain } from './durable-dirs.ts';
import { DIR_MODE } from './layout.ts';

export class DataDirAccessError extends Error {
  override name = 'DataDirAccessError';
}

export interface DataDirState {
  /** This start created the data directory. */
  readonly created: boolean;
  /** The mode of an empty directory blobd took over and made 0700. */
  readonly adoptedFrom?: number;
  /** Set when other users can reach the directory and the operator allowed it: its mode. */
  readonly insecureMode?: number;
}

/** Entries that do not make a directory anyone's data: git's placeholder in the repository's data/. */
const PLACEHOLDERS = new Set(['.gitkeep']);

/**
 * Makes sure `root` exists and only its owner can enter it. A missing directory is created 0700 (its
 * missing parents as the umask says, like `mkdir -p -m 700`). An existing one that others may enter is
 * made 0700 when it is empty, for it is ours from now on (as initdb does); otherwise it is left alone and
 * refused with the command that fixes it, unless `allowInsecure`.
 */
export async function securePrivateDataDir(root: string, allowInsecure: boolean): Promise<DataDirState> {
  const found = await stat(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (found === null) {
    const first = await mkdir(path.dirname(root), { recursive: true });
    await mkdir(root, { mode: DIR_MODE });
    // Durable in its parent, and each parent made here in its own.
    await syncChain(path.dirname(root), path.dirname(first ?? root));
    return { created: true };
  }
  if (!found.isDirectory()) throw new DataDirAccessError(`data directory ${root} is not a directory`);
  const mode = found.mode & 0o777;
  if ((mode & 0o077) === 0) return { created: false };
  const entries = await readdir(root);
  if (entries.every((e) => PLACEHOLDERS.has(e))) {
    // Only its owner (or root) may chmod it; anyone else falls through to the refusal below.
    const adopted = await chmod(root, DIR_MODE).then(() => true, () => false);
    if (adopted) return { created: false, adoptedFrom: mode };
  }
  if (allowInsecure) return { created: false, insecureMode: mode };
  throw new DataDirAccessError(
    `data directory ${root} is accessible by other users (mode ${octal(mode)}); run chmod 700 ${root}, or pass --insecure-data-dir to start anyway`,
  );
}

export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
