// npm run bench, CLI part: `blobd get -o` of a BENCH_SIZE (default 1 GiB) blob against `curl -o` of the
// same URL, and `blobd put` against curl posting the same file to POST /api/blobs — interleaved rounds
// (who goes first alternates), one daemon, the same disk, medians and ratios in one run. Each command's
// time is its whole process, startup included. Reports; asserts nothing about speed.
import { execFileSync, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { writeRandomFile } from '../helpers/bytes.ts';
import { BLOBD, makeTempDir, removeDir, startDaemon } from '../helpers/daemon.ts';
import { envCount, envSize } from './bench-env.ts';

const SIZE = envSize('BENCH_SIZE', 1024 ** 3);
const ROUNDS = envCount('BENCH_ROUNDS', 3);
/**
 * curl --data-binary @FILE reads the whole file into memory first, and curl 7.x refuses files of 1 GiB or
 * more ("out of memory"); from there on curl streams the file with -T (an upload of the same bytes).
 */
const CURL_POST = SIZE < 1024 ** 3 ? (file: string) => ['--data-binary', `@${file}`] : (file: string) => ['-T', file, '-X', 'POST'];

/** Runs a command to its end; resolves with its wall time in ms (throws on a non-zero exit). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd} ${args.join(' ')} → ${code}: ${stderr}`))));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gibps = (ms: number) => (SIZE / 1024 ** 3 / (ms / 1000)).toFixed(2);

const scratch = await makeTempDir('blobd-bench-cli-');
try {
  const file = path.join(scratch, 'payload');
  const digest = await writeRandomFile(file, SIZE);
  const d = await startDaemon({ dataDir: path.join(scratch, 'data') });
  const env = { ...process.env, BLOBD_URL: d.url, BLOBD_TOKEN: d.token, XDG_STATE_HOME: path.join(scratch, 'state') };
  const auth = ['-H', `Authorization: Bearer ${d.token}`];
  const times = { blobdGet: [] as number[], curlGet: [] as number[], blobdPut: [] as number[], curlPut: [] as number[] };
  const out = path.join(scratch, 'out');
  const clean = async () => {
    // No leftovers between steps: no output file, no remembered digest (put would skip the upload), no
    // dirty pages of the previous step.
    await rm(out, { force: true });
    await rm(env.XDG_STATE_HOME, { recursive: true, force: true });
    execFileSync('sync');
  };
  for (let i = 0; i < ROUNDS; i++) {
    const puts = [
      async () => times.curlPut.push(await timed('curl', ['-sS', '-o', '/dev/null', '-f', ...auth, ...CURL_POST(file), `${d.url}/api/blobs`], env)),
      async () => times.blobdPut.push(await timed(process.execPath, [BLOBD, 'put', file], env)),
    ];
    const gets = [
      async () => times.curlGet.push(await timed('curl', ['-sS', '-f', '-o', out, ...auth, `${d.url}/api/blobs/${digest}`], env)),
      async () => times.blobdGet.push(await timed(process.execPath, [BLOBD, 'get', digest, '-o', out], env)),
    ];
    if (i % 2 === 1) puts.reverse(), gets.reverse();
    for (const step of [...puts, ...gets]) {
      await clean();
      await step();
    }
  }
  await clean();
  const row = (name: string, blobd: number[], curl: number[], how: string) =>
    `${name.padEnd(4)} blobd ${median(blobd).toFixed(0).padStart(6)} ms (${gibps(median(blobd))} GiB/s)   curl ${median(curl).toFixed(0).padStart(6)} ms (${gibps(median(curl))} GiB/s)   ratio ${(median(blobd) / median(curl)).toFixed(2)}   ${how}`;
  console.log(`CLI: ${SIZE} bytes, median of ${ROUNDS} interleaved rounds, whole processes (startup included)`);
  console.log(row('get', times.blobdGet, times.curlGet, 'blobd get DIGEST -o FILE  vs  curl -o FILE'));
  console.log(row('put', times.blobdPut, times.curlPut, `blobd put FILE  vs  curl ${CURL_POST('FILE').join(' ')} POST /api/blobs`));
  if (process.env.BENCH_VERBOSE) console.log(times);
  await d.stop();
} finally {
  await removeDir(scratch);
}
