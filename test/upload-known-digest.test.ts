// `digest=` at initiate for a bucket/key target (SPEC §3.1): a blob that exists completes at once into the
// object's next revision — with the rules a complete of those bytes would meet (quota, max_object_size,
// declared size) — and only for callers who may read blobs by digest, so existence never leaks.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { append, complete } from './helpers/sessions.ts';

interface Completed {
  id: string;
  digest: string;
  size: number;
  filename: string | null;
  deduplicated: boolean;
  bucket?: string;
  key?: string;
  revision?: number;
}

describe('digest= at initiate into a bucket', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  const putBucket = async (name: string, settings: Record<string, unknown> = {}) => {
    const res = await d.api(`/api/buckets/${name}`, { method: 'PUT', body: JSON.stringify(settings), headers: { 'content-type': 'application/json' } });
    assert.ok(res.status === 200 || res.status === 201, `PUT bucket ${name} → ${res.status}`);
  };
  const stored = async (data: Buffer<ArrayBuffer>) => {
    const res = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(res.status, 201);
    await res.arrayBuffer();
  };
  const sessionFiles = () => readdir(path.join(d.dataDir, 'uploads'));

  test('a known blob becomes the object\'s next revision at once: 201, nothing to send', async () => {
    await putBucket('tb');
    const data = randomData(4321);
    await stored(data);
    const before = await sessionFiles();
    const res = await d.api(`/api/blobs/uploads?bucket=tb&key=dir/k.bin&size=${data.length}&digest=${sha256(data)}&filename=k.bin&content_type=image/png`, {
      method: 'POST',
    });
    assert.equal(res.status, 201);
    const body = (await res.json()) as Completed;
    const meta = (await (await d.api('/api/buckets/tb/objects/dir/k.bin?metadata')).json()) as { id: string; revision: number; filename: string };
    assert.deepEqual(body, {
      id: meta.id,
      digest: sha256(data),
      size: data.length,
      filename: 'k.bin',
      deduplicated: true,
      bucket: 'tb',
      key: 'dir/k.bin',
      revision: 1,
    });
    assert.equal(meta.filename, 'k.bin');
    const got = await d.api('/api/buckets/tb/objects/dir/k.bin');
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(data));
    assert.deepEqual(await sessionFiles(), before, 'no session file was made');

    // Again: the next revision, without a declared size too.
    const again = await d.api(`/api/blobs/uploads?bucket=tb&key=dir/k.bin&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(again.status, 201);
    assert.equal(((await again.json()) as Completed).revision, 2);
  });

  test('a declared size other than the blob\'s, or an unknown digest, starts a session as usual', async () => {
    await putBucket('tb2');
    const data = randomData(1000);
    await stored(data);
    const wrongSize = await d.api(`/api/blobs/uploads?bucket=tb2&key=k&size=999&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(wrongSize.status, 202);
    const other = randomData(10);
    const unknown = await d.api(`/api/blobs/uploads?bucket=tb2&key=k&digest=${sha256(other)}`, { method: 'POST' });
    assert.equal(unknown.status, 202);
    const s = (await unknown.json()) as { id: string; token: string };
    assert.equal((await append(d, s, other)).status, 203);
    const done = await complete(d, s);
    assert.equal(done.status, 201);
    assert.deepEqual([((await done.json()) as Completed).revision], [1]);
    assert.equal((await d.api('/api/buckets/tb2/objects/k')).status, 200);
  });

  test('the bucket\'s rules hold: quota and max_object_size refuse as a complete would', async () => {
    const data = randomData(5000);
    await stored(data);
    await putBucket('small', { max_object_size: 4000 });
    await putBucket('full', { quota_bytes: 6000 });
    const tooBig = await d.api(`/api/blobs/uploads?bucket=small&key=k&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(tooBig.status, 413);
    assert.equal(await errorCode(tooBig), 'too_large');
    const first = await d.api(`/api/blobs/uploads?bucket=full&key=a&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(first.status, 201);
    await first.arrayBuffer();
    const over = await d.api(`/api/blobs/uploads?bucket=full&key=b&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(over.status, 413);
    assert.equal(await errorCode(over), 'quota_exceeded');
    assert.equal((await d.api('/api/buckets/full/objects/b')).status, 404);
  });

  test('max_revisions prunes as for any revision', async () => {
    await putBucket('revs', { max_revisions: 1 });
    const a = randomData(300);
    const b = randomData(400);
    await stored(a);
    await stored(b);
    for (const data of [a, b]) {
      const res = await d.api(`/api/blobs/uploads?bucket=revs&key=k&digest=${sha256(data)}`, { method: 'POST' });
      assert.equal(res.status, 201);
      await res.arrayBuffer();
    }
    const revs = (await (await d.api('/api/buckets/revs/objects/k?revisions')).json()) as { items: { revision: number; digest: string }[] };
    assert.deepEqual(revs.items.map((r) => [r.revision, r.digest]), [[2, sha256(b)]]);
  });

  test('a bucket-scoped token without blobs:read uploads as usual: existence does not leak', async () => {
    await putBucket('tenant');
    const data = randomData(2000);
    await stored(data);
    const t = await createToken(d, ['bucket:tenant:write', 'bucket:tenant:read']);
    const res = await as(d, t.token, `/api/blobs/uploads?bucket=tenant&key=k&size=${data.length}&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(res.status, 202);
    const s = (await res.json()) as { id: string; token: string };
    assert.equal((await d.api('/api/buckets/tenant/objects/k')).status, 404, 'nothing was written at initiate');
    assert.equal((await append(d, s, data)).status, 203);
    assert.equal((await complete(d, s)).status, 201);
    // With blobs:read as well, the same initiate completes at once.
    const reader = await createToken(d, ['bucket:tenant:write', 'blobs:read']);
    const fast = await as(d, reader.token, `/api/blobs/uploads?bucket=tenant&key=k&digest=${sha256(data)}`, { method: 'POST' });
    assert.equal(fast.status, 201);
    assert.equal(((await fast.json()) as Completed).revision, 2);
  });
});
