// Lifecycle against the real daemon: pins per principal (list with cursor, drop, force purge), garbage
// collection (temporary pins expire, shared blobs survive, the grace period, dry run, expired objects and
// sessions, stray files, the timer), GC racing concurrent uploads of the digest it is collecting (G4: a burst
// of 100 per round, and references that come and go), and disk accounting (/api/admin/stats).
import assert from 'node:assert/strict';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken, openRequest, type TokenJson } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { onFsOnly, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { append, complete, initiate, status } from './helpers/sessions.ts';
import { probeStore, type StoreProbe } from './helpers/store-probe.ts';
import { waitFor } from './helpers/wait.ts';
import type { Fsck } from './helpers/workload.ts';

interface GcReport {
  blobs_removed: number;
  bytes_freed: number;
  sessions_expired: number;
  pins_expired: number;
  objects_expired: number;
  stray_files_removed: number;
  digests: string[];
  dry_run: boolean;
}

type FsckReport = Fsck;

interface PinItem {
  digest: string;
  size: number;
  temporary: boolean;
  expires_at: string | null;
  created_at: string;
}

interface PinPage {
  items: PinItem[];
  next_cursor: string | null;
}

interface Stats {
  blobs: number;
  stored_bytes: number;
  logical_bytes: number;
  dedup_ratio: number;
  pins: number;
  objects: number;
  open_sessions: number;
  open_session_bytes: number;
}

async function gc(d: Daemon, query = ''): Promise<GcReport> {
  const res = await d.api(`/api/admin/gc${query ? `?${query}` : ''}`, { method: 'POST' });
  assert.equal(res.status, 200, `POST /api/admin/gc?${query} → ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as GcReport;
}

async function fsck(d: Daemon): Promise<FsckReport> {
  const res = await d.api('/api/admin/fsck', { method: 'POST' });
  assert.equal(res.status, 200, `POST /api/admin/fsck → ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as FsckReport;
}

// One probe per daemon: it remembers where each blob's bytes were, to check they went after the row did.
const probes = new WeakMap<Daemon, StoreProbe>();
function storeOf(d: Daemon): StoreProbe {
  let probe = probes.get(d);
  if (!probe) probes.set(d, (probe = probeStore(d)));
  return probe;
}

/** Whether the blob's bytes are stored (its file, on the local store). */
const blobExists = (d: Daemon, digest: string) => storeOf(d).exists(digest);

/** POST /api/blobs as `token` (admin when omitted); asserts the 201 and returns the digest. */
async function pin(d: Daemon, data: Uint8Array<ArrayBuffer>, token?: string, query = ''): Promise<string> {
  const p = `/api/blobs${query ? `?${query}` : ''}`;
  const res = token ? await as(d, token, p, { method: 'POST', body: data }) : await d.api(p, { method: 'POST', body: data });
  assert.equal(res.status, 201, `POST ${p} → ${res.status} ${await res.clone().text()}`);
  const body = (await res.json()) as { digest: string };
  assert.equal(body.digest, sha256(data));
  return body.digest;
}

async function listPins(d: Daemon, token: string | undefined, query = ''): Promise<PinPage> {
  const p = `/api/blobs${query ? `?${query}` : ''}`;
  const res = token ? await as(d, token, p) : await d.api(p);
  assert.equal(res.status, 200, `GET ${p} → ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as PinPage;
}

/** Every pin of a principal, following next_cursor (bounded). */
async function allPins(d: Daemon, token?: string): Promise<PinItem[]> {
  const items: PinItem[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const body: PinPage = await listPins(d, token, `limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) return items;
  }
  throw new Error('more than 100 pages of pins');
}

async function readBlob(d: Daemon, digest: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await d.api(`/api/blobs/${digest}`);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

function dropPin(d: Daemon, digest: string, token?: string, query = ''): Promise<Response> {
  const p = `/api/blobs/${digest}${query ? `?${query}` : ''}`;
  return token ? as(d, token, p, { method: 'DELETE' }) : d.api(p, { method: 'DELETE' });
}

async function makeBucket(d: Daemon, name: string): Promise<void> {
  const res = await d.api(`/api/buckets/${name}`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.ok(res.status === 200 || res.status === 201, `PUT bucket ${name} → ${res.status}`);
}

async function putObject(d: Daemon, bucketKey: string, data: Uint8Array<ArrayBuffer>): Promise<{ digest: string; revision: number }> {
  const res = await d.api(`/api/buckets/${bucketKey}`, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.ok(res.status === 200 || res.status === 201, `PUT ${bucketKey} → ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as { digest: string; revision: number };
}

/** Resolves once the wall clock has moved past the moment of the call, so server timestamps differ. */
async function nextMillisecond(): Promise<void> {
  const now = Date.now();
  await waitFor(() => Date.now() > now, 'the clock to tick');
}

async function stopAndRemove(d: Daemon | undefined): Promise<void> {
  if (!d) return;
  await d.stop();
  await removeDir(path.dirname(d.dataDir));
}

// Each suite has its own daemon and data dir; the suites run side by side to keep the file quick, the tests
// in a suite one after another.
describe('lifecycle', { concurrency: true }, () => {
  describe('pins and GC (grace 0s, no timer)', { concurrency: false }, () => {
    let d: Daemon;
    let tokenA: TokenJson; // blobs:read, blobs:write, blobs:delete
    let tokenB: TokenJson; // blobs:read, blobs:write
    before(async () => {
      d = await startDaemon({ args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
      tokenA = await createToken(d, ['blobs:read', 'blobs:write', 'blobs:delete']);
      tokenB = await createToken(d, ['blobs:read', 'blobs:write']);
    });
    after(() => stopAndRemove(d));

    test('GET /api/blobs lists the caller\'s own pins newest first, paged by cursor; others see only theirs', async () => {
      assert.deepEqual(await listPins(d, tokenB.token), { items: [], next_cursor: null });
      const contents = Array.from({ length: 5 }, () => randomData(100 + Math.floor(Math.random() * 100)));
      const digests: string[] = [];
      for (const data of contents) {
        digests.push(await pin(d, data, tokenA.token));
        await nextMillisecond();
      }

      const pages: PinPage[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 10; i++) {
        const page: PinPage = await listPins(d, tokenA.token, `limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        pages.push(page);
        cursor = page.next_cursor;
        if (!cursor) break;
      }
      assert.deepEqual(pages.map((p) => p.items.length), [2, 2, 1], 'limit 2 over 5 pins: three pages');
      assert.equal(pages[2]!.next_cursor, null);
      const listed = pages.flatMap((p) => p.items);
      assert.deepEqual(listed.map((i) => i.digest), [...digests].reverse(), 'newest first, each digest once');
      for (const item of listed) {
        const data = contents[digests.indexOf(item.digest)]!;
        assert.equal(item.size, data.length);
        assert.equal(item.temporary, false);
        assert.equal(item.expires_at, null);
        assert.ok(Number.isFinite(Date.parse(item.created_at)), `created_at ${item.created_at}`);
      }

      // B pins one of A's blobs and one of its own: it sees exactly those two.
      const own = await pin(d, randomData(50), tokenB.token);
      await nextMillisecond();
      await pin(d, contents[0]!, tokenB.token);
      assert.deepEqual((await allPins(d, tokenB.token)).map((i) => i.digest), [digests[0], own]);
      assert.equal((await allPins(d, tokenA.token)).length, 5, 'A\'s list is untouched by B');

      for (const limit of ['0', '1001', 'x']) {
        const res = await as(d, tokenA.token, `/api/blobs?limit=${limit}`);
        assert.equal(res.status, 400, `limit=${limit}`);
        await res.arrayBuffer();
      }
    });

    test('DELETE /api/blobs/{d} drops only the caller\'s pin; a second time 404 pin_not_found; GC keeps what others pin', async () => {
      const shared = randomData(300);
      const alone = randomData(301);
      const sharedDigest = await pin(d, shared, tokenA.token);
      await pin(d, shared, tokenB.token);
      const aloneDigest = await pin(d, alone, tokenA.token);

      assert.equal((await dropPin(d, sharedDigest, tokenA.token)).status, 204);
      const again = await dropPin(d, sharedDigest, tokenA.token);
      assert.equal(again.status, 404);
      assert.equal(await errorCode(again), 'pin_not_found');
      assert.ok(!(await allPins(d, tokenA.token)).some((i) => i.digest === sharedDigest), 'gone from A\'s list');
      assert.ok((await allPins(d, tokenB.token)).some((i) => i.digest === sharedDigest), 'still in B\'s list');
      // A token without blobs:delete may not drop pins.
      const refused = await dropPin(d, sharedDigest, tokenB.token);
      assert.equal(refused.status, 403);
      assert.equal(await errorCode(refused), 'forbidden');
      assert.equal(await errorCode(await dropPin(d, sha256(randomData(8)), tokenA.token)), 'pin_not_found');

      assert.equal((await dropPin(d, aloneDigest, tokenA.token)).status, 204);
      const report = await gc(d);
      assert.ok(report.digests.includes(aloneDigest), `unpinned blob collected: ${JSON.stringify(report)}`);
      assert.ok(!report.digests.includes(sharedDigest), 'a blob B still pins is kept');
      assert.equal((await readBlob(d, aloneDigest)).status, 404);
      assert.equal(await blobExists(d, aloneDigest), false);
      const kept = await readBlob(d, sharedDigest);
      assert.equal(kept.status, 200);
      assert.ok(kept.bytes.equals(shared));
    });

    test('DELETE ?force=true: 403 without admin; as admin purges the blob, its pins and every revision using it', async () => {
      const x = randomData(400);
      const y = randomData(401);
      const xd = await pin(d, x); // admin's pin
      await pin(d, x, tokenB.token);
      await makeBucket(d, 'force');
      await putObject(d, 'force/objects/only-x', x);
      const yRev = await putObject(d, 'force/objects/y-then-x', y);
      assert.equal(yRev.revision, 1);
      assert.equal((await putObject(d, 'force/objects/y-then-x', x)).revision, 2);

      const refused = await dropPin(d, xd, tokenA.token, 'force=true');
      assert.equal(refused.status, 403, 'blobs:delete without admin');
      assert.equal(await errorCode(refused), 'forbidden');
      assert.equal((await readBlob(d, xd)).status, 200, 'nothing happened');

      assert.equal((await dropPin(d, xd, undefined, 'force=true')).status, 204);
      const gone = await d.api(`/api/blobs/${xd}`);
      assert.equal(gone.status, 404);
      assert.equal(await errorCode(gone), 'blob_not_found');
      assert.equal(await blobExists(d, xd), false, 'the file is gone');
      const onlyX = await d.api('/api/buckets/force/objects/only-x');
      assert.equal(onlyX.status, 404);
      assert.equal(await errorCode(onlyX), 'object_not_found');
      const fallback = await d.api('/api/buckets/force/objects/y-then-x');
      assert.equal(fallback.status, 200);
      assert.ok(Buffer.from(await fallback.arrayBuffer()).equals(y), 'the object falls back to its older revision');
      const revs = (await (await d.api('/api/buckets/force/objects/y-then-x?revisions')).json()) as { items: { revision: number; digest: string }[] };
      assert.deepEqual(revs.items.map((r) => [r.revision, r.digest]), [[1, sha256(y)]]);
      assert.ok(!(await allPins(d, tokenB.token)).some((i) => i.digest === xd), 'B\'s pin went too');
      assert.ok(!(await allPins(d)).some((i) => i.digest === xd), 'admin\'s pin went too');

      const unknown = await dropPin(d, sha256(randomData(9)), undefined, 'force=true');
      assert.equal(unknown.status, 404);
      assert.equal(await errorCode(unknown), 'blob_not_found');
      assert.equal((await fsck(d)).missing.length, 0, 'no row left without its file');
    });

    test('a blob shared by two objects survives deleting one, and goes with the other', async () => {
      await makeBucket(d, 'shared');
      const data = randomData(2048);
      const one = await putObject(d, 'shared/objects/one', data);
      const two = await putObject(d, 'shared/objects/two', data);
      assert.equal(one.digest, two.digest);
      assert.equal(await storeOf(d).copies(one.digest), 1, 'one file on disk');
      assert.equal((await storeOf(d).read(one.digest))?.length, data.length);
      assert.ok(!(await allPins(d)).some((i) => i.digest === one.digest), 'an object write does not pin');

      assert.equal((await d.api('/api/buckets/shared/objects/one', { method: 'DELETE' })).status, 204);
      const first = await gc(d);
      assert.ok(!first.digests.includes(one.digest), 'still used by the other object');
      const read = await readBlob(d, one.digest);
      assert.equal(read.status, 200);
      assert.ok(read.bytes.equals(data));
      assert.equal(await blobExists(d, one.digest), true);
      assert.ok((await (await d.api('/api/buckets/shared/objects/two')).arrayBuffer()).byteLength === data.length);

      assert.equal((await d.api('/api/buckets/shared/objects/two', { method: 'DELETE' })).status, 204);
      const second = await gc(d);
      assert.ok(second.digests.includes(one.digest), `collected once unused: ${JSON.stringify(second)}`);
      assert.ok(second.blobs_removed >= 1);
      assert.ok(second.bytes_freed >= data.length);
      assert.equal((await readBlob(d, one.digest)).status, 404);
      assert.equal(await blobExists(d, one.digest), false);
    });

    test('dry run lists what a pass would remove and removes nothing; the real pass removes exactly those', async () => {
      const data = randomData(777);
      const digest = await pin(d, data);
      assert.equal((await dropPin(d, digest)).status, 204);
      const dry = await gc(d, 'dry_run=true');
      assert.equal(dry.dry_run, true);
      assert.ok(dry.digests.includes(digest), `garbage listed: ${JSON.stringify(dry)}`);
      assert.equal(dry.blobs_removed, dry.digests.length);
      assert.ok(dry.bytes_freed >= data.length);
      assert.equal(await blobExists(d, digest), true, 'the file is still there');
      assert.equal((await readBlob(d, digest)).status, 404, 'garbage reads as absent before it is removed');
      const dryAgain = await gc(d, 'dry_run=true');
      assert.deepEqual([...dryAgain.digests].sort(), [...dry.digests].sort(), 'a dry run changes nothing');

      const real = await gc(d);
      assert.equal(real.dry_run, false);
      assert.deepEqual([...real.digests].sort(), [...dry.digests].sort());
      assert.equal(real.blobs_removed, dry.blobs_removed);
      assert.equal(real.bytes_freed, dry.bytes_freed);
      assert.equal(await blobExists(d, digest), false);
      assert.equal((await readBlob(d, digest)).status, 404);
    });

    test('dry run also counts what expiry would free, and expires nothing', async () => {
      await makeBucket(d, 'dryexp');
      const data = randomData(555);
      const obj = await putObject(d, 'dryexp/objects/k', data);
      const patched = await d.api('/api/buckets/dryexp/objects/k', {
        method: 'PATCH',
        body: JSON.stringify({ expires_at: new Date(Date.now() - 60_000).toISOString() }),
        headers: { 'content-type': 'application/merge-patch+json' },
      });
      assert.equal(patched.status, 200, await patched.clone().text());
      const dry = await gc(d, 'dry_run=true');
      assert.ok(dry.objects_expired >= 1, JSON.stringify(dry));
      assert.ok(dry.digests.includes(obj.digest), `the expired object's blob would go: ${JSON.stringify(dry)}`);
      assert.equal(await blobExists(d, obj.digest), true);
      const real = await gc(d);
      assert.ok(real.objects_expired >= 1, 'the dry run expired nothing');
      assert.deepEqual([...real.digests].sort(), [...dry.digests].sort());
    });

    test('objects whose expires_at passed are removed by GC; others stay', async () => {
      await makeBucket(d, 'exp');
      const old = randomData(600);
      const fresh = randomData(601);
      const oldObj = await putObject(d, 'exp/objects/old', old);
      await putObject(d, 'exp/objects/fresh', fresh);
      const patch = (key: string, expires: Date) =>
        d.api(`/api/buckets/exp/objects/${key}`, {
          method: 'PATCH',
          body: JSON.stringify({ expires_at: expires.toISOString() }),
          headers: { 'content-type': 'application/merge-patch+json' },
        });
      assert.equal((await patch('old', new Date(Date.now() - 1000))).status, 200);
      assert.equal((await patch('fresh', new Date(Date.now() + 3_600_000))).status, 200);
      const report = await gc(d);
      assert.ok(report.objects_expired >= 1, JSON.stringify(report));
      const gone = await d.api('/api/buckets/exp/objects/old');
      assert.equal(gone.status, 404);
      assert.equal(await errorCode(gone), 'object_not_found');
      assert.ok(report.digests.includes(oldObj.digest), 'its blob, now unused, went in the same pass');
      assert.equal(await blobExists(d, oldObj.digest), false);
      const kept = await d.api('/api/buckets/exp/objects/fresh');
      assert.equal(kept.status, 200);
      assert.ok(Buffer.from(await kept.arrayBuffer()).equals(fresh));
    });

    test('GC also removes a blob file that has no row (a crash between rename and commit)', async () => {
      const data = randomData(123);
      const orphan = await storeOf(d).plantOrphan(data);
      assert.deepEqual((await fsck(d)).orphans, [orphan]);
      await gc(d);
      assert.equal(await storeOf(d).hasPlanted(orphan), false);
      assert.deepEqual((await fsck(d)).orphans, []);
    });

    test('a dry run counts the blob files a pass would remove without a row, and removes none', async () => {
      const data = randomData(124);
      const orphan = await storeOf(d).plantOrphan(data);
      const dry = await gc(d, 'dry_run=true');
      assert.equal(dry.stray_files_removed, 1);
      assert.equal(await storeOf(d).hasPlanted(orphan), true);
      assert.equal((await gc(d)).stray_files_removed, 1);
      assert.equal(await storeOf(d).hasPlanted(orphan), false);
    });

    test('admin routes are admin-only', async () => {
      for (const p of ['/api/admin/gc', '/api/admin/gc?dry_run=true', '/api/admin/fsck']) {
        const res = await as(d, tokenA.token, p, { method: 'POST' });
        assert.equal(res.status, 403, p);
        assert.equal(await errorCode(res), 'forbidden');
      }
      const anon = await d.api('/api/admin/gc', { method: 'POST', auth: false });
      assert.equal(anon.status, 401);
      await anon.arrayBuffer();
    });

    test('G4: GC racing 100 concurrent uploads of the digest it is collecting never loses an acknowledged blob', async (t) => {
      await makeBucket(d, 'race');
      const ROUNDS = 5;
      const UPLOADS = 100;
      const GC_LOOPS = 4; // each runs passes back to back while the uploads are in flight
      const MAX_PASSES = 200; // per loop, so that a hang cannot loop for ever
      const jitter = (ms: number) => new Promise((r) => setTimeout(r, Math.floor(Math.random() * (ms + 1))));
      let roundsWhereGcTookIt = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const data = Buffer.from(`round ${round} of the G4 race: `.repeat(200 + round), 'utf8') as Buffer<ArrayBuffer>;
        const digest = sha256(data);
        // Make it garbage: a row and a file, but no pin and no revision.
        await pin(d, data);
        assert.equal((await dropPin(d, digest)).status, 204);

        // The one-shot uploads are sent whole but for their last byte first, so that once let go they all
        // reach "is the blob there?" within a few milliseconds. GC passes start first; the uploads are let go
        // after a delay that sweeps 0–40 ms over the rounds (plus noise), so that some rounds collect the
        // digest before the uploads look for it and some while they do.
        const lead = (round * 40) / (ROUNDS - 1);
        const kinds = ['POST', 'PUT', 'object', 'session'] as const;
        const keys: string[] = [];
        const held = new Map<number, ReturnType<typeof openRequest>>();
        for (let i = 0; i < UPLOADS; i++) {
          const kind = kinds[i % 4]!;
          if (kind === 'session') continue;
          const target =
            kind === 'POST' ? '/api/blobs' : kind === 'PUT' ? `/api/blobs/${digest}` : `/api/buckets/race/objects/r${round}/k${i}`;
          if (kind === 'object') keys.push(`r${round}/k${i}`);
          const req = openRequest(d.url + target, kind === 'POST' ? 'POST' : 'PUT', {
            authorization: `Bearer ${d.token}`,
            'content-type': 'application/octet-stream',
            'content-length': String(data.length),
          });
          await req.write(data.subarray(0, data.length - 1));
          held.set(i, req);
        }
        const upload = async (i: number): Promise<string> => {
          await new Promise((r) => setTimeout(r, lead));
          await jitter(10);
          const req = held.get(i);
          let status: number;
          let text: string;
          if (req) {
            ({ status, body: text } = await req.end(data.subarray(data.length - 1)));
          } else {
            let res = await d.api(`/api/blobs/uploads?digest=${digest}`, { method: 'POST' });
            if (res.status === 202) {
              const s = (await res.json()) as { id: string; token: string };
              res = await complete(d, s, `digest=${digest}`, data);
            }
            status = res.status;
            text = await res.text();
          }
          return `${kinds[i % 4]} ${status}${status >= 300 ? ` ${text}` : ''}`;
        };
        let uploading = true;
        const collect = async (): Promise<GcReport[]> => {
          const reports: GcReport[] = [];
          await jitter(3);
          for (let pass = 0; uploading && pass < MAX_PASSES; pass++) {
            reports.push(await gc(d));
            await jitter(3);
          }
          return reports;
        };
        const gcLoops = Promise.all(Array.from({ length: GC_LOOPS }, () => collect()));
        const outcomes = await Promise.all(Array.from({ length: UPLOADS }, (_, i) => upload(i)));
        uploading = false;
        const reports = (await gcLoops).flat();
        if (reports.some((r) => r.digests.includes(digest))) roundsWhereGcTookIt++;
        const failed = outcomes.filter((o) => !/ 20[0-9]$/.test(o));
        assert.deepEqual(failed, [], `round ${round}: every upload is acknowledged`);
        assert.ok(reports.length >= 1, 'GC ran during the uploads');

        // Everything was acknowledged: the blob must be there, whole, now and after another pass.
        for (const when of ['after the race', 'after one more GC pass']) {
          const back = await readBlob(d, digest);
          assert.equal(back.status, 200, `round ${round} ${when}: GET ${digest}`);
          assert.ok(back.bytes.equals(data), `round ${round} ${when}: the exact bytes`);
          assert.equal(await blobExists(d, digest), true, `round ${round} ${when}: the file`);
          if (when === 'after the race') assert.ok(!(await gc(d)).digests.includes(digest), 'a live blob is not collected');
        }
        const check = await fsck(d);
        assert.deepEqual({ corrupt: check.corrupt, missing: check.missing, orphans: check.orphans }, { corrupt: [], missing: [], orphans: [] }, `round ${round}: fsck`);

        // Drop every reference for the next round; then the blob is garbage and goes.
        assert.equal((await dropPin(d, digest)).status, 204);
        for (const key of keys) {
          assert.equal((await d.api(`/api/buckets/race/objects/${key}`, { method: 'DELETE' })).status, 204, key);
        }
        assert.ok((await gc(d)).digests.includes(digest), `round ${round}: unreferenced at last, collected`);
        assert.equal((await readBlob(d, digest)).status, 404);
        assert.equal(await blobExists(d, digest), false);
      }
      t.diagnostic(`GC removed the digest while uploads of it were in flight in ${roundsWhereGcTookIt} of ${ROUNDS} rounds`);
    });

    test('G4 churn: references to one digest come and go while GC runs; every acknowledged upload reads back', async (t) => {
      // Each worker, as its own principal: upload D (2xx), wait for the GC pass in progress to finish, read D
      // back (its reference still holds it, so it must be there, whole), drop its reference, again. D keeps
      // becoming garbage and being collected while other workers are in the middle of uploading it.
      await makeBucket(d, 'churn');
      const WORKERS = 4;
      const ITERATIONS = 15;
      const MAX_PASSES = 1000; // of the background GC loop, so that it is bounded
      const data = Buffer.from('the G4 churn digest '.repeat(300), 'utf8') as Buffer<ArrayBuffer>;
      const digest = sha256(data);
      const kinds = ['POST', 'PUT', 'object', 'session'] as const;
      const tokens = await Promise.all(Array.from({ length: WORKERS }, () => createToken(d, ['blobs:read', 'blobs:write', 'blobs:delete', 'bucket:churn:write', 'bucket:churn:delete'])));
      const jitter = (ms: number) => new Promise((r) => setTimeout(r, Math.floor(Math.random() * (ms + 1))));
      let collected = 0;
      const problems: string[] = [];
      const worker = async (w: number) => {
        const kind = kinds[w % 4]!;
        const token = tokens[w]!.token;
        for (let i = 0; i < ITERATIONS; i++) {
          await jitter(20); // unreferenced by this worker for a while: often by all of them
          let res: Response;
          if (kind === 'POST') res = await as(d, token, '/api/blobs', { method: 'POST', body: data });
          else if (kind === 'PUT') res = await as(d, token, `/api/blobs/${digest}`, { method: 'PUT', body: data });
          else if (kind === 'object') {
            res = await as(d, token, `/api/buckets/churn/objects/w${w}`, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
          } else {
            res = await as(d, token, `/api/blobs/uploads?digest=${digest}`, { method: 'POST' });
            if (res.status === 202) {
              const s = (await res.json()) as { id: string; token: string };
              res = await complete(d, s, `digest=${digest}`, data);
            }
          }
          const text = await res.text();
          if (res.status < 200 || res.status > 299) {
            problems.push(`worker ${w} (${kind}) iteration ${i}: ${res.status} ${text}`);
            return;
          }
          const report = await gc(d);
          if (report.digests.includes(digest)) collected++;
          const back = await readBlob(d, digest);
          if (back.status !== 200 || !back.bytes.equals(data)) {
            problems.push(`worker ${w} (${kind}) iteration ${i}: acknowledged, then GET → ${back.status} (${back.bytes.length} bytes)`);
            return;
          }
          const drop = kind === 'object'
            ? await as(d, token, `/api/buckets/churn/objects/w${w}`, { method: 'DELETE' })
            : await as(d, token, `/api/blobs/${digest}`, { method: 'DELETE' });
          await drop.arrayBuffer();
          if (drop.status !== 204) {
            problems.push(`worker ${w} (${kind}) iteration ${i}: dropping the reference → ${drop.status}`);
            return;
          }
        }
      };
      let working = true;
      const background = (async () => {
        for (let pass = 0; working && pass < MAX_PASSES; pass++) {
          if ((await gc(d)).digests.includes(digest)) collected++;
          await jitter(2);
        }
      })();
      await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
      working = false;
      await background;
      assert.deepEqual(problems, []);
      t.diagnostic(`GC collected the digest ${collected} times while workers were uploading it`);
      const check = await fsck(d);
      assert.deepEqual({ corrupt: check.corrupt, missing: check.missing, orphans: check.orphans }, { corrupt: [], missing: [], orphans: [] });
      // Nothing references it now: it goes, file and all.
      await gc(d);
      assert.equal((await readBlob(d, digest)).status, 404);
      assert.equal(await blobExists(d, digest), false);
    });
  });

  // 3 s, not less: each test must list (or append) before its pin (or session) expires, also on two busy cores.
  describe('temporary pins and sessions expire (--temporary-ttl 3s, --upload-ttl 3s, grace 0s)', { concurrency: false }, () => {
    let d: Daemon;
    before(async () => {
      d = await startDaemon({ args: ['--temporary-ttl', '3s', '--upload-ttl', '3s', '--gc-grace', '0s', '--gc-interval', '0s'] });
    });
    after(() => stopAndRemove(d));

    test('a temporary pin expires and its file goes; a permanent pin stays', async () => {
      const temp = randomData(900);
      const perm = randomData(901);
      const tempDigest = await pin(d, temp, undefined, 'temporary=true');
      const permDigest = await pin(d, perm);
      const listed = await allPins(d);
      const tempItem = listed.find((i) => i.digest === tempDigest);
      assert.ok(tempItem, 'listed');
      assert.equal(tempItem.temporary, true);
      assert.ok(tempItem.expires_at && Date.parse(tempItem.expires_at) > Date.parse(tempItem.created_at), JSON.stringify(tempItem));
      assert.equal(listed.find((i) => i.digest === permDigest)?.expires_at, null);

      let pinsExpired = 0;
      const removed = new Set<string>();
      await waitFor(async () => {
        const report = await gc(d);
        pinsExpired += report.pins_expired;
        for (const digest of report.digests) removed.add(digest);
        return pinsExpired >= 1 && removed.has(tempDigest);
      }, 'GC to expire the temporary pin and remove its blob', 15_000);
      const gone = await d.api(`/api/blobs/${tempDigest}`);
      assert.equal(gone.status, 404);
      assert.equal(await errorCode(gone), 'blob_not_found');
      assert.equal(await blobExists(d, tempDigest), false, 'the file is gone');
      assert.ok(!(await allPins(d)).some((i) => i.digest === tempDigest), 'the pin is gone from the list');

      assert.ok(!removed.has(permDigest));
      const kept = await readBlob(d, permDigest);
      assert.equal(kept.status, 200);
      assert.ok(kept.bytes.equals(perm));
      assert.equal(await blobExists(d, permDigest), true);
    });

    test('an expired pin is neither listed nor counted by stats, even before GC collects it', async () => {
      const data = randomData(960);
      const digest = await pin(d, data, undefined, 'temporary=true');
      const stats = async () => (await (await d.api('/api/admin/stats')).json()) as { pins: number; logical_bytes: number };
      const before = await stats();
      await waitFor(async () => !(await allPins(d)).some((i) => i.digest === digest), 'the temporary pin to expire from the list');
      const after = await stats();
      assert.equal(after.pins, before.pins - 1);
      assert.equal(after.logical_bytes, before.logical_bytes - 960);
      assert.ok((await gc(d)).digests.includes(digest), 'collected, so the next test starts clean');
    });

    test('a dry run counts an expired temporary pin and lists its blob, and drops nothing', async () => {
      const data = randomData(950);
      const digest = await pin(d, data, undefined, 'temporary=true');
      let dry: GcReport | undefined;
      await waitFor(async () => (dry = await gc(d, 'dry_run=true')).pins_expired >= 1, 'the temporary pin to expire', 15_000);
      assert.ok(dry);
      assert.ok(dry.digests.includes(digest), `a pass would remove its blob: ${JSON.stringify(dry)}`);
      assert.equal(await blobExists(d, digest), true);
      const real = await gc(d);
      assert.ok(real.pins_expired >= 1, 'the dry run dropped no pin');
      assert.ok(real.digests.includes(digest));
    });

    test('an idle session expires and GC frees its bytes', async () => {
      const s = await initiate(d);
      assert.equal((await append(d, s, randomData(1000))).status, 203);
      const sessionBytes = () => storeOf(d).sessionStored(s.id);
      assert.notEqual(await sessionBytes(), null);
      await waitFor(async () => {
        await gc(d);
        return (await status(d, s)).status === 404 && (await sessionBytes()) === null;
      }, 'the session to expire and its bytes to go', 15_000);
    });
  });

  describe('the grace period (--gc-grace 2s)', { concurrency: false }, () => {
    let d: Daemon;
    before(async () => {
      d = await startDaemon({ args: ['--gc-grace', '2s', '--gc-interval', '0s'] });
    });
    after(() => stopAndRemove(d));

    test('an unreferenced blob goes only after the grace', async () => {
      const data = randomData(1234);
      const digest = await pin(d, data);
      assert.equal((await dropPin(d, digest)).status, 204);
      const early = await gc(d);
      assert.ok(!early.digests.includes(digest), `younger than the grace: kept (${JSON.stringify(early)})`);
      // Gone for readers at once (nothing live references it); its bytes stay until a pass after the grace.
      assert.equal((await readBlob(d, digest)).status, 404);
      assert.equal(await blobExists(d, digest), true);
      await waitFor(async () => (await gc(d)).digests.includes(digest), 'a GC pass after the grace to remove it', 15_000);
      assert.equal((await readBlob(d, digest)).status, 404);
      assert.equal(await blobExists(d, digest), false);
    });
  });

  describe('the timer (--gc-interval 500ms, grace 0s)', { concurrency: false }, () => {
    let d: Daemon;
    before(async () => {
      d = await startDaemon({ args: ['--gc-interval', '500ms', '--gc-grace', '0s'] });
    });
    after(() => stopAndRemove(d));

    test('GC runs on its own: an unpinned blob goes without POST /api/admin/gc; a pinned one stays', async () => {
      const kept = randomData(222);
      const dropped = randomData(223);
      const keptDigest = await pin(d, kept);
      const droppedDigest = await pin(d, dropped);
      assert.equal((await dropPin(d, droppedDigest)).status, 204);
      await waitFor(async () => !(await blobExists(d, droppedDigest)), 'the timer\'s pass to remove it', 15_000);
      assert.equal((await readBlob(d, droppedDigest)).status, 404);
      const read = await readBlob(d, keptDigest);
      assert.equal(read.status, 200);
      assert.ok(read.bytes.equals(kept));
    });
  });

  describe('GET /api/admin/stats', { concurrency: false }, () => {
    let d: Daemon;
    before(async () => {
      d = await startDaemon({ args: ['--gc-interval', '0s'] });
    });
    after(() => stopAndRemove(d));

    const stats = async (): Promise<Stats> => {
      const res = await d.api('/api/admin/stats');
      assert.equal(res.status, 200, `GET /api/admin/stats → ${res.status} ${await res.clone().text()}`);
      return (await res.json()) as Stats;
    };

    test('blob count, stored and logical bytes, dedup ratio, pins, objects, open sessions and their bytes', async () => {
      assert.deepEqual(await stats(), {
        blobs: 0, stored_bytes: 0, logical_bytes: 0, dedup_ratio: 1, pins: 0, objects: 0, open_sessions: 0, open_session_bytes: 0, inline_blobs: 0, inline_bytes: 0,
      });

      await makeBucket(d, 'acc');
      const n = 3000;
      const data = randomData(n);
      await putObject(d, 'acc/objects/a', data);
      await putObject(d, 'acc/objects/b', data);
      let s = await stats();
      assert.equal(s.blobs, 1);
      assert.equal(s.stored_bytes, n);
      assert.equal(s.logical_bytes, 2 * n, 'two objects of one blob: logical twice stored');
      assert.equal(s.dedup_ratio, 2);
      assert.equal(s.objects, 2);
      assert.equal(s.pins, 0);

      // A pin of the same blob and a second revision of another size count as references too.
      await pin(d, data);
      const m = 1000;
      await putObject(d, 'acc/objects/a', randomData(m));
      s = await stats();
      assert.equal(s.blobs, 2);
      assert.equal(s.stored_bytes, n + m);
      assert.equal(s.logical_bytes, 3 * n + m, 'a/1, a/2, b/1 and the pin');
      assert.ok(Math.abs(s.dedup_ratio - (3 * n + m) / (n + m)) < 1e-9, `dedup_ratio ${s.dedup_ratio}`);
      assert.equal(s.objects, 2);
      assert.equal(s.pins, 1);
      assert.equal(s.open_sessions, 0);

      const session = await initiate(d);
      assert.equal((await append(d, session, randomData(700))).status, 203);
      const other = await initiate(d, 'size=5000');
      assert.equal((await append(d, other, randomData(300))).status, 203);
      s = await stats();
      assert.equal(s.open_sessions, 2);
      assert.equal(s.open_session_bytes, 1000, 'bytes received so far');
      assert.equal(s.blobs, 2, 'open sessions are not blobs');

      const reader = await createToken(d, ['blobs:read', 'blobs:write', 'blobs:delete', 'bucket:*:read']);
      const refused = await as(d, reader.token, '/api/admin/stats');
      assert.equal(refused.status, 403);
      assert.equal(await errorCode(refused), 'forbidden');
    });
  });
});

describe('the byte-deletion queue', () => {
  test('deletions that keep failing stay queued and never hold up those behind them: a purge still deletes at once', onFsOnly('directories planted where blob files belong'), async () => {
    // --inline-max 0: small blobs as files. A directory where a blob's file belongs cannot be unlinked, so
    // the deletion GC queues for it fails, pass after pass; more such failures than one listing of the queue.
    const d = await startDaemon({ args: ['--gc-grace', '0s', '--gc-interval', '0s', '--inline-max', '0'] });
    const fileOf = (digest: string) => {
      const hex = digest.slice('sha256:'.length);
      return path.join(d.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
    };
    try {
      const stuck: string[] = [];
      for (let i = 0; i < 120; i++) stuck.push(await pin(d, randomData(10 + i)));
      for (const digest of stuck) {
        assert.equal((await dropPin(d, digest)).status, 204);
        await rm(fileOf(digest));
        await mkdir(fileOf(digest));
      }
      const first = await gc(d);
      assert.equal(first.blobs_removed, stuck.length);
      for (const digest of stuck) assert.ok((await stat(fileOf(digest))).isDirectory(), 'its deletion failed');

      const purged = await pin(d, randomData(5000));
      assert.equal((await dropPin(d, purged, undefined, 'force=true')).status, 204);
      assert.equal(await stat(fileOf(purged)).catch(() => null), null, 'the purge deleted its file at once, past the failing deletions');

      // Once the directories are gone the queued deletions succeed: nothing is left for fsck.
      for (const digest of stuck) await rmdir(fileOf(digest));
      await gc(d);
      const report = await fsck(d);
      assert.deepEqual([report.checked, report.missing, report.orphans], [0, [], []]);
    } finally {
      await stopAndRemove(d);
    }
  });
});
