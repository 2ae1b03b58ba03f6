// Random test content and independent digests (node:crypto and the sha256sum binary).
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** What coreutils' sha256sum says of a file, prefixed like blobd's digests. */
export function sha256sum(file: string): string {
  return `sha256:${execFileSync('sha256sum', ['--binary', file], { encoding: 'utf8' }).split(' ')[0]}`;
}

/** Typed with an ArrayBuffer (not shared) so that fetch accepts it as a body. */
export function randomData(size: number): Buffer<ArrayBuffer> {
  return randomBytes(size) as Buffer<ArrayBuffer>;
}

/** Writes `size` random bytes to `file` in 1 MiB pieces and returns their digest. */
export async function writeRandomFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  for (let left = size; left > 0; ) {
    const piece = randomBytes(Math.min(left, 1 << 20));
    hash.update(piece);
    left -= piece.length;
    if (!out.write(piece)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return `sha256:${hash.digest('hex')}`;
}
