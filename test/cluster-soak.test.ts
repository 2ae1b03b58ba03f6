// Cluster soak: a mixed write load through nginx (one-shot blobs, object PUTs, upload sessions) on three daemons
// sharing PostgreSQL and an RGW bucket, while one node after another is killed with SIGKILL and restarted on its
// port, ten times. The service goes on meanwhile: nginx sends new requests to the living nodes, and a session
// the dead node held resumes elsewhere once its lease runs out. Only what got a 2xx is recorded; a request the
// killed node was answering may have happened or not. Afterwards every acknowledged write reads back through
// nginx with its digest, every open session resumes at its acknowledged offset and completes, and GC plus fsck
// find nothing wrong.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { clusterTestOptions, digestOf, request, startCluster, type Cluster, type ClusterNode } from './helpers/cluster.ts';
import { upstreamOf } from './helpers/nginx.ts';
import { waitFor } from './helpers/wait.ts';
import { KiB, MiB, pick, randomBody, type Fsck } from './helpers/workload.ts';

const CYCLES = 10; // kill -9 and restart this many times, one node at a time, in turn
const WORKERS = 2;
const MAX_OPS = 3000; // per worker, an upper bound only: the cycles end the load
const BUCKET = 'soak';

interface Written {
  what: string;
  path: string;
  digest: string;
  cycle: number;
}

interface SessionRecord {
  id: string;
  token: string;
  data: Buffer<ArrayBuffer>;
  digest: string;
  cuts: number[];
  /** The last acknowledged offset (after an uncertain append: what status reported). */
  acked: number;
  state: 'open' | 'completing' | 'completed';
  busy: boolean;
  /** An append or complete was in flight at a kill: ask the session where it stands before going on. */
  unsure: boolean;
}

/** A request that a kill of the node answering it interrupted: neither acknowledged nor a fault. */
class InFlightAtKill extends Error {}
/** An answer no living cluster may give: a bug. */
class Unexpected extends Error {}

test('cluster soak: kill -9 one node at a time under a mixed load through nginx, ten times; nothing acknowledged is lost', clusterTestOptions(), async (t) => {
  const soakStart = Date.now();
  const c: Cluster = await startCluster({ nodes: 3, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
  const written: Written[] = [];
  const sessions: SessionRecord[] = [];
  const problems: string[] = [];
  // Per node URL, when each kill began and when the process was gone (Infinity while it is being killed).
  const kills = new Map<string, { from: number; to: number }[]>(c.nodes.map((n) => [n.url, []]));
  let cycle = 0;
  let acks = 0;
  let inFlightAtKill = 0;
  let lockedWaits = 0;
  let stopping = false;
  let restarting = false;
  let keySeq = 0;

  /**
   * One request through nginx. An answer from nginx itself (502/504, not blobd's JSON) for a request whose node
   * was killed while it ran is InFlightAtKill; 409 upload_locked is returned to the caller to wait out.
   */
  async function send(pathname: string, init: RequestInit, ok: number[], what: string, token = c.token): Promise<Response> {
    const sentAt = Date.now();
    const res = await request(c.url, token, pathname, init);
    if (ok.includes(res.status)) return res;
    const body = await res.text().catch(() => '(body lost)');
    const node = c.nodeAt(upstreamOf(res));
    const now = Date.now();
    const killedMeanwhile = node !== undefined && kills.get(node.url)!.some((k) => k.from <= now && k.to >= sentAt);
    if ((res.status === 502 || res.status === 504) && !body.startsWith('{') && killedMeanwhile) throw new InFlightAtKill(what);
    if (res.status === 409 && body.includes('upload_locked')) return new Response(body, { status: 409 });
    const proxy = res.status >= 502 && !body.startsWith('{') ? `; nginx: ${c.nginx.logTail(4)}` : '';
    throw new Unexpected(`${what} → ${res.status} via ${res.headers.get('x-upstream')} (node ${node?.n ?? '?'}): ${body.slice(0, 300)}${proxy}`);
  }

  async function oneShot(how: 'POST' | 'PUT') {
    const { data, digest } = randomBody(KiB, 512 * KiB);
    const pathname = how === 'POST' ? '/api/blobs' : `/api/blobs/${digest}`;
    const res = await send(pathname, { method: how, body: data }, [201], `${how} blob of ${data.length}`);
    const body = (await res.json().catch(() => null)) as { digest?: string } | null;
    if (body && body.digest !== digest) throw new Unexpected(`${how} answered ${body.digest}, sent ${digest}`);
    written.push({ what: `${how} /api/blobs`, path: `/api/blobs/${digest}`, digest, cycle });
    acks++;
  }

  async function putObject() {
    const { data, digest } = randomBody(KiB, 512 * KiB);
    const key = `k${++keySeq}`;
    const pathname = `/api/buckets/${BUCKET}/objects/${key}`;
    const res = await send(pathname, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } }, [200, 201], `PUT object ${key}`);
    await res.arrayBuffer().catch(() => undefined);
    written.push({ what: `object ${key}`, path: pathname, digest, cycle });
    acks++;
  }

  async function newSession() {
    const { data, digest } = randomBody(4 * KiB, 4 * MiB);
    const pieces = 2 + randomInt(3);
    const cuts = [...new Set(Array.from({ length: pieces - 1 }, () => 1 + randomInt(data.length - 1)))].sort((a, b) => a - b);
    cuts.push(data.length);
    const res = await send(`/api/blobs/uploads?size=${data.length}`, { method: 'POST' }, [202], 'initiate');
    const body = (await res.json().catch(() => null)) as { id: string; token: string } | null;
    if (!body) return; // the 202 came, its body did not: a session this soak cannot know
    const rec: SessionRecord = { id: body.id, token: body.token, data, digest, cuts, acked: 0, state: 'open', busy: false, unsure: false };
    sessions.push(rec);
    acks++;
    await advance(rec);
  }

  /** Where a session stands, after a request of it was in flight at a kill. */
  async function resync(rec: SessionRecord) {
    const res = await send(`/api/blobs/uploads/${rec.id}/status`, { headers: { 'upload-token': rec.token } }, [204], `status ${rec.id}`);
    const offset = Number(res.headers.get('upload-offset'));
    const state = res.headers.get('upload-state');
    if (state === 'completed') {
      if (rec.state !== 'completing') throw new Unexpected(`session ${rec.id} says completed, but no complete was sent`);
      return; // the complete below is repeated and answers the same
    }
    if (offset < rec.acked) throw new Unexpected(`G1: session ${rec.id} is at ${offset}, below its acknowledged ${rec.acked}`);
    if (offset > rec.data.length) throw new Unexpected(`session ${rec.id} at ${offset}, past its ${rec.data.length} bytes`);
    rec.acked = offset;
    rec.state = 'open';
    rec.unsure = false;
  }

  /** One step of a session: the next append, or complete once every byte is acknowledged. */
  async function advance(rec: SessionRecord) {
    rec.busy = true;
    try {
      if (rec.unsure) await resync(rec);
      const auth = { 'upload-token': rec.token };
      if (rec.acked < rec.data.length) {
        const from = rec.acked;
        const to = rec.cuts.find((cut) => cut > from) ?? rec.data.length;
        const res = await send(`/api/blobs/uploads/${rec.id}/append`, { method: 'POST', body: rec.data.subarray(from, to), headers: { ...auth, 'upload-offset': String(from) } }, [203], `append ${rec.id} @${from}`);
        if (res.status === 409) {
          lockedWaits++; // held by a node that died mid-request, until its lease runs out: another step later
          return;
        }
        const offset = Number(res.headers.get('upload-offset'));
        await res.arrayBuffer().catch(() => undefined);
        if (offset !== to) throw new Unexpected(`append ${rec.id} ${from}..${to} answered Upload-Offset ${offset}`);
        rec.acked = to;
        acks++;
      } else {
        rec.state = 'completing';
        const res = await send(`/api/blobs/uploads/${rec.id}/complete?digest=${rec.digest}`, { method: 'POST', headers: auth }, [201], `complete ${rec.id}`);
        if (res.status === 409) {
          lockedWaits++;
          return;
        }
        const body = (await res.json().catch(() => null)) as { digest?: string } | null;
        if (body && body.digest !== rec.digest) throw new Unexpected(`complete ${rec.id} answered ${body.digest}, expected ${rec.digest}`);
        rec.state = 'completed';
        written.push({ what: `session ${rec.id}`, path: `/api/blobs/${rec.digest}`, digest: rec.digest, cycle });
        acks++;
      }
    } catch (err) {
      if (err instanceof InFlightAtKill) rec.unsure = true;
      throw err;
    } finally {
      rec.busy = false;
    }
  }

  async function oneOperation() {
    const r = Math.random();
    if (r < 0.2) return oneShot('POST');
    if (r < 0.3) return oneShot('PUT');
    if (r < 0.55) return putObject();
    const open = sessions.filter((s) => s.state !== 'completed' && !s.busy);
    if (r < 0.92 && open.length > 0) return advance(pick(open));
    return newSession();
  }

  async function worker() {
    for (let i = 0; i < MAX_OPS && !stopping; i++) {
      await delay(randomInt(20)); // a busy client, not a flood: two cores also run three nodes, RGW and PostgreSQL
      // While the killed node starts again the load rests: its start-up gets the cores, the soak stays short.
      while (restarting && !stopping) await delay(20);
      try {
        await oneOperation();
      } catch (err) {
        if (err instanceof InFlightAtKill) inFlightAtKill++;
        else problems.push(`cycle ${cycle}: ${(err as Error).message}`);
      }
    }
  }

  try {
    await request(c.url, c.token, `/api/buckets/${BUCKET}`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } }).then(async (r) => {
      assert.ok(r.status === 200 || r.status === 201, `PUT bucket → ${r.status} ${await r.text()}`);
    });
    const workers = Array.from({ length: WORKERS }, () => worker());
    for (cycle = 1; cycle <= CYCLES; cycle++) {
      const node: ClusterNode = c.nodes[(cycle - 1) % c.nodes.length]!;
      const start = acks;
      const threshold = 5 + randomInt(15);
      await waitFor(() => acks - start >= threshold || problems.length > 20, `${threshold} acknowledgements in cycle ${cycle}`, 60_000);
      await delay(randomInt(300)); // the kill lands at a random moment, not right after an acknowledgement
      const kill = { from: Date.now(), to: Infinity };
      kills.get(node.url)!.push(kill);
      await node.kill9();
      kill.to = Date.now();
      // The cluster goes on without it: more writes are acknowledged before it comes back.
      const down = acks;
      await waitFor(() => acks - down >= 5 || problems.length > 20, `acknowledgements with node ${node.n} down (cycle ${cycle})`, 60_000);
      const whileDown = acks - down;
      const restartAt = Date.now();
      restarting = true;
      await node.restart().finally(() => (restarting = false));
      const [open] = await c.pg.sql`SELECT count(*)::int AS n FROM upload_sessions WHERE state <> 'completed'`;
      t.diagnostic(`cycle ${cycle}: node ${node.n} killed after ${down - start} acknowledgements, ${whileDown} more while it was down; restart took ${Date.now() - restartAt} ms (${open!.n} sessions open in the cluster)`);
    }
    stopping = true;
    await Promise.all(workers);
    const loadEnd = Date.now();

    // Every session still open resumes where it was acknowledged (or further) and completes.
    const finish = async (rec: SessionRecord): Promise<string | null> => {
      for (let attempt = 0; attempt < 400; attempt++) {
        await advance(rec);
        if ((rec.state as SessionRecord['state']) === 'completed') return null;
        await delay(50); // the lease of a node killed under it runs out (2 s)
      }
      return `session ${rec.id} did not complete (acknowledged ${rec.acked} of ${rec.data.length})`;
    };
    for (const rec of sessions.filter((s) => s.state !== 'completed')) {
      const problem = await finish(rec).catch((err: Error) => `finishing session ${rec.id}: ${err.message}`);
      if (problem) problems.push(problem);
    }

    // Every acknowledged write reads back through nginx with its digest, before and after GC (grace 0).
    const verify = async (label: string, whole: boolean) => {
      // Four readers at a time through nginx.
      const queue = [...written];
      const reader = async () => {
        for (let w = queue.shift(); w; w = queue.shift()) await check(w);
      };
      const check = async (w: Written) => {
        if (whole) {
          const got = await digestOf(await request(c.url, c.token, w.path));
          if (got !== w.digest) problems.push(`${label}: ${w.what} (acknowledged in cycle ${w.cycle}) → ${got ?? 'not 200'}, expected ${w.digest}`);
        } else {
          // Presence (its row and its first byte); fsck re-hashes every blob next.
          const res = await request(c.url, c.token, w.path, { headers: { range: 'bytes=0-0' } });
          await res.arrayBuffer();
          if (res.status !== 206) problems.push(`${label}: ${w.what} (acknowledged in cycle ${w.cycle}) → ${res.status}`);
        }
      };
      await Promise.all(Array.from({ length: 4 }, reader));
    };
    const finished = Date.now();
    await verify('after the soak', true);
    const verified = Date.now();
    const gc = await request(c.nodes[0]!.url, c.token, '/api/admin/gc', { method: 'POST' });
    assert.equal(gc.status, 200, await gc.clone().text());
    const report = (await gc.json()) as { digests: string[]; stray_files_removed: number };
    await verify('after gc', false);
    const fsckRes = await request(c.url, c.token, '/api/admin/fsck', { method: 'POST' });
    assert.equal(fsckRes.status, 200);
    const fsck = (await fsckRes.json()) as Fsck;
    if (fsck.corrupt.length + fsck.missing.length > 0) problems.push(`fsck: ${JSON.stringify(fsck)}`);
    // Bytes without a row: a one-shot upload whose node died between storing its object and writing its row.
    // On a shared store GC leaves such objects for 15 minutes (another node may be about to commit them), so
    // fsck lists them meanwhile: at most one per request in flight at a kill, each made during this soak.
    const idTime = (key: string) => parseInt(/([0-9a-f]{8})-([0-9a-f]{4})-7/.exec(key)?.slice(1).join('') ?? '0', 16);
    if (fsck.orphans.length > inFlightAtKill || fsck.orphans.some((k) => !(idTime(k) >= soakStart))) {
      problems.push(`fsck: ${fsck.orphans.length} orphans, ${inFlightAtKill} requests were in flight at a kill: ${JSON.stringify(fsck)}`);
    }
    const digests = new Set(written.map((w) => w.digest));
    if (fsck.checked < digests.size) problems.push(`fsck checked ${fsck.checked} blobs, ${digests.size} were acknowledged`);

    t.diagnostic(`load ${((loadEnd - soakStart) / 1000).toFixed(1)} s, finishing sessions ${((finished - loadEnd) / 1000).toFixed(1)} s, reading back ${((verified - finished) / 1000).toFixed(1)} s, gc + fsck ${((Date.now() - verified) / 1000).toFixed(1)} s`);
    t.diagnostic(
      `acknowledged: ${written.length} writes (${written.filter((w) => w.what.startsWith('session')).length} sessions), ${acks} acknowledgements; ` +
        `${inFlightAtKill} requests in flight at a kill, ${lockedWaits} × 409 upload_locked waited out; gc removed ${report.digests.length} blobs and ${report.stray_files_removed} strays; fsck: ${fsck.checked} blobs, ${fsck.orphans.length} orphans`,
    );
    assert.deepEqual(problems, [], `the soak found:\n${problems.join('\n')}`);
  } finally {
    stopping = true;
    await c.stop();
  }
});
