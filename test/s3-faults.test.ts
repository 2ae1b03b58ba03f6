// The S3 store failing under a running daemon: RGW refusing connections or hanging mid-append. The client
// gets a clear 503 store_unavailable, and once the store is back nothing acknowledged is lost: the session
// resumes at its offset and completes with the right digest. A gateway of this file's own (pause stops it).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { removeDir, s3ServeArgs, startDaemon, TEST_PART_SIZE, TEST_S3_PREFIX, type Daemon } from './helpers/daemon.ts';
import { rgwTestOptions, startRgw, type Rgw } from './helpers/rgw.ts';
import { append, complete, initiate, status } from './helpers/sessions.ts';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('the S3 store failing under a running daemon', rgwTestOptions(), () => {
  let rgw: Rgw;
  let d: Daemon;

  before(async () => {
    rgw = await startRgw({ own: true });
    const bucket = await rgw.newBucket();
    const { args, env } = s3ServeArgs({ ...rgw, bucket, prefix: TEST_S3_PREFIX });
    // A short timeout, so that a hung store becomes a 503 within seconds (three attempts of 2 s each).
    d = await startDaemon({ store: 'fs', args: [...args, '--s3-timeout', '2s'], env });
  });
  after(async () => {
    await d?.stop();
    if (d) await removeDir(d.dataDir);
    await rgw?.stop();
  });

  test('a store that refuses connections: 503 store_unavailable; after it is back the session resumes at its offset', async () => {
    const data = randomBytes(TEST_PART_SIZE + 3 * MiB + 123);
    const first = TEST_PART_SIZE + MiB; // one whole part and a tail
    const s = await initiate(d);
    const ok = await append(d, s, data.subarray(0, first), { 'upload-offset': '0' });
    assert.equal(ok.status, 203, await ok.text());

    await rgw.pause('refuse');
    try {
      const refused = await append(d, s, data.subarray(first), { 'upload-offset': String(first) });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '5');
      const body = (await refused.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'store_unavailable');
      assert.doesNotMatch(body.error.message, /secret|BLOBD|AKIA|Signature/i);
      // A one-shot upload meanwhile: 503 too, and no blob appears.
      const oneShot = await d.api('/api/blobs', { method: 'POST', body: randomBytes(100_000) });
      assert.equal(oneShot.status, 503);
      await oneShot.arrayBuffer();
      const ready = await d.api('/readyz');
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { error: { checks: { store: string } } }).error.checks.store, 'failing');
    } finally {
      await rgw.resume();
    }

    assert.equal((await status(d, s)).offset, first, 'the acknowledged offset stands');
    const rest = await append(d, s, data.subarray(first), { 'upload-offset': String(first) });
    assert.equal(rest.status, 203, await rest.text());
    const done = await complete(d, s, `digest=${sha(data)}`);
    assert.equal(done.status, 201, await done.text());
    const back = Buffer.from(await (await d.api(`/api/blobs/${sha(data)}`)).arrayBuffer());
    assert.ok(back.equals(data), 'the blob reads back with every byte');
  });

  test('a store that hangs mid-append: 503 after the timeout; nothing acknowledged is lost', async () => {
    const data = randomBytes(2 * TEST_PART_SIZE + 777);
    const first = 2 * MiB; // a tail only
    const s = await initiate(d);
    assert.equal((await append(d, s, data.subarray(0, first), { 'upload-offset': '0' })).status, 203);

    await rgw.pause('hang');
    let hung: Response;
    try {
      hung = await append(d, s, data.subarray(first), { 'upload-offset': String(first) });
    } finally {
      await rgw.resume();
    }
    assert.equal(hung.status, 503, await hung.clone().text());
    assert.equal(((await hung.json()) as { error: { code: string } }).error.code, 'store_unavailable');

    const at = (await status(d, s)).offset;
    assert.equal(at, first, 'the failed append acknowledged nothing');
    const rest = await append(d, s, data.subarray(at), { 'upload-offset': String(at) });
    assert.equal(rest.status, 203, await rest.text());
    const done = await complete(d, s, `digest=${sha(data)}`);
    assert.equal(done.status, 201, await done.text());
    const back = Buffer.from(await (await d.api(`/api/blobs/${sha(data)}`)).arrayBuffer());
    assert.ok(back.equals(data));
  });
});
