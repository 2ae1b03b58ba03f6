// npm run bench (last part): blobd on Ceph RGW (--store s3) raced against the same RGW used directly through
// the AWS SDK (the limit), one real single-node RGW (test/helpers/rgw.ts; RGW's default 5 MiB minimum part,
// blobd's default 8 MiB parts), each contender on its own bucket, rounds interleaved with the order rotated,
// medians. Also: blobd's peak RSS through one 4 GiB session, and what resuming a session after a SIGKILL costs
// (the in-memory hash is lost: blobd seals the upload and reads it back once). Prints a table, where the CPU
// went, the targets (value, target, met) and one JSON object. Measures; never fails on a ratio.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeTempDir, removeDir, type Daemon } from '../helpers/daemon.ts';
import { rgwUnavailable, startRgw } from '../helpers/rgw.ts';
import { envCount, envSize } from './bench-env.ts';
import { payload } from './generated-payload.ts';
import { cephDaemons, cpuMeter } from './proc-cpu.ts';
import * as c from './s3-contenders.ts';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const SIZE = envSize('BENCH_S3_SIZE', GiB);
const ROUNDS = envCount('BENCH_S3_ROUNDS', 3);
const DOWNLOAD_ROUNDS = envCount('BENCH_S3_DOWNLOAD_ROUNDS', Math.max(ROUNDS, 5));
const SMALL = 4096;
const SMALL_COUNT = envCount('BENCH_S3_SMALL_COUNT', 1000);
const SMALL_CONCURRENCY = 16;
/** A realistic session client's append size (8-64 MiB); a multiple of the part size leaves no tail per append. */
const APPEND = envSize('BENCH_S3_APPEND', 32 * MiB);
/** The one big session whose peak RSS is taken (the issue's 4 GiB); 0 skips it. */
const RSS_SIZE = envSize('BENCH_S3_RSS_SIZE', 4 * GiB);
/** The session prefix uploaded before the daemon is SIGKILLed and restarted; 0 skips the resume row. */
const RESUME_PREFIX = envSize('BENCH_S3_RESUME_PREFIX', 256 * MiB);
const RESUME_ROUNDS = envCount('BENCH_S3_RESUME_ROUNDS', 3);
/** lib-storage's Upload as the limit: 8 MiB parts (blobd's default), 4 in flight (lib-storage's default). */
const PART = 8 * MiB;
const QUEUE = 4;
/** The OSD keeps every byte in RAM: room for the big session twice (parts, then the blob's copy) and a few payloads. */
const MEMSTORE = envSize('BENCH_S3_MEMSTORE', Math.max(8 * GiB, 2 * RSS_SIZE + 4 * SIZE + 2 * GiB));

const fmtSize = (n: number) => (n % GiB === 0 ? `${n / GiB} GiB` : n % MiB === 0 ? `${n / MiB} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const seconds = (t0: number) => (performance.now() - t0) / 1000;
const uptime = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
async function vmHWM(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return (Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024) / 1e6;
}
/** Resets the peak RSS to the current RSS (Linux ≥ 4.0), so that each row reports its own peak. */
const resetHWM = (pid: number) => writeFile(`/proc/${pid}/clear_refs`, '5');

/** Runs `fn` for 0..n-1 with at most `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** node:crypto SHA-256 here and now, GB per CPU-second, 8 MiB updates (what re-reading a session costs). */
function sha256Rate(): number {
  const buf = randomBytes(8 * MiB);
  const h = createHash('sha256');
  const t0 = process.cpuUsage();
  for (let i = 0; i < 64; i++) h.update(buf);
  h.digest();
  const used = process.cpuUsage(t0);
  return (64 * buf.length) / 1e9 / ((used.user + used.system) / 1e6);
}

type Cpu = Record<string, number>;
type Row = { title: string; unit: string; better: 'lower' | 'higher'; rounds: Record<string, number[]>; cpu: Record<string, Cpu[]>; blobdRssMB: number };

const why = rgwUnavailable();
if (why) {
  console.log(`blobd on S3: skipped (${why})`);
  process.exit(0);
}

const wall0 = performance.now();
const load0 = await uptime();
const scratch = await makeTempDir('blobd-bench-s3-');
const rgw = await startRgw({ memstoreBytes: MEMSTORE });
const s3 = rgw.client();
const daemons = new Set<Daemon>();
const ceph = cephDaemons(path.join(rgw.dir, 'ceph.conf'));
let blobd: Daemon; // the one whose CPU and RSS the meter reads
const meter = cpuMeter(() => ({ blobd: blobd.proc.pid!, radosgw: ceph.radosgw ?? 0, 'ceph-osd': ceph['ceph-osd'] ?? 0 }));
const start = async (bucket: string, dir: string) => {
  const d = await c.startS3Daemon(rgw, bucket, path.join(scratch, dir));
  daemons.add(d);
  return d;
};
const errors: Record<string, string> = {};
/** A row that fails is reported as failed; the other rows still run. */
async function attempt<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    errors[what] = (err as Error).stack ?? String(err);
    console.error(`  ${what}: FAILED ${(err as Error).message}`);
    return undefined;
  }
}

try {
  const hashRate = sha256Rate();
  const directBucket = await rgw.newBucket();
  const main = await start(await rgw.newBucket(), 'main');
  blobd = main;

  /** Each round runs every contender once, the order rotated per round; `after` (untimed) cleans up. */
  async function race(title: string, unit: string, better: Row['better'], steps: Record<string, (r: number) => Promise<number>>, rounds: number, after?: (name: string, r: number) => Promise<void>): Promise<Row> {
    const names = Object.keys(steps);
    const row: Row = { title, unit, better, rounds: {}, cpu: {}, blobdRssMB: 0 };
    for (const n of names) [row.rounds[n], row.cpu[n]] = [[], []];
    await resetHWM(main.proc.pid!);
    for (let r = 0; r < rounds; r++) {
      for (const name of [...names.slice(r % names.length), ...names.slice(0, r % names.length)]) {
        const stop = meter();
        row.rounds[name]!.push(await steps[name]!(r));
        row.cpu[name]!.push(stop());
        await after?.(name, r);
      }
    }
    row.blobdRssMB = await vmHWM(main.proc.pid!);
    console.error(`  ${title}: ${names.map((n) => `${n} ${median(row.rounds[n]!).toFixed(2)}`).join(', ')}`);
    return row;
  }

  // 1. SIZE upload: a blobd session in APPEND appends (digest known, as rivals.ts's client) vs lib-storage's Upload.
  // Round r uploads payload `<contender>-r`; round 0's objects stay for the download row, later ones are deleted.
  const ours = Array.from({ length: ROUNDS }, (_, r) => payload(`blobd-${r}`, SIZE));
  const theirs = Array.from({ length: ROUNDS }, (_, r) => payload(`direct-${r}`, SIZE));
  for (const p of ours) await p.digest(); // untimed: the client knows its digest
  const upload = await attempt('upload', () =>
    race(`${fmtSize(SIZE)} upload`, 's', 'lower', {
      blobd: async (r) => {
        const t0 = performance.now();
        await c.sessionUpload(main, ours[r]!, APPEND, await ours[r]!.digest());
        return seconds(t0);
      },
      direct: async (r) => {
        const t0 = performance.now();
        await c.directUpload(s3, directBucket, `up-${r}`, theirs[r]!, PART, QUEUE);
        return seconds(t0);
      },
    }, ROUNDS, async (name, r) => {
      if (r === 0) return;
      if (name === 'blobd') await c.forget(main, await ours[r]!.digest());
      else await c.directDelete(s3, directBucket, `up-${r}`);
    }),
  );

  // 2. SIZE download of round 0's object, counted (hashing in the client would take a core from the servers on
  // this 2-core machine, alike for both); each side's bytes are hashed once after the row, untimed.
  const download = upload && await attempt('download', async () => {
    const digest0 = await ours[0]!.digest();
    const row = await race(`${fmtSize(SIZE)} download`, 's', 'lower', {
      blobd: async () => {
        const t0 = performance.now();
        await c.download(main, digest0, SIZE);
        return seconds(t0);
      },
      direct: async () => {
        const t0 = performance.now();
        await c.directGet(s3, directBucket, 'up-0', SIZE);
        return seconds(t0);
      },
    }, DOWNLOAD_ROUNDS);
    const got = { blobd: await c.download(main, digest0, SIZE, true), direct: await c.directGet(s3, directBucket, 'up-0', SIZE, true) };
    if (got.blobd !== digest0) throw new Error(`blobd served ${got.blobd}, want ${digest0}`);
    if (got.direct !== (await theirs[0]!.digest())) throw new Error(`GetObject gave ${got.direct}, want ${await theirs[0]!.digest()}`);
    return row;
  });
  if (upload) {
    await attempt('cleanup', async () => {
      await c.forget(main, await ours[0]!.digest());
      await c.directDelete(s3, directBucket, 'up-0');
    });
  }

  // 3. SMALL one-shot uploads, SMALL_CONCURRENCY at a time, random bytes each (nothing dedups).
  const smallRun = (put: (body: Buffer, i: number, r: number) => Promise<void>) => async (r: number) => {
    const bodies = Array.from({ length: SMALL_COUNT }, () => randomBytes(SMALL));
    const t0 = performance.now();
    await pool(SMALL_COUNT, SMALL_CONCURRENCY, (i) => put(bodies[i]!, i, r));
    return SMALL_COUNT / seconds(t0);
  };
  const small = await attempt('small', () =>
    race(`${fmtSize(SMALL)} uploads/s, concurrency ${SMALL_CONCURRENCY}`, 'ops/s', 'higher', {
      blobd: smallRun((body) => c.postSmall(main, body)),
      direct: smallRun((body, i, r) => c.directPut(s3, directBucket, `small-${r}-${i}`, body)),
    }, ROUNDS),
  );

  // 4. Resuming after a crash, on a daemon of its own: a session gets RESUME_PREFIX bytes; then either the next
  // APPEND and the complete are timed at once (control), or after SIGKILL and a restart (the hash is lost).
  type Resume = { append: number[]; complete: number[]; restart: number[]; cpu: Cpu[] };
  const resume = RESUME_PREFIX > 0 ? await attempt('resume', async () => {
    const bucket = await rgw.newBucket();
    let d = await start(bucket, 'resume');
    const out: Record<'control' | 'restarted', Resume> = {
      control: { append: [], complete: [], restart: [], cpu: [] },
      restarted: { append: [], complete: [], restart: [], cpu: [] },
    };
    for (let r = 0; r < RESUME_ROUNDS; r++) {
      const kinds = r % 2 ? (['restarted', 'control'] as const) : (['control', 'restarted'] as const);
      for (const kind of kinds) {
        const p = payload(`resume-${kind}-${r}`, RESUME_PREFIX + APPEND);
        const digest = await p.digest();
        const s = await c.initiate(d, p.size);
        await c.appendRange(d, s, p, 0, RESUME_PREFIX, APPEND);
        if (kind === 'restarted') {
          await d.kill9();
          daemons.delete(d);
          const t0 = performance.now();
          d = await start(bucket, 'resume');
          out[kind].restart.push(seconds(t0));
        }
        blobd = d;
        const stop = meter();
        let t0 = performance.now();
        await c.appendRange(d, s, p, RESUME_PREFIX, p.size, APPEND);
        out[kind].append.push(seconds(t0));
        t0 = performance.now();
        await c.complete(d, s, digest);
        out[kind].complete.push(seconds(t0));
        out[kind].cpu.push(stop());
        await c.forget(d, digest);
      }
    }
    await d.stop();
    daemons.delete(d);
    return out;
  }) : undefined;

  // 5. blobd's peak RSS through one RSS_SIZE session on a fresh daemon (last: the OSD holds it in RAM twice).
  const big = RSS_SIZE > 0 ? await attempt('rss', async () => {
    await main.stop();
    daemons.delete(main);
    const d = await start(await rgw.newBucket(), 'rss');
    blobd = d;
    await resetHWM(d.proc.pid!);
    const idleMB = await vmHWM(d.proc.pid!);
    const stop = meter();
    const t0 = performance.now();
    const digest = await c.sessionUpload(d, payload('rss', RSS_SIZE), APPEND);
    const s = seconds(t0);
    const cpu = stop();
    const peakMB = await vmHWM(d.proc.pid!);
    await c.forget(d, digest);
    console.error(`  ${fmtSize(RSS_SIZE)} session: ${s.toFixed(1)} s, blobd peak RSS ${peakMB.toFixed(0)} MB`);
    return { seconds: s, idleMB, peakMB, cpu };
  }) : undefined;

  // The report.
  const rows = [upload, download, small].filter((r): r is Row => r !== undefined);
  const f = (v: number | undefined, digits = 2) => (v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(digits));
  const digitsOf = (row: Row) => (row.unit === 's' ? 2 : 0);
  const m = (row: Row | undefined, n: string) => (row ? median(row.rounds[n]!) : undefined);
  const how: Record<string, string> = {
    [upload?.title ?? '']: `s (blobd: session in ${fmtSize(APPEND)} appends; direct: lib-storage Upload, ${fmtSize(PART)} parts × ${QUEUE})`,
    [download?.title ?? '']: 's (blobd: GET /api/blobs/<digest>; direct: GetObject; both read to the end)',
    [small?.title ?? '']: 'ops/s (blobd: POST /api/blobs; direct: PutObject)',
  };
  const lines = ['| row | blobd on RGW | RGW direct (SDK) | blobd ÷ direct | blobd peak RSS, MB |', '|---|---:|---:|---:|---:|'];
  for (const row of rows) {
    const [a, b] = [m(row, 'blobd')!, m(row, 'direct')!];
    lines.push(`| ${row.title}, ${how[row.title]} | ${f(a, digitsOf(row))} | ${f(b, digitsOf(row))} | ${f(a / b)} | ${f(row.blobdRssMB, 0)} |`);
  }
  if (big) lines.push(`| one ${fmtSize(RSS_SIZE)} session (fresh daemon), s | ${f(big.seconds, 1)} (${f(RSS_SIZE / 1e6 / big.seconds, 0)} MB/s) | | | ${f(big.peakMB, 0)} (idle ${f(big.idleMB, 0)}) |`);

  const cpuCols = ['client', 'blobd', 'radosgw', 'ceph-osd'];
  const medCpu = (cpus: Cpu[]) => Object.fromEntries(cpuCols.map((k) => [k, median(cpus.map((x) => x[k] ?? 0))]));
  lines.push('', '| CPU seconds per step (medians) | wall | client (bench + SDK) | blobd | radosgw | ceph-osd |', '|---|---:|---:|---:|---:|---:|');
  for (const row of rows) {
    for (const n of ['blobd', 'direct']) {
      const cpu = medCpu(row.cpu[n]!);
      const wall = row.unit === 's' ? f(m(row, n)) : f(SMALL_COUNT / m(row, n)!);
      lines.push(`| ${row.title}: ${n} | ${wall} | ${cpuCols.map((k) => f(n === 'direct' && k === 'blobd' ? undefined : cpu[k])).join(' | ')} |`);
    }
  }
  if (big) lines.push(`| ${fmtSize(RSS_SIZE)} session | ${f(big.seconds)} | ${cpuCols.map((k) => f(big.cpu[k])).join(' | ')} |`);
  if (resume) {
    for (const k of ['control', 'restarted'] as const) {
      const cpu = medCpu(resume[k].cpu);
      lines.push(`| resume: next ${fmtSize(APPEND)} append + complete, ${k} | ${f(median(resume[k].append) + median(resume[k].complete))} | ${cpuCols.map((x) => f(cpu[x])).join(' | ')} |`);
    }
    lines.push('', `| session of ${fmtSize(RESUME_PREFIX)} + ${fmtSize(APPEND)} | next ${fmtSize(APPEND)} append, s | complete, s | restart to listening, s |`, '|---|---:|---:|---:|');
    lines.push(`| control (same daemon) | ${f(median(resume.control.append))} | ${f(median(resume.control.complete))} | |`);
    lines.push(`| after SIGKILL + restart (hash lost) | ${f(median(resume.restarted.append))} | ${f(median(resume.restarted.complete))} | ${f(median(resume.restarted.restart))} |`);
  }

  type Target = { target: string; value: number | undefined; limit: number; op: '≤' | '≥'; perRound?: number[] };
  const ratio = (row: Row | undefined) =>
    row ? { value: median(row.rounds.blobd!) / median(row.rounds.direct!), perRound: row.rounds.blobd!.map((x, i) => x / row.rounds.direct![i]!) } : { value: undefined };
  const targets: Target[] = [
    { target: `${fmtSize(SIZE)} session upload time, blobd ÷ lib-storage Upload`, limit: 1.25, op: '≤', ...ratio(upload) },
    { target: `${fmtSize(SIZE)} download time, blobd ÷ GetObject`, limit: 1.25, op: '≤', ...ratio(download) },
    { target: `${fmtSize(SMALL)} uploads/s at concurrency ${SMALL_CONCURRENCY}, blobd ÷ PutObject`, limit: 0.8, op: '≥', ...ratio(small) },
    { target: `blobd peak RSS through one ${fmtSize(RSS_SIZE)} session, MB`, value: big?.peakMB, limit: 200, op: '≤' },
  ];
  const met = (t: Target) => (t.value === undefined ? undefined : t.op === '≤' ? t.value <= t.limit : t.value >= t.limit);
  lines.push('', '| target | value | target | met |', '|---|---:|---:|---|');
  for (const t of targets) {
    const rounds = t.perRound ? ` (rounds: ${t.perRound.map((x) => x.toFixed(2)).join(', ')})` : '';
    lines.push(`| ${t.target} | ${f(t.value, t.limit >= 100 ? 0 : 2)}${rounds} | ${t.op} ${t.limit} | ${met(t) === undefined ? 'not measured' : met(t) ? 'yes' : 'no'} |`);
  }

  const load1 = await uptime();
  const wall = seconds(wall0);
  console.log(
    `blobd on Ceph RGW vs RGW direct: ${fmtSize(SIZE)} payload, ${ROUNDS} interleaved rounds (${DOWNLOAD_ROUNDS} for downloads; order rotated), medians; ` +
      `${SMALL_COUNT} uploads per 4 KiB run; ${os.cpus().length} cores; load average ${load0} at start, ${load1} at end; RGW up in ${rgw.startupMs} ms; ` +
      `node:crypto SHA-256 ${hashRate.toFixed(2)} GB per CPU-second; ${wall.toFixed(0)} s`,
  );
  console.log(lines.join('\n'));
  for (const [what, err] of Object.entries(errors)) console.log(`\n${what} FAILED: ${err.split('\n').slice(0, 3).join(' / ')}`);
  console.log(
    JSON.stringify({
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: { start: load0, end: load1 } },
      config: { size: SIZE, rounds: ROUNDS, downloadRounds: DOWNLOAD_ROUNDS, append: APPEND, partSize: PART, queueSize: QUEUE, small: SMALL, smallCount: SMALL_COUNT, smallConcurrency: SMALL_CONCURRENCY, rssSize: RSS_SIZE, resumePrefix: RESUME_PREFIX, resumeRounds: RESUME_ROUNDS, memstoreBytes: MEMSTORE, rgwMinPartSize: 'default (5 MiB)' },
      rows: Object.fromEntries(rows.map((row) => [row.title, {
        unit: row.unit, better: row.better, blobdPeakRssMB: row.blobdRssMB,
        median: Object.fromEntries(Object.entries(row.rounds).map(([n, xs]) => [n, median(xs)])), rounds: row.rounds,
        cpuSecondsMedian: Object.fromEntries(Object.entries(row.cpu).map(([n, xs]) => [n, medCpu(xs)])),
      }])),
      bigSession: big ?? null,
      resume: resume ? { prefix: RESUME_PREFIX, append: APPEND, ...resume } : null,
      sha256NodeCryptoGBPerCpuSecond: hashRate,
      targets: targets.map((t) => ({ target: t.target, value: t.value ?? null, op: t.op, limit: t.limit, met: met(t) ?? null, perRound: t.perRound })),
      errors,
      seconds: wall,
    }),
  );
} finally {
  for (const d of daemons) await d.stop().catch(() => undefined);
  s3.destroy();
  await rgw.stop();
  await removeDir(scratch);
}
if (Object.keys(errors).length) process.exitCode = 1;
