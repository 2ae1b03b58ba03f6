// A full disk, on a private 16 MiB tmpfs: whatever cannot be stored answers 507 insufficient_storage (never
// 500); deletes, session destroys and GC still commit and free space, also after kill -9 and a restart on
// the full disk; --min-free holds the database's growth too; /readyz says when the disk is full.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { startDaemon, type Daemon } from './helpers/daemon.ts';
import { fillWithUploads, takeSpace, tmpfs } from './helpers/disk.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;
const GC_NOW = ['--gc-grace', '0s', '--gc-interval', '0s'];

async function expect507(res: Response, what: string): Promise<void> {
  assert.equal(res.status, 507, `${what}: ${res.status} ${await res.clone().text()}`);
  assert.equal(await errorCode(res), 'insufficient_storage', what);
}

async function expect2xx(res: Response, what: string): Promise<void> {
  assert.ok(res.status >= 200 && res.status < 300, `${what}: ${res.status} ${await res.clone().text()}`);
}

/** Every route that stores something new, on a full disk: 507 each, never 500. */
async function expectWritesRefused(d: Daemon): Promise<void> {
  const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  await expect507(await d.api('/api/buckets/b/objects/doc', { method: 'PATCH', ...json({ filename: 'renamed.txt' }) }), 'PATCH object');
  await expect507(await d.api('/api/tokens', { method: 'POST', ...json({ name: 'late', scopes: ['blobs:read'] }) }), 'token create');
  await expect507(await d.api('/api/buckets/another', { method: 'PUT' }), 'bucket create');
  await expect507(await d.api('/api/blobs/uploads?filename=late.bin', { method: 'POST' }), 'session initiate');
  await expect507(await d.api('/api/blobs/uploads?filename=late.bin&size=10', { method: 'POST' }), 'session initiate with a size');
  await expect507(await d.api('/api/blobs', { method: 'POST', body: 'x' }), 'one-shot upload');
  await expect507(await d.api('/api/buckets/b/objects/late', { method: 'PUT', body: 'x' }), 'object write');
  // No byte budget can refuse an empty body: its revision row is refused as any row is.
  await expect507(await d.api('/api/buckets/b/objects/empty', { method: 'PUT', body: '' }), 'empty object write');
}

/** True when data/reserve holds its default 4 MiB in real blocks (not a sparse file). */
async function reserveHeld(d: Daemon): Promise<boolean> {
  const st = await stat(path.join(d.dataDir, 'reserve')).catch(() => null);
  return st !== null && st.size === 4 * MiB && st.blocks * 512 >= 4 * MiB;
}

async function readiness(d: Daemon): Promise<{ status: number; disk: unknown }> {
  const res = await d.api('/readyz', { auth: false });
  const body = (await res.json()) as { checks?: { disk?: unknown }; error?: { checks?: { disk?: unknown } } };
  return { status: res.status, disk: (body.checks ?? body.error?.checks)?.disk };
}

async function gc(d: Daemon): Promise<{ bytes_freed: number }> {
  const res = await d.api('/api/admin/gc', { method: 'POST' });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as { bytes_freed: number };
}

/** A bucket with one object, an open upload session and an API token, made while there is room. */
async function setUp(d: Daemon): Promise<{ session: { id: string; token: string }; apiToken: string }> {
  assert.equal((await d.api('/api/buckets/b', { method: 'PUT' })).status, 201);
  assert.equal((await d.api('/api/buckets/b/objects/doc', { method: 'PUT', body: 'hello' })).status, 201);
  const res = await d.api('/api/blobs/uploads?filename=open.bin', { method: 'POST' });
  assert.equal(res.status, 202);
  const token = await d.api('/api/tokens', {
    method: 'POST',
    body: JSON.stringify({ name: 'reader', scopes: ['blobs:read'] }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(token.status, 201);
  return { session: (await res.json()) as { id: string; token: string }, apiToken: ((await token.json()) as { token: string }).token };
}

describe('a full disk', () => {
  test('writes answer 507, deletes and GC free space, and uploads work again (--min-free 0)', async (t) => {
    const disk = await tmpfs(t);
    if (!disk) return;
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '0', ...GC_NOW] });
    try {
      assert.ok(await reserveHeld(d), 'data/reserve is made at the first start');
      const { session, apiToken } = await setUp(d);
      const digests = await fillWithUploads(d);
      assert.ok(digests.length > 0);

      assert.deepEqual(await readiness(d), { status: 503, disk: 'failing' });
      await expectWritesRefused(d);
      // Reads still work, also with a token whose first use the database cannot record.
      const read = await d.api('/api/blobs', { headers: { authorization: `Bearer ${apiToken}` } });
      assert.equal(read.status, 200, await read.clone().text());

      await expect2xx(await d.api('/api/buckets/b/objects/doc', { method: 'DELETE' }), 'DELETE object');
      for (const digest of digests) await expect2xx(await d.api(`/api/blobs/${digest}`, { method: 'DELETE' }), 'DELETE pin');
      await expect2xx(
        await d.api(`/api/blobs/uploads/${session.id}/destroy`, { method: 'POST', auth: false, headers: { 'upload-token': session.token } }),
        'session destroy',
      );
      assert.ok((await gc(d)).bytes_freed >= 4 * MiB, 'GC freed the blobs');

      const again = await d.api('/api/blobs', { method: 'POST', body: randomBytes(MiB) });
      assert.equal(again.status, 201, await again.clone().text());
      assert.equal((await d.api('/api/buckets/another', { method: 'PUT' })).status, 201);
      assert.deepEqual(await readiness(d), { status: 200, disk: 'ok' });
      await waitFor(() => reserveHeld(d), 'the reserve to be made again once there is room');
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });

  test('after kill -9 the daemon starts on the full disk, deletes and GC free it', async (t) => {
    const disk = await tmpfs(t);
    if (!disk) return;
    let d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '0', ...GC_NOW] });
    try {
      await setUp(d);
      const digests = await fillWithUploads(d);
      // Whatever the uploads left (less than a block or two), another process takes.
      await takeSpace(disk);
      await d.kill9();
      d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '0', ...GC_NOW] });

      assert.deepEqual(await readiness(d), { status: 503, disk: 'failing' });
      await expectWritesRefused(d);
      await expect2xx(await d.api('/api/buckets/b/objects/doc', { method: 'DELETE' }), 'DELETE object');
      for (const digest of digests) await expect2xx(await d.api(`/api/blobs/${digest}`, { method: 'DELETE' }), 'DELETE pin');
      assert.ok((await gc(d)).bytes_freed >= 4 * MiB, 'GC freed the blobs');

      const again = await d.api('/api/blobs', { method: 'POST', body: randomBytes(MiB) });
      assert.equal(again.status, 201, await again.clone().text());
      assert.deepEqual(await readiness(d), { status: 200, disk: 'ok' });
      await waitFor(() => reserveHeld(d), 'the reserve to be made again once there is room');
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });

  test('without a reserve (--disk-reserve 0), a delete SQLite cannot log answers 507, never 500', async (t) => {
    const disk = await tmpfs(t);
    if (!disk) return;
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '0', '--disk-reserve', '0', ...GC_NOW] });
    try {
      await setUp(d);
      await fillWithUploads(d);
      await takeSpace(disk);
      assert.equal(await stat(path.join(d.dataDir, 'reserve')).catch(() => null), null, 'no data/reserve');
      await expectWritesRefused(d);
      // Whether SQLite finds room in its WAL for the delete depends on what it logged before: either way,
      // never a 500.
      const res = await d.api('/api/buckets/b/objects/doc', { method: 'DELETE' });
      assert.ok(res.status === 204 || res.status === 507, `${res.status} ${await res.clone().text()}`);
      if (res.status === 507) assert.equal(await errorCode(res), 'insufficient_storage');
      assert.doesNotMatch(d.output(), /unhandled error/);
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });

  test('--min-free holds metadata writes too; readyz is 503 only once the disk is really full', async (t) => {
    const disk = await tmpfs(t);
    if (!disk) return;
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '4MiB', ...GC_NOW] });
    try {
      await setUp(d);
      assert.equal((await d.api('/api/blobs', { method: 'POST', body: randomBytes(MiB) })).status, 201);

      // Another process leaves 2 MiB: below --min-free, so nothing new is stored, database rows included,
      // though SQLite would still find room. The disk itself is not full: ready, and deletes work.
      const giveBack = await takeSpace(disk, 2 * MiB);
      await expectWritesRefused(d);
      assert.deepEqual(await readiness(d), { status: 200, disk: 'ok' });

      // Then it takes the last bytes: the disk is full, and says so.
      const giveBackRest = await takeSpace(disk);
      assert.deepEqual(await readiness(d), { status: 503, disk: 'failing' });
      await expectWritesRefused(d);
      await expect2xx(await d.api('/api/buckets/b/objects/doc', { method: 'DELETE' }), 'DELETE object');
      await expect2xx(await d.api('/api/buckets/b', { method: 'DELETE' }), 'DELETE bucket');

      await giveBackRest();
      await giveBack();
      assert.deepEqual(await readiness(d), { status: 200, disk: 'ok' });
      assert.equal((await d.api('/api/buckets/b', { method: 'PUT' })).status, 201);
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });
});
