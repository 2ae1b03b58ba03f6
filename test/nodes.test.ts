// Two daemons on one PostgreSQL database and one RGW bucket, each with its own data directory and no
// load balancer: what nodes share (admin token, API tokens, signing keys and their rotation), what only one
// node may do at a time (a session's request, GC, fsck), and what one node's start must leave to the others
// (their sessions, their pending idempotency claims).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { randomData, sha256 } from './helpers/bytes.ts';
import { BLOBD, databaseFor, makeTempDir, removeDir, s3ServeArgs, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { pgTestOptions } from './helpers/postgres.ts';
import { rgwTestOptions } from './helpers/rgw.ts';
import { append, complete, heldBody, initiate, status } from './helpers/sessions.ts';
import { waitFor } from './helpers/wait.ts';
import { PostgresMetadataStore } from '../src/storage/postgres/pg-metadata-store.ts';

const MiB = 1024 * 1024;

/** `blobd serve` that must fail at start: its exit code and what it printed on stderr. */
function serveFails(dataDir: string, args: string[], env: Record<string, string> = {}) {
  return promisify(execFile)(process.execPath, [BLOBD, 'serve', '--port', '0', '--s3-api-port', 'false', '--host', '127.0.0.1', '--data', dataDir, ...args], {
    env: { ...process.env, ...env },
    timeout: 60_000,
    killSignal: 'SIGKILL',
  }).then(
    (r) => ({ code: 0 as number | null, stderr: r.stderr }),
    (err: { code: number | null; stderr: string }) => err,
  );
}
const pg = pgTestOptions();
const rgw = rgwTestOptions();
const options = pg.skip !== undefined ? pg : rgw;

describe('two nodes on one PostgreSQL database and one bucket', options, () => {
  let a: Daemon;
  let b: Daemon;
  let url: string;
  let extra: { args: string[]; env: Record<string, string> };
  let db: PostgresMetadataStore;
  const dirs: string[] = [];

  /** Node B (or a restart of A) on A's database and bucket, with its own data directory. */
  const node = (dataDir: string) =>
    startDaemon({
      dataDir,
      store: 'fs', // the S3 flags come from `extra`: the same bucket as node A's
      metadata: 'sqlite', // likewise the database
      adminToken: null,
      args: ['--metadata', url, '--lease-ttl', '1s', '--key-refresh', '200ms', '--gc-grace', '0s', '--gc-interval', '0s', ...extra.args],
      env: extra.env,
    });

  before(async () => {
    const dirA = await makeTempDir();
    dirs.push(dirA);
    url = await databaseFor(dirA);
    a = await startDaemon({
      dataDir: dirA,
      store: 's3',
      metadata: 'postgres',
      adminToken: null,
      args: ['--lease-ttl', '1s', '--key-refresh', '200ms', '--gc-grace', '0s', '--gc-interval', '0s'],
    });
    extra = s3ServeArgs(a.s3!);
    const dirB = await makeTempDir();
    dirs.push(dirB);
    b = await node(dirB);
    db = await PostgresMetadataStore.open(url);
  });
  after(async () => {
    await db?.close();
    await a?.stop();
    await b?.stop();
    for (const dir of dirs) await removeDir(dir);
  });

  const as = (d: Daemon, token: string) => (p: string, init: RequestInit = {}) =>
    fetch(d.url + p, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } });

  test('a node whose bytes are in its data directory serves alone: refused beside live nodes, and nodes are refused beside it', async () => {
    const dirFs = await makeTempDir();
    const dirC = await makeTempDir();
    const dirD = await makeTempDir();
    dirs.push(dirFs, dirC, dirD);
    // The database records where its nodes keep blobs (the first node's store): the others must match.
    const beside = await serveFails(dirFs, ['--metadata', url]);
    assert.equal(beside.code, 1);
    assert.match(beside.stderr, /^blobd: the nodes on this database keep their blobs in S3 bucket [^\n]*, not in the data directory \(--store fs\): give every node the same --store s3 settings\n$/);
    // Alone on a database of its own it starts; a node with the shared bucket is refused there, running or not:
    // the blobs of that database are the first node's files.
    const lone = await startDaemon({ dataDir: dirC, store: 'fs', metadata: 'postgres', args: ['--lease-ttl', '1s'] });
    const s3onLone = () => serveFails(dirD, ['--metadata', lone.databaseUrl!, ...extra.args], extra.env);
    try {
      const s3node = await s3onLone();
      assert.equal(s3node.code, 1);
      assert.match(s3node.stderr, /^blobd: the nodes on this database keep their blobs in the data directory \(--store fs\), not in S3 bucket [^\n]*\n$/);
    } finally {
      await lone.stop();
    }
    assert.match((await s3onLone()).stderr, /keep their blobs in the data directory/);
    // Stopped, it let its leases go: it starts again at once.
    const again = await startDaemon({ dataDir: dirC, store: 'fs', metadata: 'postgres', args: ['--lease-ttl', '1s'] });
    assert.equal((await fetch(`${again.url}/healthz`)).status, 200);
    await again.stop();
  });

  test('a node whose --s3-prefix (or bucket) differs from the other nodes\' is refused; another endpoint name is a warning', async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const prefix = extra.args.indexOf('--s3-prefix');
    assert.ok(prefix >= 0, `the nodes' flags name a prefix: ${extra.args.join(' ')}`);
    const other = [...extra.args];
    other[prefix + 1] = `${other[prefix + 1]!.replace(/\/$/, '')}-other/`;
    const refused = await serveFails(dir, ['--metadata', url, ...other], extra.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^blobd: the nodes on this database keep their blobs in S3 bucket \S+ prefix \S+ at [^\n]*, not in S3 bucket \S+ prefix \S+-other\/ at [^\n]*: give every node the same --store s3 settings\n$/);
    // Nothing of it was recorded: the others go on as before.
    assert.equal((await fetch(`${a.url}/readyz`)).status, 200);
  });

  test('every node accepts the one admin token, each keeps a copy in its data directory, and API tokens made on one work on the other', async () => {
    const tokenA = (await readFile(path.join(a.dataDir, 'admin-token'), 'utf8')).trim();
    const tokenB = (await readFile(path.join(b.dataDir, 'admin-token'), 'utf8')).trim();
    assert.equal(tokenA, tokenB);
    assert.equal(a.token, tokenA);
    const made = await as(a, tokenA)('/api/tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'writer', scopes: ['blobs:write', 'blobs:read'] }),
    });
    assert.equal(made.status, 201);
    const { token } = (await made.json()) as { token: string };
    const put = await as(b, token)('/api/blobs', { method: 'POST', body: 'made with a token from node A' });
    assert.equal(put.status, 201, await put.clone().text());
    const { digest } = (await put.json()) as { digest: string };
    const got = await as(a, token)(`/api/blobs/${digest}`);
    assert.equal(await got.text(), 'made with a token from node A');
  });

  test('a URL signed on one node verifies on the other, and a key rotated on one signs on both within --key-refresh', async () => {
    const admin = as(a, a.token);
    const { digest } = (await (await admin('/api/blobs', { method: 'POST', body: 'signed bytes' })).json()) as { digest: string };
    const sign = async (d: Daemon) => {
      const res = await as(d, a.token)('/api/signed-urls', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 }),
      });
      assert.equal(res.status, 201);
      const { url: signed } = (await res.json()) as { url: string };
      return { target: signed.slice(new URL(signed).origin.length), kid: new URL(signed).searchParams.get('blobd-key')! };
    };
    const onA = await sign(a);
    const viaB = await fetch(b.url + onA.target);
    assert.equal(viaB.status, 200);
    assert.equal(await viaB.text(), 'signed bytes');
    const rotated = await admin('/api/admin/keys/rotate', { method: 'POST' });
    assert.equal(rotated.status, 201, await rotated.clone().text());
    const { key_id: kid } = (await rotated.json()) as { key_id: string };
    assert.notEqual(kid, onA.kid);
    const onB = await waitFor(async () => {
      const s = await sign(b);
      return s.kid === kid ? s : null;
    }, 'node B to sign with the key rotated on node A', 10_000);
    assert.equal((await fetch(a.url + onB!.target)).status, 200);
    assert.equal((await fetch(b.url + onA.target)).status, 200, 'URLs signed with the older key still verify');
  });

  test("one request at a time per session across nodes: the other node's append is 409 and keeps nothing; a node's restart leaves it alone", async () => {
    const data = randomData(12 * MiB);
    const s = await initiate(a);
    const held = heldBody(data.subarray(0, 8 * MiB), 6 * MiB);
    const first = append(a, s, held.stream);
    // Node A holds the session's lease while its request runs (an S3 part is on its way).
    await waitFor(async () => (await db.getUpload(s.id))?.leaseHolder !== null, 'node A to hold the lease', 30_000);
    const second = await append(b, s, data.subarray(8 * MiB));
    assert.equal(second.status, 409);
    assert.equal(await errorCode(second), 'upload_locked');
    // Node B restarts meanwhile: its start must not touch a session another live node is using.
    await b.stop();
    b = await node(b.dataDir);
    held.release();
    const r1 = await first;
    assert.equal(r1.status, 203, await r1.clone().text());
    assert.equal(r1.headers.get('upload-offset'), String(8 * MiB));
    // The rest through node B: it goes on from A's acknowledged offset.
    const r2 = await append(b, s, data.subarray(8 * MiB));
    assert.equal(r2.status, 203, await r2.clone().text());
    const done = await complete(a, s);
    assert.equal(done.status, 201, await done.clone().text());
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
    const back = await as(b, a.token)(`/api/blobs/${sha256(data)}`);
    assert.equal(sha256(new Uint8Array(await back.arrayBuffer())), sha256(data));
  });

  test('a crashed holder: its lease runs out after --lease-ttl and the other node resumes at the acknowledged offset', async () => {
    const data = randomData(10 * MiB);
    const s = await initiate(b);
    assert.equal((await append(b, s, data.subarray(0, 6 * MiB))).status, 203);
    const held = heldBody(data.subarray(6 * MiB), MiB);
    const cut = append(b, s, held.stream).catch(() => null);
    await waitFor(async () => (await db.getUpload(s.id))?.leaseHolder !== null, 'node B to hold the lease', 30_000);
    await b.kill9();
    await cut;
    assert.equal((await status(a, s)).offset, 6 * MiB);
    const resumed = await waitFor(async () => {
      const r = await append(a, s, data.subarray(6 * MiB));
      if (r.status === 409) return null;
      return r;
    }, 'the lapsed lease to let node A in', 20_000);
    assert.equal(resumed!.status, 203, await resumed!.clone().text());
    const done = await complete(a, s);
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
    b = await node(b.dataDir);
  });

  test('GC and fsck run on one node at a time: while another holds their lease, the others answer 409 maintenance_running', async () => {
    const admin = as(b, a.token);
    for (const task of ['gc', 'fsck'] as const) {
      const now = Date.now();
      assert.equal(await db.acquireLease(task, 'another-node', now, now + 60_000), true);
      try {
        const refused = await admin(`/api/admin/${task}`, { method: 'POST' });
        assert.equal(refused.status, 409, await refused.clone().text());
        assert.equal(await errorCode(refused), 'maintenance_running');
      } finally {
        await db.releaseLease(task, 'another-node');
      }
      const ran = await admin(`/api/admin/${task}`, { method: 'POST' });
      assert.equal(ran.status, 200, await ran.clone().text());
    }
  });

  test("a node's start drops its own and dead nodes' pending idempotency claims, never a live node's", async () => {
    const idA = (await readFile(path.join(a.dataDir, 'node-id'), 'utf8')).trim();
    const idB = (await readFile(path.join(b.dataDir, 'node-id'), 'utf8')).trim();
    assert.notEqual(idA, idB);
    const now = Date.now();
    for (const [key, holder] of [['of-a', idA], ['of-b', idB], ['of-a-dead-node', 'a-node-that-is-gone']] as const) {
      assert.equal((await db.claimIdempotencyKey('p', key, 'f', now, now - 60_000, holder)).claimed, true);
    }
    await a.stop();
    a = await startDaemon({
      dataDir: a.dataDir,
      store: 's3',
      metadata: 'postgres',
      adminToken: null,
      args: ['--lease-ttl', '1s', '--key-refresh', '200ms', '--gc-grace', '0s', '--gc-interval', '0s'],
    });
    const claimed = async (key: string) => !(await db.claimIdempotencyKey('p', key, 'other', Date.now(), Date.now() - 60_000, 'probe')).claimed;
    assert.equal(await claimed('of-b'), true, "node B's pending claim stays: its request may be running");
    assert.equal(await claimed('of-a'), false, "node A's own claim (its previous run) was dropped");
    assert.equal(await claimed('of-a-dead-node'), false, "a dead node's claim was dropped");
  });
});

describe('a node whose liveness lease lapsed', pg, () => {
  test('goes on alone, but stops (exit 1) when a node started meanwhile beside which it may not run; that node goes on', async () => {
    const dirA = await makeTempDir();
    const dirB = await makeTempDir();
    const a = await startDaemon({ dataDir: dirA, store: 'fs', metadata: 'postgres', args: ['--lease-ttl', '1s'] });
    const db = await PostgresMetadataStore.open(a.databaseUrl!);
    let b: Daemon | undefined;
    try {
      const exited = new Promise<number | null>((resolve) => a.proc.once('exit', (code) => resolve(code)));
      const lapses = () => a.output().split("this node's liveness lease lapsed").length - 1;
      // Stopped until its lease has run out in the database: other nodes now take A for gone.
      const stall = async () => {
        a.proc.kill('SIGSTOP');
        await waitFor(async () => (await db.liveLeaseHolders('node:', Date.now())).length === 0, "A's lease to run out");
      };
      // Stalled past its lease with nobody starting meanwhile: it looks, finds no one, and serves on.
      await stall();
      a.proc.kill('SIGCONT');
      await waitFor(() => a.output().includes('serving on'), 'A to look for other nodes and serve on');
      assert.equal(lapses(), 1, a.output());
      assert.equal((await a.api('/healthz')).status, 200);

      // Stalled again, and a node with its own data directory starts on the database meanwhile. (Its longer
      // lease keeps it alive for A's look on a loaded machine; the start checks only A's.)
      await stall();
      b = await startDaemon({ dataDir: dirB, store: 'fs', metadata: 'sqlite', adminToken: null, args: ['--metadata', a.databaseUrl!, '--lease-ttl', '10s'] });
      a.proc.kill('SIGCONT');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 20_000))]);
      assert.equal(code, 1, a.output());
      assert.match(a.output(), /blobd: this node's liveness lease lapsed [^\n]*and meanwhile another blobd node is running on this metadata database/);
      // A let its leases go; the newer node serves on, the only one alive.
      assert.equal((await db.liveLeaseHolders('node:', Date.now())).length, 1);
      assert.equal((await fetch(`${b.url}/healthz`)).status, 200);
      assert.equal(b.proc.exitCode, null);
    } finally {
      a.proc.kill('SIGCONT');
      await a.stop();
      await b?.stop();
      await db.close();
      await removeDir(dirA);
      await removeDir(dirB);
    }
  });
});
