// npm run bench: BENCH_SIZE (default 1 GiB) through blobd — a one-shot upload, an upload session in 8 MiB
// appends + complete, a download — and the one-shot upload and download through the bare node:http
// baseline, raced in the same run on the same disk, plus blobd's peak RSS (VmHWM).
// Reports ratios; asserts nothing about speed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { writeRandomFile } from '../helpers/bytes.ts';
import { makeTempDir, removeDir, startDaemon } from '../helpers/daemon.ts';

const SIZE = Number(process.env.BENCH_SIZE ?? 1024 ** 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const here = path.dirname(fileURLToPath(import.meta.url));

const CHUNK = 8 * 1024 * 1024;

/** POST a byte range of `file` (the whole file by default); resolves with the response status and body. */
function post(
  url: string,
  file: string | null,
  headers: Record<string, string>,
  range = { start: 0, end: SIZE - 1 },
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const length = file ? range.end - range.start + 1 : 0;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(length) } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    if (file) pipeline(createReadStream(file, { ...range, highWaterMark: 1 << 20 }), req).catch(reject);
    else req.end();
  });
}

async function upload(url: string, file: string, headers: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const res = await post(url, file, headers);
  if (res.status !== 201) throw new Error(`upload ${res.status} ${res.body}`);
  return performance.now() - t0;
}

/** The upload-session protocol: initiate, 8 MiB appends, complete with the digest. */
async function sessionUpload(base: string, file: string, auth: Record<string, string>, digest: string): Promise<number> {
  const t0 = performance.now();
  const started = await post(`${base}/api/blobs/uploads?size=${SIZE}`, null, auth);
  if (started.status !== 202) throw new Error(`initiate ${started.status} ${started.body}`);
  const { id, token } = JSON.parse(started.body) as { id: string; token: string };
  for (let offset = 0; offset < SIZE; offset += CHUNK) {
    const end = Math.min(SIZE, offset + CHUNK) - 1;
    const res = await post(`${base}/api/blobs/uploads/${id}/append`, file, { 'upload-token': token }, { start: offset, end });
    if (res.status !== 203) throw new Error(`append ${res.status} ${res.body}`);
  }
  const done = await post(`${base}/api/blobs/uploads/${id}/complete?digest=${digest}`, null, { 'upload-token': token });
  if (done.status !== 201) throw new Error(`complete ${done.status} ${done.body}`);
  return performance.now() - t0;
}

function download(url: string, headers: Record<string, string>, expected: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      const hash = createHash('sha256');
      res.on('data', (c: Buffer) => hash.update(c));
      res.on('end', () => {
        const got = `sha256:${hash.digest('hex')}`;
        if (res.statusCode !== 200 || got !== expected) reject(new Error(`download ${res.statusCode} ${got}`));
        else resolve(performance.now() - t0);
      });
    })
      .on('error', reject)
      .end();
  });
}

async function startBaseline(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'baseline-server.ts'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  return { url, proc };
}

async function vmHWM(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gbps = (ms: number) => (SIZE / 1024 ** 3 / (ms / 1000)).toFixed(2);

const scratch = await makeTempDir('blobd-bench-');
try {
  const file = path.join(scratch, 'payload');
  const digest = await writeRandomFile(file, SIZE);
  const blobd = await startDaemon({ dataDir: path.join(scratch, 'blobd-data') });
  const baseline = await startBaseline(path.join(scratch, 'baseline-data'));
  const auth = { authorization: `Bearer ${blobd.token}` };
  const times = {
    blobdUp: [] as number[],
    blobdSession: [] as number[],
    baseUp: [] as number[],
    blobdDown: [] as number[],
    baseDown: [] as number[],
  };
  const rssIdle = await vmHWM(blobd.proc.pid!);
  // Alternate who goes first, so neither side always inherits the other's dirty page cache.
  for (let i = 0; i < ROUNDS; i++) {
    const ups = [
      async () => times.baseUp.push(await upload(baseline.url, file, {})),
      async () => times.blobdUp.push(await upload(`${blobd.url}/api/blobs`, file, auth)),
      async () => times.blobdSession.push(await sessionUpload(blobd.url, file, auth, digest)),
    ];
    const downs = [
      async () => times.baseDown.push(await download(`${baseline.url}/${digest}`, {}, digest)),
      async () => times.blobdDown.push(await download(`${blobd.url}/api/blobs/${digest}`, auth, digest)),
    ];
    if (i % 2 === 1) ups.reverse(), downs.reverse();
    for (const step of [...ups, ...downs]) {
      execFileSync('sync'); // start every step with no dirty pages from the previous one
      await step();
    }
  }
  const peak = await vmHWM(blobd.proc.pid!);
  const row = (name: string, b: number[], base: number[]) =>
    `${name.padEnd(9)} blobd ${median(b).toFixed(0).padStart(6)} ms (${gbps(median(b))} GiB/s)   baseline ${median(base).toFixed(0).padStart(6)} ms (${gbps(median(base))} GiB/s)   ratio ${(median(b) / median(base)).toFixed(2)}`;
  console.log(`${SIZE} bytes, median of ${ROUNDS} rounds; the baseline is the bare one-shot in every row`);
  console.log(row('upload', times.blobdUp, times.baseUp));
  console.log(row('session', times.blobdSession, times.baseUp) + `   (${Math.ceil(SIZE / CHUNK)} appends of 8 MiB + complete)`);
  console.log(row('download', times.blobdDown, times.baseDown));
  if (process.env.BENCH_VERBOSE) console.log(times);
  console.log(`blobd VmHWM: ${rssIdle.toFixed(0)} MB after start, ${peak.toFixed(0)} MB peak`);
  await blobd.stop();
  baseline.proc.kill('SIGTERM');
} finally {
  await removeDir(scratch);
}
