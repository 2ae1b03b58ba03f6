// What a full disk leaves behind, on a private 16 MiB tmpfs: a write refused with 507 takes back whatever
// it had put on disk — a blob file renamed into blobs/ whose row could not commit, a key file that could
// not be written, a session file whose row could not be made — so fsck finds no orphans and keys/ and
// uploads/ hold nothing extra. GC's grace (1 h here) would otherwise be the only thing to remove them.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startDaemon, type Daemon } from './helpers/daemon.ts';
import { fillWithUploads, takeSpace, tmpfs } from './helpers/disk.ts';
import { errorCode } from './helpers/http.ts';

/** Each entry of `dir` with its size, sorted. */
async function entries(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (n) => `${n} ${(await stat(path.join(dir, n))).size}`));
}

async function fsck(d: Daemon): Promise<{ orphans: string[]; missing: string[]; corrupt: string[] }> {
  const res = await d.api('/api/admin/fsck', { method: 'POST' });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as { orphans: string[]; missing: string[]; corrupt: string[] };
}

async function refused(res: Response, what: string): Promise<void> {
  assert.equal(res.status, 507, `${what}: ${res.status} ${await res.clone().text()}`);
  assert.equal(await errorCode(res), 'insufficient_storage', what);
}

for (const reserve of ['4MiB', '0']) {
  test(`refused writes on a full disk leave no orphan blob, key or session file (--disk-reserve ${reserve})`, async (t) => {
    const disk = await tmpfs(t);
    if (!disk) return;
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', '0', '--disk-reserve', reserve] });
    try {
      const open = await d.api('/api/blobs/uploads?filename=open.bin', { method: 'POST' });
      assert.equal(open.status, 202);
      const keysBefore = await entries(path.join(d.dataDir, 'keys'));
      const uploadsBefore = await entries(path.join(d.dataDir, 'uploads'));

      await fillWithUploads(d);
      // Uploads of every small size, with the last blocks taken by another process and without: whether a
      // refusal comes while staging the bytes or while committing the row depends on where the room ends.
      for (const leave of [64 * 1024, 16 * 1024, 8192, 4096, 0]) {
        const giveBack = await takeSpace(disk, leave);
        for (const size of [1, 100, 3000, 5000, 20_000]) {
          const res = await d.api('/api/blobs', { method: 'POST', body: randomBytes(size) });
          if (res.status !== 201) await refused(res, `one-shot upload of ${size} bytes, ${leave} left`);
          else await res.arrayBuffer();
        }
        await giveBack();
      }
      await takeSpace(disk);
      await refused(await d.api('/api/blobs', { method: 'POST', body: randomBytes(10) }), 'one-shot upload on a full disk');
      await refused(await d.api('/api/admin/keys/rotate', { method: 'POST' }), 'key rotation');
      await refused(await d.api('/api/blobs/uploads?filename=late.bin', { method: 'POST' }), 'session initiate');
      await refused(await d.api('/api/blobs/uploads?filename=late.bin&size=10', { method: 'POST' }), 'session initiate with a size');

      const report = await fsck(d);
      assert.deepEqual(report.orphans, [], 'no blob file without a row');
      assert.deepEqual([report.missing, report.corrupt], [[], []]);
      assert.deepEqual(await entries(path.join(d.dataDir, 'keys')), keysBefore, 'no key file left by the refused rotation');
      assert.deepEqual(await entries(path.join(d.dataDir, 'uploads')), uploadsBefore, 'no session file left by the refused initiates');
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });
}
