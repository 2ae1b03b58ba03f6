// The 4 KiB row of npm run bench on its own, for profiling: N one-shot uploads at concurrency 16 against
// blobd and the bare node:http baseline, ROUNDS rounds. BLOBD_URL=… races a daemon started by hand (e.g.
// under node --cpu-prof, token test-admin-token-0123456789); NOBASE=1 leaves the baseline out;
// ARGS='…' passes flags to the daemon it starts. Bench-only; never part of npm test.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { makeTempDir, removeDir, startDaemon, TEST_TOKEN } from '../helpers/daemon.ts';
import { expect } from './bench-http.ts';
import { startNodeRival } from './rival-servers.ts';

const N = Number(process.env.N ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const scratch = await makeTempDir('blobd-small-');
const blobd = process.env.BLOBD_URL ? { url: process.env.BLOBD_URL, stop: async () => 0 } : await startDaemon({ dataDir: path.join(scratch, 'blobd'), args: (process.env.ARGS ?? '').split(' ').filter(Boolean) });
const base = process.env.NOBASE ? null : await startNodeRival('baseline-server.ts', path.join(scratch, 'base'));
async function pool(n: number, width: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}
const run = async (post: (b: Buffer) => Promise<unknown>) => {
  const bodies = Array.from({ length: N }, () => randomBytes(4096));
  const t0 = performance.now();
  await pool(N, 16, async (i) => void (await post(bodies[i]!)));
  return Math.round(N / ((performance.now() - t0) / 1000));
};
for (let r = 0; r < ROUNDS; r++) {
  const b = await run((body) => expect(201, `${blobd.url}/api/blobs`, { headers: { authorization: `Bearer ${TEST_TOKEN}` }, body }));
  const s = base ? await run((body) => expect(201, base.url, { body })) : 0;
  console.log(`round ${r}: blobd ${b}/s` + (base ? `, baseline ${s}/s, ratio ${(b / s).toFixed(2)}` : ''));
}
await blobd.stop();
await base?.stop();
await removeDir(scratch);
