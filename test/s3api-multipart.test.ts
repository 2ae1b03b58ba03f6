// S3 multipart uploads as @aws-sdk/client-s3 and @aws-sdk/lib-storage use them, against one real daemon: a
// 200 MiB upload with parallel parts (bytes read back through the native API, the md5-of-md5s-N ETag),
// parts by hand out of order and uploaded twice, every refusal a complete can meet, uploads gone after abort
// and complete, ListParts / ListMultipartUploads paging, UploadPartCopy, the hidden system bucket, scopes,
// and GC while an upload is open. Also the long-complete answer (200, spaces, then the result or an Error).
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Hono } from 'hono';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobService } from '../src/core/blobs.ts';
import { CatalogService } from '../src/core/catalog.ts';
import type { Digest } from '../src/core/digest.ts';
import { DiskBudget } from '../src/core/disk-budget.ts';
import { BlobdError } from '../src/core/errors.ts';
import { MultipartUploads } from '../src/core/multipart-uploads.ts';
import { S3Error } from '../src/http/s3api/errors.ts';
import { answerWhenDone } from '../src/http/s3api/multipart.ts';
import { FsByteStore } from '../src/storage/fs/fs-byte-store.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { s3Error, s3KeyOf } from './helpers/s3-signing.ts';

const MiB = 1024 * 1024;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
/** What S3 clients check a multipart object's ETag against: MD5 of the parts' binary MD5s, then -N. */
const multipartETag = (parts: readonly Uint8Array[]) =>
  `"${createHash('md5').update(Buffer.concat(parts.map((p) => Buffer.from(md5(p), 'hex')))).digest('hex')}-${parts.length}"`;

describe('S3 multipart uploads with @aws-sdk/client-s3 and lib-storage', () => {
  let d: Daemon;
  let s3: S3Client;
  let keyOf: (scopes: string[]) => Promise<{ accessKeyId: string; secretAccessKey: string }>;
  const clientWith = (credentials: { accessKeyId: string; secretAccessKey: string }) =>
    new S3Client({ endpoint: d.s3Url, region: 'us-east-1', forcePathStyle: true, credentials, maxAttempts: 1 });
  const Bucket = 'mp';

  /** The native API's view of an object: its bytes' SHA-256 (streamed) and its JSON. */
  const native = async (key: string) => {
    const res = await d.api(`/api/buckets/${Bucket}/objects/${key}`);
    assert.equal(res.status, 200);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size };
  };
  const get = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket, Key: key }))).Body!.transformToByteArray());
  const create = async (key: string) => (await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: key }))).UploadId!;
  const part = async (key: string, uploadId: string, n: number, body: Uint8Array) =>
    (await s3.send(new UploadPartCommand({ Bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: body }))).ETag!;
  const complete = (key: string, uploadId: string, parts: { PartNumber: number; ETag: string }[]) =>
    s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));

  before(async () => {
    // No grace: a GC pass removes every blob nothing references, at once.
    d = await startDaemon({ args: ['--gc-grace', '0s'] });
    assert.ok(d.s3Url, `the daemon names its S3 API:\n${d.output()}`);
    keyOf = (scopes) => s3KeyOf(d, scopes);
    s3 = clientWith(await keyOf(['admin']));
    await s3.send(new CreateBucketCommand({ Bucket }));
  });
  after(async () => {
    s3?.destroy();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('lib-storage: 200 MiB in 5 MiB parts, 4 at a time; the native API reads the same bytes; the ETag is md5-of-md5s-40', async () => {
    const total = 200 * MiB;
    const hash = createHash('sha256');
    const parts: Buffer[] = [];
    // Generated as it is read (never 200 MiB at once here): each 5 MiB part's MD5 is kept for the ETag.
    let current: Buffer[] = [];
    let currentSize = 0;
    const body = Readable.from(
      (function* () {
        for (let sent = 0; sent < total; sent += MiB) {
          const chunk = randomBytes(MiB);
          hash.update(chunk);
          current.push(chunk);
          currentSize += chunk.length;
          if (currentSize === 5 * MiB) {
            parts.push(Buffer.from(md5(Buffer.concat(current)), 'hex'));
            current = [];
            currentSize = 0;
          }
          yield chunk;
        }
      })(),
    );
    const upload = new Upload({ client: s3, params: { Bucket, Key: 'big.bin', Body: body, ContentType: 'application/x-big' }, queueSize: 4, partSize: 5 * MiB });
    const done = await upload.done();
    assert.equal(parts.length, 40);
    const expectedETag = `"${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-40"`;
    assert.equal(done.ETag, expectedETag);
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'big.bin' }));
    assert.equal(head.ETag, expectedETag);
    assert.equal(head.ContentLength, total);
    assert.equal(head.ContentType, 'application/x-big');
    assert.deepEqual(await native('big.bin'), { digest: `sha256:${hash.digest('hex')}`, size: total });
    // Nothing of the upload is left: no upload listed.
    assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads ?? [], []);
  });

  test('parts by hand: out of order (3, 1, 2), part 2 uploaded twice (the last wins), ListParts paged; metadata from Create', async () => {
    const key = 'by-hand.bin';
    const UploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: key, ContentType: 'text/x-parts', Metadata: { origin: 'hand' } }))).UploadId!;
    const p = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1000)];
    const e3 = await part(key, UploadId, 3, p[2]!);
    const e1 = await part(key, UploadId, 1, p[0]!);
    await part(key, UploadId, 2, randomBytes(5 * MiB));
    const e2 = await part(key, UploadId, 2, p[1]!);
    assert.equal(e1, `"${md5(p[0]!)}"`);

    const first = await s3.send(new ListPartsCommand({ Bucket, Key: key, UploadId, MaxParts: 2 }));
    assert.deepEqual(first.Parts?.map((x) => [x.PartNumber, x.ETag, x.Size]), [[1, e1, 5 * MiB], [2, e2, 5 * MiB]]);
    assert.equal(first.IsTruncated, true);
    const second = await s3.send(new ListPartsCommand({ Bucket, Key: key, UploadId, PartNumberMarker: first.NextPartNumberMarker }));
    assert.deepEqual(second.Parts?.map((x) => [x.PartNumber, x.ETag, x.Size]), [[3, e3, 1000]]);
    assert.equal(second.IsTruncated, false);

    const done = await complete(key, UploadId, [{ PartNumber: 1, ETag: e1 }, { PartNumber: 2, ETag: e2 }, { PartNumber: 3, ETag: e3 }]);
    assert.equal(done.ETag, multipartETag(p));
    assert.equal(done.Key, key);
    assert.ok(Buffer.concat(p).equals(await get(key)));
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: key }));
    assert.equal(head.ContentType, 'text/x-parts');
    assert.deepEqual(head.Metadata, { origin: 'hand' });
    // Completed: the upload is gone for every operation.
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 1, ETag: e1 }])), { code: 'NoSuchUpload', status: 404 });
    assert.deepEqual(await s3Error(part(key, UploadId, 4, Buffer.from('x'))), { code: 'NoSuchUpload', status: 404 });
    assert.deepEqual(await s3Error(s3.send(new ListPartsCommand({ Bucket, Key: key, UploadId }))), { code: 'NoSuchUpload', status: 404 });
  });

  test('complete refuses: InvalidPart (unknown part or wrong ETag), InvalidPartOrder, EntityTooSmall; the upload stays usable', async () => {
    const key = 'refused.bin';
    const UploadId = await create(key);
    const small = [randomBytes(100), randomBytes(100)];
    const e1 = await part(key, UploadId, 1, small[0]!);
    const e2 = await part(key, UploadId, 2, small[1]!);
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 1, ETag: e1 }, { PartNumber: 3, ETag: e2 }])), { code: 'InvalidPart', status: 400 });
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 1, ETag: e2 }])), { code: 'InvalidPart', status: 400 });
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 2, ETag: e2 }, { PartNumber: 1, ETag: e1 }])), { code: 'InvalidPartOrder', status: 400 });
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 1, ETag: e1 }, { PartNumber: 2, ETag: e2 }])), { code: 'EntityTooSmall', status: 400 });
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket, Key: key }))), { code: 'NoSuchKey', status: 404 });
    // Still open after every refusal: the last part alone may be small.
    const done = await complete(key, UploadId, [{ PartNumber: 2, ETag: e2 }]);
    assert.equal(done.ETag, multipartETag([small[1]!]));
    assert.ok(small[1]!.equals(await get(key)));
  });

  test('If-None-Match: * and If-Match on CompleteMultipartUpload (lib-storage too): 412 and nothing overwritten; the upload stays', async () => {
    const key = 'guarded.bin';
    await s3.send(new PutObjectCommand({ Bucket, Key: key, Body: 'precious' }));
    const UploadId = await create(key);
    const body = randomBytes(1000);
    const e1 = await part(key, UploadId, 1, body);
    const guarded = (extra: { IfNoneMatch?: string; IfMatch?: string }) =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }] }, ...extra }));
    assert.deepEqual(await s3Error(guarded({ IfNoneMatch: '*' })), { code: 'PreconditionFailed', status: 412 });
    assert.deepEqual(await s3Error(guarded({ IfMatch: '"00000000000000000000000000000000"' })), { code: 'PreconditionFailed', status: 412 });
    assert.equal((await get(key)).toString(), 'precious', 'nothing overwritten');
    const precious = `"${createHash('md5').update('precious').digest('hex')}"`;
    await guarded({ IfMatch: precious });
    assert.ok(body.equals(await get(key)), 'the upload stayed usable, and a condition that holds lets it complete');
    // lib-storage's multipart path carries IfNoneMatch to the complete: refused like a single PutObject.
    const big = randomBytes(12 << 20);
    const upload = new Upload({ client: s3, params: { Bucket, Key: key, Body: big, IfNoneMatch: '*' }, partSize: 5 << 20, queueSize: 2 });
    assert.deepEqual(await s3Error(upload.done()), { code: 'PreconditionFailed', status: 412 });
    assert.ok(body.equals(await get(key)), 'still the completed upload');
  });

  test("the target bucket's limits count the upload's parts: max_object_size and quota refuse a part (nothing stored); a complete over the quota is refused and the upload stays", async () => {
    const limited = async (name: string, settings: Record<string, number>) => {
      const res = await d.api(`/api/buckets/${name}`, { method: 'PUT', body: JSON.stringify(settings), headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 201, await res.clone().text());
    };
    await limited('mp-small', { max_object_size: 1000 });
    const small = (await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mp-small', Key: 'k' }))).UploadId!;
    assert.deepEqual(
      await s3Error(s3.send(new UploadPartCommand({ Bucket: 'mp-small', Key: 'k', UploadId: small, PartNumber: 1, Body: randomBytes(1001) }))),
      { code: 'EntityTooLarge', status: 400 },
    );
    // The parts together: 600 + 600 bytes would make an object over max_object_size. Part 1 uploaded again
    // replaces itself (it is not counted twice).
    const smallPart = (n: number, size: number) => s3.send(new UploadPartCommand({ Bucket: 'mp-small', Key: 'k', UploadId: small, PartNumber: n, Body: randomBytes(size) }));
    await smallPart(1, 600);
    await smallPart(1, 600);
    assert.deepEqual(await s3Error(smallPart(2, 600)), { code: 'EntityTooLarge', status: 400 });
    await smallPart(2, 400);
    assert.deepEqual((await s3.send(new ListPartsCommand({ Bucket: 'mp-small', Key: 'k', UploadId: small }))).Parts?.map((x) => x.Size), [600, 400]);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mp-small', Key: 'k', UploadId: small }));

    await limited('mp-quota', { quota_bytes: 6 * MiB });
    const UploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mp-quota', Key: 'k' }))).UploadId!;
    const send = (n: number, body: Buffer) => s3.send(new UploadPartCommand({ Bucket: 'mp-quota', Key: 'k', UploadId, PartNumber: n, Body: body }));
    const first = { PartNumber: 1, ETag: (await send(1, randomBytes(5 * MiB))).ETag! };
    // 5 MiB stored + 2 MiB > the 6 MiB quota: refused, nothing stored.
    assert.deepEqual(await s3Error(send(2, randomBytes(2 * MiB))), { code: 'QuotaExceeded', status: 403 });
    assert.equal((await s3.send(new ListPartsCommand({ Bucket: 'mp-quota', Key: 'k', UploadId }))).Parts?.length, 1);
    const parts = [first, { PartNumber: 2, ETag: (await send(2, randomBytes(MiB))).ETag! }];
    // The bucket fills meanwhile: the complete checks the object as any write.
    await s3.send(new PutObjectCommand({ Bucket: 'mp-quota', Key: 'other', Body: randomBytes(10) }));
    const over = () => s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mp-quota', Key: 'k', UploadId, MultipartUpload: { Parts: parts } }));
    assert.deepEqual(await s3Error(over()), { code: 'QuotaExceeded', status: 403 });
    assert.equal((await s3.send(new ListPartsCommand({ Bucket: 'mp-quota', Key: 'k', UploadId }))).Parts?.length, 2);
    // The same again: nothing of the first attempt holds the upload.
    assert.deepEqual(await s3Error(over()), { code: 'QuotaExceeded', status: 403 });
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mp-quota', Key: 'k', UploadId }));
  });

  test('abort: the upload and its parts are gone (NoSuchUpload), as is an id never given out', async () => {
    const key = 'aborted.bin';
    const UploadId = await create(key);
    const e1 = await part(key, UploadId, 1, randomBytes(1000));
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId }));
    assert.deepEqual(await s3Error(part(key, UploadId, 2, Buffer.from('x'))), { code: 'NoSuchUpload', status: 404 });
    assert.deepEqual(await s3Error(complete(key, UploadId, [{ PartNumber: 1, ETag: e1 }])), { code: 'NoSuchUpload', status: 404 });
    assert.deepEqual(await s3Error(s3.send(new ListPartsCommand({ Bucket, Key: key, UploadId }))), { code: 'NoSuchUpload', status: 404 });
    assert.deepEqual(await s3Error(s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId }))), { code: 'NoSuchUpload', status: 404 });
    for (const bad of ['not-an-upload-id', '0190aaaa-0000-7000-8000-000000000000']) {
      assert.deepEqual(await s3Error(part(key, bad, 1, Buffer.from('x'))), { code: 'NoSuchUpload', status: 404 });
    }
    // An upload id belongs to its bucket and key.
    const other = await create(key);
    assert.deepEqual(await s3Error(part('elsewhere.bin', other, 1, Buffer.from('x'))), { code: 'NoSuchUpload', status: 404 });
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: other }));
  });

  test('races: two completes at once (one wins, the other NoSuchUpload); a part upload racing an abort (never a 500)', async () => {
    const key = 'raced.bin';
    const UploadId = await create(key);
    const body = randomBytes(2000);
    const parts = [{ PartNumber: 1, ETag: await part(key, UploadId, 1, body) }];
    const both = await Promise.allSettled([complete(key, UploadId, parts), complete(key, UploadId, parts)]);
    assert.deepEqual(both.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const lost = both.find((r) => r.status === 'rejected')!.reason;
    assert.ok(lost instanceof S3ServiceException && lost.name === 'NoSuchUpload', String(lost));
    assert.ok(body.equals(await get(key)));

    const aborted = await create(key);
    const outcomes = await Promise.allSettled([
      ...[1, 2, 3].map((n) => part(key, aborted, n, randomBytes(MiB))),
      s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: aborted })),
    ]);
    assert.equal(outcomes.at(-1)!.status, 'fulfilled');
    for (const o of outcomes) {
      if (o.status === 'rejected') assert.ok(o.reason instanceof S3ServiceException && o.reason.name === 'NoSuchUpload', String(o.reason));
    }
    assert.deepEqual(await s3Error(s3.send(new ListPartsCommand({ Bucket, Key: key, UploadId: aborted }))), { code: 'NoSuchUpload', status: 404 });
  });

  test('ListMultipartUploads: key order, paging by key and upload id markers, prefix, delimiter', async () => {
    const keys = ['list/a', 'list/b', 'list/b', 'list/dir/x', 'list/dir/y'];
    const ids: string[] = [];
    for (const k of keys) ids.push(await create(k));
    const all: [string, string][] = [];
    let page = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'list/', MaxUploads: 2 }));
    for (let n = 0; n < 10; n++) {
      all.push(...(page.Uploads ?? []).map((u): [string, string] => [u.Key!, u.UploadId!]));
      if (!page.IsTruncated) break;
      assert.equal(page.Uploads?.length, 2);
      page = await s3.send(
        new ListMultipartUploadsCommand({ Bucket, Prefix: 'list/', MaxUploads: 2, KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker }),
      );
    }
    assert.deepEqual(all, keys.map((k, i) => [k, ids[i]!]));
    const grouped = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'list/', Delimiter: '/' }));
    assert.deepEqual(grouped.Uploads?.map((u) => u.Key), ['list/a', 'list/b', 'list/b']);
    assert.deepEqual(grouped.CommonPrefixes?.map((p) => p.Prefix), ['list/dir/']);
    const afterKey = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'list/', KeyMarker: 'list/b' }));
    assert.deepEqual(afterKey.Uploads?.map((u) => u.Key), ['list/dir/x', 'list/dir/y']);
    for (const [i, k] of keys.entries()) await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: k, UploadId: ids[i]! }));
    assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'list/' }))).Uploads ?? [], []);
  });

  test('UploadPartCopy: a byte range of an object, and a whole object; the result holds exactly those bytes', async () => {
    const source = randomBytes(6 * MiB);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'copy-source.bin', Body: source }));
    const key = 'copied.bin';
    const UploadId = await create(key);
    const ranged = await s3.send(
      new UploadPartCopyCommand({ Bucket, Key: key, UploadId, PartNumber: 1, CopySource: `${Bucket}/copy-source.bin`, CopySourceRange: `bytes=${MiB}-${6 * MiB - 1}` }),
    );
    assert.equal(ranged.CopyPartResult?.ETag, `"${md5(source.subarray(MiB))}"`);
    const whole = await s3.send(new UploadPartCopyCommand({ Bucket, Key: key, UploadId, PartNumber: 2, CopySource: `${Bucket}/copy-source.bin` }));
    assert.equal(whole.CopyPartResult?.ETag, `"${md5(source)}"`);
    assert.deepEqual(
      await s3Error(s3.send(new UploadPartCopyCommand({ Bucket, Key: key, UploadId, PartNumber: 3, CopySource: `${Bucket}/copy-source.bin`, CopySourceRange: `bytes=0-${6 * MiB}` }))),
      { code: 'InvalidArgument', status: 400 },
    );
    const done = await complete(key, UploadId, [
      { PartNumber: 1, ETag: ranged.CopyPartResult!.ETag! },
      { PartNumber: 2, ETag: whole.CopyPartResult!.ETag! },
    ]);
    assert.equal(done.ETag, multipartETag([source.subarray(MiB), source]));
    assert.ok(Buffer.concat([source.subarray(MiB), source]).equals(await get(key)));
  });

  test('the system bucket is invisible: not in ListBuckets (S3 or native), not reachable by name', async () => {
    const UploadId = await create('hidden.bin');
    await part('hidden.bin', UploadId, 1, Buffer.from('x'));
    const listed = await s3.send(new ListBucketsCommand({}));
    assert.ok(listed.Buckets?.some((b) => b.Name === Bucket));
    assert.ok(!listed.Buckets?.some((b) => b.Name?.startsWith('.')), JSON.stringify(listed.Buckets));
    const nativeList = (await (await d.api('/api/buckets')).json()) as { items: { name: string }[] };
    assert.ok(nativeList.items.some((b) => b.name === Bucket));
    assert.ok(!nativeList.items.some((b) => b.name.startsWith('.')), JSON.stringify(nativeList.items));
    assert.equal((await d.api('/api/buckets/.s3-multipart/objects')).status, 400);
    assert.equal((await s3Error(s3.send(new ListObjectsV2Command({ Bucket: '.s3-multipart' })))).status, 400);
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'hidden.bin', UploadId }));
  });

  test('scopes: a read-only key lists uploads and parts but may not start, upload to, complete or abort one', async () => {
    const reader = clientWith(await keyOf([`bucket:${Bucket}:read`]));
    try {
      const UploadId = await create('scoped.bin');
      const e1 = await part('scoped.bin', UploadId, 1, Buffer.from('x'));
      const denied = { code: 'AccessDenied', status: 403 };
      assert.deepEqual(await s3Error(reader.send(new CreateMultipartUploadCommand({ Bucket, Key: 'scoped.bin' }))), denied);
      assert.deepEqual(await s3Error(reader.send(new UploadPartCommand({ Bucket, Key: 'scoped.bin', UploadId, PartNumber: 2, Body: 'y' }))), denied);
      assert.deepEqual(
        await s3Error(reader.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'scoped.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }] } }))),
        denied,
      );
      assert.deepEqual(await s3Error(reader.send(new AbortMultipartUploadCommand({ Bucket, Key: 'scoped.bin', UploadId }))), denied);
      assert.equal((await reader.send(new ListPartsCommand({ Bucket, Key: 'scoped.bin', UploadId }))).Parts?.length, 1);
      assert.ok((await reader.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads?.some((u) => u.UploadId === UploadId));
      await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'scoped.bin', UploadId }));
    } finally {
      reader.destroy();
    }
  });

  test('a deleted bucket takes its uploads along: made again under its name, it lists none and the old id is NoSuchUpload', async () => {
    const gone = 'mp-gone';
    await s3.send(new CreateBucketCommand({ Bucket: gone }));
    const UploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket: gone, Key: 'k' }))).UploadId!;
    const e1 = (await s3.send(new UploadPartCommand({ Bucket: gone, Key: 'k', UploadId, PartNumber: 1, Body: randomBytes(1000) }))).ETag!;
    // Open uploads are not among the objects users see (their records and parts are core's own objects).
    const stats = (await (await d.api('/api/admin/stats')).json()) as { objects: number };
    const buckets = (await (await d.api('/api/buckets')).json()) as { items: { usage: { objects: number } }[] };
    assert.equal(stats.objects, buckets.items.reduce((sum, b) => sum + b.usage.objects, 0));

    assert.equal((await d.api(`/api/buckets/${gone}`, { method: 'DELETE' })).status, 204);
    await s3.send(new CreateBucketCommand({ Bucket: gone }));
    assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket: gone }))).Uploads ?? [], []);
    const noSuchUpload = { code: 'NoSuchUpload', status: 404 };
    assert.deepEqual(await s3Error(s3.send(new ListPartsCommand({ Bucket: gone, Key: 'k', UploadId }))), noSuchUpload);
    assert.deepEqual(await s3Error(s3.send(new UploadPartCommand({ Bucket: gone, Key: 'k', UploadId, PartNumber: 2, Body: 'x' }))), noSuchUpload);
    assert.deepEqual(
      await s3Error(s3.send(new CompleteMultipartUploadCommand({ Bucket: gone, Key: 'k', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }] } }))),
      noSuchUpload,
    );
    assert.deepEqual(await s3Error(s3.send(new AbortMultipartUploadCommand({ Bucket: gone, Key: 'k', UploadId }))), noSuchUpload);
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: gone, Key: 'k' }))), { code: 'NoSuchKey', status: 404 });
    // The new bucket's own uploads work as usual.
    const fresh = (await s3.send(new CreateMultipartUploadCommand({ Bucket: gone, Key: 'k' }))).UploadId!;
    assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket: gone }))).Uploads?.map((u) => u.UploadId), [fresh]);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: gone, Key: 'k', UploadId: fresh }));
  });

  test('GC while an upload is open keeps its parts (the complete gives the right bytes); after an abort it frees them', async () => {
    const gc = async () => {
      const res = await d.api('/api/admin/gc', { method: 'POST' });
      assert.equal(res.status, 200);
      return (await res.json()) as { blobs_removed: number; bytes_freed: number };
    };
    // What a pass frees: the parts' bytes, besides an upload record's few bytes of state (a marker of its
    // own blob, shared by every upload in that state).
    const freesParts = (freed: { blobs_removed: number; bytes_freed: number }, parts: readonly Buffer[]) => {
      const size = parts.reduce((sum, p) => sum + p.length, 0);
      assert.ok(freed.blobs_removed >= parts.length && freed.bytes_freed >= size && freed.bytes_freed < size + 100, JSON.stringify(freed));
    };
    await gc(); // whatever earlier tests left
    const key = 'gc.bin';
    const UploadId = await create(key);
    const p = [randomBytes(5 * MiB), randomBytes(300)];
    const etags = [await part(key, UploadId, 1, p[0]!), await part(key, UploadId, 2, p[1]!)];
    assert.equal((await gc()).blobs_removed, 0);
    await complete(key, UploadId, etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })));
    assert.ok(Buffer.concat(p).equals(await get(key)));
    // The parts' blobs are garbage now that the object holds the bytes.
    freesParts(await gc(), p);

    const dropped = await create('gc-aborted.bin');
    const kept = randomBytes(1000);
    await part('gc-aborted.bin', dropped, 1, kept);
    assert.equal((await gc()).blobs_removed, 0);
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'gc-aborted.bin', UploadId: dropped }));
    freesParts(await gc(), [kept]);

    // Nothing any upload of this file made is left (parts, records): every object is in a user's bucket.
    const stats = (await (await d.api('/api/admin/stats')).json()) as { objects: number };
    const buckets = (await (await d.api('/api/buckets')).json()) as { items: { usage: { objects: number } }[] };
    assert.equal(stats.objects, buckets.items.reduce((sum, b) => sum + b.usage.objects, 0));
  });
});

describe('a long complete: 200 at once, spaces while it runs, then the result or an Error document', () => {
  const serve = (work: () => Promise<{ body: { ETag: string } }>) => {
    const app = new Hono();
    app.post('/', (c) =>
      answerWhenDone(c as never, work(), {
        root: 'CompleteMultipartUploadResult',
        resource: '/b/k',
        requestId: 'req-1',
        keepAliveMs: 20,
        translate: (err) => (err instanceof S3Error ? err : new S3Error('InternalError', 500, 'failed')),
      }),
    );
    return app;
  };
  /**
   * The answer of work that settles only once the answer has started and sent a space: no timing decides
   * which path is taken (a loaded machine had let the work finish before the first space).
   */
  const answerOf = async (settle: (finish: { resolve: (v: { body: { ETag: string } }) => void; reject: (err: Error) => void }) => void) => {
    let finish!: { resolve: (v: { body: { ETag: string } }) => void; reject: (err: Error) => void };
    const work = new Promise<{ body: { ETag: string } }>((resolve, reject) => (finish = { resolve, reject }));
    const res = await serve(() => work).request('/', { method: 'POST' });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // The declaration, then the first keep-alive space after it.
    while (!text.includes('\n ')) {
      const { value, done } = await reader.read();
      assert.equal(done, false, 'the answer ended before the work did');
      text += decoder.decode(value, { stream: true });
    }
    settle(finish);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    return { status: res.status, text };
  };

  test('success after the first interval: the result after the spaces', async () => {
    const { status, text } = await answerOf((f) => f.resolve({ body: { ETag: '"abc-2"' } }));
    assert.equal(status, 200);
    assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"\?>\n +<CompleteMultipartUploadResult xmlns="[^"]+"><ETag>&quot;abc-2&quot;<\/ETag><\/CompleteMultipartUploadResult>$/);
  });

  test('failure after the answer started: an Error document in the 200 body', async () => {
    const { status, text } = await answerOf((f) => f.reject(new S3Error('QuotaExceeded', 403, 'over quota')));
    assert.equal(status, 200);
    assert.match(text, /^<\?xml[^>]*>\n +<Error><Code>QuotaExceeded<\/Code><Message>over quota<\/Message><Resource>\/b\/k<\/Resource><RequestId>req-1<\/RequestId><\/Error>$/);
  });
});

describe('concurrent completes in core: only the one that won the state change holds the upload', () => {
  const principal = { id: 'admin', scopes: ['admin'] as const };
  const who = () => ({ ...principal, scopes: [...principal.scopes] });
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      if (err instanceof BlobdError) return err.code;
      throw err;
    }
    return 'succeeded';
  };

  test('two completes at once; while the winner writes, an abort is refused (upload_locked) and a third complete finds no upload; one revision, right bytes', async () => {
    const dir = await makeTempDir();
    const layout = new DataLayout(path.join(dir, 'data'));
    const bytes = await FsByteStore.open(layout);
    const meta = SqliteMetadataStore.open(layout.databaseFile);
    try {
      const blobs = new BlobService(meta, bytes, new DiskBudget(meta, bytes, 0), { maxBlobSize: 1 << 30, temporaryTtlMs: 60_000 });
      const catalog = new CatalogService(meta, blobs);
      const mp = new MultipartUploads(meta, catalog, blobs, { ttlMs: 3_600_000, minPartSize: 1 });
      await catalog.putBucket('b', { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false });
      const { uploadId } = await mp.create('b', 'k', who(), {});
      const p = [randomBytes(3000), randomBytes(1000)];
      const listed = [];
      for (const [i, body] of p.entries()) {
        const stored = await mp.uploadPart('b', 'k', uploadId, i + 1, () => Readable.from([body]), { principal: who(), declaredSize: body.length, md5: () => md5(body) });
        listed.push({ partNumber: i + 1, etag: stored.etag });
      }
      // The winner is held where it records the object: the target content's digest lock, taken here first.
      const target = `sha256:${createHash('sha256').update(Buffer.concat(p)).digest('hex')}`;
      let release!: () => void;
      const held = blobs.lockDigest(target, () => new Promise<void>((resolve) => (release = resolve)));
      const completes = [mp.complete('b', 'k', uploadId, listed, who()), mp.complete('b', 'k', uploadId, listed, who())];
      // The loser answers while the winner waits for the lock (the winner's write won before the loser lost).
      const first = await Promise.race(completes.map((c, i) => c.then(() => i, () => i)));
      assert.equal(await code(completes[first]!), 'upload_not_found');
      const winner = completes[1 - first]!;
      assert.equal(await code(mp.abort('b', 'k', uploadId, who())), 'upload_locked');
      assert.equal(await code(mp.complete('b', 'k', uploadId, listed, who())), 'upload_not_found');
      assert.equal(await code(mp.uploadPart('b', 'k', uploadId, 3, () => Readable.from([Buffer.from('x')]), { principal: who(), md5: () => md5(Buffer.from('x')) })), 'upload_not_found');
      release();
      await held;
      const { object } = await winner;
      assert.equal(object.latestRevision, 1);
      assert.equal((await meta.getObject('b', 'k'))?.latestRevision, 1);
      const chunks: Buffer[] = [];
      await (await blobs.openContent(object.digest as Digest)).pipeTo(async (chunk) => void chunks.push(chunk));
      assert.ok(Buffer.concat(chunks).equals(Buffer.concat(p)));
      // Completed: gone for an abort too.
      assert.equal(await code(mp.abort('b', 'k', uploadId, who())), 'upload_not_found');
    } finally {
      await meta.close();
      await removeDir(dir);
    }
  });
});
