// The 4 KiB row of npm run bench on its own, for profiling: N one-shot uploads at concurrency CONC (16)
// against blobd, the bare node:http baseline and the G1 floor (floor-server.ts), ROUNDS rounds, each after
// a warm-up of WARMUP uploads. Prints uploads/s and each server's CPU per upload (main thread and all other
// threads, from /proc). BLOBD_URL=… with BLOBD_PID=… races a daemon started by hand (e.g. under
// node --cpu-prof, token test-admin-token-0123456789); NOBASE=1 / NOFLOOR=1 leave a rival out;
// ARGS='…' passes flags to the daemon it starts; SAME=1 sends one body again and again (every upload of
// a round the same digest). Bench-only; never part of npm test.
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, removeDir, startDaemon, TEST_TOKEN } from '../helpers/daemon.ts';
import { expect } from './bench-http.ts';
import { startNodeRival } from './rival-servers.ts';

const N = Number(process.env.N ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CONC = Number(process.env.CONC ?? 16);
const WARMUP = Number(process.env.WARMUP ?? 500);
const scratch = await makeTempDir('blobd-small-');
const blobd = process.env.BLOBD_URL
  ? { url: process.env.BLOBD_URL, pid: Number(process.env.BLOBD_PID), stop: async () => 0 }
  : await (async () => {
      const d = await startDaemon({ dataDir: path.join(scratch, 'blobd'), args: (process.env.ARGS ?? '').split(' ').filter(Boolean) });
      return { url: d.url, pid: d.proc.pid!, stop: () => d.stop() };
    })();
const base = process.env.NOBASE ? null : await startNodeRival('baseline-server.ts', path.join(scratch, 'base'));
const floor = process.env.NOFLOOR ? null : await startNodeRival('floor-server.ts', path.join(scratch, 'floor'));

/** CPU ticks (user + system) of a process's main thread and of all its other threads. */
async function cpuTicks(pid: number): Promise<{ main: number; other: number }> {
  const t = { main: 0, other: 0 };
  if (!pid) return t;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const fields = (await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    t[tid === String(pid) ? 'main' : 'other'] += Number(fields[11]) + Number(fields[12]);
  }
  return t;
}
async function pool(n: number, width: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}
const post = async (n: number, send: (b: Buffer) => Promise<unknown>) => {
  const one = process.env.SAME ? randomBytes(4096) : null;
  const bodies = Array.from({ length: n }, () => one ?? randomBytes(4096));
  await pool(n, CONC, async (i) => void (await send(bodies[i]!)));
};
/** uploads/s, and CPU milliseconds per upload (main thread + other threads) of the server. */
const run = async (pid: number, send: (b: Buffer) => Promise<unknown>) => {
  await post(WARMUP, send);
  const c0 = await cpuTicks(pid);
  const t0 = performance.now();
  await post(N, send);
  const rate = Math.round(N / ((performance.now() - t0) / 1000));
  const c1 = await cpuTicks(pid);
  const ms = (ticks: number) => ((ticks * 10) / N).toFixed(2); // 100 ticks a second
  return { rate, text: `${rate}/s (CPU ms/upload: main ${ms(c1.main - c0.main)} + other ${ms(c1.other - c0.other)})` };
};
for (let r = 0; r < ROUNDS; r++) {
  const b = await run(blobd.pid, (body) => expect(201, `${blobd.url}/api/blobs`, { headers: { authorization: `Bearer ${TEST_TOKEN}` }, body }));
  const s = base ? await run(base.proc.pid!, (body) => expect(201, base.url, { body })) : null;
  const f = floor ? await run(floor.proc.pid!, (body) => expect(201, floor.url, { body })) : null;
  console.log(`round ${r}:\n  blobd    ${b.text}`);
  if (s) console.log(`  baseline ${s.text}; blobd ÷ baseline ${(b.rate / s.rate).toFixed(2)}`);
  if (f) console.log(`  floor    ${f.text}; blobd ÷ floor ${(b.rate / f.rate).toFixed(2)}` + (s ? `, floor ÷ baseline ${(f.rate / s.rate).toFixed(2)}` : ''));
}
await blobd.stop();
await base?.stop();
await floor?.stop();
await removeDir(scratch);
