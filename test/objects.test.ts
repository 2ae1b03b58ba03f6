// Buckets and objects against the real daemon: bucket settings and usage, revisions, downloads with the
// shared Range/ETag path, limits and quotas that keep nothing, listing with cursors under concurrent
// writes, delimiter, filters, and ndjson/csv exports that a CSV parser reads back.
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { probeStore, type StoreProbe } from './helpers/store-probe.ts';

interface ObjectJson {
  id: string;
  key: string;
  revision: number;
  digest: string;
  size: number;
  content_type: string | null;
  filename: string | null;
  owner: string | null;
  tags: string[];
  properties: Record<string, unknown>;
}

describe('buckets and objects', () => {
  let d: Daemon;
  const put = (p: string, body: BodyInit, headers: Record<string, string> = {}) =>
    d.api(`/api/buckets/${p}`, { method: 'PUT', body, headers });
  const putJson = async (p: string, body: BodyInit, headers: Record<string, string> = {}) => {
    const res = await put(p, body, headers);
    assert.ok(res.status === 200 || res.status === 201, `PUT ${p} → ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as ObjectJson;
  };
  const bucket = (name: string, settings: Record<string, unknown> = {}) =>
    d.api(`/api/buckets/${name}`, { method: 'PUT', body: JSON.stringify(settings), headers: { 'content-type': 'application/json' } });

  let store: StoreProbe;
  const blobFiles = () => store.list();
  before(async () => {
    d = await startDaemon();
    store = probeStore(d);
  });
  after(async () => {
    store.close();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('bucket lifecycle: create (201), update (200), show with usage, list, delete only when empty', async () => {
    const created = await bucket('photos', { max_object_size: 1000 });
    assert.equal(created.status, 201);
    const updated = await bucket('photos', { max_object_size: 2000, max_revisions: 3 });
    assert.equal(updated.status, 200);
    const shown = (await (await d.api('/api/buckets/photos')).json()) as Record<string, unknown>;
    assert.equal(shown.max_object_size, 2000);
    assert.equal(shown.max_revisions, 3);
    assert.deepEqual(shown.usage, { objects: 0, bytes: 0 });
    // HEAD answers GET's headers without the body, Content-Length included.
    const getLength = Buffer.byteLength(await (await d.api('/api/buckets/photos')).text());
    const head = await d.api('/api/buckets/photos', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(getLength));
    assert.equal(await head.text(), '');
    await putJson('photos/objects/cat.jpg', 'meow');
    const listed = (await (await d.api('/api/buckets')).json()) as { items: { name: string; usage: unknown }[] };
    assert.deepEqual(listed.items.find((b) => b.name === 'photos')?.usage, { objects: 1, bytes: 4 });
    const refused = await d.api('/api/buckets/photos', { method: 'DELETE' });
    assert.equal(refused.status, 409);
    assert.equal(await errorCode(refused), 'bucket_not_empty');
    assert.equal((await d.api('/api/buckets/photos?force=true', { method: 'DELETE' })).status, 204);
    assert.equal(await errorCode(await d.api('/api/buckets/photos')), 'bucket_not_found');
    assert.equal(await errorCode(await d.api('/api/buckets/photos/objects/cat.jpg')), 'bucket_not_found');
  });

  test('bad bucket names, keys and settings are 400', async () => {
    for (const name of ['UPPER', '-dash', 'a'.repeat(64), 'sp ace']) {
      assert.equal(await errorCode(await bucket(encodeURIComponent(name))), 'invalid_bucket_name', name);
    }
    assert.equal(await errorCode(await bucket('ok', { max_revisions: 0 })), 'invalid_request');
    assert.equal(await errorCode(await bucket('ok', { unknown: 1 })), 'invalid_request');
    // Settings sent as another media type than JSON: 415, saying what the route takes.
    const typed = await d.api('/api/buckets/ok', { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: '{}' });
    assert.equal(typed.status, 415);
    const { error } = (await typed.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, 'unsupported_media_type');
    assert.match(error.message, /takes a JSON body \(Content-Type: application\/json\)/);
    await bucket('keys');
    // Encoded, so the client does not normalise the dot segments away before they reach the server.
    for (const key of ['a%2F..%2Fb', '.%2Fa', '%2Fabs', 'a%00b', 'x'.repeat(1025), 'tab%09key']) {
      const res = await put(`keys/objects/${key}`, 'x');
      assert.equal(res.status, 400, key);
      assert.equal(await errorCode(res), 'invalid_key');
    }
    assert.equal(await errorCode(await put('nope/objects/a', 'x')), 'bucket_not_found');
    // Percent-encoded dot segments would be resolved into another key by URL parsing: refused instead.
    // (node:http with a path sends the target as given; a URL — fetch's too — would resolve the dots first.)
    // A fragment in the target ('#', which no client should send) must not hide a trailing dot segment.
    for (const target of ['/api/buckets/keys/objects/a/%2e%2e/x', '/api/buckets/keys/objects/a/%2E/x', '/api/buckets/keys/objects/q/zz/%2e%2e#']) {
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const { hostname, port } = new URL(d.url);
        const req = httpRequest({ hostname, port, path: target, method: 'PUT', headers: { authorization: `Bearer ${d.token}` } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        req.end('x');
      });
      assert.equal(answer.status, 400, target);
      assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'invalid_key');
    }
    assert.equal((await d.api('/api/buckets/keys/objects/x')).status, 404, 'nothing landed on the resolved key');
  });

  test('every write is a revision; older ones stay downloadable; metadata and revisions as JSON', async () => {
    await bucket('docs');
    const v1 = await putJson('docs/objects/reports/2026/q1.txt?filename=q1.txt', 'first', { 'content-type': 'text/plain' });
    assert.equal(v1.revision, 1);
    assert.equal(v1.key, 'reports/2026/q1.txt');
    assert.equal(v1.filename, 'q1.txt');
    const v2 = await putJson('docs/objects/reports/2026/q1.txt', 'second!', { 'content-type': 'text/markdown' });
    assert.equal(v2.revision, 2);
    assert.equal(v2.id, v1.id);
    assert.equal(v2.filename, 'q1.txt', 'metadata a write does not restate is kept');

    const cur = await d.api('/api/buckets/docs/objects/reports/2026/q1.txt');
    assert.equal(await cur.text(), 'second!');
    assert.equal(cur.headers.get('content-type'), 'text/markdown');
    assert.equal(cur.headers.get('etag'), `"${sha256(Buffer.from('second!'))}"`);
    assert.match(cur.headers.get('content-disposition') ?? '', /filename="q1.txt"/);
    assert.ok(Date.parse(cur.headers.get('last-modified')!) > 0);
    assert.match(cur.headers.get('cache-control') ?? '', /no-cache/);

    const old = await d.api('/api/buckets/docs/objects/reports/2026/q1.txt?revision=1');
    assert.equal(await old.text(), 'first');
    assert.equal(old.headers.get('content-type'), 'text/plain');
    // Revalidated like the current one: a revision's number returns when the object is deleted and written again.
    assert.equal(old.headers.get('cache-control'), 'private, no-cache');

    const range = await d.api('/api/buckets/docs/objects/reports/2026/q1.txt', { headers: { range: 'bytes=0-5' } });
    assert.equal(range.status, 206);
    assert.equal(await range.text(), 'second');
    const again = await d.api('/api/buckets/docs/objects/reports/2026/q1.txt', { headers: { 'if-none-match': `"${v2.digest}"` } });
    assert.equal(again.status, 304);
    const head = await d.api('/api/buckets/docs/objects/reports/2026/q1.txt', { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), '7');

    const metadata = (await (await d.api('/api/buckets/docs/objects/reports/2026/q1.txt?metadata')).json()) as ObjectJson;
    assert.equal(metadata.revision, 2);
    assert.equal(metadata.digest, v2.digest);
    const revs = (await (await d.api('/api/buckets/docs/objects/reports/2026/q1.txt?revisions')).json()) as { items: { revision: number; digest: string }[] };
    assert.deepEqual(revs.items.map((r) => r.revision), [2, 1]);
    assert.equal(revs.items[1]!.digest, v1.digest);
    assert.equal(await errorCode(await d.api('/api/buckets/docs/objects/reports/2026/q1.txt?revision=9')), 'object_not_found');
    assert.equal(await errorCode(await d.api('/api/buckets/docs/objects/missing')), 'object_not_found');
  });

  test('If-Match and If-None-Match: * guard writes with 412', async () => {
    await bucket('cond');
    assert.equal((await put('cond/objects/k', 'one', { 'if-none-match': '*' })).status, 201);
    const clash = await put('cond/objects/k', 'two', { 'if-none-match': '*' });
    assert.equal(clash.status, 412);
    assert.equal(await errorCode(clash), 'precondition_failed');
    const stale = await put('cond/objects/k', 'two', { 'if-match': `"${sha256(Buffer.from('zero'))}"` });
    assert.equal(stale.status, 412);
    assert.equal((await put('cond/objects/k', 'two', { 'if-match': `"${sha256(Buffer.from('one'))}"` })).status, 200);
    assert.equal((await put('cond/objects/absent', 'x', { 'if-match': '*' })).status, 412);
    assert.equal(await (await d.api('/api/buckets/cond/objects/k')).text(), 'two');
  });

  test('If-Match on PATCH and DELETE (lists, weak tags, revisions), If-(Un)Modified-Since on downloads', async () => {
    await bucket('cond2');
    const one = await putJson('cond2/objects/k', 'one');
    const picked = (await (await d.api('/api/buckets/cond2/objects/k?revisions&fields=revision,digest')).json()) as { items: unknown[] };
    assert.deepEqual(picked.items, [{ revision: 1, digest: one.digest }], '?fields= selects on ?revisions too');
    const tag = (t: string) => `"${sha256(Buffer.from(t))}"`;
    const patch = (body: unknown, headers: Record<string, string> = {}) =>
      d.api('/api/buckets/cond2/objects/k', { method: 'PATCH', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
    const failed = await patch({ owner: 'z' }, { 'if-match': tag('nope') });
    assert.equal(failed.status, 412);
    assert.equal(await errorCode(failed), 'precondition_failed');
    assert.equal((await patch({ owner: 'z' }, { 'if-match': `W/${tag('one')}` })).status, 412, 'a weak tag never matches If-Match');
    assert.equal(((await (await d.api('/api/buckets/cond2/objects/k?metadata')).json()) as ObjectJson).owner, null, 'nothing changed');
    assert.equal((await patch({ owner: 'z' }, { 'if-match': `${tag('x')}, ${tag('one')}` })).status, 200, 'any tag of a list');
    assert.equal((await put('cond2/objects/k', 'two', { 'if-match': `${tag('x')}, "${one.digest}"` })).status, 200, 'a list on PUT too');
    // DELETE: the current content, or revision N's with ?revision=N.
    const del = (q: string, ifMatch: string) => d.api(`/api/buckets/cond2/objects/k${q}`, { method: 'DELETE', headers: { 'if-match': ifMatch } });
    assert.equal((await del('', tag('one'))).status, 412, 'revision 1 is not the current content');
    assert.equal((await del('?revision=1', tag('two'))).status, 412);
    assert.equal((await del('?revision=1', tag('one'))).status, 204);
    assert.equal(await (await d.api('/api/buckets/cond2/objects/k')).text(), 'two', 'the current revision stayed');
    assert.equal((await del('', '*')).status, 204);
    assert.equal((await d.api('/api/buckets/cond2/objects/k')).status, 404);
    assert.equal((await del('', '*')).status, 404);

    // Downloads: If-Modified-Since → 304, If-Unmodified-Since before the write → 412.
    await putJson('cond2/objects/dated', 'dated');
    const first = await d.api('/api/buckets/cond2/objects/dated');
    const lastModified = first.headers.get('last-modified')!;
    await first.arrayBuffer();
    const since = await d.api('/api/buckets/cond2/objects/dated', { headers: { 'if-modified-since': lastModified } });
    assert.equal(since.status, 304);
    assert.equal(since.headers.get('etag'), first.headers.get('etag'));
    const earlier = new Date(Date.parse(lastModified) - 60_000).toUTCString();
    assert.equal((await d.api('/api/buckets/cond2/objects/dated', { headers: { 'if-modified-since': earlier } })).status, 200);
    const unmodified = await d.api('/api/buckets/cond2/objects/dated', { headers: { 'if-unmodified-since': earlier } });
    assert.equal(unmodified.status, 412);
    assert.equal(await errorCode(unmodified), 'precondition_failed');
    const fine = await d.api('/api/buckets/cond2/objects/dated', { headers: { 'if-unmodified-since': lastModified } });
    assert.equal(await fine.text(), 'dated');
    // If-None-Match wins over If-Modified-Since: a tag that does not match sends the content.
    assert.equal((await d.api('/api/buckets/cond2/objects/dated', { headers: { 'if-modified-since': lastModified, 'if-none-match': '"other"' } })).status, 200);
  });

  test('setting expires_at needs the delete scope; metadata holds no lone surrogate, no deep nesting, __proto__ as data', async () => {
    await bucket('exp');
    await putJson('exp/objects/victim', 'v1');
    await putJson('exp/objects/victim', 'v2');
    const mint = await d.api('/api/tokens', { method: 'POST', body: JSON.stringify({ name: 'w', scopes: ['bucket:exp:write', 'bucket:exp:read'] }), headers: { 'content-type': 'application/json' } });
    const writer = ((await mint.json()) as { token: string }).token;
    const as = { authorization: `Bearer ${writer}`, 'content-type': 'application/json' };
    const past = JSON.stringify({ expires_at: '2000-01-01T00:00:00Z' });
    const patched = await d.api('/api/buckets/exp/objects/victim', { method: 'PATCH', body: past, headers: as });
    assert.equal(patched.status, 403);
    assert.match(((await patched.json()) as { error: { message: string } }).error.message, /needs bucket:exp:delete/);
    const viaWrite = await d.api('/api/buckets/exp/objects/victim', { method: 'PUT', body: JSON.stringify({ content_base64: 'aGk=', expires_at: '2000-01-01T00:00:00Z' }), headers: as });
    assert.equal(viaWrite.status, 403);
    const form = new FormData();
    form.set('metadata', past);
    form.set('file', new Blob(['x']), 'x.txt');
    assert.equal((await d.api('/api/buckets/exp/objects/victim', { method: 'PUT', body: form, headers: { authorization: `Bearer ${writer}` } })).status, 403);
    const revisions = (await (await d.api('/api/buckets/exp/objects/victim?revisions')).json()) as { items: unknown[] };
    assert.equal(revisions.items.length, 2, 'both revisions are still there');
    // Clearing an expiry, or metadata without one, needs write only.
    assert.equal((await d.api('/api/buckets/exp/objects/victim', { method: 'PATCH', body: JSON.stringify({ expires_at: null, owner: 'w' }), headers: as })).status, 200);
    // With the delete scope (the admin here) an expiry is set as before.
    assert.equal((await d.api('/api/buckets/exp/objects/victim', { method: 'PATCH', body: JSON.stringify({ expires_at: '2999-01-01T00:00:00Z' }), headers: { 'content-type': 'application/json' } })).status, 200);

    const patch = (body: string) => d.api('/api/buckets/exp/objects/victim', { method: 'PATCH', body, headers: { 'content-type': 'application/json' } });
    for (const depth of [65, 1000, 10_000]) {
      const deep = await patch(`{"properties":{"a":${'['.repeat(depth)}1${']'.repeat(depth)}}}`);
      assert.equal(deep.status, 400, `depth ${depth}`);
      assert.equal(await errorCode(deep), 'invalid_request');
    }
    assert.equal((await patch(`{"properties":{"a":${'['.repeat(60)}1${']'.repeat(60)}}}`)).status, 200, 'moderate nesting is fine');
    for (const body of ['{"filename":"a\\ud800b"}', '{"owner":"o\\udc00"}', '{"properties":{"k\\ud800":1}}', '{"tags":["\\udfff"]}']) {
      const res = await patch(body);
      assert.equal(res.status, 400, body);
      assert.match(((await res.json()) as { error: { message: string } }).error.message, /unpaired UTF-16 surrogate/);
    }
    const proto = await patch('{"properties":{"__proto__":{"p":1},"k":1}}');
    assert.equal(proto.status, 200);
    assert.deepEqual(((await proto.json()) as ObjectJson).properties, JSON.parse('{"a":' + '['.repeat(60) + '1' + ']'.repeat(60) + ',"__proto__":{"p":1},"k":1}'));
    // A raw write's Content-Type is held to the same 255 characters as a JSON write's.
    const longType = await put('exp/objects/typed', 'x', { 'content-type': `text/plain; x=${'a'.repeat(300)}` });
    assert.equal(longType.status, 400);
    assert.equal((await d.api('/api/buckets/exp/objects/typed')).status, 404);
  });

  test('max_object_size and quota_bytes are enforced with nothing kept; max_revisions drops the oldest', async () => {
    await bucket('small', { max_object_size: 100, quota_bytes: 250, max_revisions: 2 });
    const before = await blobFiles();
    const big = await put('small/objects/a', randomData(101));
    assert.equal(big.status, 413);
    assert.equal(await errorCode(big), 'too_large');
    assert.deepEqual(await blobFiles(), before, 'nothing of a refused body is kept');
    await putJson('small/objects/a', randomData(100));
    await putJson('small/objects/b', randomData(100));
    const over = await put('small/objects/c', randomData(60));
    assert.equal(over.status, 413);
    assert.equal(await errorCode(over), 'quota_exceeded');
    assert.equal((await d.api('/api/buckets/small/objects/c')).status, 404);
    // Revisions beyond max_revisions go, and the quota counts what is left.
    await d.api('/api/buckets/small/objects/b', { method: 'DELETE' });
    await putJson('small/objects/a', randomData(10));
    await putJson('small/objects/a', randomData(20));
    const revs = (await (await d.api('/api/buckets/small/objects/a?revisions')).json()) as { items: { revision: number }[] };
    assert.deepEqual(revs.items.map((r) => r.revision), [3, 2]);
    const usage = ((await (await d.api('/api/buckets/small')).json()) as { usage: { objects: number; bytes: number } }).usage;
    assert.deepEqual(usage, { objects: 1, bytes: 30 });
  });

  test('two objects with the same content share one blob file', async () => {
    await bucket('shared');
    const data = randomData(3000);
    const a = await putJson('shared/objects/one', data);
    const b = await putJson('shared/objects/two', data);
    assert.equal(a.digest, b.digest);
    assert.equal(await store.copies(a.digest), 1);
    assert.equal((await store.read(a.digest))?.length, 3000);
  });

  test('DELETE removes one revision or the whole object', async () => {
    await bucket('del');
    await putJson('del/objects/k', 'v1');
    await putJson('del/objects/k', 'v2');
    assert.equal((await d.api('/api/buckets/del/objects/k?revision=2', { method: 'DELETE' })).status, 204);
    assert.equal(await (await d.api('/api/buckets/del/objects/k')).text(), 'v1', 'the previous revision is current again');
    assert.equal((await d.api('/api/buckets/del/objects/k', { method: 'DELETE' })).status, 204);
    assert.equal((await d.api('/api/buckets/del/objects/k')).status, 404);
    assert.equal(await errorCode(await d.api('/api/buckets/del/objects/k', { method: 'DELETE' })), 'object_not_found');
  });

  test('paging 2,500 objects by 100 while another writer inserts sees every original key exactly once', async () => {
    await bucket('many');
    const keys: string[] = [];
    for (let i = 0; i < 2500; i++) keys.push(`item/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((k) => put(`many/objects/${k}`, k).then((r) => r.arrayBuffer())));
    }
    let writing = true;
    let extra = 0;
    const writer = (async () => {
      while (writing && extra < 2000) {
        const k = `item/${String(Math.floor(Math.random() * 2500)).padStart(5, '0')}-new${extra++}`;
        await (await put(`many/objects/${k}`, 'x')).arrayBuffer();
      }
    })();
    const seen = new Map<string, number>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/api/buckets/many/objects?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = (await (await d.api(url)).json()) as { items: ObjectJson[]; next_cursor: string | null };
      assert.ok(page.items.length <= 100);
      for (const o of page.items) seen.set(o.key, (seen.get(o.key) ?? 0) + 1);
      cursor = page.next_cursor;
      pages++;
    } while (cursor && pages < 200);
    writing = false;
    await writer;
    for (const k of keys) assert.equal(seen.get(k), 1, `${k} seen ${seen.get(k) ?? 0} times`);
    assert.ok([...seen.values()].every((n) => n === 1), 'no key repeats');
  });

  test('prefix, delimiter, owner/tag/property filters on the listing', async () => {
    await bucket('tree');
    for (const k of ['a/1', 'a/2', 'a/b/3', 'a/c/4', 'b/5', 'top']) await putJson(`tree/objects/${k}`, k);
    const page = (await (await d.api('/api/buckets/tree/objects?prefix=a/&delimiter=/')).json()) as {
      items: ObjectJson[];
      common_prefixes: string[];
    };
    assert.deepEqual(page.items.map((o) => o.key), ['a/1', 'a/2']);
    assert.deepEqual(page.common_prefixes, ['a/b/', 'a/c/']);
    const root = (await (await d.api('/api/buckets/tree/objects?delimiter=/&limit=2')).json()) as {
      items: ObjectJson[];
      common_prefixes: string[];
      next_cursor: string;
    };
    assert.deepEqual(root.common_prefixes, ['a/', 'b/']);
    const rest = (await (await d.api(`/api/buckets/tree/objects?delimiter=/&limit=2&cursor=${root.next_cursor}`)).json()) as {
      items: ObjectJson[];
      next_cursor: string | null;
    };
    assert.deepEqual(rest.items.map((o) => o.key), ['top']);
    assert.equal(rest.next_cursor, null);
    assert.equal(await errorCode(await d.api('/api/buckets/tree/objects?cursor=garbage')), 'invalid_request');
    assert.equal(await errorCode(await d.api('/api/buckets/tree/objects?limit=1001')), 'invalid_request');
  });

  test('paging with a delimiter through many groups: every group and item once, in order', async () => {
    await bucket('groups');
    const expectedGroups: string[] = [];
    for (let g = 0; g < 40; g++) {
      const dir = `g${String(g).padStart(2, '0')}/`;
      expectedGroups.push(dir);
      await Promise.all([1, 2, 3].map((i) => put(`groups/objects/${dir}f${i}`, 'x').then((r) => r.arrayBuffer())));
    }
    for (const k of ['loose1', 'loose2']) await putJson(`groups/objects/${k}`, k);
    const groups: string[] = [];
    const items: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const url: string = `/api/buckets/groups/objects?delimiter=/&limit=7${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await (await d.api(url)).json()) as { items: ObjectJson[]; common_prefixes: string[]; next_cursor: string | null };
      assert.ok(page.items.length + page.common_prefixes.length <= 7);
      groups.push(...page.common_prefixes);
      items.push(...page.items.map((o) => o.key));
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    assert.deepEqual(groups, expectedGroups);
    assert.deepEqual(items, ['loose1', 'loose2']);
    const inside = (await (await d.api('/api/buckets/groups/objects?prefix=g07/&delimiter=/')).json()) as { items: ObjectJson[] };
    assert.deepEqual(inside.items.map((o) => o.key), ['g07/f1', 'g07/f2', 'g07/f3']);
  });

  test('PATCH merges metadata; owner, tag and property filters find it; fields select', async () => {
    await bucket('meta');
    await putJson('meta/objects/a', 'a');
    await putJson('meta/objects/b', 'b');
    const patch = (key: string, body: unknown) =>
      d.api(`/api/buckets/meta/objects/${key}`, { method: 'PATCH', body: JSON.stringify(body), headers: { 'content-type': 'application/merge-patch+json' } });
    const r1 = await patch('a', { owner: 'ann', tags: ['red', 'big'], properties: { color: 'red', size: { w: 2, h: 3 } } });
    assert.equal(r1.status, 200);
    const a1 = (await r1.json()) as ObjectJson;
    assert.deepEqual([a1.owner, a1.tags, a1.revision], ['ann', ['red', 'big'], 1], 'metadata changes make no revision');
    const a2 = (await (await patch('a', { properties: { size: { h: null }, shape: 'round' } })).json()) as ObjectJson;
    assert.deepEqual(a2.properties, { color: 'red', size: { w: 2 }, shape: 'round' }, 'RFC 7386 merge');
    const a3 = (await (await patch('a', { owner: 'bob' })).json()) as ObjectJson;
    assert.deepEqual([a3.owner, a3.tags], ['bob', ['red', 'big']], 'owner changes alone');
    await patch('b', { owner: 'ann', tags: ['blue'], properties: { color: 'blue' } });
    const keys = async (q: string) =>
      ((await (await d.api(`/api/buckets/meta/objects?${q}`)).json()) as { items: ObjectJson[] }).items.map((o) => o.key);
    assert.deepEqual(await keys('owner=bob'), ['a']);
    assert.deepEqual(await keys('tag=blue'), ['b']);
    assert.deepEqual(await keys('property.color=red'), ['a']);
    assert.deepEqual(await keys('property.color=red&tag=blue'), []);
    assert.deepEqual(await keys('property.shape=round&owner=bob'), ['a']);
    const picked = (await (await d.api('/api/buckets/meta/objects?fields=key,owner')).json()) as { items: Record<string, unknown>[] };
    assert.deepEqual(picked.items[0], { key: 'a', owner: 'bob' });
    const dropped = (await (await d.api('/api/buckets/meta/objects/a?metadata&fields=-properties,-tags')).json()) as Record<string, unknown>;
    assert.ok(!('properties' in dropped) && !('tags' in dropped) && dropped.key === 'a');
    assert.equal(await errorCode(await d.api('/api/buckets/meta/objects?fields=nope')), 'invalid_request');
    assert.equal(await errorCode(await patch('a', { tags: Array.from({ length: 65 }, (_, i) => `t${i}`) })), 'invalid_request');
    assert.equal(await errorCode(await patch('a', { properties: { big: 'x'.repeat(70_000) } })), 'invalid_request');
    assert.equal(await errorCode(await patch('a', { nonsense: 1 })), 'invalid_request');
    assert.equal(await errorCode(await patch('missing', { owner: 'x' })), 'object_not_found');
  });

  test('?compare=N..M says whether content changed and which fields', async () => {
    await bucket('cmp');
    await putJson('cmp/objects/k?filename=one.txt', 'v1', { 'content-type': 'text/plain' });
    await d.api('/api/buckets/cmp/objects/k', { method: 'PATCH', body: JSON.stringify({ owner: 'ann' }), headers: { 'content-type': 'application/json' } });
    await putJson('cmp/objects/k', 'v2');
    await putJson('cmp/objects/k', 'v2');
    const cmp = async (range: string) => (await (await d.api(`/api/buckets/cmp/objects/k?compare=${range}`)).json()) as Record<string, unknown>;
    const c12 = await cmp('1..2');
    assert.equal(c12.content_changed, true);
    assert.equal(c12.digest_from, sha256(Buffer.from('v1')));
    assert.deepEqual(c12.fields_changed, ['content_type'], 'raw writes keep filename and owner');
    const c23 = await cmp('2..3');
    assert.deepEqual([c23.content_changed, c23.fields_changed], [false, []]);
    assert.equal(await errorCode(await d.api('/api/buckets/cmp/objects/k?compare=1..9')), 'object_not_found');
    assert.equal(await errorCode(await d.api('/api/buckets/cmp/objects/k?compare=1-2')), 'invalid_request');
  });

  test('JSON writes: by digest (no bytes sent), inline content_base64, with metadata; POST picks the key', async () => {
    await bucket('json');
    const data = randomData(5000);
    const blob = (await (await d.api('/api/blobs', { method: 'POST', body: data })).json()) as { digest: string };
    const byDigest = await put('json/objects/ref', JSON.stringify({ digest: blob.digest, filename: 'ref.bin', tags: ['x'] }), { 'content-type': 'application/json' });
    assert.equal(byDigest.status, 201);
    const ref = (await byDigest.json()) as ObjectJson;
    assert.deepEqual([ref.digest, ref.size, ref.filename, ref.tags], [blob.digest, 5000, 'ref.bin', ['x']]);
    assert.ok(Buffer.from(await (await d.api('/api/buckets/json/objects/ref')).arrayBuffer()).equals(data));
    const unknown = await put('json/objects/bad', JSON.stringify({ digest: sha256(Buffer.from('nope')) }), { 'content-type': 'application/json' });
    assert.equal(await errorCode(unknown), 'blob_not_found');
    const inline = await put('json/objects/note.txt', JSON.stringify({ content_base64: Buffer.from('hi there').toString('base64'), content_type: 'text/plain' }), { 'content-type': 'application/json' });
    assert.equal(inline.status, 201);
    const res = await d.api('/api/buckets/json/objects/note.txt');
    assert.equal(await res.text(), 'hi there');
    assert.equal(res.headers.get('content-type'), 'text/plain');
    const notBase64 = await put('json/objects/nb', JSON.stringify({ content_base64: 'not*base64!' }), { 'content-type': 'application/json' });
    assert.equal(await errorCode(notBase64), 'invalid_request');
    const both = await put('json/objects/x', JSON.stringify({ digest: blob.digest, content_base64: 'aGk=' }), { 'content-type': 'application/json' });
    assert.equal(await errorCode(both), 'invalid_request');
    // A JSON document sent as the content is taken for a write: the refusal says how to store it.
    const document = await put('json/objects/config.json', JSON.stringify({ name: 'my config', version: 3 }), { 'content-type': 'application/json' });
    assert.equal(document.status, 400);
    assert.match(((await document.json()) as { error: { message: string } }).error.message, /to store a JSON document, send it as \{"content_base64"/);
    assert.equal((await d.api('/api/buckets/json/objects/config.json')).status, 404, 'nothing was stored');
    const posted = await d.api('/api/buckets/json/objects', { method: 'POST', body: 'server picks' });
    assert.equal(posted.status, 201);
    const p = (await posted.json()) as ObjectJson;
    assert.match(p.key, /^[0-9a-f-]{36}$/);
    assert.equal(posted.headers.get('location'), `/api/buckets/json/objects/${p.key}`);
    assert.equal(await (await d.api(`/api/buckets/json/objects/${p.key}`)).text(), 'server picks');
  });

  test('multipart writes: the file part is the content, owner and metadata parts the metadata', async () => {
    await bucket('forms');
    const form = new FormData();
    form.append('owner', 'carol');
    form.append('metadata', JSON.stringify({ tags: ['scan'], properties: { pages: 3 } }));
    form.append('file', new Blob([Buffer.from('%PDF-1.7 pretend')], { type: 'application/pdf' }), 'scan.pdf');
    const res = await d.api('/api/buckets/forms/objects/in/scan', { method: 'PUT', body: form });
    assert.equal(res.status, 201);
    const o = (await res.json()) as ObjectJson;
    assert.deepEqual([o.owner, o.tags, o.properties, o.filename, o.content_type], ['carol', ['scan'], { pages: 3 }, 'scan.pdf', 'application/pdf']);
    assert.equal(o.digest, sha256(Buffer.from('%PDF-1.7 pretend')));
    const got = await d.api('/api/buckets/forms/objects/in/scan');
    assert.equal(got.headers.get('content-type'), 'application/pdf');
    assert.equal(await got.text(), '%PDF-1.7 pretend');
    const bad = new FormData();
    bad.append('metadata', '{not json');
    bad.append('file', new Blob([Buffer.from('x')]));
    assert.equal(await errorCode(await d.api('/api/buckets/forms/objects/bad', { method: 'PUT', body: bad })), 'invalid_request');
    assert.equal((await d.api('/api/buckets/forms/objects/bad')).status, 404, 'metadata sent before the file is checked first');
  });

  test('public_read buckets let anyone read their objects, and nothing else', async () => {
    await bucket('pub', { public_read: true });
    await bucket('priv');
    await putJson('pub/objects/hello.txt', 'hi all');
    await putJson('priv/objects/secret.txt', 'shh');
    const anon = (p: string, init: RequestInit = {}) => d.api(p, { ...init, auth: false } as RequestInit & { auth: boolean });
    const open = await anon('/api/buckets/pub/objects/hello.txt');
    assert.equal(open.status, 200);
    assert.equal(await open.text(), 'hi all');
    assert.equal((await anon('/api/buckets/pub/objects/hello.txt?metadata')).status, 200);
    assert.equal((await anon('/api/buckets/pub/objects/missing')).status, 404);
    assert.equal((await anon('/api/buckets/priv/objects/secret.txt')).status, 401);
    assert.equal((await anon('/api/buckets/nope/objects/x')).status, 401);
    assert.equal((await anon('/api/buckets/pub/objects')).status, 401, 'listing is not public');
    assert.equal((await anon('/api/buckets/pub/objects/new', { method: 'PUT', body: 'x' })).status, 401, 'writing is not public');
    const badToken = await d.api('/api/buckets/pub/objects/hello.txt', { headers: { authorization: 'Bearer wrong' } });
    assert.equal(badToken.status, 401, 'a wrong token is refused, not treated as anonymous');
  });

  test('review fixes: truncated forms, big inline content, reused revision numbers, early preconditions', async () => {
    await bucket('fix');
    // A form cut off inside the file part is a 400, and the daemon lives on.
    const cut = '--XX\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\n\r\nAAAAAAAAAAAA';
    for (const p of ['/api/buckets/fix/objects/cut', '/api/blobs']) {
      const res = await d.api(p, { method: p.startsWith('/api/blobs') ? 'POST' : 'PUT', body: cut, headers: { 'content-type': 'multipart/form-data; boundary=XX' } });
      assert.equal(res.status, 400, p);
      assert.equal(await errorCode(res), 'invalid_request');
    }
    assert.equal((await d.api('/healthz')).status, 200);
    assert.equal((await d.api('/api/buckets/fix/objects/cut')).status, 404);
    // content_base64 up to 10 MiB works; one byte more is 413.
    const ten = randomData(10 * 1024 * 1024);
    const okBig = await put('fix/objects/b64', JSON.stringify({ content_base64: ten.toString('base64') }), { 'content-type': 'application/json' });
    assert.equal(okBig.status, 201);
    assert.equal(((await okBig.json()) as ObjectJson).digest, sha256(ten));
    const over = await put('fix/objects/b64x', JSON.stringify({ content_base64: randomData(10 * 1024 * 1024 + 3).toString('base64') }), { 'content-type': 'application/json' });
    assert.equal(over.status, 413);
    // Invalid metadata in a JSON write is refused before the content is stored.
    const badMeta = await put('fix/objects/meta', JSON.stringify({ content_base64: 'aGk=', properties: { x: 'a'.repeat(70_000) } }), { 'content-type': 'application/json' });
    assert.equal(badMeta.status, 400);
    assert.equal((await d.api('/api/buckets/fix/objects/meta')).status, 404, 'a 400 wrote nothing');
    // Revision numbers are not reused while the object lives.
    await putJson('fix/objects/r', 'content-1');
    await putJson('fix/objects/r', 'content-2');
    await d.api('/api/buckets/fix/objects/r?revision=2', { method: 'DELETE' });
    const r3 = await putJson('fix/objects/r', 'different');
    assert.equal(r3.revision, 3);
    assert.equal((await d.api('/api/buckets/fix/objects/r?revision=2')).status, 404);
    // A doomed conditional write is refused before the body is read: no blob file appears.
    const before = await blobFiles();
    const body = randomData(300_000);
    assert.equal((await put('fix/objects/r', body, { 'if-none-match': '*' })).status, 412);
    assert.deepEqual(await blobFiles(), before);
  });

  test('ndjson and csv exports stream every match and parse back', async () => {
    await bucket('export');
    const tricky = ['plain', 'with,comma', 'with "quotes"', 'new\nline', 'ünïcødé'];
    for (const [i, name] of tricky.entries()) {
      await putJson(`export/objects/k${i}?filename=${encodeURIComponent(name)}`, name, { 'content-type': 'text/plain' });
    }
    const nd = await d.api('/api/buckets/export/objects?format=ndjson');
    assert.match(nd.headers.get('content-type') ?? '', /ndjson/);
    const lines = (await nd.text()).trim().split('\n').map((l) => JSON.parse(l) as ObjectJson);
    assert.deepEqual(lines.map((o) => o.filename), tricky);
    const csv = await d.api('/api/buckets/export/objects?format=csv&prefix=k');
    assert.match(csv.headers.get('content-type') ?? '', /text\/csv/);
    const rows = parseCsv(await csv.text(), { columns: true }) as Record<string, string>[];
    assert.deepEqual(rows.map((r) => r.filename), tricky);
    assert.deepEqual(rows.map((r) => r.key), tricky.map((_, i) => `k${i}`));
    assert.equal(rows[0]!.digest, sha256(Buffer.from('plain')));
    assert.equal(rows[0]!.tags, '[]');
    assert.equal((await d.api('/api/buckets/nope/objects?format=csv')).status, 404);
    const narrow = parseCsv(await (await d.api('/api/buckets/export/objects?format=csv&fields=key,size')).text(), { columns: true }) as Record<string, string>[];
    assert.deepEqual(narrow[0], { key: 'k0', size: '5' });
    // Columns in the order asked for.
    const ordered = await (await d.api('/api/buckets/export/objects?format=csv&fields=size,digest,key')).text();
    assert.equal(ordered.split('\r\n')[0], 'size,digest,key');
    const nd2 = (await (await d.api('/api/buckets/export/objects?format=ndjson&fields=-properties,-tags')).text()).trim().split('\n');
    assert.ok(nd2.every((l) => !('properties' in JSON.parse(l)) && 'key' in JSON.parse(l)));
  });
});
