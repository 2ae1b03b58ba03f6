// The long CLI tests, in a file of their own so they run beside the rest: a 1 GiB `blobd put` interrupted
// with SIGINT and rerun, a put that outlives a daemon crash and restart, and a `get -o` whose partial file
// was cut short. "Fewer bytes the second time" is measured on the daemon's side: its session offset before
// the rerun, and what the daemon process read (or wrote) during the rerun, from /proc/PID/io.
import assert from 'node:assert/strict';
import { rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sha256, sha256sum, writeRandomFile } from './helpers/bytes.ts';
import { cliEnv, processIo, rememberedUploads, runCli, startCli } from './helpers/cli.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { failingProxy } from './helpers/failing-proxy.ts';
import { waitFor } from './helpers/wait.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** The session `blobd put` remembers for `file`, once it has written its state. */
async function rememberedSession(stateHome: string, file: string) {
  const state = (await rememberedUploads(stateHome)).find((s) => s.path === file);
  return state?.parts[0];
}

/** The daemon's offset of an upload session (its status route, with the session's token). */
async function sessionOffset(d: Daemon, session: { id: string; token: string }): Promise<number> {
  const res = await d.api(`/api/blobs/uploads/${session.id}`, { auth: false, headers: { 'upload-token': session.token } });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { offset: number }).offset;
}

describe('blobd CLI: resuming', () => {
  let work: string;
  let d: Daemon;
  let env: Record<string, string>;
  let stateHome: string;
  let big: string;
  let bigDigest: string;

  before(async () => {
    work = await makeTempDir('blobd-cli-resume-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    stateHome = path.join(work, 'state');
    env = cliEnv(d, stateHome);
    big = path.join(work, 'big.bin');
    bigDigest = await writeRandomFile(big, GiB);
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  test('a 1 GiB put interrupted with SIGINT resumes on rerun: the daemon receives only the rest', async () => {
    // 64 MiB requests, so that the daemon acknowledges progress early and often.
    const first = startCli(['put', big, '--chunk-size', '64MiB'], env);
    const session = (await waitFor(() => rememberedSession(stateHome, big), 'put to remember its session', 60_000))!;
    await waitFor(async () => (await sessionOffset(d, session)) >= 128 * MiB, 'the daemon to hold 128 MiB', 120_000);
    first.proc.kill('SIGINT');
    const interrupted = await first.done;
    assert.equal(interrupted.code, 130, `exit code after SIGINT; stderr: ${interrupted.stderr}`);
    assert.match(interrupted.stderr, /interrupted; rerun the same command to resume/);

    const held = await sessionOffset(d, session);
    assert.ok(held >= 128 * MiB && held < GiB, `the daemon holds part of the file: ${held}`);
    const before = await processIo(d.proc.pid!);
    const rerun = await runCli(['put', big, '--chunk-size', '64MiB'], env);
    const during = await processIo(d.proc.pid!);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal(rerun.stdout.toString().trim(), bigDigest);
    const resumedAt = Number(/resuming at (\d+) bytes/.exec(rerun.stderr)?.[1]);
    // The daemon may still have been taking in what was in flight when the first run stopped.
    assert.ok(resumedAt >= held, `resumed at ${resumedAt}, the daemon held ${held}`);
    // Every byte the daemon read in the rerun — sockets and files alike — is fewer than a whole upload.
    const read = during.rchar - before.rchar;
    assert.ok(read < GiB - held / 2, `the daemon read ${read} bytes during the rerun; a whole upload is ${GiB}`);
    assert.ok(read >= GiB - resumedAt, `the rest (${GiB - resumedAt} bytes) did arrive: ${read}`);

    const res = await d.api(`/api/blobs/${bigDigest}`, { method: 'HEAD' });
    assert.equal(res.headers.get('content-length'), String(GiB));
    assert.deepEqual(await rememberedUploads(stateHome), [], 'the finished upload is forgotten');
  });

  test('get -o interrupted with SIGINT says so (exit 130); a cut-short partial file resumes with a Range request', async () => {
    const out = path.join(work, 'copy.bin');
    const partial = `${out}.blobd-part`;
    const first = startCli(['get', bigDigest, '-o', out], env);
    await waitFor(async () => ((await stat(partial).catch(() => null))?.size ?? 0) >= 64 * MiB, 'the partial file to reach 64 MiB', 120_000);
    first.proc.kill('SIGINT');
    const interrupted = await first.done;
    assert.equal(interrupted.code, 130, `exit code after SIGINT; signal ${interrupted.signal}; stderr: ${interrupted.stderr}`);
    assert.equal(interrupted.stderr, 'blobd: interrupted; rerun the same command to resume\n');
    assert.equal((await stat(out).catch(() => null)), null, 'no FILE before it is complete and verified');
    assert.ok((await stat(partial)).size >= 64 * MiB, 'the partial file is kept for the rerun');
    // Cut it at an odd place, as a crash might.
    const keep = 32 * MiB + 12345;
    await truncate(partial, keep);

    const before = await processIo(d.proc.pid!);
    const rerun = await runCli(['get', bigDigest, '-o', out], env);
    const during = await processIo(d.proc.pid!);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, new RegExp(`resuming at ${keep} bytes`));
    const sent = during.wchar - before.wchar;
    assert.ok(sent < GiB, `the daemon wrote ${sent} bytes during the rerun; the whole blob is ${GiB}`);
    assert.ok(sent >= GiB - keep, `the rest (${GiB - keep} bytes) was sent: ${sent}`);
    assert.equal(sha256sum(out), bigDigest);
    assert.equal(await stat(partial).catch(() => null), null, 'the partial file became FILE');
    await rm(out);
  });

  test('a put behind a load balancer whose node goes away (502) goes on from what the daemon holds; a lost complete says rerun', async () => {
    const file = path.join(work, 'small.bin');
    const digest = await writeRandomFile(file, 6 * MiB + 123);
    // nginx's answer while the node it picked restarts: to the second and fourth appends, and the first complete.
    let appends = 0;
    let completes = 0;
    const { endpoint, server } = await failingProxy(
      d.url,
      (method, url) => {
        if (method === 'POST' && url.endsWith('/append')) return ++appends === 2 || appends === 4;
        if (method === 'POST' && url.includes('/complete')) return ++completes === 1;
        return false;
      },
      { status: 502, contentType: 'text/html', body: '<html><body><h1>502 Bad Gateway</h1></body></html>' },
    );
    try {
      const viaProxy = { ...env, BLOBD_URL: endpoint };
      const run = await runCli(['put', file, '--chunk-size', '1MiB'], viaProxy);
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr.trim(), /^blobd: http_502: .*rerun the same command to resume$/);
      assert.equal(appends, 9, 'seven appends, two of them sent again after a 502');
      const rerun = await runCli(['put', file, '--chunk-size', '1MiB'], viaProxy);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.equal(rerun.stdout.toString().trim(), digest);
      assert.equal(appends, 9, 'the rerun only completed');
      const res = await d.api(`/api/blobs/${digest}`);
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
    } finally {
      server.close();
      await rm(file);
    }
  });

  test('a put whose session is cancelled elsewhere while it sends starts afresh once, and stores the file', async () => {
    const file = path.join(work, 'vanishing.bin');
    const digest = await writeRandomFile(file, 5 * MiB + 77);
    let appends = 0;
    let cancelled = 0;
    const { endpoint, server } = await failingProxy(
      d.url,
      async (method, url, headers) => {
        // At the third append someone else cancels its session (another put of the file that completed it
        // first ends it the same way: the session is gone). The proxy then reads the append's body and gives
        // the daemon's answer to an append on a gone session: forwarded, the daemon would answer before the
        // body ended, and the proxy's own server could reset the client's connection — a proxy artefact.
        if (method === 'POST' && url.endsWith('/append') && ++appends === 3) {
          const id = /\/uploads\/([^/]+)\/append$/.exec(url)![1]!;
          const res = await fetch(`${d.url}/api/blobs/uploads/${id}`, { method: 'DELETE', headers: { 'upload-token': String(headers['upload-token']) } });
          cancelled = res.status;
          return true;
        }
        return false;
      },
      { status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'upload_not_found', message: 'no such upload session' } }) },
    );
    try {
      const run = await runCli(['put', file, '--chunk-size', '1MiB'], { ...env, BLOBD_URL: endpoint });
      assert.equal(cancelled, 204, 'the session was cancelled under the put');
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout.toString().trim(), digest);
      assert.match(run.stderr, /completed or cancelled elsewhere meanwhile: starting afresh/);
      assert.equal(appends, 3 + 6, 'two appends before the cancel, then the whole file again');
      const res = await d.api(`/api/blobs/${digest}`);
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
      assert.equal(await rememberedSession(stateHome, file), undefined, 'no session remembered for the file');
    } finally {
      server.close();
      await rm(file);
    }
  });

  test('a put survives a daemon crash and restart: the rerun continues from what the daemon acknowledged', async () => {
    const file = path.join(work, 'medium.bin');
    const digest = await writeRandomFile(file, 256 * MiB);
    const first = startCli(['put', file, '--chunk-size', '16MiB'], env);
    const session = (await waitFor(() => rememberedSession(stateHome, file), 'put to remember its session', 60_000))!;
    await waitFor(async () => (await sessionOffset(d, session)) >= 32 * MiB, 'the daemon to hold 32 MiB', 120_000);
    const port = new URL(d.url).port;
    await d.kill9();
    const cut = await first.done;
    assert.equal(cut.code, 1, cut.stderr);
    assert.match(cut.stderr.trim(), /^blobd: \w+: .*rerun the same command to resume$/);

    d = await startDaemon({ dataDir: d.dataDir, args: ['--port', port] });
    const acknowledged = await sessionOffset(d, session);
    assert.ok(acknowledged >= 32 * MiB, `the acknowledged offset survived the crash: ${acknowledged}`);
    const rerun = await runCli(['put', file, '--chunk-size', '16MiB'], env);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, new RegExp(`resuming at ${acknowledged} bytes`));
    assert.equal(rerun.stdout.toString().trim(), digest);
    const res = await d.api(`/api/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    await rm(file);
  });
});
