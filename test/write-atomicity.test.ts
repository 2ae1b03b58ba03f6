// Writes that either happen whole or leave nothing behind, against the real daemon: form metadata that comes
// after the file part (valid: applied with the revision; invalid: no revision), and an upload session into
// a bucket whose quota filled before complete (refused, still open, completes once the quota is raised).
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

const json = { 'content-type': 'application/json' };

describe('writes happen whole or not at all', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  test('form parts after the file: applied in the same revision, or refused with no revision at all', async () => {
    assert.equal((await d.api('/api/buckets/forms', { method: 'PUT' })).status, 201);
    const good = new FormData();
    good.append('file', new Blob([Buffer.from('v1 content')]), 'one.txt');
    good.append('owner', 'dora');
    good.append('metadata', JSON.stringify({ tags: ['late'] }));
    const res = await d.api('/api/buckets/forms/objects/late', { method: 'PUT', body: good });
    assert.equal(res.status, 201);
    const body = (await res.json()) as { revision: number; owner: string; tags: string[] };
    assert.deepEqual([body.revision, body.owner, body.tags], [1, 'dora', ['late']]);
    const revs = (await (await d.api('/api/buckets/forms/objects/late?revisions')).json()) as { items: unknown[] };
    assert.equal(revs.items.length, 1, 'one revision, not a content write then a metadata write');

    for (const metadata of ['{not json', JSON.stringify({ tags: 'not-a-list' }), JSON.stringify({ expires_at: 'tomorrow' })]) {
      const bad = new FormData();
      bad.append('file', new Blob([Buffer.from(`v2 ${metadata}`)]), 'two.txt');
      bad.append('metadata', metadata);
      const refused = await d.api('/api/buckets/forms/objects/late', { method: 'PUT', body: bad });
      assert.equal(refused.status, 400, metadata);
      assert.equal(await errorCode(refused), 'invalid_request');
    }
    const meta = (await (await d.api('/api/buckets/forms/objects/late?metadata')).json()) as { revision: number; digest: string };
    assert.equal(meta.revision, 1, 'no half-applied write: the content did not change either');
    assert.equal(meta.digest, sha256(Buffer.from('v1 content')));
    const after = (await (await d.api('/api/buckets/forms/objects/late?revisions')).json()) as { items: unknown[] };
    assert.equal(after.items.length, 1);
    // Past the parser's limits (32 fields, 64 parts) a part would be dropped: refused instead.
    for (const [n, name] of [[33, 'junk'], [70, 'file2']] as const) {
      const many = new FormData();
      many.append('file', new Blob([Buffer.from('v3')]), 'three.txt');
      for (let i = 0; i < n; i++) {
        if (name === 'junk') many.append(`junk${i}`, 'x');
        else many.append(`${name}-${i}`, new Blob([Buffer.from('x')]), 'x.txt');
      }
      many.append('owner', 'bob');
      const refused = await d.api('/api/buckets/forms/objects/late', { method: 'PUT', body: many });
      assert.equal(refused.status, 400, `${n} ${name}`);
    }
    const fresh = new FormData();
    fresh.append('file', new Blob([Buffer.from('never')]), 'n.txt');
    fresh.append('metadata', '{bad');
    assert.equal((await d.api('/api/buckets/forms/objects/never', { method: 'PUT', body: fresh })).status, 400);
    assert.equal((await d.api('/api/buckets/forms/objects/never')).status, 404, 'no object was made');
  });

  test('a form that stalls after its file part holds up no other write of the same bytes, nor GC', async () => {
    const bytes = Buffer.from(`stalled form ${Date.now()}`);
    const boundary = 'blobdstall';
    const url = new URL(`${d.url}/api/buckets/forms/objects/stalled`);
    const req = request({
      host: url.hostname, port: url.port, path: url.pathname, method: 'PUT',
      headers: { authorization: `Bearer ${d.token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
    });
    req.on('error', () => {}); // destroyed below
    req.write(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="s.txt"\r\n\r\n`);
    req.write(bytes);
    // The next part starts and never ends.
    req.write(`\r\n--${boundary}\r\ncontent-disposition: form-data; name="owner"\r\n\r\nbo`);
    try {
      // Once the stalled file is staged, the same bytes through other routes and a GC pass must still go.
      const other = await waitFor(async () => {
        const res = await d.api('/api/buckets/forms/objects/same-bytes', { method: 'PUT', body: bytes });
        return res.status === 201 || res.status === 200 ? res : null;
      }, 'a write of the same bytes');
      assert.equal(((await other!.json()) as { digest: string }).digest, sha256(bytes));
      assert.equal((await d.api('/api/blobs', { method: 'POST', body: bytes })).status, 201);
      assert.equal((await d.api('/api/admin/gc', { method: 'POST' })).status, 200);
    } finally {
      req.destroy();
    }
    assert.equal((await d.api('/api/buckets/forms/objects/stalled')).status, 404, 'the stalled form wrote nothing');
  });

  test('a session whose bucket filled before complete stays open and completes after the quota is raised', async () => {
    assert.equal((await d.api('/api/buckets/tight', { method: 'PUT', headers: json, body: JSON.stringify({ quota_bytes: 100 }) })).status, 201);
    const init = await d.api('/api/blobs/uploads?bucket=tight&key=big.bin', { method: 'POST' });
    assert.equal(init.status, 202);
    const { id, token } = (await init.json()) as { id: string; token: string };
    const data = Buffer.alloc(80, 7);
    const append = await d.api(`/api/blobs/uploads/${id}/append`, { method: 'POST', body: data, headers: { 'upload-token': token } });
    assert.equal(append.status, 203);
    // Another write fills the bucket meanwhile.
    assert.equal((await d.api('/api/buckets/tight/objects/other', { method: 'PUT', body: Buffer.alloc(50, 1) })).status, 201);

    const complete = () => d.api(`/api/blobs/uploads/${id}/complete?digest=${sha256(data)}`, { method: 'POST', headers: { 'upload-token': token } });
    const refused = await complete();
    assert.equal(refused.status, 413);
    assert.equal(await errorCode(refused), 'quota_exceeded');
    const status = await d.api(`/api/blobs/uploads/${id}/status`, { headers: { 'upload-token': token } });
    assert.equal(status.status, 204, 'the session is still there');
    assert.equal(status.headers.get('upload-offset'), '80');
    assert.equal(status.headers.get('upload-state'), 'open');
    assert.equal((await d.api('/api/buckets/tight/objects/big.bin')).status, 404);

    assert.equal((await d.api('/api/buckets/tight', { method: 'PUT', headers: json, body: JSON.stringify({ quota_bytes: 1000 }) })).status, 200);
    const done = await complete();
    assert.equal(done.status, 201);
    assert.deepEqual(((await done.json()) as { key: string; size: number }).size, 80);
    assert.ok(Buffer.from(await (await d.api('/api/buckets/tight/objects/big.bin')).arrayBuffer()).equals(data));
  });

  test('two sessions racing for the last room of a bucket: one completes, the other stays open with its bytes', async () => {
    assert.equal((await d.api('/api/buckets/race', { method: 'PUT', headers: json, body: JSON.stringify({ quota_bytes: 1000 }) })).status, 201);
    for (let round = 0; round < 5; round++) {
      const sessions = [];
      for (const n of [0, 1]) {
        const { id, token } = (await (await d.api(`/api/blobs/uploads?bucket=race&key=r${round}-${n}`, { method: 'POST' })).json()) as { id: string; token: string };
        const data = Buffer.alloc(600, 10 * round + n + 1);
        assert.equal((await d.api(`/api/blobs/uploads/${id}/append`, { method: 'POST', body: data, headers: { 'upload-token': token } })).status, 203);
        sessions.push({ id, token, data });
      }
      const answers = await Promise.all(sessions.map((s) => d.api(`/api/blobs/uploads/${s.id}/complete`, { method: 'POST', headers: { 'upload-token': s.token } })));
      assert.deepEqual(answers.map((r) => r.status).sort(), [201, 413], `round ${round}`);
      const loser = sessions[answers.findIndex((r) => r.status === 413)]!;
      const status = await d.api(`/api/blobs/uploads/${loser.id}/status`, { headers: { 'upload-token': loser.token } });
      assert.equal(status.status, 204, 'the loser is still open');
      assert.equal(status.headers.get('upload-offset'), '600');
      // Room again: the loser completes with the bytes it had sent.
      const winner = sessions[answers.findIndex((r) => r.status === 201)]!;
      const winnerKey = `r${round}-${sessions.indexOf(winner)}`;
      assert.equal((await d.api(`/api/buckets/race/objects/${winnerKey}`, { method: 'DELETE' })).status, 204);
      const done = await d.api(`/api/blobs/uploads/${loser.id}/complete`, { method: 'POST', headers: { 'upload-token': loser.token } });
      assert.equal(done.status, 201);
      const key = `r${round}-${sessions.indexOf(loser)}`;
      assert.ok(Buffer.from(await (await d.api(`/api/buckets/race/objects/${key}`)).arrayBuffer()).equals(loser.data));
      assert.equal((await d.api(`/api/buckets/race/objects/${key}`, { method: 'DELETE' })).status, 204);
    }
  });

  test('a session whose bucket was deleted before complete stays open and completes once the bucket exists again', async () => {
    assert.equal((await d.api('/api/buckets/gone', { method: 'PUT' })).status, 201);
    const { id, token } = (await (await d.api('/api/blobs/uploads?bucket=gone&key=k', { method: 'POST' })).json()) as { id: string; token: string };
    assert.equal((await d.api(`/api/blobs/uploads/${id}/append`, { method: 'POST', body: 'abc', headers: { 'upload-token': token } })).status, 203);
    assert.equal((await d.api('/api/buckets/gone', { method: 'DELETE' })).status, 204);
    const refused = await d.api(`/api/blobs/uploads/${id}/complete`, { method: 'POST', headers: { 'upload-token': token } });
    assert.equal(refused.status, 404);
    assert.equal(await errorCode(refused), 'bucket_not_found');
    assert.equal((await d.api('/api/buckets/gone', { method: 'PUT' })).status, 201);
    const done = await d.api(`/api/blobs/uploads/${id}/complete`, { method: 'POST', headers: { 'upload-token': token } });
    assert.equal(done.status, 201);
    assert.equal(await (await d.api('/api/buckets/gone/objects/k')).text(), 'abc');
  });
});
