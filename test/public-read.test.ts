// What a public_read bucket shows a public reader (anonymous, or a token without read on the bucket): the
// current revision's content and public metadata only. Older revisions, ?revisions and ?compare need a
// credential unless the bucket also sets public_revisions; owner, tags, properties and created_by never
// show. A reader with the bucket's read scope sees everything.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { as, createToken } from './helpers/access.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';

const json = { 'content-type': 'application/json' };
const PRIVATE = ['owner', 'tags', 'properties', 'created_by'];

describe('public_read: the current content and public metadata only', () => {
  let d: Daemon;
  let other: string; // a valid token with no scope on these buckets
  let reader: string; // bucket:*:read
  const anonymous = (p: string, init: RequestInit = {}) => d.api(p, { ...init, auth: false });

  before(async () => {
    d = await startDaemon();
    for (const [name, settings] of [
      ['pub', { public_read: true }],
      ['pubrev', { public_read: true, public_revisions: true }],
    ] as const) {
      assert.equal((await d.api(`/api/buckets/${name}`, { method: 'PUT', headers: json, body: JSON.stringify(settings) })).status, 201);
      for (const body of ['first draft', 'second draft']) {
        const res = await d.api(`/api/buckets/${name}/objects/doc.txt`, { method: 'PUT', body, headers: { 'content-type': 'text/plain' } });
        assert.ok(res.ok);
      }
      const patch = await d.api(`/api/buckets/${name}/objects/doc.txt`, {
        method: 'PATCH',
        headers: json,
        body: JSON.stringify({ owner: 'ann', tags: ['secret-tag'], properties: { salary: 100 } }),
      });
      assert.equal(patch.status, 200);
    }
    other = (await createToken(d, ['blobs:read'])).token;
    reader = (await createToken(d, ['bucket:*:read'])).token;
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  test('anonymous and other tokens: current content, and metadata without owner, tags, properties or created_by', async () => {
    for (const get of [(p: string) => anonymous(p), (p: string) => as(d, other, p)]) {
      const content = await get('/api/buckets/pub/objects/doc.txt');
      assert.equal(content.status, 200);
      assert.equal(await content.text(), 'second draft');
      const meta = (await (await get('/api/buckets/pub/objects/doc.txt?metadata')).json()) as Record<string, unknown>;
      assert.equal(meta.revision, 2);
      assert.equal(meta.size, 12);
      assert.equal(meta.content_type, 'text/plain');
      for (const f of PRIVATE) assert.ok(!(f in meta), `${f} is not public: ${JSON.stringify(meta)}`);
      const picked = (await (await get('/api/buckets/pub/objects/doc.txt?metadata&fields=owner,size')).json()) as Record<string, unknown>;
      assert.deepEqual(picked, { size: 12 }, '?fields cannot bring a private field back');
    }
  });

  test('history needs a credential: 401 anonymous, 403 for a token without read', async () => {
    for (const q of ['?revisions', '?revision=1', '?revision=2', '?compare=1..2']) {
      const anon = await anonymous(`/api/buckets/pub/objects/doc.txt${q}`);
      assert.equal(anon.status, 401, q);
      assert.equal(await errorCode(anon), 'unauthorized', q);
      const tok = await as(d, other, `/api/buckets/pub/objects/doc.txt${q}`);
      assert.equal(tok.status, 403, q);
      assert.equal(await errorCode(tok), 'forbidden', q);
    }
    assert.equal((await anonymous('/api/buckets/pub/objects/doc.txt?revision=1', { method: 'HEAD' })).status, 401);
  });

  test('public_revisions opens the history, still without private fields', async () => {
    const old = await anonymous('/api/buckets/pubrev/objects/doc.txt?revision=1');
    assert.equal(old.status, 200);
    assert.equal(await old.text(), 'first draft');
    const revs = (await (await anonymous('/api/buckets/pubrev/objects/doc.txt?revisions')).json()) as { items: Record<string, unknown>[] };
    assert.deepEqual(revs.items.map((r) => r.revision), [2, 1]);
    for (const r of revs.items) assert.ok(!('created_by' in r), JSON.stringify(r));
    const cmp = await anonymous('/api/buckets/pubrev/objects/doc.txt?compare=1..2');
    assert.equal(cmp.status, 200);
    const diff = (await cmp.json()) as { content_changed: boolean; fields_changed: string[] };
    assert.equal(diff.content_changed, true);
    assert.deepEqual(diff.fields_changed, [], 'owner, tags and properties changed, but that is not public either');
    const full = (await (await as(d, reader, '/api/buckets/pubrev/objects/doc.txt?compare=1..2')).json()) as { fields_changed: string[] };
    assert.deepEqual(full.fields_changed, ['owner', 'tags', 'properties']);
    const meta = (await (await anonymous('/api/buckets/pubrev/objects/doc.txt?metadata')).json()) as Record<string, unknown>;
    for (const f of PRIVATE) assert.ok(!(f in meta), f);
    const bucket = (await (await d.api('/api/buckets/pubrev')).json()) as { public_revisions: boolean };
    assert.equal(bucket.public_revisions, true);
  });

  test('a reader with the read scope sees everything', async () => {
    const meta = (await (await as(d, reader, '/api/buckets/pub/objects/doc.txt?metadata')).json()) as Record<string, unknown>;
    assert.equal(meta.owner, 'ann');
    assert.deepEqual(meta.properties, { salary: 100 });
    assert.deepEqual(meta.tags, ['secret-tag']);
    assert.equal(meta.created_by, 'admin');
    const revs = (await (await as(d, reader, '/api/buckets/pub/objects/doc.txt?revisions')).json()) as { items: Record<string, unknown>[] };
    assert.equal(revs.items[0]!.created_by, 'admin');
    assert.equal(await (await as(d, reader, '/api/buckets/pub/objects/doc.txt?revision=1')).text(), 'first draft');
  });
});
