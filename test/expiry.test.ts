// Expiry at read time, against the real daemon: an object or a temporary pin past its expiry is gone for
// every reader at once (404, not listed, not exported, not counted), before any GC pass; GC then only
// reclaims the bytes. A blob that nothing live references reads as absent too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

const json = { 'content-type': 'application/json' };

describe('expiry at read time', () => {
  let d: Daemon;
  before(async () => {
    // No GC pass runs on its own: whatever is gone below is gone at read time.
    d = await startDaemon({ args: ['--temporary-ttl', '1s', '--gc-interval', '0s', '--gc-grace', '0s'] });
    assert.equal((await d.api('/api/buckets/exp', { method: 'PUT' })).status, 201);
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  const put = (key: string, body: string, headers: Record<string, string> = {}) =>
    d.api(`/api/buckets/exp/objects/${key}`, { method: 'PUT', body, headers });
  const expire = (key: string) =>
    d.api(`/api/buckets/exp/objects/${key}`, { method: 'PATCH', headers: json, body: JSON.stringify({ expires_at: new Date(Date.now() - 1000).toISOString() }) });
  const keys = async (query = '') =>
    ((await (await d.api(`/api/buckets/exp/objects${query}`)).json()) as { items: { key: string }[] }).items.map((o) => o.key);

  test('an expired object is 404 everywhere at once, left out of listings, exports, usage and stats', async () => {
    assert.equal((await put('stays', 'kept')).status, 201);
    assert.equal((await put('goes', 'first')).status, 201);
    assert.equal((await put('goes', 'second version')).status, 200);
    const statsBefore = (await (await d.api('/api/admin/stats')).json()) as { objects: number };
    assert.equal((await expire('goes')).status, 200, 'the PATCH itself is answered');

    for (const q of ['', '?metadata', '?revisions', '?revision=1', '?compare=1..2']) {
      const res = await d.api(`/api/buckets/exp/objects/goes${q}`);
      assert.equal(res.status, 404, q);
      assert.equal(await errorCode(res), 'object_not_found', q);
    }
    assert.equal((await d.api('/api/buckets/exp/objects/goes', { method: 'HEAD' })).status, 404);
    assert.equal((await d.api('/api/buckets/exp/objects/goes', { method: 'PATCH', headers: json, body: '{"owner":"x"}' })).status, 404);
    assert.equal((await d.api('/api/buckets/exp/objects/goes', { method: 'DELETE' })).status, 404);
    assert.deepEqual(await keys(), ['stays']);
    assert.deepEqual(await keys('?prefix=go'), []);
    const ndjson = await (await d.api('/api/buckets/exp/objects?format=ndjson')).text();
    assert.deepEqual(ndjson.trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key), ['stays']);
    const csv = await (await d.api('/api/buckets/exp/objects?format=csv&fields=key')).text();
    assert.equal(csv, 'key\r\nstays\r\n');
    const bucket = (await (await d.api('/api/buckets/exp')).json()) as { usage: { objects: number; bytes: number } };
    assert.deepEqual(bucket.usage, { objects: 1, bytes: 4 });
    const stats = (await (await d.api('/api/admin/stats')).json()) as { objects: number };
    assert.equal(stats.objects, statsBefore.objects - 1);
    // Its blobs are referenced by nothing live: they read as absent by digest as well.
    const res = await d.api(`/api/blobs/${sha256(Buffer.from('second version'))}`);
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'blob_not_found');
  });

  test('a write to an expired key makes a new object (If-None-Match holds); GC only reclaims', async () => {
    assert.equal((await put('again', 'old one')).status, 201);
    assert.equal((await put('again', 'old two')).status, 200);
    assert.equal((await expire('again')).status, 200);
    const res = await put('again', 'fresh', { 'if-none-match': '*' });
    assert.equal(res.status, 201, 'created, as for a key that does not exist');
    const body = (await res.json()) as { revision: number };
    assert.equal(body.revision, 1);
    const revisions = (await (await d.api('/api/buckets/exp/objects/again?revisions')).json()) as { items: { revision: number }[] };
    assert.deepEqual(revisions.items.map((r) => r.revision), [1], 'none of the expired history');
    assert.equal(await (await d.api('/api/buckets/exp/objects/again')).text(), 'fresh');
    const gc = (await (await d.api('/api/admin/gc', { method: 'POST' })).json()) as { blobs_removed: number };
    assert.ok(gc.blobs_removed >= 2, `GC reclaims the expired blobs (${gc.blobs_removed})`);
    assert.equal(await (await d.api('/api/buckets/exp/objects/again')).text(), 'fresh', 'the live object stays');
  });

  test('a temporary pin past its TTL is gone at once: its blob is 404, not listed, not counted, not droppable', async () => {
    const bytes = `temporary ${Date.now()}`;
    const up = await d.api('/api/blobs?temporary=true', { method: 'POST', body: bytes });
    assert.equal(up.status, 201);
    const { digest } = (await up.json()) as { digest: string };
    assert.equal((await d.api(`/api/blobs/${digest}`)).status, 200, 'readable while pinned');
    const pins = async () => ((await (await d.api('/api/blobs')).json()) as { items: { digest: string }[] }).items.map((p) => p.digest);
    assert.ok((await pins()).includes(digest));
    await waitFor(async () => (await d.api(`/api/blobs/${digest}`, { method: 'HEAD' })).status === 404, 'the temporary pin to expire', 15_000);
    const res = await d.api(`/api/blobs/${digest}`);
    assert.equal(await errorCode(res), 'blob_not_found');
    assert.ok(!(await pins()).includes(digest));
    const drop = await d.api(`/api/blobs/${digest}`, { method: 'DELETE' });
    assert.equal(drop.status, 404);
    assert.equal(await errorCode(drop), 'pin_not_found');
    // Initiating with its digest does not complete at once: the blob is gone, so the bytes are asked for.
    const init = await d.api(`/api/blobs/uploads?digest=${digest}`, { method: 'POST' });
    assert.equal(init.status, 202);
  });

  test('a blob whose last pin was dropped reads as absent before GC', async () => {
    const bytes = `dropped ${Date.now()}`;
    const { digest } = (await (await d.api('/api/blobs', { method: 'POST', body: bytes })).json()) as { digest: string };
    assert.equal((await d.api(`/api/blobs/${digest}`, { method: 'DELETE' })).status, 204);
    assert.equal((await d.api(`/api/blobs/${digest}`)).status, 404);
    // The same bytes again make it live again.
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: bytes })).status, 201);
    assert.equal(await (await d.api(`/api/blobs/${digest}`)).text(), bytes);
  });
});
