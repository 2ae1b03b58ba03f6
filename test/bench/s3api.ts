// npm run bench (last part): blobd's S3-compatible front raced against Ceph RGW (the S3 server users would run
// instead; test/helpers/rgw.ts, one memstore OSD) with the same AWS SDK v3 client configuration, and against
// blobd's own native routes for the same work (s3api-sides.ts). One blobd (SQLite + its data directory) serves
// both blobd sides, each on a bucket of its own. Rows: a multipart upload of SIZE (lib-storage Upload, PART
// parts, QUEUE in flight), a GetObject of SIZE read to the end (bytes counted; hashed once after the row,
// untimed, and checked), and 4 KiB PutObject/s at concurrency 16 (SMALL_COUNT puts a step, random bodies:
// nothing dedups). Each side is warmed up once (a WARMUP_SIZE object up and down, WARMUP small puts); rounds
// are interleaved with the order rotated, medians reported, with the CPU seconds of the client, blobd,
// radosgw and ceph-osd per step. Prints tables, the issue's targets (value, target, met) and one JSON object.
// Measures; never fails on a ratio. BENCH_S3API_BLOBD_URL + _S3_URL + _PID race a daemon started by hand
// (e.g. under node --cpu-prof; token BENCH_S3API_BLOBD_TOKEN or the test token); BENCH_S3API_ONLY=s3api,…
// runs some sides only, BENCH_S3API_ROWS=upload,get,put some rows (get reads what upload wrote).
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { globalAgent } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { makeTempDir, removeDir, startDaemon, TEST_TOKEN, type Daemon } from '../helpers/daemon.ts';
import { rgwUnavailable, startRgw, type Rgw } from '../helpers/rgw.ts';
import { envCount, envSize } from './bench-env.ts';
import { payload } from './generated-payload.ts';
import { cephDaemons, cpuMeter } from './proc-cpu.ts';
import { f, median, met, reportLines, rowJson, SIDES, targetsOf, type Row } from './s3api-report.ts';
import { blobdS3Key, checksumDefaults, describeSdkError, nativeSide, sdkClient, sdkSide, type Blobd, type Side } from './s3api-sides.ts';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const SIZE = envSize('BENCH_S3API_SIZE', GiB);
const ROUNDS = envCount('BENCH_S3API_ROUNDS', 3);
const DOWNLOAD_ROUNDS = envCount('BENCH_S3API_DOWNLOAD_ROUNDS', Math.max(ROUNDS, 5));
const SMALL = 4096;
const SMALL_COUNT = envCount('BENCH_S3API_SMALL_COUNT', 1000);
const SMALL_CONCURRENCY = 16;
/** lib-storage's Upload: 16 MiB parts (its default is the 5 MiB minimum; aws cli uses 8 MiB), 4 in flight (its default). */
const PART = envSize('BENCH_S3API_PART', 16 * MiB);
const QUEUE = 4;
/** The native session's append size, as s3.ts and scale.ts (a realistic session client's 8-64 MiB). */
const APPEND = envSize('BENCH_S3API_APPEND', 32 * MiB);
const WARMUP_SIZE = envSize('BENCH_S3API_WARMUP_SIZE', 64 * MiB);
const WARMUP = envCount('BENCH_S3API_WARMUP', 300, 0);
/** The OSD keeps every byte in RAM until RGW's GC (30 s) returns deleted ones. */
const MEMSTORE = envSize('BENCH_S3API_MEMSTORE', Math.max(6 * GiB, (ROUNDS + 2) * SIZE + 2 * GiB));
const ONLY = (process.env.BENCH_S3API_ONLY ?? '').split(',').filter(Boolean);
const ROWS = (process.env.BENCH_S3API_ROWS ?? 'upload,get,put').split(',').filter(Boolean);
const EXTERNAL = process.env.BENCH_S3API_BLOBD_URL;

const fmtSize = (n: number) => (n % GiB === 0 ? `${n / GiB} GiB` : n % MiB === 0 ? `${n / MiB} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);
const seconds = (t0: number) => (performance.now() - t0) / 1000;
const loadavg = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');

/** Runs `fn` for 0..n-1 with at most `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

const wall0 = performance.now();
const load0 = await loadavg();
const errors: Record<string, string> = {};
const skipped: Record<string, string> = {};
const describe = (err: unknown) => ((err as { $metadata?: unknown }).$metadata ? describeSdkError(err) : ((err as Error).stack ?? String(err)));
/** Setting up a side or a row that fails is reported; the rest still runs. */
async function attempt<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    errors[what] = describe(err);
    console.error(`  ${what}: FAILED ${errors[what]!.split('\n')[0]}`);
    return undefined;
  }
}

const want = (s: string) => ONLY.length === 0 || ONLY.includes(s);
const noRgw = rgwUnavailable();
if (noRgw && want('rgw')) skipped.rgw = noRgw;
const scratch = await makeTempDir('blobd-bench-s3api-');
let rgw: Rgw | undefined;
let daemon: Daemon | undefined;
const clients: S3Client[] = [];
let checksums = '';

try {
  if (!noRgw && want('rgw')) rgw = await startRgw({ memstoreBytes: MEMSTORE });
  const ceph = rgw ? cephDaemons(path.join(rgw.dir, 'ceph.conf')) : {};
  if (!EXTERNAL && (want('s3api') || want('native'))) daemon = await startDaemon({ dataDir: path.join(scratch, 'blobd'), store: 'fs', metadata: 'sqlite' });
  const blobd: Blobd | undefined = EXTERNAL
    ? { url: EXTERNAL, s3Url: process.env.BENCH_S3API_BLOBD_S3_URL ?? '', token: process.env.BENCH_S3API_BLOBD_TOKEN ?? TEST_TOKEN, pid: Number(process.env.BENCH_S3API_BLOBD_PID ?? 0) }
    : daemon && { url: daemon.url, s3Url: daemon.s3Url ?? '', token: daemon.token, pid: daemon.proc.pid! };

  const sides: Side[] = [];
  const stamp = Date.now().toString(36);
  if (rgw) {
    const s3 = sdkClient(rgw.endpoint, rgw.accessKeyId, rgw.secretAccessKey);
    clients.push(s3);
    checksums = await checksumDefaults(s3);
    const side = await attempt('rgw: set-up', () => sdkSide('rgw', s3, `bench-rgw-${stamp}`, { partSize: PART, queueSize: QUEUE }));
    if (side) sides.push(side);
  }
  if (blobd && want('s3api')) {
    const side = await attempt('s3api: set-up', async () => {
      if (!blobd.s3Url) throw new Error(`the daemon printed no "blobd s3 api listening on URL" line`);
      const key = await blobdS3Key(blobd);
      const s3 = sdkClient(blobd.s3Url, key.accessKeyId, key.secretAccessKey);
      clients.push(s3);
      checksums ||= await checksumDefaults(s3);
      return sdkSide('s3api', s3, `bench-s3api-${stamp}`, { partSize: PART, queueSize: QUEUE, blobd });
    });
    if (side) sides.push(side);
  }
  if (blobd && want('native')) {
    const side = await attempt('native: set-up', () => nativeSide(blobd, `bench-native-${stamp}`, APPEND));
    if (side) sides.push(side);
  }
  const meter = cpuMeter(() => ({ blobd: blobd?.pid ?? 0, radosgw: ceph.radosgw ?? 0, 'ceph-osd': ceph['ceph-osd'] ?? 0 }));

  // Warm-up, untimed, each side once: connections, JIT, the first shard directories and pools.
  for (const side of sides) {
    await attempt(`${side.name}: warm-up`, async () => {
      const p = payload(`warm-${side.name}`, WARMUP_SIZE);
      await side.upload('warm', p);
      await side.get('warm', WARMUP_SIZE);
      await side.remove('warm');
      await pool(WARMUP, SMALL_CONCURRENCY, (i) => side.put(`warm-${i}`, randomBytes(SMALL)));
    });
  }

  /** Each round runs every side once, the order rotated per round; a failed step is NaN and reported; `after` cleans up, untimed. */
  async function race(title: string, unit: Row['unit'], how: string, opsPerStep: number, rounds: number, step: (s: Side, r: number) => Promise<number>, after?: (s: Side, r: number) => Promise<void>): Promise<Row> {
    const row: Row = { title, unit, how, rounds: {}, cpu: {}, opsPerStep };
    for (const s of sides) [row.rounds[s.name], row.cpu[s.name]] = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const s of [...sides.slice(r % sides.length), ...sides.slice(0, r % sides.length)]) {
        globalAgent.destroy(); // an idle keep-alive socket the server closes just then would fail the first request
        const stop = meter();
        try {
          row.rounds[s.name]!.push(await step(s, r));
          row.cpu[s.name]!.push(stop());
        } catch (err) {
          errors[`${title}: ${s.name}, round ${r + 1}`] = describe(err);
          console.error(`  ${title}: ${s.name}, round ${r + 1}: FAILED ${describe(err).split('\n')[0]}`);
          row.rounds[s.name]!.push(NaN);
        }
        await after?.(s, r).catch((err) => void (errors[`${title}: ${s.name}, clean-up ${r + 1}`] = describe(err)));
      }
    }
    console.error(`  ${title}: ${sides.map((s) => `${s.name} ${f(median(row.rounds[s.name]!), unit === 's' ? 2 : 0)}`).join(', ')}`);
    return row;
  }

  // 1. SIZE up, a payload per side and round (nothing dedups); round 0's objects stay for the download row.
  const big = (s: Side, r: number) => payload(`${s.name}-${r}`, SIZE);
  const upload = !ROWS.includes('upload') ? undefined : await race(`${fmtSize(SIZE)} multipart upload`, 's', `S3: lib-storage Upload, ${fmtSize(PART)} parts × ${QUEUE}; native: session in ${fmtSize(APPEND)} appends + PUT by digest`, 1, ROUNDS,
    async (s, r) => {
      const t0 = performance.now();
      await s.upload(`big-${r}`, big(s, r));
      return seconds(t0);
    },
    async (s, r) => (r > 0 ? s.remove(`big-${r}`) : undefined),
  );

  // 2. SIZE down: round 0's object, counted; then each side's bytes hashed once, untimed, and checked.
  const uploaded = sides.filter((s) => upload && !Number.isNaN(upload.rounds[s.name]![0]!));
  const download = !ROWS.includes('get') ? undefined : await race(`${fmtSize(SIZE)} GetObject`, 's', 'S3: GetObject; native: GET /api/buckets/…/objects/…; read to the end, bytes counted', 1, DOWNLOAD_ROUNDS, async (s) => {
    if (!uploaded.includes(s)) throw new Error('round 0 of the upload row failed: nothing to read');
    const t0 = performance.now();
    await s.get('big-0', SIZE);
    return seconds(t0);
  });
  for (const s of uploaded) {
    await attempt(`${s.name}: download check`, async () => {
      const [got, want] = [await s.get('big-0', SIZE, true), await big(s, 0).digest()];
      if (got !== want) throw new Error(`${s.name} served ${got} for big-0, want ${want}`);
    });
    await attempt(`${s.name}: clean-up`, () => s.remove('big-0'));
  }

  // 3. SMALL puts, SMALL_CONCURRENCY at a time, random bodies, a key each.
  const small = !ROWS.includes('put') ? undefined : await race(`${fmtSize(SMALL)} PutObject/s, concurrency ${SMALL_CONCURRENCY}`, 'ops/s', `S3: PutObject; native: PUT /api/buckets/…/objects/…; ${SMALL_COUNT} a step`, SMALL_COUNT, ROUNDS, async (s, r) => {
    const bodies = Array.from({ length: SMALL_COUNT }, () => randomBytes(SMALL));
    const t0 = performance.now();
    await pool(SMALL_COUNT, SMALL_CONCURRENCY, (i) => s.put(`small-${r}-${i}`, bodies[i]!));
    return SMALL_COUNT / seconds(t0);
  });

  // The report.
  const rows = [upload, download, small].filter((r): r is Row => r !== undefined);
  const names = SIDES.filter((n) => sides.some((s) => s.name === n));
  const targets = targetsOf(rows);
  const load1 = await loadavg();
  const wall = seconds(wall0);
  console.log(
    `blobd S3 front vs Ceph RGW vs blobd native: ${fmtSize(SIZE)} payloads, ${ROUNDS} interleaved rounds (${DOWNLOAD_ROUNDS} for GetObject; order rotated), medians; ` +
      `${SMALL_COUNT} puts per 4 KiB step; warm-up per side: ${fmtSize(WARMUP_SIZE)} up and down + ${WARMUP} small puts; AWS SDK defaults (${checksums}); ` +
      `${os.cpus().length} cores; load average ${load0} at start, ${load1} at end${rgw ? `; RGW up in ${rgw.startupMs} ms` : ''}; ${wall.toFixed(0)} s`,
  );
  console.log(reportLines(rows, targets, names).join('\n'));
  for (const [side, why] of Object.entries(skipped)) console.log(`\n${side}: skipped (${why})`);
  for (const [what, err] of Object.entries(errors)) console.log(`\n${what} FAILED: ${err.split('\n').slice(0, 3).join(' / ')}`);
  console.log(
    JSON.stringify({
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: { start: load0, end: load1 } },
      config: { size: SIZE, rounds: ROUNDS, downloadRounds: DOWNLOAD_ROUNDS, partSize: PART, queueSize: QUEUE, append: APPEND, small: SMALL, smallCount: SMALL_COUNT, smallConcurrency: SMALL_CONCURRENCY, warmupSize: WARMUP_SIZE, warmup: WARMUP, memstoreBytes: MEMSTORE, sdkChecksums: checksums, sides: names, externalDaemon: Boolean(EXTERNAL) },
      rows: Object.fromEntries(rows.map((row) => [row.title, rowJson(row)])),
      targets: targets.map((t) => ({ target: t.target, value: t.value ?? null, op: t.op, limit: t.limit, met: met(t) ?? null, perRound: t.perRound })),
      skipped,
      errors,
      seconds: wall,
    }),
  );
} finally {
  for (const c of clients) c.destroy();
  await daemon?.stop().catch(() => undefined);
  await rgw?.stop();
  await removeDir(scratch);
}
if (Object.keys(errors).length) process.exitCode = 1;
