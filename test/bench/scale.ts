// npm run bench (last part): what PostgreSQL metadata and nginx cost blobd per request. Races blobd on SQLite +
// its data directory, on SQLite + RGW, on PostgreSQL + RGW as one node, the same node behind nginx (nginx's
// own cost), and NODES nodes behind nginx sharing one database and one bucket — all on this machine's cores,
// so the point is the overhead per request, not scaling. Rows: 4 KiB one-shot uploads/s at concurrency 16
// (random bodies: nothing dedups) and one 1 GiB session (32 MiB appends, digest known, as s3.ts), rounds
// interleaved with the order rotated, medians; CPU seconds per process group per step; PostgreSQL
// statements per request (each node's blobd_metadata_queries_total). Prints tables, the targets (value,
// target, met) and one JSON object. Measures; never fails on a ratio.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { globalAgent } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { SERVE_OPTIONS } from '../../src/config.ts';
import { makeTempDir, removeDir, type Daemon } from '../helpers/daemon.ts';
import { nginxUnavailable } from '../helpers/nginx.ts';
import { pgUnavailable } from '../helpers/postgres.ts';
import { rgwUnavailable, startRgw, type Rgw } from '../helpers/rgw.ts';
import { envCount, envSize } from './bench-env.ts';
import { payload, type Payload } from './generated-payload.ts';
import { cephDaemons } from './proc-cpu.ts';
import { groupMeter } from './proc-groups.ts';
import * as c from './scale-client.ts';
import { behindNginx, benchPostgres, pgNode, sqliteFs, sqliteRgw, startPgNode, type Setup } from './scale-setups.ts';
import { measureTrips, queriesOf, scrapeCost, type Trips } from './scale-trips.ts';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const ROUNDS = envCount('BENCH_SCALE_ROUNDS', 3);
const SMALL = 4096;
/** 4 KiB uploads per run (0 skips the row). */
const SMALL_COUNT = envCount('BENCH_SCALE_SMALL_COUNT', 1000, 0);
/** Untimed 4 KiB uploads per node before the rows (connections, pools, JIT: a node warmed by 300 uploads still spent ~1.5x the CPU per upload of one warmed by 1300). */
const WARMUP = envCount('BENCH_SCALE_WARMUP', 500, 0);
const SMALL_CONCURRENCY = 16;
/** The session's size (0 skips the row). */
const SIZE = envSize('BENCH_SCALE_SIZE', GiB);
const APPEND = envSize('BENCH_SCALE_APPEND', 32 * MiB);
/** Requests of each kind whose metadata statements are counted (one client, one at a time). */
const TRIPS = envCount('BENCH_SCALE_TRIPS', 20, 0);
/** The one append of a counted session: blobd's part size, so one part. */
const TRIP_APPEND = envSize('BENCH_SCALE_TRIP_APPEND', 8 * MiB);
const NODES = envCount('BENCH_SCALE_NODES', 3, 2);
/** The OSD keeps every byte in RAM until RGW's GC (30 s) returns deleted ones. */
const MEMSTORE = envSize('BENCH_SCALE_MEMSTORE', Math.max(8 * GiB, 6 * SIZE + 2 * GiB));
/** nginx sends a session's requests to one node (hash of its id; 0: round robin, each append's node re-reads what it missed). */
const AFFINITY = process.env.BENCH_SCALE_AFFINITY !== '0';
/** 0: keep the test server's fsync=off (faster, not what production runs). */
const PG_DURABLE = process.env.BENCH_SCALE_PG_DURABLE !== '0';
/** Comma-separated setup names to run (default all that can run here). */
const ONLY = (process.env.BENCH_SCALE_ONLY ?? '').split(',').filter(Boolean);

const fmtSize = (n: number) => (n % GiB === 0 ? `${n / GiB} GiB` : n % MiB === 0 ? `${n / MiB} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);
const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const seconds = (t0: number) => (performance.now() - t0) / 1000;
const loadavg = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
const f = (v: number | undefined | null, digits = 2) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : v.toFixed(digits));

/** Runs `fn` for 0..n-1 with at most `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

type Cpu = Record<string, number>;
interface Row {
  title: string;
  unit: string;
  /** Per setup: the value of each round, the CPU of each round, metadata statements per request of each round. */
  rounds: Record<string, number[]>;
  cpu: Record<string, Cpu[]>;
  statements: Record<string, number[]>;
}

const wall0 = performance.now();
const load0 = await loadavg();
const skipped: Record<string, string> = {};
const want = (name: string) => ONLY.length === 0 || ONLY.includes(name);
const noRgw = rgwUnavailable();
const noPg = pgUnavailable() ?? (SERVE_OPTIONS.some((o) => o.flag.startsWith('--metadata ')) ? null : 'blobd serve has no --metadata flag yet') ?? noRgw;
const noNginx = nginxUnavailable();
if (noRgw) skipped['sqlite-rgw'] = noRgw;
if (noPg) for (const n of ['pg-rgw-1', 'pg-rgw-1-nginx', `pg-rgw-${NODES}-nginx`]) skipped[n] = noPg;
if (noNginx) for (const n of ['pg-rgw-1-nginx', `pg-rgw-${NODES}-nginx`]) skipped[n] ??= noNginx;
const needPg = !noPg && ['pg-rgw-1', 'pg-rgw-1-nginx', `pg-rgw-${NODES}-nginx`].some(want);

const scratch = await makeTempDir('blobd-bench-scale-');
const setups: Setup[] = [];
/** PostgreSQL nodes: shared by setups (the lone node is raced direct and behind nginx), stopped at the end. */
const pgDaemons: Daemon[] = [];
const errors: Record<string, string> = {};
let rgw: Rgw | undefined;
let pg: Awaited<ReturnType<typeof benchPostgres>> | undefined;
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
  const stamp = performance.now();
  if (!noRgw && (want('sqlite-rgw') || needPg)) rgw = await startRgw({ memstoreBytes: MEMSTORE });
  if (needPg) pg = await benchPostgres(PG_DURABLE);
  const ceph = rgw ? cephDaemons(path.join(rgw.dir, 'ceph.conf')) : {};
  if (want('sqlite-fs')) setups.push(await sqliteFs(path.join(scratch, 'sqlite-fs')));
  if (rgw && want('sqlite-rgw')) setups.push(await sqliteRgw(rgw, path.join(scratch, 'sqlite-rgw')));
  if (rgw && pg) {
    const one = await startPgNode(rgw, await rgw.newBucket(), await pg.newDatabase(), path.join(scratch, 'pg-1'));
    pgDaemons.push(one);
    if (want('pg-rgw-1')) setups.push(pgNode(one));
    if (!noNginx && want('pg-rgw-1-nginx')) setups.push(await behindNginx('pg-rgw-1-nginx', 'PostgreSQL + RGW, 1 node behind nginx', [one], AFFINITY));
    if (!noNginx && want(`pg-rgw-${NODES}-nginx`)) {
      const [bucket, db] = [await rgw.newBucket(), await pg.newDatabase()];
      const nodes: Daemon[] = [];
      // One after another: the first runs the migrations, the others find them done.
      for (let i = 0; i < NODES; i++) {
        nodes.push(await startPgNode(rgw, bucket, db, path.join(scratch, `pg-${NODES}-${i}`)));
        pgDaemons.push(nodes[i]!);
      }
      setups.push(await behindNginx(`pg-rgw-${NODES}-nginx`, `PostgreSQL + RGW, ${NODES} nodes behind nginx${AFFINITY ? ' (session affinity)' : ' (round robin)'}`, nodes, AFFINITY));
    }
  }
  const raced = setups;
  const startupS = seconds(stamp);
  const meterOf = (s: Setup) =>
    groupMeter(() => ({ ...s.groups(), postgres: pg?.pids() ?? [], radosgw: ceph.radosgw ? [ceph.radosgw] : [], 'ceph-osd': ceph['ceph-osd'] ? [ceph['ceph-osd']] : [], 'ceph-mon': ceph['ceph-mon'] ? [ceph['ceph-mon']] : [] }));
  const scrape: Record<string, number> = {};
  for (const s of raced) if (s.postgres && (await queriesOf(s.nodeUrls)) !== undefined) scrape[s.name] = await scrapeCost(s.nodeUrls);

  // Untimed warm-up: connections, pools, JIT, the first shard directories.
  for (const s of raced) await pool(WARMUP * s.nodeUrls.length, SMALL_CONCURRENCY, async () => void (await c.postBlob(s, randomBytes(SMALL))));

  /** Each round runs every setup once, the order rotated per round; `after` (untimed) cleans up. */
  async function race(title: string, unit: string, step: (s: Setup, r: number) => Promise<{ value: number; requests: number }>, after?: (s: Setup, r: number) => Promise<void>): Promise<Row> {
    const row: Row = { title, unit, rounds: {}, cpu: {}, statements: {} };
    for (const s of raced) [row.rounds[s.name], row.cpu[s.name], row.statements[s.name]] = [[], [], []];
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of [...raced.slice(r % raced.length), ...raced.slice(0, r % raced.length)]) {
        // Idle keep-alive connections go first: one the server is closing just then (its keep-alive timeout)
        // would fail the step's first request with "socket hang up".
        globalAgent.destroy();
        const q0 = scrape[s.name] !== undefined ? await queriesOf(s.nodeUrls) : undefined;
        const stop = meterOf(s)();
        try {
          const { value, requests } = await step(s, r);
          row.cpu[s.name]!.push(stop());
          row.rounds[s.name]!.push(value);
          const q1 = q0 !== undefined ? await queriesOf(s.nodeUrls) : undefined;
          row.statements[s.name]!.push(q0 !== undefined && q1 !== undefined ? (q1 - q0 - scrape[s.name]!) / requests : NaN);
          await after?.(s, r);
        } catch (err) {
          // One failed step is reported (with whether its processes still run); the row goes on.
          const dead = Object.entries(s.groups()).flatMap(([g, pids]) => pids.filter((p) => !existsSync(`/proc/${p}`)).map((p) => `${g} ${p}`));
          errors[`${title}: ${s.name}, round ${r + 1}`] = `${(err as Error).stack ?? String(err)}${dead.length ? ` (gone: ${dead.join(', ')})` : ''}`;
          console.error(`  ${title}: ${s.name}, round ${r + 1}: FAILED ${(err as Error).message}${dead.length ? ` (gone: ${dead.join(', ')})` : ''}`);
          row.rounds[s.name]!.push(NaN);
          row.statements[s.name]!.push(NaN);
        }
      }
    }
    console.error(`  ${title}: ${raced.map((s) => `${s.name} ${f(median(row.rounds[s.name]!), unit === 's' ? 2 : 0)}`).join(', ')}`);
    return row;
  }

  // 1. SMALL one-shot uploads, SMALL_CONCURRENCY at a time, random bytes each.
  const small = SMALL_COUNT === 0 ? undefined : await attempt('small', () =>
    race(`${fmtSize(SMALL)} uploads/s, concurrency ${SMALL_CONCURRENCY}`, 'ops/s', async (s) => {
      const bodies = Array.from({ length: SMALL_COUNT }, () => randomBytes(SMALL));
      const t0 = performance.now();
      await pool(SMALL_COUNT, SMALL_CONCURRENCY, async (i) => void (await c.postBlob(s, bodies[i]!)));
      return { value: SMALL_COUNT / seconds(t0), requests: SMALL_COUNT };
    }),
  );

  // 2. One SIZE session per setup and round (payload of round r, the same for every setup: each forgets it
  // after its step, so nothing dedups), APPEND appends, the digest given at complete.
  const payloads: Payload[] = Array.from({ length: ROUNDS }, (_, r) => payload(`scale-${r}`, SIZE));
  if (SIZE > 0) for (const p of payloads) await p.digest();
  const session = SIZE === 0 ? undefined : await attempt('session', () =>
    race(`${fmtSize(SIZE)} session (${fmtSize(APPEND)} appends)`, 's', async (s, r) => {
      const t0 = performance.now();
      await c.sessionUpload(s, payloads[r]!, APPEND, await payloads[r]!.digest());
      return { value: seconds(t0), requests: 1 };
    }, async (s, r) => c.forget(s, await payloads[r]!.digest())),
  );

  // 3. Metadata statements per request: the lone node, and the nodes behind nginx (summed over them).
  const trips: Record<string, Trips | null> = {};
  for (const s of raced.filter((x) => TRIPS > 0 && x.postgres && x.name !== 'pg-rgw-1-nginx')) {
    trips[s.name] = (await attempt(`trips ${s.name}`, () => measureTrips(s, s.nodeUrls, TRIPS, TRIP_APPEND))) ?? null;
  }

  // The report.
  const rows = [small, session].filter((r): r is Row => r !== undefined);
  const m = (row: Row | undefined, name: string) => (row?.rounds[name] ? median(row.rounds[name]) : undefined);
  const lines: string[] = [];
  lines.push(`| configuration | ${small?.title ?? 'small'} | ÷ SQLite + RGW | ${session?.title ?? 'session'}, s | MB/s | PG statements per 4 KiB upload | per session |`, '|---|---:|---:|---:|---:|---:|---:|');
  for (const s of raced) {
    const rate = m(small, s.name);
    const base = m(small, 'sqlite-rgw');
    const t = m(session, s.name);
    lines.push(`| ${s.title} | ${f(rate, 0)} | ${f(rate !== undefined && base !== undefined ? rate / base : undefined)} | ${f(t)} | ${f(t ? SIZE / 1e6 / t : undefined, 0)} | ${f(small ? median(small.statements[s.name]!) : undefined, 1)} | ${f(session ? median(session.statements[s.name]!) : undefined, 0)} |`);
  }
  for (const [name, why] of Object.entries(skipped)) lines.push(`| ${name}: skipped (${why}) | | | | | | |`);

  const groups = ['client', 'blobd', 'postgres', 'radosgw', 'ceph-osd', 'ceph-mon', 'nginx'];
  const medCpu = (cpus: Cpu[]) => Object.fromEntries(groups.map((k) => [k, median(cpus.map((x) => x[k] ?? 0))]));
  lines.push('', `| CPU per step (medians) | wall, s | ${groups.join(' | ')} | total |`, `|---|---:|${groups.map(() => '---:|').join('')}---:|`);
  for (const row of rows) {
    for (const s of raced) {
      const cpu = medCpu(row.cpu[s.name]!);
      const total = groups.reduce((a, k) => a + cpu[k]!, 0);
      // The 4 KiB row in CPU milliseconds per upload, the session in CPU seconds.
      const per = row.unit === 's' ? 1 : 1000 / SMALL_COUNT;
      const wall = row.unit === 's' ? m(row, s.name) : SMALL_COUNT / m(row, s.name)!;
      lines.push(`| ${row.unit === 's' ? `${row.title}, CPU s` : `${row.title}, CPU ms per upload`}: ${s.title} | ${f(wall)} | ${groups.map((k) => f(cpu[k]! * per)).join(' | ')} | ${f(total * per)} |`);
    }
  }

  const tripNames = Object.keys(trips).filter((n) => trips[n]);
  if (tripNames.length) {
    const kinds = Object.keys(trips[tripNames[0]!]!.perRequest);
    lines.push('', `| PostgreSQL statements per request (one client, ${TRIPS} each) | ${tripNames.map((n) => raced.find((s) => s.name === n)!.title).join(' | ')} |`, `|---|${tripNames.map(() => '---:|').join('')}`);
    for (const k of kinds) lines.push(`| ${k} | ${tripNames.map((n) => f(trips[n]!.perRequest[k], 1)).join(' | ')} |`);
    lines.push(`| idle, statements per second (all nodes) | ${tripNames.map((n) => f(trips[n]!.idlePerSecond, 1)).join(' | ')} |`);
  } else if (Object.keys(trips).length) {
    lines.push('', `PostgreSQL statements per request: not measured (no ${c.QUERIES_METRIC} on /metrics)`);
  }

  type Target = { target: string; value: number | undefined; limit: number; op: '≤' | '≥'; perRound?: number[] };
  const ratio = (row: Row | undefined, a: string, b: string, invert = false): Pick<Target, 'value' | 'perRound'> => {
    if (!row?.rounds[a] || !row.rounds[b]) return { value: undefined };
    const q = (x: number, y: number) => (invert ? y / x : x / y);
    return { value: q(median(row.rounds[a]), median(row.rounds[b])), perRound: row.rounds[a].map((x, i) => q(x, row.rounds[b]![i]!)) };
  };
  const many = `pg-rgw-${NODES}-nginx`;
  const targets: Target[] = [
    { target: `${fmtSize(SMALL)} uploads/s, PostgreSQL + RGW 1 node ÷ SQLite + RGW`, limit: 0.7, op: '≥', ...ratio(small, 'pg-rgw-1', 'sqlite-rgw') },
    { target: `${fmtSize(SMALL)} uploads/s, ${NODES} nodes behind nginx ÷ 1 node`, limit: 1, op: '≥', ...ratio(small, many, 'pg-rgw-1') },
    { target: `${fmtSize(SIZE)} session speed (1 ÷ time), ${NODES} nodes behind nginx ÷ 1 node`, limit: 1, op: '≥', ...ratio(session, many, 'pg-rgw-1', true) },
  ];
  const info: Target[] = [
    { target: `${fmtSize(SMALL)} uploads/s, ${NODES} nodes behind nginx ÷ 1 node behind nginx`, limit: 1, op: '≥', ...ratio(small, many, 'pg-rgw-1-nginx') },
    { target: `${fmtSize(SMALL)} uploads/s, 1 node behind nginx ÷ 1 node (nginx's cost)`, limit: NaN, op: '≥', ...ratio(small, 'pg-rgw-1-nginx', 'pg-rgw-1') },
    { target: `${fmtSize(SMALL)} uploads/s, SQLite + RGW ÷ SQLite + fs`, limit: NaN, op: '≥', ...ratio(small, 'sqlite-rgw', 'sqlite-fs') },
    { target: `${fmtSize(SIZE)} session speed, PostgreSQL + RGW 1 node ÷ SQLite + RGW`, limit: NaN, op: '≥', ...ratio(session, 'pg-rgw-1', 'sqlite-rgw', true) },
  ];
  const met = (t: Target) => (t.value === undefined || Number.isNaN(t.limit) ? undefined : t.op === '≤' ? t.value <= t.limit : t.value >= t.limit);
  const rounds = (t: Target) => (t.perRound ? ` (rounds: ${t.perRound.map((x) => x.toFixed(2)).join(', ')})` : '');
  lines.push('', '| target | value | target | met |', '|---|---:|---:|---|');
  for (const t of targets) lines.push(`| ${t.target} | ${f(t.value)}${rounds(t)} | ${t.op} ${t.limit} | ${met(t) === undefined ? 'not measured' : met(t) ? 'met' : 'NOT met'} |`);
  lines.push('', '| ratio (no target) | value |', '|---|---:|');
  for (const t of info) lines.push(`| ${t.target} | ${f(t.value)}${rounds(t)} |`);

  const load1 = await loadavg();
  const wall = seconds(wall0);
  console.log(
    `blobd scale-out overhead: ${SMALL_COUNT} 4 KiB uploads per run at concurrency ${SMALL_CONCURRENCY}, one ${fmtSize(SIZE)} session in ${fmtSize(APPEND)} appends, ` +
      `${ROUNDS} interleaved rounds (order rotated), medians; PostgreSQL ${PG_DURABLE ? 'durable (fsync on)' : 'with fsync off'}; nginx ${AFFINITY ? 'with session affinity' : 'round robin'}; ${os.cpus().length} cores; ` +
      `load average ${load0} at start, ${load1} at end; set-up ${startupS.toFixed(1)} s; ${wall.toFixed(0)} s`,
  );
  console.log(lines.join('\n'));
  for (const [what, err] of Object.entries(errors)) console.log(`\n${what} FAILED: ${err.split('\n').slice(0, 3).join(' / ')}`);
  console.log(
    JSON.stringify({
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverage: { start: load0, end: load1 } },
      config: { rounds: ROUNDS, warmup: WARMUP, small: SMALL, smallCount: SMALL_COUNT, smallConcurrency: SMALL_CONCURRENCY, size: SIZE, append: APPEND, trips: TRIPS, tripAppend: TRIP_APPEND, nodes: NODES, memstoreBytes: MEMSTORE, pgDurable: PG_DURABLE, affinity: AFFINITY, queriesMetric: c.QUERIES_METRIC },
      setups: raced.map((s) => ({ name: s.name, title: s.title, nodes: s.nodeUrls.length })),
      skipped,
      rows: Object.fromEntries(rows.map((row) => [row.title, {
        unit: row.unit,
        median: Object.fromEntries(raced.map((s) => [s.name, median(row.rounds[s.name]!)])),
        rounds: row.rounds,
        cpuSecondsMedian: Object.fromEntries(raced.map((s) => [s.name, medCpu(row.cpu[s.name]!)])),
        statementsPerRequest: Object.fromEntries(raced.filter((s) => s.postgres).map((s) => [s.name, row.statements[s.name]])),
      }])),
      trips,
      scrapeStatements: scrape,
      targets: targets.map((t) => ({ target: t.target, value: t.value ?? null, op: t.op, limit: t.limit, met: met(t) ?? null, perRound: t.perRound })),
      ratios: info.map((t) => ({ ratio: t.target, value: t.value ?? null, perRound: t.perRound })),
      errors,
      seconds: wall,
    }),
  );
} finally {
  for (const s of setups) await s.stop().catch(() => undefined);
  for (const d of pgDaemons) await d.stop().catch(() => undefined);
  await pg?.stop();
  await rgw?.stop();
  await removeDir(scratch);
}
if (Object.keys(errors).length) process.exitCode = 1;
