// Three daemons on one PostgreSQL and one RGW bucket, behind nginx (round robin, no affinity), driven the way
// users drive them: a 300 MB session whose appends land on different nodes, a session whose node is killed
// mid-append and resumed through another, one content uploaded through every node at once (stored once), GC
// on one node racing dedup on the others (G4), tus and `blobd put` across a node's restart, and /metrics.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as tus from 'tus-js-client';
import { randomData, sha256, writeRandomFile } from './helpers/bytes.ts';
import { cliEnv, runCli } from './helpers/cli.ts';
import { clusterTestOptions, digestOf, request, startCluster, type Cluster, type ClusterNode } from './helpers/cluster.ts';
import { upstreamOf } from './helpers/nginx.ts';
import { waitFor } from './helpers/wait.ts';
import type { Fsck } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0' };

interface Session {
  id: string;
  token: string;
}

async function text(res: Response): Promise<string> {
  return res.text().catch(() => '(body lost)');
}

async function json<T>(res: Response, ok: number[], what: string): Promise<T> {
  const body = await text(res);
  assert.ok(ok.includes(res.status), `${what} → ${res.status} ${body} (via ${res.headers.get('x-upstream') ?? 'a node directly'})`);
  return JSON.parse(body) as T;
}

async function initiate(c: Cluster, base: string, query = ''): Promise<Session> {
  const res = await request(base, c.token, `/api/blobs/uploads${query ? `?${query}` : ''}`, { method: 'POST' });
  return json<Session>(res, [202], 'initiate');
}

function appendTo(base: string, s: Session, from: number, body: BodyInit, signal?: AbortSignal): Promise<Response> {
  return request(base, '', `/api/blobs/uploads/${s.id}/append`, {
    method: 'POST',
    body,
    signal,
    headers: { 'upload-token': s.token, 'upload-offset': String(from), 'content-type': 'application/offset+octet-stream' },
  });
}

async function sessionOffset(base: string, s: Session): Promise<{ status: number; offset: number; state: string | null }> {
  const res = await request(base, '', `/api/blobs/uploads/${s.id}`, { method: 'HEAD', headers: { 'upload-token': s.token } });
  return { status: res.status, offset: Number(res.headers.get('upload-offset')), state: res.headers.get('upload-state') };
}

/**
 * Appends `data` from `from` on through `base` (nginx) in requests of `chunk` bytes. A 409 upload_locked (the
 * session is still held by a node that died mid-request, until its lease runs out) is waited out, bounded.
 */
async function appendRest(c: Cluster, base: string, s: Session, data: Uint8Array<ArrayBuffer>, from: number, chunk: number) {
  let locked = 0;
  const upstreams: string[] = [];
  for (let offset = from; offset < data.length; ) {
    const end = Math.min(data.length, offset + chunk);
    const res = await appendTo(base, s, offset, data.subarray(offset, end));
    const body = await text(res);
    if (res.status === 409 && body.includes('upload_locked') && ++locked <= 120) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    assert.equal(res.status, 203, `append ${offset}..${end} via ${res.headers.get('x-upstream') ?? base} → ${res.status} ${body}${res.status === 502 ? `\nnginx: ${c.nginx.logTail(4)}` : ''}`);
    assert.equal(Number(res.headers.get('upload-offset')), end);
    upstreams.push(upstreamOf(res) ?? '?');
    offset = end;
  }
  return { locked, upstreams };
}

async function completeAt(base: string, s: Session, digest: string): Promise<{ digest: string; size: number }> {
  const res = await request(base, '', `/api/blobs/uploads/${s.id}/complete?digest=${digest}`, { method: 'POST', headers: { 'upload-token': s.token } });
  return json(res, [201], `complete ${s.id}`);
}

async function gcOn(node: ClusterNode): Promise<{ digests: string[] }> {
  const res = await node.api('/api/admin/gc', { method: 'POST' });
  return json(res, [200], `POST /api/admin/gc on node ${node.n}`);
}

async function fsckClean(c: Cluster): Promise<Fsck> {
  const report = await json<Fsck>(await c.api('/api/admin/fsck', { method: 'POST' }), [200], 'fsck');
  assert.deepEqual({ corrupt: report.corrupt, missing: report.missing, orphans: report.orphans }, { corrupt: [], missing: [], orphans: [] }, `fsck: ${JSON.stringify(report)}`);
  return report;
}

async function newToken(c: Cluster, scopes: string[]): Promise<string> {
  const res = await c.api('/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `w${randomBytes(4).toString('hex')}`, scopes }) });
  return (await json<{ token: string }>(res, [201], 'POST /api/tokens')).token;
}

/**
 * Bytes [start, end) of a large content made on the fly: a random MiB, every MiB stamped with its index, so
 * any range can be made again without keeping the whole.
 */
function makeContent(size: number) {
  const block = randomBytes(MiB);
  const range = (start: number, end: number): Buffer<ArrayBuffer> => {
    const out = Buffer.alloc(end - start) as Buffer<ArrayBuffer>;
    for (let pos = start; pos < end; ) {
      const i = Math.floor(pos / MiB);
      const mib = Buffer.from(block);
      mib.writeUInt32BE(i, 0);
      const from = pos - i * MiB;
      const to = Math.min(MiB, end - i * MiB);
      mib.copy(out, pos - start, from, to);
      pos = i * MiB + to;
    }
    return out;
  };
  return { size, range };
}

const options = clusterTestOptions();

describe('three daemons on PostgreSQL + RGW behind nginx', { ...options, concurrency: false }, () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ nodes: 3, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
  });
  after(async () => {
    await c?.stop();
  });

  test('a 300 MB session appended through nginx lands on several nodes and completes with its digest', async (t) => {
    const SIZE = 300_000_000;
    const CHUNK = 32 * MiB;
    const content = makeContent(SIZE);
    const hash = createHash('sha256');
    const s = await initiate(c, c.url, `size=${SIZE}&filename=big.bin`);
    const upstreams: string[] = [];
    const took: number[] = [];
    const started = Date.now();
    for (let offset = 0; offset < SIZE; ) {
      const end = Math.min(SIZE, offset + CHUNK);
      const piece = content.range(offset, end);
      hash.update(piece);
      const sentAt = Date.now();
      const res = await appendTo(c.url, s, offset, piece);
      const body = await text(res);
      took.push(Date.now() - sentAt);
      // A client that waits for each answer never collides with itself: no 409, whichever node it reaches.
      assert.equal(res.status, 203, `append ${offset}..${end} via ${res.headers.get('x-upstream')} → ${res.status} ${body}`);
      assert.equal(Number(res.headers.get('upload-offset')), end);
      upstreams.push(upstreamOf(res) ?? '?');
      offset = end;
    }
    const digest = `sha256:${hash.digest('hex')}`;
    const appended = Date.now();
    const done = await completeAt(c.url, s, digest);
    assert.equal(done.digest, digest);
    assert.equal(done.size, SIZE);
    const completed = Date.now();
    const nodes = new Set(upstreams);
    t.diagnostic(`appends answered by ${[...nodes].map((u) => `node ${c.nodeAt(u)?.n ?? u} ×${upstreams.filter((x) => x === u).length}`).join(', ')}`);
    t.diagnostic(`appends ${((appended - started) / 1000).toFixed(1)} s (each, ms: ${took.join(' ')}), complete ${((completed - appended) / 1000).toFixed(1)} s`);
    assert.ok(nodes.size >= 2, `the appends landed on ${nodes.size} node(s): ${upstreams.join(' ')}`);

    // Downloaded through nginx (whichever node answers), and a range through each node directly.
    assert.equal(await digestOf(await c.api(`/api/blobs/${digest}`)), digest);
    for (const node of c.nodes) {
      const at = 100_000_000 + node.n * 7;
      const res = await node.api(`/api/blobs/${digest}`, { headers: { range: `bytes=${at}-${at + MiB - 1}` } });
      assert.equal(res.status, 206, `range on node ${node.n}`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(content.range(at, at + MiB)), `the range's bytes from node ${node.n}`);
    }
    t.diagnostic(`download ${((Date.now() - completed) / 1000).toFixed(1)} s`);
  });

  test('kill -9 of the node holding a session mid-append: the client resumes through nginx at the acknowledged offset', async (t) => {
    const data = randomData(20 * MiB);
    const digest = sha256(data);
    const s = await initiate(c, c.url, `size=${data.length}`);
    const first = await appendRest(c, c.url, s, data.subarray(0, 6 * MiB), 0, 6 * MiB);
    assert.equal(first.locked, 0);
    const acked = 6 * MiB;

    // The next append goes to node 2 directly, sends 8 MiB and then stalls, as a slow client would.
    const victim = c.nodes[1]!;
    let sent = acked;
    let release!: () => void;
    const stalled = new Promise<void>((r) => (release = r));
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent >= acked + 8 * MiB) await stalled;
        if (sent >= data.length) return ctl.close();
        const end = Math.min(data.length, sent + 256 * 1024);
        ctl.enqueue(data.subarray(sent, end));
        sent = end;
      },
    });
    try {
      const inFlight = appendTo(victim.url, s, acked, body).then(
        (res) => `answered ${res.status}`,
        (err: Error) => `failed: ${err.message}`,
      );
      // Node 2 holds the session once its lease is in the row (checked in PostgreSQL, not guessed by time).
      await waitFor(async () => {
        const rows = await c.pg.sql`SELECT lease_until FROM upload_sessions WHERE id = ${s.id}`;
        return rows.length === 1 && rows[0]!.lease_until !== null && Number(rows[0]!.lease_until) > Date.now();
      }, 'node 2 to take the session\'s lease', 20_000);
      await waitFor(() => sent >= acked + 8 * MiB, 'the client to have sent 8 MiB to node 2', 20_000);
      await victim.kill9();
      const killedAt = Date.now();
      release();
      t.diagnostic(`the in-flight append ${await inFlight}`);

      // Through nginx: the session is where the acknowledgements say (or further, if node 2 made more durable).
      const st = await sessionOffset(c.url, s);
      assert.equal(st.status, 204, 'HEAD of the session through nginx');
      assert.equal(st.state, 'open');
      assert.ok(st.offset >= acked && st.offset <= data.length, `resumes at ${st.offset}, acknowledged ${acked}`);
      const rest = await appendRest(c, c.url, s, data, st.offset, 8 * MiB);
      t.diagnostic(`resumed at ${st.offset} (acknowledged ${acked}); ${rest.locked} × 409 upload_locked, first append taken ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill; appends by ${rest.upstreams.map((u) => c.nodeAt(u)?.n ?? u).join(' ')}`);
      const done = await completeAt(c.url, s, digest);
      assert.equal(done.digest, digest);
      assert.equal(await digestOf(await c.api(`/api/blobs/${digest}`)), digest);
    } finally {
      release();
      if (!victim.daemon) await victim.restart();
    }
    assert.equal(await digestOf(await victim.api(`/api/blobs/${digest}`)), digest, 'the restarted node serves it too');
  });

  test('one content uploaded through every node at once is stored once: one row, one object', async (t) => {
    const data = randomData(12 * MiB);
    const digest = sha256(data);
    await gcOn(c.nodes[0]!);
    const keysBefore = new Set(await c.listKeys('blobs/'));
    const statsBefore = await json<{ blobs: number }>(await c.api('/api/admin/stats'), [200], 'stats');
    await c.api('/api/buckets/dedup', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } }).then((r) => json(r, [200, 201], 'bucket'));

    const bases = [...c.nodes.map((n) => n.url), c.url];
    const uploads = bases.flatMap((base, i) => [
      request(base, c.token, '/api/blobs', { method: 'POST', body: data }),
      request(base, c.token, `/api/blobs/${digest}`, { method: 'PUT', body: data }),
      request(base, c.token, `/api/buckets/dedup/objects/via-${i}`, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } }),
    ]);
    const answers = await Promise.all(uploads.map(async (p) => {
      const res = await p;
      return { status: res.status, body: JSON.parse(await text(res)) as { digest?: string; deduplicated?: boolean } };
    }));
    for (const a of answers) {
      assert.ok(a.status === 200 || a.status === 201, JSON.stringify(a));
      assert.equal(a.body.digest, digest);
    }
    t.diagnostic(`${answers.length} uploads, ${answers.filter((a) => a.body.deduplicated === false).length} answered deduplicated: false`);

    const rows = await c.pg.sql`SELECT location FROM blobs WHERE digest = ${digest}`;
    assert.equal(rows.length, 1);
    // Every node reads it; GC (grace 0) drains the duplicates' queued deletions: one object is left.
    for (const node of c.nodes) assert.equal(await digestOf(await node.api(`/api/blobs/${digest}`)), digest, `node ${node.n}`);
    let added: string[] = [];
    await waitFor(async () => {
      await gcOn(c.nodes[0]!);
      added = (await c.listKeys('blobs/')).filter((k) => !keysBefore.has(k));
      return added.length === 1;
    }, 'the duplicate objects to be deleted', 30_000).catch((err: Error) => assert.fail(`${err.message}: new keys ${JSON.stringify(added)}`));
    assert.equal(`blobs/${String(rows[0]!.location).replace(/^blobs\//, '')}`, added[0], 'the one object is the row\'s');
    const statsAfter = await json<{ blobs: number }>(await c.api('/api/admin/stats'), [200], 'stats');
    assert.equal(statsAfter.blobs - statsBefore.blobs, 1, 'stats: one blob more');
    assert.equal(await digestOf(await c.api(`/api/blobs/${digest}`)), digest);
  });

  test('G4 across nodes: GC on node 1, 200+ passes, while nodes 2 and 3 deduplicate into the same blobs', async (t) => {
    const GC_ROUNDS = 200;
    const MAX_ROUNDS = 2000;
    const MAX_ITERATIONS = 400; // per worker, an upper bound only
    const contents = [randomData(1000), randomData(64 * 1024), randomData(6 * MiB)];
    const digests = contents.map(sha256);
    await c.api('/api/buckets/g4', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } }).then((r) => json(r, [200, 201], 'bucket'));
    const scopes = ['blobs:read', 'blobs:write', 'blobs:delete', 'bucket:g4:read', 'bucket:g4:write', 'bucket:g4:delete'];
    const workers = [c.nodes[1]!, c.nodes[2]!];
    const tokens = await Promise.all(workers.map(() => newToken(c, scopes)));
    const problems: string[] = [];
    const kept: { what: string; path: string; token: string; digest: string }[] = [];
    let rounds = 0;
    let collected = 0;
    let acknowledged = 0;
    let workersDone = false;

    const gcLoop = (async () => {
      for (; rounds < MAX_ROUNDS && (rounds < GC_ROUNDS || !workersDone); rounds++) {
        const report = await gcOn(c.nodes[0]!);
        collected += report.digests.filter((d) => digests.includes(d)).length;
      }
    })();
    const worker = async (w: number) => {
      const node = workers[w]!;
      const token = tokens[w]!;
      const kinds = ['POST', 'PUT', 'object', 'session'] as const;
      for (let i = 0; i < MAX_ITERATIONS && rounds < GC_ROUNDS; i++) {
        const k = i % contents.length;
        const data = contents[k]!;
        const digest = digests[k]!;
        const kind = kinds[(i + w) % kinds.length]!;
        const objectPath = `/api/buckets/g4/objects/w${w}-${i}`;
        let res: Response;
        if (kind === 'POST') res = await request(node.url, token, '/api/blobs', { method: 'POST', body: data });
        else if (kind === 'PUT') res = await request(node.url, token, `/api/blobs/${digest}`, { method: 'PUT', body: data });
        else if (kind === 'object') res = await request(node.url, token, objectPath, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
        else {
          res = await request(node.url, token, `/api/blobs/uploads?digest=${digest}&size=${data.length}`, { method: 'POST' });
          if (res.status === 202) {
            const s = (await res.json()) as Session;
            res = await request(node.url, '', `/api/blobs/uploads/${s.id}/complete?digest=${digest}`, { method: 'POST', body: data, headers: { 'upload-token': s.token } });
          }
        }
        const answer = await text(res);
        if (res.status < 200 || res.status > 299) {
          problems.push(`worker ${w} on node ${node.n} (${kind}) #${i}: ${res.status} ${answer}`);
          return;
        }
        acknowledged++;
        // Acknowledged and still referenced by this worker: it must read back whole, from any node.
        const readPath = kind === 'object' ? objectPath : `/api/blobs/${digest}`;
        const back = await digestOf(await request(c.url, token, readPath));
        if (back !== digest) {
          problems.push(`worker ${w} on node ${node.n} (${kind}) #${i}: acknowledged, then GET ${readPath} via nginx → ${back ?? 'not 200'}`);
          return;
        }
        // Most references are dropped again (the blob keeps becoming garbage); every fifth object stays.
        if (kind === 'object' && i % 5 === 0) {
          kept.push({ what: `worker ${w} #${i}`, path: objectPath, token, digest });
          continue;
        }
        const drop = await request(node.url, token, kind === 'object' ? objectPath : `/api/blobs/${digest}`, { method: 'DELETE' });
        await drop.arrayBuffer();
        if (drop.status !== 204) {
          problems.push(`worker ${w} (${kind}) #${i}: dropping the reference → ${drop.status}`);
          return;
        }
      }
    };
    await Promise.all(workers.map((_, w) => worker(w)));
    workersDone = true;
    await gcLoop;
    t.diagnostic(`${rounds} GC passes on node 1 (${collected} removals of the shared digests), ${acknowledged} acknowledged uploads on nodes 2 and 3`);
    assert.deepEqual(problems, []);
    assert.ok(rounds >= GC_ROUNDS, `${rounds} GC passes`);

    // Afterwards: one more pass, then everything still referenced reads back through nginx with its digest.
    await gcOn(c.nodes[0]!);
    for (const k of kept) assert.equal(await digestOf(await request(c.url, k.token, k.path)), k.digest, k.what);
    await fsckClean(c);
  });

  test('a tus upload and `blobd put` through nginx survive a node\'s restart mid-way', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'blobd-cluster-put-'));
    // Stopped if this test fails half-way: an upload going on would add to the next test's /metrics sums.
    let tusUpload: tus.Upload | undefined;
    try {
      const file = path.join(dir, 'put.bin');
      const fileSize = 32 * MiB;
      const fileDigest = await writeRandomFile(file, fileSize);
      const tusData = randomData(24 * MiB);
      const tusDigest = sha256(tusData);
      const half = 8 * MiB;

      // tus-js-client reads a stream that stops after 8 MiB until the node has restarted.
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let pulled = 0;
      const tusInput = new Readable({
        async read() {
          if (pulled >= half) await gate;
          if (pulled >= tusData.length) return void this.push(null);
          const end = Math.min(tusData.length, pulled + 256 * 1024);
          this.push(tusData.subarray(pulled, end));
          pulled = end;
        },
      });
      let tusRetries = 0;
      let uploaded = 0;
      const tusDone = new Promise<string>((resolve, reject) => {
        const up: tus.Upload = (tusUpload = new tus.Upload(tusInput, {
          endpoint: `${c.url}/api/tus/`,
          headers: { authorization: `Bearer ${c.token}` },
          chunkSize: 4 * MiB,
          uploadSize: tusData.length,
          retryDelays: Array.from({ length: 30 }, (_, i) => (i === 0 ? 0 : 500)),
          onShouldRetry: () => {
            tusRetries++;
            return true;
          },
          onChunkComplete: (_chunk, accepted) => (uploaded = accepted),
          onError: reject,
          onSuccess: () => resolve(up.url!),
        }));
        up.start();
      });
      tusDone.catch(() => undefined);

      const stateHome = path.join(dir, 'state');
      const env = cliEnv({ url: c.url, token: c.token }, stateHome);
      const put = () => runCli(['put', file, '--chunk-size', '4MiB'], env, { timeoutMs: 120_000 });
      const firstPut = put();

      // Both are under way (the CLI's session has bytes); then node 2 restarts (SIGTERM, start on its port).
      await waitFor(() => uploaded >= 4 * MiB, 'the tus upload to have 4 MiB acknowledged', 30_000);
      await waitFor(async () => {
        const list = await json<{ items: { offset: number; size: number | null; filename: string | null }[] }>(await c.api('/api/blobs/uploads?limit=100'), [200], 'sessions');
        return list.items.some((i) => i.filename === 'put.bin' && i.offset > 0);
      }, 'the CLI\'s session to have bytes', 30_000);
      const node = c.nodes[1]!;
      await node.stop();
      const during = await json<{ items: { offset: number; size: number | null; filename: string | null }[] }>(await c.api('/api/blobs/uploads?limit=100'), [200], 'sessions');
      const putAtStop = during.items.find((i) => i.filename === 'put.bin');
      const tusAtStop = uploaded;
      await node.restart();
      release();

      // `put` says "rerun the same command to resume" when a request failed under it: that is its contract.
      let run = await firstPut;
      let reruns = 0;
      while (run.code !== 0 && /rerun the same command/.test(run.stderr) && reruns < 3) {
        reruns++;
        run = await put();
      }
      assert.equal(run.code, 0, `blobd put: ${run.stderr}`);
      assert.equal(run.stdout.toString().trim().split('\n')[0], fileDigest);
      const url = await tusDone;
      const head = await fetch(url, { method: 'HEAD', headers: TUS });
      assert.equal(head.headers.get('blobd-digest'), tusDigest);
      assert.equal(await digestOf(await c.api(`/api/blobs/${tusDigest}`)), tusDigest);
      assert.equal(await digestOf(await c.api(`/api/blobs/${fileDigest}`)), fileDigest);
      t.diagnostic(`node 2 stopped with put at ${putAtStop?.offset ?? 'done'} of ${fileSize}, tus at ${tusAtStop} of ${tusData.length}; put reruns ${reruns}, tus retries ${tusRetries}`);
      assert.ok(putAtStop && putAtStop.offset < fileSize, 'the put was still under way when node 2 went down');
      assert.ok(tusAtStop < tusData.length, 'the tus upload was still under way when node 2 went down');
    } finally {
      await tusUpload?.abort().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('/metrics of the nodes add up to what was sent through nginx', async () => {
    const scrape = async () => {
      let bytes = 0;
      let posts = 0;
      const perNode: number[] = [];
      for (const node of c.nodes) {
        const body = await (await node.api('/metrics')).text();
        const b = Number(/^blobd_upload_bytes_total (\S+)$/m.exec(body)?.[1] ?? NaN);
        const p = [...body.matchAll(/^blobd_http_requests_total\{([^}]*)\} (\S+)$/gm)]
          .filter((m) => /method="POST"/.test(m[1]!) && /route="\/api\/blobs"/.test(m[1]!) && /status_class="2xx"/.test(m[1]!))
          .reduce((sum, m) => sum + Number(m[2]), 0);
        assert.ok(Number.isFinite(b), `node ${node.n} has blobd_upload_bytes_total`);
        bytes += b;
        posts += p;
        perNode.push(p);
      }
      return { bytes, posts, perNode };
    };
    const before = await scrape();
    const sizes = [1, 1000, 100_000, 2 * MiB, 7 * MiB, 33, 4096, 65_537, 300_000];
    for (const size of sizes) {
      const res = await c.api('/api/blobs', { method: 'POST', body: randomData(size) });
      await json(res, [201], `POST /api/blobs of ${size}`);
    }
    const after = await scrape();
    assert.equal(after.posts - before.posts, sizes.length, 'POST /api/blobs 2xx, summed over the nodes');
    assert.equal(after.bytes - before.bytes, sizes.reduce((a, b) => a + b, 0), 'blobd_upload_bytes_total, summed over the nodes');
    const served = after.perNode.filter((p, i) => p > before.perNode[i]!).length;
    assert.ok(served >= 2, `round robin spread the uploads over ${served} nodes`);
  });

  test('afterwards: fsck through nginx is clean', async () => {
    const report = await fsckClean(c);
    assert.ok(report.checked > 0);
  });
});
