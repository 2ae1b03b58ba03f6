// Reading a secret file blobd keeps (the admin token, keys under keys/): owner-only (0600) before its
// contents are read, as blobd.db is on open — a file an older blobd, a restore or an operator left
// readable to others is tightened, never refused. It never creates a file.
import { open } from 'node:fs/promises';

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
  const mode = (await fh.stat()).mode & 0o777;
  // Group and other bits off; the owner's stay (a 0400 file is not made writable).
  if ((mode & 0o077) !== 0) await fh.chmod(mode & 0o700);
}
