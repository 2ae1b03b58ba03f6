// npm run bench (first part): blobd raced against its rivals (issue 16) — the bare node:http baseline,
// @tus/server + @tus/file-store, nginx (sendfile) for downloads when installed, and for the 4 KiB row the
// G1 floor (floor-server.ts: the durable work SPEC's G1 asks of a one-shot upload, and nothing else) — all started here from
// scratch on 127.0.0.1, on the same files and disk, interleaved round by round with the order rotated.
// Prints a table, the issue's targets (value, target, met) and one JSON object. Measures; never fails on a ratio.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeRandomFile } from '../helpers/bytes.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from '../helpers/daemon.ts';
import { envCount, envSize } from './bench-env.ts';
import { expect, send } from './bench-http.ts';
import { NGINX, startNginx, startNodeRival, type Rival } from './rival-servers.ts';
import { seedObjects } from './seed-objects.ts';

const SIZE = envSize('BENCH_SIZE', 1024 ** 3);
const ROUNDS = envCount('BENCH_ROUNDS', 3);
/** The download row is client-bound and swings most from round to round; its rounds are cheap (~1 s each). */
const DOWNLOAD_ROUNDS = envCount('BENCH_DOWNLOAD_ROUNDS', Math.max(ROUNDS, 7));
const SMALL = 4096;
const SMALL_COUNT = envCount('BENCH_SMALL_COUNT', 4000);
const SMALL_WARMUP = 1000;
const SMALL_CONCURRENCY = 16;
const CONC = envCount('BENCH_CONCURRENT', 64);
const CONC_SIZE = envSize('BENCH_CONCURRENT_SIZE', 64 * 1024 ** 2);
const OBJECTS = envCount('BENCH_OBJECTS', 100_000);
const STARTUPS = envCount('BENCH_STARTUPS', 5);
/** The issue's RSS target is for a 4 GiB upload: one blobd session of this size (the payload sent again and again); 0 skips it. */
const RSS_SIZE = envSize('BENCH_RSS_SIZE', 4 * 1024 ** 3);
const CHUNK = 8 * 1024 * 1024;
/** Windows of the payload start this far apart, so that no upload repeats another's bytes (no dedup). */
const STEP = 4096;

const fmtSize = (n: number) =>
  n % 1024 ** 3 === 0 ? `${n / 1024 ** 3} GiB` : n % 1024 ** 2 === 0 ? `${n / 1024 ** 2} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const TUS = { 'tus-resumable': '1.0.0' };
const OCTETS = { ...TUS, 'content-type': 'application/offset+octet-stream' };

async function vmHWM(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return (Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024) / 1e6;
}
/** Resets the peak RSS to the current RSS (Linux ≥ 4.0), so that each row reports its own peak. */
const resetHWM = (pid: number) => writeFile(`/proc/${pid}/clear_refs`, '5');

async function digestOf(file: string, start: number, size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const c of createReadStream(file, { start, end: start + size - 1, highWaterMark: 1 << 20 })) hash.update(c as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** Runs `fn` for 0..n-1 with at most `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

type Row = { title: string; unit: string; better: 'lower' | 'higher'; rounds: Record<string, number[]>; rss: Record<string, number> };

const scratch = await makeTempDir('blobd-bench-rivals-');
const children: { stop(): Promise<unknown> }[] = [];
const wall0 = performance.now();
try {
  // One payload; upload k of a row sends the window [k·STEP, k·STEP + size), so that no upload dedups.
  const file = path.join(scratch, 'payload');
  const payloadSize = Math.max(SIZE + 2 * ROUNDS * STEP, CONC_SIZE + CONC * (ROUNDS + 1) * STEP);
  await writeRandomFile(file, payloadSize);
  const window = (k: number, size = SIZE) => ({ file, start: k * STEP, end: k * STEP + size - 1 });
  const sessionDigests: string[] = [];
  for (let r = 0; r < ROUNDS; r++) sessionDigests.push(await digestOf(file, r * STEP, SIZE));

  // BENCH_BLOBD_ARGS: flags for the raced daemon (e.g. '--inline-max 0' for blobd without its inline tier).
  const blobd: Daemon = await startDaemon({ dataDir: path.join(scratch, 'blobd'), args: (process.env.BENCH_BLOBD_ARGS ?? '').split(' ').filter(Boolean) });
  children.push(blobd);
  const baselineDir = path.join(scratch, 'baseline');
  const baseline: Rival = await startNodeRival('baseline-server.ts', baselineDir);
  children.push(baseline);
  const tus: Rival = await startNodeRival('tus-server.ts', path.join(scratch, 'tus'));
  children.push(tus);
  const floor: Rival = await startNodeRival('floor-server.ts', path.join(scratch, 'floor'));
  children.push(floor);
  // nginx serves the baseline's blob directory: the very files the baseline serves, by hex digest.
  const nginx: Rival | null = NGINX ? await startNginx(path.join(baselineDir, 'blobs'), path.join(scratch, 'nginx')) : null;
  if (nginx) children.push(nginx);
  const auth = { authorization: `Bearer ${blobd.token}` };
  const pids: Record<string, number> = { blobd: blobd.proc.pid!, baseline: baseline.proc.pid!, tus: tus.proc.pid!, floor: floor.proc.pid! };
  if (nginx) pids.nginx = nginx.proc.pid!;
  const idle: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) idle[name] = await vmHWM(pid);

  // What each server stored, removed between rows (untimed) so that the disk never holds every round at once.
  const purge = {
    blobd: async (digests: string[]) => {
      for (const d of digests.splice(0)) await expect(204, `${blobd.url}/api/blobs/${d}?force=true`, { method: 'DELETE', headers: auth });
    },
    tus: async (locations: string[]) => {
      for (const l of locations.splice(0)) await expect(204, `${tus.url}${l}`, { method: 'DELETE', headers: TUS });
    },
    baseline: async () => {
      const blobs = path.join(baselineDir, 'blobs');
      for (const f of await readdir(blobs)) await rm(path.join(blobs, f));
    },
  };

  /** blobd's upload session: initiate with size=, 8 MiB appends with Upload-Token, complete (with ?digest= when known). */
  async function blobdSession(body: { file: string; start: number; end: number }, digest?: string): Promise<string> {
    const size = body.end - body.start + 1;
    const started = JSON.parse((await expect(202, `${blobd.url}/api/blobs/uploads?size=${size}`, { headers: auth })).body) as { id: string; token: string };
    const token = { 'upload-token': started.token };
    for (let off = 0; off < size; off += CHUNK) {
      const end = body.start + Math.min(size, off + CHUNK) - 1;
      await expect(203, `${blobd.url}/api/blobs/uploads/${started.id}/append`, { headers: token, body: { file, start: body.start + off, end } });
    }
    const q = digest ? `?digest=${digest}` : '';
    return (JSON.parse((await expect(201, `${blobd.url}/api/blobs/uploads/${started.id}/complete${q}`, { headers: token })).body) as { digest: string }).digest;
  }
  /** tus: creation (Upload-Length), then 8 MiB PATCHes; resolves with the upload's path. */
  async function tusUpload(body: { file: string; start: number; end: number }): Promise<string> {
    const size = body.end - body.start + 1;
    const location = (await expect(201, `${tus.url}/files`, { headers: { ...TUS, 'upload-length': String(size) } })).headers.location!;
    for (let off = 0; off < size; off += CHUNK) {
      const end = body.start + Math.min(size, off + CHUNK) - 1;
      await expect(204, `${tus.url}${location}`, { method: 'PATCH', headers: { ...OCTETS, 'upload-offset': String(off) }, body: { file, start: body.start + off, end } });
    }
    return location;
  }

  /** Each round runs every contender once, the order rotated per round; `sync` before every step. */
  async function race(
    title: string,
    unit: string,
    better: Row['better'],
    steps: Record<string, (r: number) => Promise<number>>,
    servers: string[],
    roundCount = ROUNDS,
  ): Promise<Row> {
    const names = Object.keys(steps);
    const rounds: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    for (const s of servers) await resetHWM(pids[s]!);
    for (let r = 0; r < roundCount; r++) {
      const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)];
      for (const name of order) {
        execFileSync('sync'); // no dirty pages of the previous step
        rounds[name]!.push(await steps[name]!(r));
      }
    }
    const rss: Record<string, number> = {};
    for (const s of servers) rss[s] = await vmHWM(pids[s]!);
    console.error(`  ${title}: ${names.map((n) => `${n} ${median(rounds[n]!).toFixed(2)}`).join(', ')}`);
    return { title, unit, better, rounds, rss };
  }
  const seconds = (t0: number) => (performance.now() - t0) / 1000;

  const stored = { blobd: [] as string[], tus: [] as string[] };
  // 0. blobd's peak RSS during one RSS_SIZE upload session on the fresh daemon, whose 8 MiB appends cycle through window 0.
  let bigRss: number | undefined;
  if (RSS_SIZE > 0) {
    execFileSync('sync');
    await resetHWM(pids.blobd!);
    const started = JSON.parse((await expect(202, `${blobd.url}/api/blobs/uploads?size=${RSS_SIZE}`, { headers: auth })).body) as { id: string; token: string };
    const token = { 'upload-token': started.token };
    const cycle = SIZE >= CHUNK ? SIZE - (SIZE % CHUNK) : SIZE;
    for (let off = 0; off < RSS_SIZE; ) {
      const start = off % cycle;
      const len = Math.min(CHUNK, RSS_SIZE - off, cycle - start);
      await expect(203, `${blobd.url}/api/blobs/uploads/${started.id}/append`, { headers: token, body: { file, start, end: start + len - 1 } });
      off += len;
    }
    const done = await expect(201, `${blobd.url}/api/blobs/uploads/${started.id}/complete`, { headers: token });
    bigRss = await vmHWM(pids.blobd!);
    console.error(`  ${fmtSize(RSS_SIZE)} session: blobd peak RSS ${bigRss.toFixed(0)} MB`);
    await purge.blobd([(JSON.parse(done.body) as { digest: string }).digest]);
  }

  // 1. SIZE upload.
  const upload = await race(
    `${fmtSize(SIZE)} upload`,
    's',
    'lower',
    {
      'blobd session': async (r) => {
        const t0 = performance.now();
        stored.blobd.push(await blobdSession(window(r), sessionDigests[r]));
        return seconds(t0);
      },
      'blobd one-shot': async (r) => {
        const t0 = performance.now();
        const res = await expect(201, `${blobd.url}/api/blobs`, { headers: auth, body: window(ROUNDS + r) });
        const s = seconds(t0);
        stored.blobd.push((JSON.parse(res.body) as { digest: string }).digest);
        return s;
      },
      baseline: async (r) => {
        const t0 = performance.now();
        await expect(201, baseline.url, { body: window(r) });
        return seconds(t0);
      },
      tus: async (r) => {
        const t0 = performance.now();
        stored.tus.push(await tusUpload(window(r)));
        return seconds(t0);
      },
    },
    ['blobd', 'baseline', 'tus'],
  );

  // 2. SIZE download of the round's blob. The timed GET only counts bytes: hashing in the client would
  // take a core from the server on this 2-core machine and cap every contender alike. The digest of each
  // contender's first blob is checked after the row, untimed.
  const timedGet = async (url: string, headers: Record<string, string>) => {
    const t0 = performance.now();
    const res = await expect(200, url, { method: 'GET', headers, discard: true });
    const s = seconds(t0);
    if (res.bytes !== SIZE) throw new Error(`GET ${url}: ${res.bytes} bytes, want ${SIZE}`);
    return s;
  };
  const hex = (r: number) => sessionDigests[r]!.slice('sha256:'.length);
  const downloads: Record<string, (r: number) => [string, Record<string, string>]> = {
    blobd: (r) => [`${blobd.url}/api/blobs/${sessionDigests[r]}`, auth],
    baseline: (r) => [`${baseline.url}/${hex(r)}`, {}],
    tus: (r) => [`${tus.url}${stored.tus[r]}`, TUS],
  };
  if (nginx) downloads.nginx = (r) => [`${nginx.url}/${hex(r)}`, {}];
  const download = await race(
    `${fmtSize(SIZE)} download`,
    's',
    'lower',
    // Round r downloads the blob of upload round r % ROUNDS.
    Object.fromEntries(Object.entries(downloads).map(([name, at]) => [name, (r: number) => timedGet(...at(r % ROUNDS))])),
    Object.keys(pids),
    DOWNLOAD_ROUNDS,
  );
  for (const [name, at] of Object.entries(downloads)) {
    const [url, headers] = at(0);
    const got = (await expect(200, url, { method: 'GET', headers, hash: true })).body;
    if (got !== sessionDigests[0]) throw new Error(`${name}: GET ${url} hashes to ${got}, want ${sessionDigests[0]}`);
  }
  await purge.blobd(stored.blobd);
  await purge.tus(stored.tus);
  await purge.baseline();

  // 3. SMALL one-shot uploads, SMALL_CONCURRENCY at a time, random bytes each (nothing dedups).
  const smallRun = (post: (body: Buffer) => Promise<unknown>) => async () => {
    const bodies = Array.from({ length: SMALL_COUNT }, () => randomBytes(SMALL));
    const t0 = performance.now();
    await pool(SMALL_COUNT, SMALL_CONCURRENCY, async (i) => void (await post(bodies[i]!)));
    return SMALL_COUNT / seconds(t0);
  };
  const smallPosts: Record<string, (body: Buffer) => Promise<unknown>> = {
    blobd: (body) => expect(201, `${blobd.url}/api/blobs`, { headers: auth, body }),
    baseline: (body) => expect(201, baseline.url, { body }),
    tus: (body) => expect(201, `${tus.url}/files`, { headers: { ...OCTETS, 'upload-length': String(SMALL) }, body }),
    floor: (body) => expect(201, floor.url, { body }),
  };
  // Every server warmed up on this path first, untimed (its JIT compiles the hot code): else the first
  // round measures compilation, and only for whoever had not served small uploads yet.
  for (const post of Object.values(smallPosts)) await pool(SMALL_WARMUP, SMALL_CONCURRENCY, async () => void (await post(randomBytes(SMALL))));
  const small = await race(
    `${fmtSize(SMALL)} uploads/s, concurrency ${SMALL_CONCURRENCY}`,
    'ops/s',
    'higher',
    Object.fromEntries(Object.entries(smallPosts).map(([name, post]) => [name, smallRun(post)])),
    ['blobd', 'baseline', 'tus', 'floor'],
  );

  // 4. CONC concurrent uploads of CONC_SIZE each; aggregate MB/s. Window of upload i in round r: i·(ROUNDS+1)+r.
  const concWindow = (r: number, i: number) => window(i * (ROUNDS + 1) + r, CONC_SIZE);
  const concRun = (one: (r: number, i: number) => Promise<void>, after: () => Promise<void>) => async (r: number) => {
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONC }, (_, i) => one(r, i)));
    const s = seconds(t0);
    await after();
    return (CONC * CONC_SIZE) / 1e6 / s;
  };
  const conc = await race(
    `${CONC} concurrent ${fmtSize(CONC_SIZE)} uploads, MB/s`,
    'MB/s',
    'higher',
    {
      blobd: concRun(
        async (r, i) => void stored.blobd.push(await blobdSession(concWindow(r, i))),
        () => purge.blobd(stored.blobd),
      ),
      baseline: concRun(
        async (r, i) => void (await expect(201, baseline.url, { body: concWindow(r, i) })),
        () => purge.baseline(),
      ),
      tus: concRun(
        async (r, i) => void stored.tus.push(await tusUpload(concWindow(r, i))),
        () => purge.tus(stored.tus),
      ),
    },
    ['blobd', 'baseline', 'tus'],
  );

  for (const c of children.splice(0).reverse()) await c.stop();

  // 5. `blobd serve` start-up with OBJECTS objects: spawn → first 200 from /healthz.
  const startupDir = path.join(scratch, 'startup');
  const seeded = await seedObjects(startupDir, OBJECTS);
  const startups: number[] = [];
  for (let i = 0; i < STARTUPS; i++) {
    const t0 = performance.now();
    const d = await startDaemon({ dataDir: startupDir });
    try {
      const deadline = Date.now() + 30_000;
      while ((await send(`${d.url}/healthz`, { method: 'GET' }).then((r) => r.status, () => 0)) !== 200) {
        if (Date.now() > deadline) throw new Error('no 200 from /healthz within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      startups.push(performance.now() - t0);
    } finally {
      await d.stop();
    }
  }

  // The report.
  const rows = [upload, download, small, conc];
  const cols = ['blobd', 'baseline', 'tus', 'nginx', 'floor'];
  const colTitle: Record<string, string> = { blobd: 'blobd', baseline: 'bare node:http', tus: '@tus/server', nginx: 'nginx', floor: 'durability floor' };
  const m = (row: Row, name: string) => (row.rounds[name] ? median(row.rounds[name]!) : undefined);
  const f = (v: number | undefined, digits: number) => (v === undefined ? '' : v.toFixed(digits));
  const digitsOf = (row: Row) => (row.unit === 's' ? 2 : 0);
  const lines: string[] = [];
  lines.push(`| row | ${cols.map((c) => colTitle[c]).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`);
  const blobdCell = (row: Row) =>
    row === upload
      ? `${f(m(row, 'blobd session'), 2)} (one-shot ${f(m(row, 'blobd one-shot'), 2)})`
      : f(m(row, 'blobd'), digitsOf(row));
  const titled: Record<string, string> = {
    [upload.title]: `${upload.title}, s (blobd: session in 8 MiB appends; tus: 8 MiB PATCHes; baseline: one POST)`,
    [download.title]: `${download.title}, s`,
    [small.title]: small.title,
    [conc.title]: `${conc.title} (blobd: sessions; tus: PATCHes; baseline: POSTs)`,
  };
  for (const row of rows) {
    lines.push(`| ${titled[row.title]} | ${blobdCell(row)} | ${cols.slice(1).map((c) => f(m(row, c), digitsOf(row))).join(' | ')} |`);
  }
  lines.push(`| peak RSS after start, MB | ${cols.map((c) => f(idle[c], 0)).join(' | ')} |`);
  for (const row of rows) lines.push(`| peak RSS in the ${row.title.replace(/, .*$/, '')} row, MB | ${cols.map((c) => f(row.rss[c], 0)).join(' | ')} |`);
  const blobdOnly = (title: string, value: number) => `| ${title} | ${f(value, 0)} |${' |'.repeat(cols.length - 1)}`;
  if (bigRss !== undefined) lines.push(blobdOnly(`peak RSS during one ${fmtSize(RSS_SIZE)} upload session (fresh daemon), MB`, bigRss));
  lines.push(blobdOnly(`\`blobd serve\` start-up to /healthz, ${OBJECTS} objects, ms`, median(startups)));

  type Target = { target: string; value: number; limit: number; op: '≤' | '≥' | '<'; perRound?: number[] };
  const ratio = (row: Row, a: string, b: string) => ({
    value: median(row.rounds[a]!) / median(row.rounds[b]!),
    perRound: row.rounds[a]!.map((x, i) => x / row.rounds[b]![i]!),
  });
  const targets: Target[] = [
    { target: `${upload.title} time, blobd session ÷ bare node`, limit: 1.15, op: '≤', ...ratio(upload, 'blobd session', 'baseline') },
    { target: `${upload.title} time, blobd session ÷ @tus/server`, limit: 1.0, op: '≤', ...ratio(upload, 'blobd session', 'tus') },
    ...(nginx ? [{ target: `${download.title} time, blobd ÷ nginx`, limit: 1.25, op: '≤' as const, ...ratio(download, 'blobd', 'nginx') }] : []),
    { target: `${download.title} time, blobd ÷ @tus/server`, limit: 0.67, op: '≤', ...ratio(download, 'blobd', 'tus') },
    { target: `${fmtSize(SMALL)} uploads/s, blobd ÷ bare node`, limit: 1.0, op: '≥', ...ratio(small, 'blobd', 'baseline') },
    { target: `${fmtSize(SMALL)} uploads/s, blobd ÷ @tus/server`, limit: 2.0, op: '≥', ...ratio(small, 'blobd', 'tus') },
    bigRss !== undefined
      ? { target: `blobd peak RSS during one ${fmtSize(RSS_SIZE)} upload session, MB`, value: bigRss, limit: 150, op: '≤' }
      : { target: `blobd peak RSS in the ${upload.title} row, MB (the issue: during a 4 GiB upload)`, value: upload.rss.blobd!, limit: 150, op: '≤' },
    { target: `blobd peak RSS with ${CONC} concurrent sessions, MB`, value: conc.rss.blobd!, limit: 300, op: '≤' },
    { target: `start-up with ${OBJECTS} objects, ms`, value: median(startups), limit: 1000, op: '<' },
  ];
  const met = (t: Target) => (t.op === '≤' ? t.value <= t.limit : t.op === '≥' ? t.value >= t.limit : t.value < t.limit);
  lines.push('', '| target | value | target | met |', '|---|---:|---:|---|');
  for (const t of targets) {
    const rounds = t.perRound ? ` (rounds: ${t.perRound.map((x) => x.toFixed(2)).join(', ')})` : '';
    lines.push(`| ${t.target} | ${t.value.toFixed(t.limit >= 100 ? 0 : 2)}${rounds} | ${t.op} ${t.limit} | ${met(t) ? 'yes' : 'no'} |`);
  }

  // No targets, for reading the 4 KiB row: how far blobd is from the least G1 asks, and that from the baseline.
  const insights = [
    { what: `${fmtSize(SMALL)} uploads/s, blobd ÷ durability floor (blobd's own overhead)`, ...ratio(small, 'blobd', 'floor') },
    { what: `${fmtSize(SMALL)} uploads/s, durability floor ÷ bare node (what the promised extra fsyncs and row cost)`, ...ratio(small, 'floor', 'baseline') },
  ];
  lines.push('', '| ratio (no target) | value |', '|---|---:|');
  for (const i of insights) lines.push(`| ${i.what} | ${i.value.toFixed(2)} (rounds: ${i.perRound.map((x) => x.toFixed(2)).join(', ')}) |`);

  const wall = seconds(wall0);
  console.log(
    `blobd vs rivals: ${fmtSize(SIZE)} payload, ${ROUNDS} interleaved rounds (${DOWNLOAD_ROUNDS} for downloads; order rotated), medians; ${os.cpus().length} cores; ` +
      `${SMALL_COUNT} uploads per 4 KiB run (after ${SMALL_WARMUP} untimed); ${CONC} × ${fmtSize(CONC_SIZE)} concurrent; ${STARTUPS} start-ups (seeded in ${seeded.toFixed(1)} s); ${wall.toFixed(0)} s`,
  );
  if (!nginx) console.log('nginx is not installed: no nginx column (apt-get install nginx-light)');
  console.log(lines.join('\n'));
  console.log(
    JSON.stringify({
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      config: { size: SIZE, rssSize: RSS_SIZE, rounds: ROUNDS, downloadRounds: DOWNLOAD_ROUNDS, small: SMALL, smallCount: SMALL_COUNT, smallConcurrency: SMALL_CONCURRENCY, concurrent: CONC, concurrentSize: CONC_SIZE, objects: OBJECTS, chunk: CHUNK },
      rows: Object.fromEntries(
        rows.map((row) => [
          row.title,
          { unit: row.unit, better: row.better, median: Object.fromEntries(Object.entries(row.rounds).map(([n, xs]) => [n, median(xs)])), rounds: row.rounds, peakRssMB: row.rss },
        ]),
      ),
      idleRssMB: idle,
      bigUploadRssMB: bigRss ?? null,
      startupMs: { median: median(startups), runs: startups, objects: OBJECTS },
      targets: targets.map((t) => ({ target: t.target, value: t.value, op: t.op, limit: t.limit, met: met(t), perRound: t.perRound })),
      ratios: insights,
    }),
  );
} finally {
  for (const c of children.reverse()) await c.stop().catch(() => undefined);
  await removeDir(scratch);
}
