// U+0000 (NUL) in any text blobd stores or queries by — filenames, content types, owners, tags, properties,
// listing filters and cursors, token names — is 400 invalid_request naming the field, and nothing is stored.
// PostgreSQL's text and jsonb cannot hold a NUL, so this is one rule in core for both metadata stores
// (test/pg/nul-input.test.ts runs this file on PostgreSQL, where a NUL used to answer 500).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

const JSON_TYPE = { 'content-type': 'application/json' };
const TUS = { 'tus-resumable': '1.0.0' };
const cursorOf = (position: unknown) => Buffer.from(JSON.stringify(position), 'utf8').toString('base64url');

describe('NUL (U+0000) in stored or queried text', () => {
  let d: Daemon;
  let metadataBefore: unknown;

  /** The answer is 400 invalid_request and its message names `field`. */
  async function refused(res: Response, field: RegExp | null, what: string): Promise<void> {
    const body = (await res.json()) as { error?: { code: string; message: string } };
    assert.equal(res.status, 400, `${what}: ${JSON.stringify(body)}`);
    assert.equal(body.error?.code, 'invalid_request', what);
    if (field) assert.match(body.error!.message, field, what);
  }

  const patch = (body: unknown) => d.api('/api/buckets/nul/objects/k', { method: 'PATCH', headers: JSON_TYPE, body: JSON.stringify(body) });
  const metadata = async () => (await d.api('/api/buckets/nul/objects/k?metadata')).json();
  const sessions = async () => ((await (await d.api('/api/blobs/uploads')).json()) as { items: unknown[] }).items;
  const tokenNames = async () => ((await (await d.api('/api/tokens')).json()) as { items: { name: string }[] }).items.map((t) => t.name);

  before(async () => {
    d = await startDaemon();
    assert.equal((await d.api('/api/buckets/nul', { method: 'PUT', headers: JSON_TYPE, body: '{}' })).status, 201);
    const put = await d.api('/api/buckets/nul/objects/k', {
      method: 'PUT',
      headers: JSON_TYPE,
      body: JSON.stringify({ content_base64: Buffer.from('hello').toString('base64'), owner: 'o', tags: ['t'], properties: { p: 'v', n: { deep: ['x'] } } }),
    });
    assert.equal(put.status, 201);
    metadataBefore = await metadata();
  });
  after(async () => {
    if (!d) return;
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('upload sessions: a filename with a NUL (native ?filename=, tus Upload-Metadata) is refused and no session is made', async () => {
    await refused(await d.api('/api/blobs/uploads?filename=a%00b&size=5', { method: 'POST' }), /filename/, 'native session');
    const metadataHeader = `filename ${Buffer.from('a\0b').toString('base64')}`;
    await refused(await d.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': '5', 'upload-metadata': metadataHeader } }), /filename/, 'tus');
    assert.deepEqual(await sessions(), []);
    // A session id is a UUID: one with a NUL names no session (and never reaches a store).
    for (const [method, p] of [['GET', '/api/blobs/uploads/a%00b'], ['POST', '/api/blobs/uploads/a%00b/complete'], ['PATCH', '/api/tus/a%00b']] as const) {
      const res = await d.api(p, { method, headers: { ...TUS, 'upload-token': 't', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' } });
      assert.equal(res.status, 404, `${method} ${p}`);
      await res.arrayBuffer();
    }
  });

  test('object writes: a filename, owner or metadata string with a NUL is refused before anything is stored', async () => {
    await refused(await d.api('/api/buckets/nul/objects/w1?filename=a%00b', { method: 'PUT', body: 'x' }), /filename/, '?filename=');
    const json = (meta: Record<string, unknown>) =>
      d.api('/api/buckets/nul/objects/w2', { method: 'PUT', headers: JSON_TYPE, body: JSON.stringify({ content_base64: 'eA==', ...meta }) });
    await refused(await json({ owner: 'a\0b' }), /owner/, 'JSON owner');
    await refused(await json({ filename: 'a\0b' }), /filename/, 'JSON filename');
    await refused(await json({ content_type: 'text/a\0b' }), /content_type/, 'JSON content_type');
    await refused(await json({ properties: { p: ['ok', 'a\0b'] } }), /properties\.p\[1\]/, 'JSON properties');

    const form = (owner: 'before' | 'after') => {
      const f = new FormData();
      if (owner === 'before') f.append('owner', 'a\0b');
      f.append('file', new Blob([Buffer.from('content')]), 'f.txt');
      if (owner === 'after') f.append('owner', 'a\0b');
      return f;
    };
    await refused(await d.api('/api/buckets/nul/objects/w3', { method: 'PUT', body: form('before') }), /owner/, 'form owner before the file');
    await refused(await d.api('/api/buckets/nul/objects/w4', { method: 'PUT', body: form('after') }), /owner/, 'form owner after the file');
    const metaPart = new FormData();
    metaPart.append('metadata', JSON.stringify({ tags: ['a\0b'] }));
    metaPart.append('file', new Blob([Buffer.from('content')]), 'f.txt');
    await refused(await d.api('/api/buckets/nul/objects/w5', { method: 'PUT', body: metaPart }), /tags\[0\]/, 'form metadata part');

    for (const key of ['w1', 'w2', 'w3', 'w4', 'w5']) assert.equal((await d.api(`/api/buckets/nul/objects/${key}`)).status, 404, key);
    const listed = (await (await d.api('/api/buckets/nul/objects')).json()) as { items: { key: string }[] };
    assert.deepEqual(listed.items.map((o) => o.key), ['k']);
  });

  test('PATCH: owner, filename, content_type, tags, property values (nested too) and property names with a NUL leave the object as it was', async () => {
    await refused(await patch({ owner: 'a\0b' }), /owner/, 'owner');
    await refused(await patch({ filename: 'a\0b' }), /filename/, 'filename');
    await refused(await patch({ content_type: 'a\0b' }), /content_type/, 'content_type');
    await refused(await patch({ tags: ['fine', 'a\0b'] }), /tags\[1\]/, 'tags');
    await refused(await patch({ properties: { p: 'a\0b' } }), /properties\.p/, 'property value');
    await refused(await patch({ properties: { n: { deep: ['a\0b'] } } }), /properties\.n\.deep\[0\]/, 'nested property value');
    await refused(await patch({ properties: { 'a\0b': 1 } }), /properties/, 'property name');
    await refused(await patch({ owner: 'new', tags: ['a\0'] }), /tags/, 'a good field beside a bad one');
    assert.deepEqual(await metadata(), metadataBefore);
  });

  test('listing: owner, tag, property, prefix, delimiter and cursor with a NUL are 400 (JSON pages and exports alike)', async () => {
    for (const [query, field] of [
      ['owner=a%00', /owner/],
      ['tag=a%00', /tag/],
      ['property.p=a%00', /property\.p/],
      ['property.p_gt=a%00', /property\.p_gt/],
      ['prefix=a%00', /prefix/],
      ['delimiter=%00', /delimiter/],
      ['owner=a%00&format=ndjson', /owner/],
      ['prefix=%00&format=csv', /prefix/],
      [`cursor=${cursorOf({ a: 'a\0' })}`, /cursor/],
    ] as const) {
      await refused(await d.api(`/api/buckets/nul/objects?${query}`), field, query);
    }
    await refused(await d.api(`/api/buckets?cursor=${cursorOf('a\0')}`), /cursor/, 'bucket listing cursor');
  });

  test('tokens: a name, scope, id or cursor with a NUL is 400 and no token is made', async () => {
    const create = (body: unknown) => d.api('/api/tokens', { method: 'POST', headers: JSON_TYPE, body: JSON.stringify(body) });
    await refused(await create({ name: 'a\0', scopes: ['blobs:read'] }), /name/, 'name');
    await refused(await create({ name: 'ok', scopes: ['blobs:read\0'] }), /scope/, 'scope');
    assert.deepEqual(await tokenNames(), []);
    await refused(await d.api('/api/tokens/a%00b', { method: 'DELETE' }), /id/, 'DELETE by id');
    await refused(await d.api(`/api/tokens?cursor=${cursorOf('a\0')}`), /cursor/, 'token listing cursor');
  });

  test('names that are validated already: a bucket name or key with a NUL is 400 as before', async () => {
    const bucket = await d.api('/api/buckets/a%00b', { method: 'PUT', headers: JSON_TYPE, body: '{}' });
    assert.equal(bucket.status, 400);
    assert.equal(((await bucket.json()) as { error: { code: string } }).error.code, 'invalid_bucket_name');
    const key = await d.api('/api/buckets/nul/objects/a%00b', { method: 'PUT', body: 'x' });
    assert.equal(key.status, 400);
    assert.equal(((await key.json()) as { error: { code: string } }).error.code, 'invalid_key');
    const session = await d.api('/api/blobs/uploads?bucket=nul&key=a%00b', { method: 'POST' });
    assert.equal(session.status, 400);
    await session.arrayBuffer();
  });
});
