// Running blobd on the S3 store as an operator meets it: the start-up check of the bucket (one line when the
// credentials, bucket or endpoint are wrong), a data directory that remembers its store, stats, /metrics and
// /readyz, and the maintenance commands that say where the bytes are (backup, offline fsck).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { runCli } from './helpers/cli.ts';
import { BLOBD, makeTempDir, removeDir, s3ServeArgs, startDaemon, TEST_S3_PREFIX, type S3Target } from './helpers/daemon.ts';
import { rgwTestOptions, startRgw } from './helpers/rgw.ts';
import { waitFor } from './helpers/wait.ts';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** `blobd serve` that must fail at start: its exit code and what it printed on stderr. */
async function serveFails(dataDir: string, target: S3Target, extra: { args?: string[]; env?: Record<string, string> } = {}) {
  const { args, env } = s3ServeArgs(target);
  return promisify(execFile)(process.execPath, [BLOBD, 'serve', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, ...args, ...(extra.args ?? [])], {
    env: { ...process.env, BLOBD_ADMIN_TOKEN: 'ops-admin-token-0123456789', ...env, ...extra.env },
    timeout: 60_000,
    killSignal: 'SIGKILL',
  }).then(
    (r) => ({ code: 0 as number | null, stderr: r.stderr }),
    (err: { code: number | null; stderr: string }) => err,
  );
}

describe('operating blobd on the S3 store', rgwTestOptions(), () => {
  let target: S3Target;
  let work: string;

  before(async () => {
    const rgw = await startRgw();
    target = { ...rgw, bucket: await rgw.newBucket(), prefix: TEST_S3_PREFIX };
    work = await makeTempDir();
  });
  after(async () => {
    if (work) await removeDir(work);
  });

  test('wrong credentials, a missing bucket or no endpoint: one line at start, exit 1, the secret never shown', async () => {
    const dataDir = path.join(work, 'bad-start');
    const wrongSecret = await serveFails(dataDir, { ...target, secretAccessKey: 'not-the-secret-0000' });
    assert.equal(wrongSecret.code, 1, wrongSecret.stderr);
    assert.match(wrongSecret.stderr, /^blobd: the S3 store refused the credentials \(SignatureDoesNotMatch\)[^\n]*\n$/);
    assert.ok(!wrongSecret.stderr.includes(target.secretAccessKey) && !wrongSecret.stderr.includes('not-the-secret'));
    // A start that failed records no store: the corrected settings start on the same data directory.
    assert.equal(existsSync(path.join(dataDir, 'byte-store.json')), false, 'nothing recorded by a failed start');
    const noBucketFirst = await serveFails(dataDir, { ...target, bucket: 'a-typo-bucket' });
    assert.match(noBucketFirst.stderr, /does not exist/);
    const corrected = await startDaemon({ store: 'fs', dataDir, ...s3ServeArgs(target) });
    await corrected.stop();

    const noBucket = await serveFails(path.join(work, 'bad-bucket'), { ...target, bucket: 'no-such-bucket-here' });
    assert.equal(noBucket.code, 1);
    assert.match(noBucket.stderr, /^blobd: the S3 bucket "no-such-bucket-here" does not exist at http:\/\/127\.0\.0\.1:\d+\n$/);

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const nobody = await serveFails(path.join(work, 'bad-endpoint'), { ...target, endpoint: `http://127.0.0.1:${port}` });
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, new RegExp(`^blobd: cannot reach the S3 endpoint http://127\\.0\\.0\\.1:${port}: ECONNREFUSED\\n$`));

  });

  test('a data directory remembers its store: the other store, or another bucket, is refused in one line', async () => {
    const d = await startDaemon({ store: 'fs', ...s3ServeArgs(target) });
    const dataDir = d.dataDir;
    await d.stop();
    const recorded = JSON.parse(await readFile(path.join(dataDir, 'byte-store.json'), 'utf8')) as Record<string, string>;
    assert.deepEqual(recorded, { kind: 's3', endpoint: target.endpoint, bucket: target.bucket, prefix: TEST_S3_PREFIX });
    assert.ok(!JSON.stringify(recorded).includes(target.secretAccessKey));

    const asFs = await promisify(execFile)(process.execPath, [BLOBD, 'serve', '--port', '0', '--data', dataDir], {
      env: { ...process.env, BLOBD_ADMIN_TOKEN: 'ops-admin-token-0123456789' },
    }).then(() => ({ code: 0 as number | null, stderr: '' }), (err: { code: number | null; stderr: string }) => err);
    assert.equal(asFs.code, 1);
    assert.match(asFs.stderr, /^blobd: this data directory's blobs are in S3 bucket [^\n]+ \(--store s3\), not in the data directory \(--store fs\)[^\n]*\n$/);
    const otherBucket = await serveFails(dataDir, { ...target, bucket: 'another-bucket' });
    assert.equal(otherBucket.code, 1);
    assert.match(otherBucket.stderr, /not in S3 bucket another-bucket/);
    await removeDir(path.dirname(dataDir));
  });

  test('stats, /metrics and /readyz report the S3 store; backup copies the metadata and says where the bytes are; offline fsck refuses', async () => {
    const d = await startDaemon({ store: 'fs', ...s3ServeArgs(target) });
    try {
      const blob = randomBytes(300_000);
      assert.equal((await d.api('/api/blobs', { method: 'POST', body: blob })).status, 201);
      const again = await d.api('/api/blobs', { method: 'POST', body: blob });
      assert.equal(((await again.json()) as { deduplicated: boolean }).deduplicated, true, 'the second is a dedup hit');
      // Dedup keeps one copy: the duplicate's object was queued for deletion with its row write, and goes.
      const client = (await startRgw()).client();
      try {
        const blobKeys = async () =>
          ((await client.send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: `${TEST_S3_PREFIX}blobs/` }))).Contents ?? []).map((o) => o.Key);
        await waitFor(async () => (await blobKeys()).length === 1, 'the duplicate object is deleted');
      } finally {
        client.destroy();
      }
      const ready = (await (await d.api('/readyz')).json()) as { checks: Record<string, string> };
      assert.deepEqual(ready.checks, { database: 'ok', store: 'ok', disk: 'ok' });
      const stats = (await (await d.api('/api/admin/stats')).json()) as { blobs: number; stored_bytes: number };
      assert.equal(stats.blobs, 1);
      assert.equal(stats.stored_bytes, blob.length);
      const metrics = await (await d.api('/metrics')).text();
      assert.match(metrics, /^blobd_dedup_hits_total 1$/m);
      assert.match(metrics, /^blobd_blobs 1$/m);

      const copy = path.join(work, 'backup');
      const backup = await runCli(['backup', copy, '--data', d.dataDir, '--json'], { ...process.env } as Record<string, string>);
      assert.equal(backup.code, 0, backup.stderr);
      const result = JSON.parse(backup.stdout.toString()) as { blobs: number; bytes: number; bytes_in: string };
      assert.equal(result.blobs, 1);
      assert.equal(result.bytes, blob.length);
      assert.match(result.bytes_in, new RegExp(`S3 bucket ${target.bucket}`));
      const files = (await readdir(copy)).sort();
      assert.ok(files.includes('blobd.db') && files.includes('byte-store.json'), files.join(' '));
      assert.ok(!files.includes('blobs'), 'no blob bytes are copied: they stay in the bucket');
      const human = await runCli(['backup', path.join(work, 'backup2'), '--data', d.dataDir], { ...process.env } as Record<string, string>);
      assert.match(human.stdout.toString(), /^backed up the metadata of 1 blobs \(293 KiB\) to .*; their bytes stay in S3 bucket .*: back that up with the store's own tools\n$/);

      // The copy is a data directory of its own on the same bucket: it serves the blob.
      const restored = await startDaemon({ store: 'fs', dataDir: copy, ...s3ServeArgs(target) });
      try {
        const back = Buffer.from(await (await restored.api(`/api/blobs/${sha(blob)}`)).arrayBuffer());
        assert.ok(back.equals(blob));
      } finally {
        await restored.stop();
      }
    } finally {
      await d.stop();
    }
    const fsck = await runCli(['fsck', '--data', d.dataDir], { ...process.env } as Record<string, string>);
    assert.equal(fsck.code, 1);
    assert.match(fsck.stderr, /are in S3 bucket .*: run blobd fsck against its daemon \(without --data\)/);
    await removeDir(path.dirname(d.dataDir));
  });
});
