// npm run bench (third part): the lifecycle on a store of BENCH_BLOBS (default 5,000) small blobs, through
// the real daemon and CLI — a GC pass that finds nothing, fsck re-hashing everything, an online backup, and
// a GC pass that removes every blob (pins dropped). The blobs are uploaded through the API (4 at a time).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { envCount } from './bench-env.ts';
import { BLOBD, makeTempDir, removeDir, startDaemon } from '../helpers/daemon.ts';

const N = envCount('BENCH_BLOBS', 5_000);
const SIZE = 4096;

const scratch = await makeTempDir('blobd-bench-life-');
try {
  const d = await startDaemon({ dataDir: path.join(scratch, 'data'), args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
  const digests: string[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < N) {
        next++;
        const res = await d.api('/api/blobs', { method: 'POST', body: randomBytes(SIZE) });
        digests.push(((await res.json()) as { digest: string }).digest);
      }
    }),
  );
  console.log(`uploaded ${N} blobs of ${SIZE} bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const timed = async (name: string, fn: () => Promise<string>) => {
    const s = performance.now();
    const detail = await fn();
    console.log(`${name.padEnd(40)} ${(performance.now() - s).toFixed(0).padStart(7)} ms   ${detail}`);
  };
  const post = async (p: string) => (await d.api(p, { method: 'POST' })).json() as Promise<Record<string, unknown>>;

  await timed('GC pass, nothing to remove', async () => `removed ${(await post('/api/admin/gc')).blobs_removed}`);
  await timed('fsck (re-hash every blob)', async () => `checked ${(await post('/api/admin/fsck')).checked}`);
  await timed('blobd backup (online, hard links)', async () =>
    execFileSync(process.execPath, [BLOBD, 'backup', path.join(scratch, 'copy'), '--data', d.dataDir], { encoding: 'utf8' }).trim(),
  );
  for (const digest of digests) await d.api(`/api/blobs/${digest}`, { method: 'DELETE' });
  await timed(`GC pass removing ${N} blobs`, async () => `removed ${(await post('/api/admin/gc')).blobs_removed}`);
  await d.stop();
} finally {
  await removeDir(scratch);
}
