// Crash and failure points of a session's completion on the S3 store, each as a client and an operator meet
// it: kill -9 at moments of a complete that must seal a lost hash; a completion cut off half-way by the
// store (the session goes on appending); rows refused while recovering at start (the daemon still starts);
// and a bucket quota of the store itself (507, like a full disk). One gateway of this file's own.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CopyObjectCommand } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { removeDir, s3ServeArgs, startDaemon, TEST_S3_PREFIX, type Daemon, type S3Target } from './helpers/daemon.ts';
import { failingProxy } from './helpers/failing-proxy.ts';
import { rgwTestOptions, startRgw, type Rgw } from './helpers/rgw.ts';
import { append, complete, initiate, status, type Session } from './helpers/sessions.ts';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A body streamed in 256 KiB chunks without a length (so the daemon reads it part by part). */
const streamed = (b: Buffer) =>
  new ReadableStream<Uint8Array>({
    start(ctl) {
      for (let i = 0; i < b.length; i += 256 * 1024) ctl.enqueue(b.subarray(i, i + 256 * 1024));
      ctl.close();
    },
  });

/** The session's recorded cursor, from the daemon's database. */
function cursorOf(d: Daemon, s: Session): { u: string | null; t: [string, number] | null } {
  const db = new Database(path.join(d.dataDir, 'blobd.db'), { readonly: true });
  try {
    return JSON.parse((db.prepare('SELECT cursor FROM upload_sessions WHERE id = ?').get(s.id) as { cursor: string }).cursor);
  } finally {
    db.close();
  }
}

describe('completions on the S3 store that crash or fail part-way', rgwTestOptions(), () => {
  let rgw: Rgw;
  const target = async (): Promise<S3Target> => ({ ...rgw, bucket: await rgw.newBucket(), prefix: TEST_S3_PREFIX });

  before(async () => {
    rgw = await startRgw({ own: true });
  });
  after(async () => {
    await rgw?.stop();
  });

  test('kill -9 at moments of a complete that seals a lost hash: every session completes with its digest and reads back', { timeout: 600_000 }, async () => {
    const { args, env } = s3ServeArgs(await target());
    const serve = { store: 'fs' as const, args: [...args, '--gc-grace', '1s', '--gc-interval', '1h'], env };
    let d = await startDaemon(serve);
    const dataDir = d.dataDir;
    const failures: string[] = [];
    try {
      for (const delay of [5, 60, 150, 400]) {
        const data = randomBytes(12 * MiB + 12345);
        const s = await initiate(d, `size=${data.length}`);
        assert.equal((await append(d, s, data.subarray(0, 7 * MiB))).status, 203);
        // An append refused past the declared size after a whole part went up: a part no cursor names.
        const over = await append(d, s, streamed(Buffer.concat([data.subarray(7 * MiB), randomBytes(6 * MiB)])));
        assert.equal(over.status, 413, await over.text());
        assert.equal((await append(d, s, data.subarray(7 * MiB))).status, 203);
        await d.kill9(); // the running hash is lost
        d = await startDaemon({ ...serve, dataDir });
        const pending = complete(d, s).then((r) => r.arrayBuffer(), () => undefined);
        await new Promise((resolve) => setTimeout(resolve, delay));
        await d.kill9();
        await pending;
        d = await startDaemon({ ...serve, dataDir });
        await new Promise((resolve) => setTimeout(resolve, 1100)); // past the GC grace: a pass may take what is not claimed
        assert.equal((await d.api('/api/admin/gc', { method: 'POST' })).status, 200);
        const done = await complete(d, s);
        const text = await done.text();
        if (done.status !== 201) {
          failures.push(`kill after ${delay} ms: complete → ${done.status} ${text}`);
          continue;
        }
        assert.equal((JSON.parse(text) as { digest: string }).digest, sha(data), `kill after ${delay} ms`);
        const back = Buffer.from(await (await d.api(`/api/blobs/${sha(data)}`)).arrayBuffer());
        if (!back.equals(data)) failures.push(`kill after ${delay} ms: the blob reads back ${back.length} bytes, not its own`);
      }
      assert.deepEqual(failures, []);
      const fsck = (await (await d.api('/api/admin/fsck', { method: 'POST' })).json()) as { corrupt: string[]; missing: string[] };
      assert.deepEqual([fsck.corrupt, fsck.missing], [[], []]);
    } finally {
      await d.kill9();
      await removeDir(path.dirname(dataDir));
    }
  });

  test('a completion the store cuts off half-way answers 503 and the session goes on: appends of whole parts work', async () => {
    // A proxy in front of RGW that fails part copies into any multipart upload but the session's first one.
    let sessionUpload = '';
    let failing = false;
    const { endpoint, server: proxy } = await failingProxy(rgw.endpoint, (method, url) => failing && method === 'PUT' && url.includes('uploadId=') && !url.includes(sessionUpload));
    const { args, env } = s3ServeArgs({ ...(await target()), endpoint });
    const d = await startDaemon({ store: 'fs', args, env });
    try {
      const data = randomBytes(20 * MiB + 3);
      const bucket = await d.api('/api/buckets/b', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ max_object_size: data.length }) });
      assert.ok(bucket.status < 300, await bucket.text());
      const s = await initiate(d, 'bucket=b&key=k');
      assert.equal((await append(d, s, data.subarray(0, 7 * MiB + 3))).status, 203);
      sessionUpload = cursorOf(d, s).u!;
      // Past max_object_size after two more parts went up: parts the recorded cursor does not name.
      const over = await append(d, s, streamed(Buffer.concat([data.subarray(7 * MiB + 3), randomBytes(6 * MiB)])));
      assert.equal(over.status, 413, await over.text());
      failing = true; // RGW refuses the completion (InvalidPart), and the copy that would rebuild it fails
      const cut = await complete(d, s);
      failing = false;
      assert.equal(cut.status, 503, await cut.text());
      assert.deepEqual([(await status(d, s)).state, (await status(d, s)).offset], ['open', 7 * MiB + 3]);
      const rest = await append(d, s, data.subarray(7 * MiB + 3));
      assert.equal(rest.status, 203, await rest.text());
      const done = await complete(d, s, `digest=${sha(data)}`);
      assert.equal(done.status, 201, await done.text());
      assert.ok(Buffer.from(await (await d.api('/api/buckets/b/objects/k')).arrayBuffer()).equals(data));
    } finally {
      await d.kill9();
      proxy.close();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  test('rows refused while recovering a completion at start: the daemon starts, the session is open, a complete says why', async () => {
    const t = await target();
    const { args, env } = s3ServeArgs(t);
    let d = await startDaemon({ store: 'fs', args, env });
    const dataDir = d.dataDir;
    const client = rgw.client();
    try {
      const quota = await d.api('/api/buckets/b', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ quota_bytes: 100 }) });
      assert.ok(quota.status < 300);
      const data = Buffer.alloc(60, 1);
      const s = await initiate(d, 'bucket=b&key=k1');
      assert.equal((await append(d, s, data)).status, 203);
      const won = await d.api('/api/buckets/b/objects/k2', { method: 'PUT', body: Buffer.alloc(60, 2) }); // takes the room
      assert.ok(won.status < 300, await won.text());
      await d.kill9();
      // The state a kill between committing the bytes and writing the rows leaves.
      const tail = cursorOf(d, s).t![0];
      await client.send(new CopyObjectCommand({ Bucket: t.bucket, Key: `${TEST_S3_PREFIX}blobs/${s.id}`, CopySource: `${t.bucket}/${TEST_S3_PREFIX}${tail}` }));
      const db = new Database(path.join(dataDir, 'blobd.db'));
      db.prepare(`UPDATE upload_sessions SET state = 'completing', digest = ?, location = ? WHERE id = ?`).run(sha(data), `blobs/${s.id}`, s.id);
      db.close();
      d = await startDaemon({ store: 'fs', args, env, dataDir });
      assert.deepEqual([(await status(d, s)).state, (await status(d, s)).offset], ['open', 60]);
      const refused = await complete(d, s);
      assert.equal(refused.status, 413);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'quota_exceeded');
    } finally {
      client.destroy();
      await d.kill9();
      await removeDir(path.dirname(dataDir));
    }
  });

  test("the store's own bucket quota: 507 insufficient_storage for a one-shot upload and an append, not a 500", async () => {
    const t = await target();
    const { args, env } = s3ServeArgs(t);
    const d = await startDaemon({ store: 'fs', args, env });
    try {
      const conf = path.join(rgw.dir, 'ceph.conf');
      await promisify(execFile)('radosgw-admin', ['-c', conf, 'quota', 'set', '--quota-scope=bucket', `--bucket=${t.bucket}`, '--max-size=1024'], { cwd: rgw.dir });
      await promisify(execFile)('radosgw-admin', ['-c', conf, 'quota', 'enable', '--quota-scope=bucket', `--bucket=${t.bucket}`], { cwd: rgw.dir });
      const oneShot = await d.api('/api/blobs', { method: 'POST', body: Buffer.alloc(100 * 1024, 7) });
      assert.equal(oneShot.status, 507, await oneShot.clone().text());
      assert.equal(((await oneShot.json()) as { error: { code: string } }).error.code, 'insufficient_storage');
      const s = await initiate(d);
      const appended = await append(d, s, Buffer.alloc(64 * 1024, 8));
      assert.equal(appended.status, 507, await appended.text());
      assert.equal((await status(d, s)).offset, 0);
    } finally {
      await d.kill9();
      await removeDir(path.dirname(d.dataDir));
    }
  });
});
