// Listings against the real daemon: every listing answers { items, next_cursor } with the same limit and
// cursor parameters, and walking the cursor visits each item once; property filters with operators compare
// numbers as numbers.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createToken } from './helpers/access.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';

const json = { 'content-type': 'application/json' };

describe('listings: one shape, one way to page', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
    for (const b of ['l1', 'l2', 'l3']) assert.equal((await d.api(`/api/buckets/${b}`, { method: 'PUT' })).status, 201);
    for (let i = 1; i <= 3; i++) {
      assert.ok((await d.api('/api/buckets/l1/objects/doc', { method: 'PUT', body: `v${i}` })).ok);
      assert.equal((await d.api('/api/blobs', { method: 'POST', body: `pin ${i}` })).status, 201);
      assert.equal((await d.api(`/api/blobs/uploads?filename=s${i}`, { method: 'POST' })).status, 202);
      await createToken(d, ['blobs:read'], { name: `list-${i}` });
    }
    for (const [key, size] of [['a', 9], ['b', 10], ['c', '100'], ['d', 'big'], ['e', null]] as const) {
      assert.ok((await d.api(`/api/buckets/l2/objects/${key}`, { method: 'PUT', headers: json, body: JSON.stringify({ content_base64: 'eA==', properties: { size } }) })).ok);
    }
    assert.ok((await d.api('/api/buckets/l2/objects/f', { method: 'PUT', body: 'no properties' })).ok);
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  /** Every item of a listing, one per page, checking the shape of each page. */
  async function walk(path: string): Promise<unknown[]> {
    const items: unknown[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const sep = path.includes('?') ? '&' : '?';
      const res = await d.api(`${path}${sep}limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      assert.equal(res.status, 200, path);
      const page = (await res.json()) as { items: unknown[]; next_cursor: string | null };
      assert.ok(Array.isArray(page.items), `${path}: items`);
      assert.ok('next_cursor' in page, `${path}: next_cursor`);
      assert.ok(page.items.length <= 1);
      items.push(...page.items);
      if (page.next_cursor === null) return items;
      cursor = page.next_cursor;
    }
    throw new Error(`${path}: more than 50 pages`);
  }

  test('buckets, tokens, pins, sessions, revisions and objects page alike, each item once', async () => {
    const names = (await walk('/api/buckets')).map((b) => (b as { name: string }).name);
    assert.deepEqual(names, ['l1', 'l2', 'l3']);
    const tokens = (await walk('/api/tokens')).map((t) => (t as { name: string }).name);
    assert.deepEqual(tokens, ['list-1', 'list-2', 'list-3'], 'tokens in creation order');
    const pins = await walk('/api/blobs');
    assert.equal(new Set(pins.map((p) => (p as { digest: string }).digest)).size, 3);
    const sessions = (await walk('/api/blobs/uploads')) as { filename: string; offset: number }[];
    assert.deepEqual(sessions.map((s) => s.filename), ['s3', 's2', 's1'], 'open sessions, newest first');
    for (const s of sessions) assert.ok(!('token' in s), 'never a token');
    const revisions = (await walk('/api/buckets/l1/objects/doc?revisions')).map((r) => (r as { revision: number }).revision);
    assert.deepEqual(revisions, [3, 2, 1]);
    const keys = (await walk('/api/buckets/l2/objects')).map((o) => (o as { key: string }).key);
    assert.deepEqual(keys, ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  test('limit out of range and cursors this server did not give out are 400', async () => {
    for (const path of ['/api/buckets', '/api/tokens', '/api/blobs', '/api/blobs/uploads', '/api/buckets/l1/objects/doc?revisions', '/api/buckets/l2/objects']) {
      const sep = path.includes('?') ? '&' : '?';
      for (const q of ['limit=0', 'limit=1001', 'cursor=bm90LWEtY3Vyc29y', 'cursor=%%%']) {
        const res = await d.api(`${path}${sep}${q}`);
        assert.equal(res.status, 400, `${path} ${q}`);
        assert.match(await errorCode(res), /invalid_request/, `${path} ${q}`);
      }
    }
  });

  test('property filters: numbers as numbers, text as text, presence', async () => {
    const keys = async (q: string) => {
      const res = await d.api(`/api/buckets/l2/objects?${q}`);
      assert.equal(res.status, 200, q);
      return ((await res.json()) as { items: { key: string }[] }).items.map((o) => o.key);
    };
    assert.deepEqual(await keys('property.size_gt=9'), ['b', 'c'], '10 and "100" are more than 9');
    assert.deepEqual(await keys('property.size_gte=9&property.size_lt=100'), ['a', 'b']);
    assert.deepEqual(await keys('property.size=100'), ['c']);
    assert.deepEqual(await keys('property.size_eq=1e2'), ['c']);
    assert.deepEqual(await keys('property.size_lte=10.0'), ['a', 'b']);
    assert.deepEqual(await keys('property.size_gt=a'), ['d'], 'text with text');
    assert.deepEqual(await keys('property.size_ne=big'), ['a', 'b', 'c', 'e', 'f']);
    // A write's properties are a merge patch: `"size": null` removed the member from e.
    assert.deepEqual(await keys('property.size=null'), []);
    assert.deepEqual(await keys('property.size_exists=false'), ['e', 'f']);
    assert.deepEqual(await keys('property.size_exists=true'), ['a', 'b', 'c', 'd']);
    const csv = await (await d.api('/api/buckets/l2/objects?format=csv&fields=key&property.size_gt=9')).text();
    assert.equal(csv, 'key\r\nb\r\nc\r\n', 'exports filter alike');
    for (const q of ['property.size=1&property.size=2', 'property.size_gt=1&property.size_gt=2&format=ndjson']) {
      const twice = await d.api(`/api/buckets/l2/objects?${q}`);
      assert.equal(twice.status, 400, q);
      assert.equal(await errorCode(twice), 'invalid_request');
    }
    const bad = await d.api('/api/buckets/l2/objects?property.size_exists=maybe');
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), 'invalid_request');
  });
});
