// Reading a secret file blobd keeps (the admin token, keys under keys/): owner-only (0600) before its
// contents are read, as blobd.db is on open — a file an older blobd, a restore or an operator left
// readable to others is tightened, never refused. Only the database files (ensurePrivateFile) are
// created here, empty, for SQLite to fill.
import { closeSync, constants, fchmodSync, fstatSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { FILE_MODE } from './layout.ts';

/** The mode with group and other bits off (the owner's stay: a 0400 file is not made writable), or null when it has none. */
function withoutOthers(mode: number): number | null {
  return (mode & 0o077) !== 0 ? mode & 0o700 : null;
}

/**
 * Makes `file` exist and readable by its owner only (0600), before SQLite opens it: SQLite creates a
 * database 0644 less the umask, and its -wal, -shm and -journal files take the database file's mode. An
 * empty file is a valid empty database. A file an older blobd left readable to others is tightened too.
 */
export function ensurePrivateFile(file: string): void {
  const fd = openSync(file, constants.O_RDONLY | constants.O_CREAT, FILE_MODE);
  try {
    const mode = withoutOthers(fstatSync(fd).mode & 0o777);
    if (mode !== null) fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** The file's text after making it private; ENOENT and other errors are the caller's. */
export async function readPrivateFile(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    await tighten(fh);
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/** The same without reading it: for a secret file blobd does not need this time (its token came from the environment). */
export async function makePrivate(file: string): Promise<void> {
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!fh) return;
  try {
    await tighten(fh);
  } finally {
    await fh.close();
  }
}

async function tighten(fh: Awaited<ReturnType<typeof open>>): Promise<void> {
  const mode = withoutOthers((await fh.stat()).mode & 0o777);
  if (mode !== null) await fh.chmod(mode);
}
