// The Ceph RGW test helper itself: real S3 round trips, multipart at RGW's default and a lowered minimum part size,
// pause()/resume(), and that its daemons and temp dir go when the test process ends (normally or by SIGKILL).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { after, describe, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ROOT } from './helpers/daemon.ts';
import { rgwTestOptions, startRgw } from './helpers/rgw.ts';
import { waitFor } from './helpers/wait.ts';

const opts = rgwTestOptions();
const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function getBytes(s3: S3Client, Bucket: string, Key: string, abortSignal?: AbortSignal): Promise<Buffer> {
  const res = await s3.send(new GetObjectCommand({ Bucket, Key }), { abortSignal });
  return Buffer.from(await res.Body!.transformToByteArray());
}

/** Multipart upload of `parts` in order; resolves with Complete's answer or rejects with RGW's error. */
async function multipart(s3: S3Client, Bucket: string, Key: string, parts: Buffer[]) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const done = [];
  for (const [i, Body] of parts.entries()) {
    const { ETag } = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body }));
    done.push({ ETag, PartNumber: i + 1 });
  }
  return s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: done } }));
}

/** Pids of live processes whose working directory is `dir` (the helper starts every daemon there). */
function pidsIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir) pids.push(Number(entry));
    } catch {
      // gone, or a zombie (no cwd)
    }
  }
  return pids;
}

describe('shared RGW', opts, () => {
  test('startRgw() without options is one gateway per process, and buckets are fresh and distinct', async () => {
    const [a, b] = await Promise.all([startRgw(), startRgw()]);
    assert.equal(a, b);
    console.log(`# RGW cold start ${a.startupMs} ms`);
    const [x, y] = await Promise.all([a.newBucket(), a.newBucket()]);
    assert.notEqual(x, y);
    const s3 = a.client();
    await s3.send(new HeadBucketCommand({ Bucket: x }));
    s3.destroy();
  });

  test('PutObject then GetObject returns the same bytes', async () => {
    const rgw = await startRgw();
    const Bucket = await rgw.newBucket();
    const s3 = rgw.client();
    const body = randomBytes(3 * MiB + 17);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'a/b.bin', Body: body }));
    assert.equal(sha256(await getBytes(s3, Bucket, 'a/b.bin')), sha256(body));
    s3.destroy();
  });

  test('a multipart upload of 5 MiB + a small part completes at the default minimum part size', async () => {
    const rgw = await startRgw();
    const Bucket = await rgw.newBucket();
    const s3 = rgw.client();
    const parts = [randomBytes(5 * MiB), randomBytes(1234)];
    await multipart(s3, Bucket, 'mp', parts);
    assert.equal(sha256(await getBytes(s3, Bucket, 'mp')), sha256(Buffer.concat(parts)));
    // RGW's 5 MiB minimum holds: a 1 MiB first part is refused at completion.
    await assert.rejects(multipart(s3, Bucket, 'small', [randomBytes(MiB), randomBytes(10)]), { name: 'EntityTooSmall' });
    s3.destroy();
  });
});

describe('an own RGW', opts, () => {
  test('minPartSize lowers the part minimum; pause() hangs or refuses requests and resume() recovers; stop() cleans up', async () => {
    const rgw = await startRgw({ minPartSize: MiB });
    const Bucket = await rgw.newBucket();
    const s3 = rgw.client();
    const parts = [randomBytes(MiB), randomBytes(10)];
    await multipart(s3, Bucket, 'mp', parts);
    assert.equal(sha256(await getBytes(s3, Bucket, 'mp')), sha256(Buffer.concat(parts)));

    const once = rgw.client({ maxAttempts: 1 }); // a refused connection fails at once instead of after retries
    await rgw.pause('hang');
    await assert.rejects(getBytes(once, Bucket, 'mp', AbortSignal.timeout(1500)), (err: Error) => /abort|timeout/i.test(err.name));
    await rgw.resume();
    assert.equal(sha256(await getBytes(s3, Bucket, 'mp')), sha256(Buffer.concat(parts)));

    await rgw.pause('refuse');
    await assert.rejects(getBytes(once, Bucket, 'mp'), (err: Error & { code?: string }) => err.code === 'ECONNREFUSED');
    await rgw.resume();
    assert.equal(sha256(await getBytes(once, Bucket, 'mp')), sha256(Buffer.concat(parts)), 'data survives a radosgw restart');
    once.destroy();
    s3.destroy();

    const pids = pidsIn(rgw.dir);
    assert.ok(pids.length >= 3, `mon, osd and radosgw run in ${rgw.dir}: ${pids}`);
    await rgw.stop();
    assert.deepEqual(pidsIn(rgw.dir), []);
    assert.equal(existsSync(rgw.dir), false);
  });
});

describe('when the test process ends', opts, () => {
  const leftovers: string[] = [];
  after(async () => {
    for (const dir of leftovers) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Starts the shared gateway in a child process, which prints its dir and then lives until its stdin ends (its event
   * loop then drains: the gateway must not hold it open). `end` then ends the child one way or the other.
   */
  async function child(end: 'exit' | 'SIGKILL'): Promise<string> {
    const code = `const m = await import('./test/helpers/rgw.ts'); const r = await m.startRgw(); console.log('DIR ' + r.dir);
      process.stdin.resume();`;
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((r) => proc.once('exit', r));
    const dir: string = await waitFor(() => {
      if (proc.exitCode !== null && !out.includes('DIR ')) throw new Error(`child exited:\n${out}`);
      return /DIR (\S+)/.exec(out)?.[1] ?? '';
    }, 'child RGW', 120_000);
    leftovers.push(dir);
    assert.ok(pidsIn(dir).length >= 3, `daemons run in ${dir}`);
    if (end === 'SIGKILL') proc.kill('SIGKILL');
    else proc.stdin.end();
    assert.equal(await exited, end === 'SIGKILL' ? null : 0);
    return dir;
  }

  test('a normal exit kills the daemons and removes the dir', async () => {
    const dir = await child('exit');
    assert.deepEqual(pidsIn(dir), []);
    assert.equal(existsSync(dir), false);
  });

  test('a SIGKILLed test process takes its daemons with it (the dir stays)', async () => {
    const dir = await child('SIGKILL');
    await waitFor(() => pidsIn(dir).length === 0, 'daemons to die with their parent');
  });
});
