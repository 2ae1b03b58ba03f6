// The S3 front as @aws-sdk/client-s3 uses it, against the real daemon: buckets, PutObject (the SDK's default
// CRC32 trailer echoed), GetObject with ranges, conditions and response-* overrides, HeadObject, deletes,
// CopyObject without a byte copied, ListObjectsV2/V1 paging, S3's errors in XML, presigned URLs, and the
// same objects seen through the native API (same digest, deduplicated with native uploads).
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { s3Error, s3KeyOf, signedFetch as signed, signedRepeatedHeaders } from './helpers/s3-signing.ts';

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const DOMAIN = 's3.localhost';

/** A plain HTTP request to `base`, with a Host header of our choosing (fetch does not let one set it). */
function rawGet(base: string, pathname: string, host: string): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname: url.hostname, port: url.port, path: pathname, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject).end();
  });
}

describe('S3 API with @aws-sdk/client-s3', () => {
  let d: Daemon;
  let s3: S3Client;
  let keyOf: (scopes: string[]) => Promise<{ accessKeyId: string; secretAccessKey: string }>;
  let admin: { accessKeyId: string; secretAccessKey: string };
  let clientWith: (creds: { accessKeyId: string; secretAccessKey: string }) => S3Client;
  /** A request signed as the admin key, with an unsigned payload: what no SDK command would send. */
  const signedFetch = (method: string, pathAndQuery: string, body?: string, headers?: Record<string, string>) => signed(d.s3Url!, admin, method, pathAndQuery, body, headers);

  const stats = async () => (await (await d.api('/api/admin/stats')).json()) as { blobs: number };

  before(async () => {
    d = await startDaemon({ args: ['--s3-api-domain', DOMAIN] });
    assert.ok(d.s3Url, `the daemon names its S3 API:\n${d.output()}`);
    keyOf = (scopes) => s3KeyOf(d, scopes);
    clientWith = (credentials) => new S3Client({ endpoint: d.s3Url, region: 'us-east-1', forcePathStyle: true, credentials, maxAttempts: 1 });
    admin = await keyOf(['admin']);
    s3 = clientWith(admin);
    await s3.send(new CreateBucketCommand({ Bucket: 'photos' }));
  });
  after(async () => {
    s3?.destroy();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('buckets: create (again: 200, settings kept), head, list, location, versioning probe, delete (not empty: 409)', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'scratch' }));
    await s3.send(new CreateBucketCommand({ Bucket: 'scratch' })); // us-east-1: 200 for a bucket one owns
    await s3.send(new HeadBucketCommand({ Bucket: 'scratch' }));
    const listed = await s3.send(new ListBucketsCommand({}));
    assert.deepEqual(listed.Buckets?.map((b) => b.Name).sort(), ['photos', 'scratch']);
    assert.ok(listed.Buckets!.every((b) => b.CreationDate instanceof Date));
    const location = await s3.send(new GetBucketLocationCommand({ Bucket: 'scratch' }));
    assert.equal(location.LocationConstraint ?? '', '');
    const versioning = await s3.send(new GetBucketVersioningCommand({ Bucket: 'scratch' }));
    assert.equal(versioning.Status, undefined);
    await s3.send(new PutObjectCommand({ Bucket: 'scratch', Key: 'x', Body: 'x' }));
    assert.deepEqual(await s3Error(s3.send(new DeleteBucketCommand({ Bucket: 'scratch' }))), { code: 'BucketNotEmpty', status: 409 });
    // Objects have no S3 tags: an empty TagSet (aws s3 cp of a large object between S3 locations asks).
    assert.deepEqual((await s3.send(new GetObjectTaggingCommand({ Bucket: 'scratch', Key: 'x' }))).TagSet, []);
    await s3.send(new DeleteObjectCommand({ Bucket: 'scratch', Key: 'x' }));
    await s3.send(new DeleteBucketCommand({ Bucket: 'scratch' }));
    assert.deepEqual(await s3Error(s3.send(new HeadBucketCommand({ Bucket: 'scratch' }))), { code: 'NotFound', status: 404 });
    assert.deepEqual(await s3Error(s3.send(new ListObjectsV2Command({ Bucket: 'scratch' }))), { code: 'NoSuchBucket', status: 404 });
  });

  test('PutObject with the SDK default checksum (CRC32): ETag is the MD5, checksum echoed; GetObject returns bytes and metadata', async () => {
    const data = randomData(300_000);
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: 'photos',
        Key: 'dir//a b/ünï.bin',
        Body: data,
        ContentType: 'image/x-test',
        ContentDisposition: 'attachment; filename="holiday.bin"',
        CacheControl: 'max-age=60',
        Metadata: { Camera: 'x100', place: `=?UTF-8?B?${Buffer.from('Zürich').toString('base64')}?=` },
      }),
    );
    assert.equal(put.ETag, `"${md5(data)}"`);
    assert.ok(put.ChecksumCRC32, 'x-amz-checksum-crc32 echoed');
    assert.equal(put.VersionId, '1');
    const got = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'dir//a b/ünï.bin' }));
    assert.equal(Buffer.from(await got.Body!.transformToByteArray()).equals(data), true);
    assert.equal(got.ETag, `"${md5(data)}"`);
    assert.equal(got.ContentLength, data.length);
    assert.equal(got.ContentType, 'image/x-test');
    assert.equal(got.CacheControl, 'max-age=60');
    assert.match(got.ContentDisposition!, /filename="holiday.bin"/);
    // Non-ASCII metadata comes back as S3 sends it: RFC 2047, UTF-8 in base64.
    assert.deepEqual(got.Metadata, { camera: 'x100', place: `=?UTF-8?B?${Buffer.from('Zürich').toString('base64')}?=` });
    assert.ok(got.LastModified instanceof Date);
    assert.equal(got.VersionId, '1');
    assert.ok(got.$metadata.requestId, 'x-amz-request-id on a streamed answer too');

    // A stream body goes aws-chunked with a CRC32 trailer: its framing is not the object's Content-Encoding.
    const streamed = await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'streamed', Body: Readable.from([data]), ContentLength: data.length }));
    assert.equal(streamed.ETag, `"${md5(data)}"`);
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'streamed' }))).ContentEncoding, undefined);
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'streamed', Body: Readable.from([data]), ContentLength: data.length, ContentEncoding: 'gzip' }));
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'streamed' }))).ContentEncoding, 'gzip');

    // A second write is revision 2; versionId=1 still reads the first content.
    const second = Buffer.from('second');
    const put2 = await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'dir//a b/ünï.bin', Body: second }));
    assert.equal(put2.VersionId, '2');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'dir//a b/ünï.bin' }));
    assert.equal(head.ContentLength, second.length);
    assert.deepEqual(head.Metadata, {}, 'a PutObject replaces the metadata');
    assert.equal(head.ContentType, 'application/octet-stream', "the SDK's default, not the first write's type");
    const v1 = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'dir//a b/ünï.bin', VersionId: '1' }));
    assert.equal(Buffer.from(await v1.Body!.transformToByteArray()).equals(data), true);
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'dir//a b/ünï.bin', VersionId: '9' }))), { code: 'NoSuchVersion', status: 404 });
  });

  test('GetObject: Range (206, 416 InvalidRange), If-Match / If-None-Match / If-(Un)Modified-Since, response-* overrides', async () => {
    const data = Buffer.from('0123456789abcdef');
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'ranges', Body: data }));
    const part = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', Range: 'bytes=2-5' }));
    assert.equal(part.$metadata.httpStatusCode, 206);
    assert.equal(part.ContentRange, 'bytes 2-5/16');
    assert.equal(await part.Body!.transformToString(), '2345');
    const suffix = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', Range: 'bytes=-3' }));
    assert.equal(await suffix.Body!.transformToString(), 'def');
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', Range: 'bytes=16-' }))), { code: 'InvalidRange', status: 416 });

    const ok = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfMatch: ETag }));
    await ok.Body!.transformToString();
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfMatch: '"nope"' }))), { code: 'PreconditionFailed', status: 412 });
    assert.equal((await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfNoneMatch: ETag })))).status, 304);
    const future = new Date(Date.now() + 3_600_000);
    const past = new Date(Date.now() - 3_600_000);
    assert.equal((await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfModifiedSince: future })))).status, 304);
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfUnmodifiedSince: past }))), { code: 'PreconditionFailed', status: 412 });
    const modified = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'ranges', IfModifiedSince: past }));
    assert.equal(await modified.Body!.transformToString(), data.toString());

    const over = await s3.send(
      new GetObjectCommand({
        Bucket: 'photos',
        Key: 'ranges',
        ResponseContentType: 'text/x-over',
        ResponseContentDisposition: 'inline; filename="o.txt"',
        ResponseCacheControl: 'no-store',
        ResponseContentLanguage: 'de',
        ResponseContentEncoding: 'identity',
        ResponseExpires: new Date('2030-01-01T00:00:00Z'),
      }),
    );
    await over.Body!.transformToString();
    assert.equal(over.ContentType, 'text/x-over');
    assert.equal(over.ContentDisposition, 'inline; filename="o.txt"');
    assert.equal(over.CacheControl, 'no-store');
    assert.equal(over.ContentLanguage, 'de');
    assert.equal(over.ContentEncoding, 'identity');
    assert.equal(over.ExpiresString ?? over.Expires?.toUTCString(), 'Tue, 01 Jan 2030 00:00:00 GMT');

    // Conditional writes: If-None-Match: * on an existing key, If-Match with a stale ETag.
    assert.deepEqual(await s3Error(s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'ranges', Body: 'x', IfNoneMatch: '*' }))), { code: 'PreconditionFailed', status: 412 });
    assert.deepEqual(await s3Error(s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'ranges', Body: 'x', IfMatch: '"0000"' }))), { code: 'PreconditionFailed', status: 412 });
    const matched = await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'ranges', Body: 'y', IfMatch: ETag }));
    assert.equal(matched.ETag, `"${md5('y')}"`);
  });

  test('a body that fails its checks is refused with the check\'s own code (BadDigest, not a retryable RequestTimeout) and stores nothing', async () => {
    const before = await stats();
    const data = randomData(50_000);
    const wrongMd5 = createHash('md5').update('something else').digest('base64');
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'bad-md5.bin', Body: data, ContentMD5: wrongMd5 })),
      (err: Error & { $metadata?: { httpStatusCode?: number } }) => err.name === 'BadDigest' && err.$metadata?.httpStatusCode === 400,
    );
    const wrongCrc = await signedFetch('PUT', '/photos/bad-crc.bin', 'hello', { 'x-amz-checksum-crc32': 'AAAAAA==' });
    assert.equal(wrongCrc.status, 400);
    assert.match(await wrongCrc.text(), /<Code>BadDigest<\/Code>/);
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'bad-md5.bin' })), { name: 'NotFound' });
    assert.equal((await stats()).blobs, before.blobs);
  });

  test('a signed payload hash is checked by the store against the content: XAmzContentSHA256Mismatch, nothing stored', async () => {
    const sha = (b: string) => createHash('sha256').update(b).digest('hex');
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'photos', Key: 'signed-part.bin' }));
    const before = await stats();
    // Small and large (the large one's other checks run on the worker thread).
    for (const body of ['hello signed payload', 'z'.repeat(2 * 1024 * 1024)]) {
      for (const target of ['/photos/signed.bin', `/photos/signed-part.bin?partNumber=1&uploadId=${UploadId}`]) {
        const wrong = await signedFetch('PUT', target, body, { 'x-amz-content-sha256': sha(`${body}!`) });
        assert.equal(wrong.status, 400, target);
        assert.match(await wrong.text(), /<Code>XAmzContentSHA256Mismatch<\/Code>/);
      }
    }
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'signed.bin' })), { name: 'NotFound' });
    const parts = await signedFetch('GET', `/photos/signed-part.bin?uploadId=${UploadId}`);
    assert.doesNotMatch(await parts.text(), /<Part>/, 'no part was stored');
    assert.equal((await stats()).blobs, before.blobs);
    const right = await signedFetch('PUT', '/photos/signed.bin', 'hello signed payload', { 'x-amz-content-sha256': sha('hello signed payload') });
    assert.equal(right.status, 200);
    assert.equal(right.headers.get('etag'), `"${createHash('md5').update('hello signed payload').digest('hex')}"`);
  });

  test('a signed header sent twice verifies as SigV4 joins it (values with ","); the object keeps both values', async () => {
    const sent = await signedRepeatedHeaders(d.s3Url!, admin, 'PUT', '/photos/repeated.txt', 'twice', { 'x-amz-meta-colour': ['blue', 'green'] });
    assert.equal(sent.status, 200, sent.body);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'repeated.txt' }));
    assert.match(head.Metadata?.colour ?? '', /^blue, ?green$/);
    // A header node keeps only the first of would be used otherwise than it was signed: refused.
    const typed = await signedRepeatedHeaders(d.s3Url!, admin, 'PUT', '/photos/typed.txt', 'twice', { 'content-type': ['text/plain', 'text/html'] });
    assert.equal(typed.status, 400, typed.body);
    assert.match(typed.body, /<Code>InvalidArgument<\/Code>.*content-type header was sent more than once/s);
  });

  test('HTTP the parser refuses (headers too large, bad framing) is answered on the S3 port in S3\'s XML, on the native port in JSON', async () => {
    const raw = (url: string, request: string) =>
      new Promise<string>((resolve, reject) => {
        const u = new URL(url);
        const socket = connect(Number(u.port), u.hostname, () => socket.end(request));
        let out = '';
        socket.setEncoding('latin1').on('data', (c: string) => (out += c)).on('end', () => resolve(out)).on('error', reject);
      });
    const huge = `GET /photos/x HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`;
    const s3Answer = await raw(d.s3Url!, huge);
    assert.match(s3Answer, /^HTTP\/1\.1 431 /);
    assert.match(s3Answer, /Content-Type: application\/xml/);
    assert.match(s3Answer, /<Error><Code>RequestHeaderSectionTooLarge<\/Code>/);
    assert.match(await raw(d.s3Url!, 'GET /photos/x HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n'), /^HTTP\/1\.1 400 [^]*<Code>BadRequest<\/Code>/);
    const nativeAnswer = await raw(d.url, huge);
    assert.match(nativeAnswer, /^HTTP\/1\.1 431 [^]*"code":"headers_too_large"/);
  });

  test('encryption with a given key and object lock are refused (501), never stored as a plain object', async () => {
    const asked: Record<string, string>[] = [
      { 'x-amz-server-side-encryption-customer-algorithm': 'AES256' },
      { 'x-amz-server-side-encryption': 'aws:kms' },
      { 'x-amz-object-lock-mode': 'COMPLIANCE', 'x-amz-object-lock-retain-until-date': '2030-01-01T00:00:00Z' },
    ];
    for (const headers of asked) {
      const res = await signedFetch('PUT', '/photos/promised.bin', 'secret', headers);
      assert.equal(res.status, 501);
      assert.match(await res.text(), /<Code>NotImplemented<\/Code>/);
    }
    // The same asked in the query string, where the SDK's presigner hoists them.
    const hoisted = await signedFetch('PUT', '/photos/promised.bin?x-amz-object-lock-mode=GOVERNANCE', 'secret');
    assert.equal(hoisted.status, 501);
    assert.deepEqual(await s3Error(s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'promised.bin' }))), { code: 'NotFound', status: 404 });
  });

  test('DeleteObject (204 also when missing), DeleteObjects (Deleted per key, Quiet), NoSuchKey', async () => {
    for (const k of ['del/1', 'del/2', 'del/3']) await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: k, Body: k }));
    const gone = await s3.send(new DeleteObjectCommand({ Bucket: 'photos', Key: 'del/never' }));
    assert.equal(gone.$metadata.httpStatusCode, 204);
    const res = await s3.send(new DeleteObjectsCommand({ Bucket: 'photos', Delete: { Objects: [{ Key: 'del/1' }, { Key: 'del/2' }, { Key: 'del/none' }] } }));
    assert.deepEqual(res.Deleted?.map((x) => x.Key).sort(), ['del/1', 'del/2', 'del/none']);
    assert.equal(res.Errors, undefined);
    const quiet = await s3.send(new DeleteObjectsCommand({ Bucket: 'photos', Delete: { Objects: [{ Key: 'del/3' }], Quiet: true } }));
    assert.equal(quiet.Deleted, undefined);
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'del/3' }))), { code: 'NoSuchKey', status: 404 });
    assert.deepEqual(await s3Error(s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'del/3' }))), { code: 'NotFound', status: 404 });
  });

  test('CopyObject shares the content (no blob added), keeps the ETag, copies (COPY) or replaces (REPLACE) metadata', async () => {
    const data = randomData(50_000);
    const put = await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'copy/src', Body: data, ContentType: 'image/png', Metadata: { a: '1' } }));
    const before = await stats();
    const copied = await s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/dst', CopySource: 'photos/copy/src' }));
    assert.equal(copied.CopyObjectResult?.ETag, put.ETag);
    assert.equal(copied.CopySourceVersionId, '1');
    assert.equal((await stats()).blobs, before.blobs, 'no bytes copied');
    // The source encoded as one component (encodeURIComponent of "bucket/key"), as much SDK code sends it.
    const encoded = await s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/enc', CopySource: encodeURIComponent('photos/copy/src') }));
    assert.equal(encoded.CopyObjectResult?.ETag, put.ETag);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'copy/dst' }));
    assert.equal(head.ContentType, 'image/png');
    assert.deepEqual(head.Metadata, { a: '1' });
    assert.equal(head.ETag, put.ETag);

    // From an older version: that version's content.
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'copy/src', Body: 'newer' })); // version 2
    const old = await s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/old', CopySource: 'photos/copy/src?versionId=1' }));
    assert.equal(old.CopySourceVersionId, '1');
    assert.equal(old.CopyObjectResult?.ETag, put.ETag);
    const body = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'copy/old' }));
    assert.equal(Buffer.from(await body.Body!.transformToByteArray()).equals(data), true);
    assert.equal((await stats()).blobs, before.blobs + 1, 'only "newer" was stored');

    await s3.send(
      new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/dst', CopySource: 'photos/copy/dst', MetadataDirective: 'REPLACE', ContentType: 'text/plain', Metadata: { b: '2' } }),
    );
    const replaced = await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'copy/dst' }));
    assert.equal(replaced.ContentType, 'text/plain');
    assert.deepEqual(replaced.Metadata, { b: '2' });
    assert.deepEqual(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/dst', CopySource: 'photos/copy/dst' }))), { code: 'InvalidRequest', status: 400 });
    assert.deepEqual(
      await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/x', CopySource: 'photos/copy/src', CopySourceIfMatch: '"nope"' }))),
      { code: 'PreconditionFailed', status: 412 },
    );
    assert.deepEqual(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'copy/x', CopySource: 'photos/copy/none' }))), { code: 'NoSuchKey', status: 404 });
  });

  test('CopyObject honours If-None-Match: * and If-Match on its destination; GetObject partNumber=1 is the object, 2 is 416', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'guard/src', Body: 'new content' }));
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'guard/dst', Body: 'precious' }));
    const copy = (extra: { IfNoneMatch?: string; IfMatch?: string }) =>
      s3.send(new CopyObjectCommand({ Bucket: 'photos', Key: 'guard/dst', CopySource: 'photos/guard/src', ...extra }));
    assert.deepEqual(await s3Error(copy({ IfNoneMatch: '*' })), { code: 'PreconditionFailed', status: 412 });
    assert.deepEqual(await s3Error(copy({ IfMatch: '"00000000000000000000000000000000"' })), { code: 'PreconditionFailed', status: 412 });
    const read = async (Key: string, extra: { PartNumber?: number } = {}) =>
      Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'photos', Key, ...extra }))).Body!.transformToByteArray()).toString();
    assert.equal(await read('guard/dst'), 'precious', 'nothing overwritten');
    await copy({ IfMatch: `"${createHash('md5').update('precious').digest('hex')}"` });
    assert.equal(await read('guard/dst'), 'new content');
    assert.equal(await read('guard/dst', { PartNumber: 1 }), 'new content', 'part 1: the whole object');
    assert.deepEqual(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'guard/dst', PartNumber: 2 }))), { code: 'InvalidPartNumber', status: 416 });
  });

  test('ListObjects V1: NextMarker is the page\'s last entry in UTF-8 order, so no entry comes twice', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'order' }));
    // U+FF01 (fullwidth !) sorts before an emoji in UTF-8, after it in UTF-16.
    for (const Key of ['\uff01/x', '\u{1F600}', '\u{1F600}2']) await s3.send(new PutObjectCommand({ Bucket: 'order', Key, Body: 'x' }));
    const seen: string[] = [];
    let Marker: string | undefined;
    for (let page = 0; page < 5; page++) {
      const res = await s3.send(new ListObjectsCommand({ Bucket: 'order', Delimiter: '/', MaxKeys: 2, ...(Marker ? { Marker } : {}) }));
      seen.push(...(res.Contents ?? []).map((c) => c.Key!), ...(res.CommonPrefixes ?? []).map((c) => c.Prefix!));
      if (!res.IsTruncated) break;
      Marker = res.NextMarker;
    }
    assert.deepEqual(seen.sort(), ['\uff01/', '\u{1F600}', '\u{1F600}2'].sort());
  });

  test('ListObjectsV2 and V1: pages of max-keys=2 with a delimiter, start-after, encoding-type=url', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'lists' }));
    // In UTF-8 byte order, as S3 lists: 'z' (7a) before 'ü' (c3 bc).
    const keys = ['a/1', 'a/2', 'b', 'c d/z', 'c d/ü', 'e', 'f/g/h', 'naïve file.txt'];
    for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: 'lists', Key: k, Body: k }));

    const all = await s3.send(new ListObjectsV2Command({ Bucket: 'lists' }));
    assert.deepEqual(all.Contents?.map((o) => o.Key), keys);
    assert.equal(all.KeyCount, keys.length);
    assert.equal(all.Contents![0]!.ETag, `"${md5('a/1')}"`);
    assert.equal(all.Contents![0]!.Size, 3);
    assert.equal(all.Contents![0]!.StorageClass, 'STANDARD');
    assert.match(all.Contents![0]!.LastModified!.toISOString(), /Z$/);

    // Delimiter, two entries a page: every entry once, in order, over several pages.
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    for (; pages < 10; pages++) {
      const p = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', Delimiter: '/', MaxKeys: 2, EncodingType: 'url', ContinuationToken: token }));
      assert.ok((p.KeyCount ?? 0) <= 2);
      seen.push(...(p.Contents ?? []).map((o) => decodeURIComponent(o.Key!.replace(/\+/g, ' '))), ...(p.CommonPrefixes ?? []).map((c) => decodeURIComponent(c.Prefix!.replace(/\+/g, ' '))));
      if (!p.IsTruncated) break;
      token = p.NextContinuationToken;
    }
    assert.ok(pages >= 2);
    assert.deepEqual(seen.sort(), ['a/', 'b', 'c d/', 'e', 'f/', 'naïve file.txt']);
    for (const bad of ['not-a-token', 'e30']) {
      assert.deepEqual(await s3Error(s3.send(new ListObjectsV2Command({ Bucket: 'lists', ContinuationToken: bad }))), { code: 'InvalidArgument', status: 400 }, bad);
    }

    const encoded = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', Prefix: 'c d/', EncodingType: 'url' }));
    assert.deepEqual(encoded.Contents?.map((o) => o.Key), ['c+d/z', 'c+d/%C3%BC']);
    assert.equal(encoded.Prefix, 'c+d/');

    const after = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', StartAfter: 'c d/z' }));
    assert.deepEqual(after.Contents?.map((o) => o.Key), ['c d/ü', 'e', 'f/g/h', 'naïve file.txt']);
    assert.equal(after.StartAfter, 'c d/z');
    // A common prefix as start-after continues after the whole prefix.
    const pastGroup = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', StartAfter: 'c d/', Delimiter: '/' }));
    assert.deepEqual(pastGroup.Contents?.map((o) => o.Key), ['e', 'naïve file.txt']);
    assert.deepEqual(pastGroup.CommonPrefixes?.map((c) => c.Prefix), ['f/']);

    // V1: NextMarker only with a delimiter; the last key as marker without one.
    const v1: string[] = [];
    let marker: string | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await s3.send(new ListObjectsCommand({ Bucket: 'lists', Delimiter: '/', MaxKeys: 2, Marker: marker }));
      v1.push(...(p.Contents ?? []).map((o) => o.Key!), ...(p.CommonPrefixes ?? []).map((c) => c.Prefix!));
      if (!p.IsTruncated) break;
      assert.ok(p.NextMarker);
      marker = p.NextMarker;
    }
    assert.deepEqual(v1.sort(), ['a/', 'b', 'c d/', 'e', 'f/', 'naïve file.txt']);
    const flat = await s3.send(new ListObjectsCommand({ Bucket: 'lists', MaxKeys: 3 }));
    assert.equal(flat.IsTruncated, true);
    assert.equal(flat.NextMarker, undefined);
    const rest = await s3.send(new ListObjectsCommand({ Bucket: 'lists', Marker: flat.Contents!.at(-1)!.Key }));
    assert.deepEqual([...flat.Contents!, ...rest.Contents!].map((o) => o.Key), keys);
  });

  test('errors: SignatureDoesNotMatch for a wrong secret, AccessDenied outside a key\'s scope, XML bodies with request ids', async () => {
    const key = await keyOf(['bucket:other:read']);
    const wrong = clientWith({ accessKeyId: key.accessKeyId, secretAccessKey: `${key.secretAccessKey}x` });
    assert.deepEqual(await s3Error(wrong.send(new ListObjectsV2Command({ Bucket: 'photos' }))), { code: 'SignatureDoesNotMatch', status: 403 });
    const scoped = clientWith(key);
    assert.deepEqual(await s3Error(scoped.send(new ListObjectsV2Command({ Bucket: 'photos' }))), { code: 'AccessDenied', status: 403 });
    assert.deepEqual(await s3Error(scoped.send(new PutObjectCommand({ Bucket: 'photos', Key: 'k', Body: 'x' }))), { code: 'AccessDenied', status: 403 });
    assert.deepEqual(await s3Error(scoped.send(new CreateBucketCommand({ Bucket: 'mine' }))), { code: 'AccessDenied', status: 403 });
    assert.deepEqual(await s3Error(scoped.send(new CreateBucketCommand({ Bucket: 'photos' }))), { code: 'AccessDenied', status: 403 }, 'not readable: existence not told');
    // A bucket the key may read "creates" as for its owner (rclone does before uploading); nothing is made.
    const reader = clientWith(await keyOf(['bucket:photos:read']));
    await reader.send(new CreateBucketCommand({ Bucket: 'photos' }));
    assert.deepEqual(await s3Error(reader.send(new CreateBucketCommand({ Bucket: 'nothere' }))), { code: 'AccessDenied', status: 403 });
    reader.destroy();
    wrong.destroy();
    scoped.destroy();

    const raw = await fetch(`${d.s3Url}/photos/none`);
    assert.equal(raw.status, 403, 'anonymous, private bucket');
    assert.equal(raw.headers.get('content-type'), 'application/xml');
    assert.ok(raw.headers.get('x-amz-request-id'));
    assert.ok(raw.headers.get('x-amz-id-2'));
    assert.match(await raw.text(), /<Code>AccessDenied<\/Code>.*<RequestId>/s);
    const missing = await s3Error(s3.send(new GetObjectCommand({ Bucket: 'nobucket', Key: 'k' })));
    assert.deepEqual(missing, { code: 'NoSuchBucket', status: 404 });
  });

  test('presigned GET and PUT', async () => {
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'photos', Key: 'signed.txt' }), { expiresIn: 300 });
    const put = await fetch(putUrl, { method: 'PUT', body: 'signed body' });
    assert.equal(put.status, 200, await put.clone().text());
    assert.equal(put.headers.get('etag'), `"${md5('signed body')}"`);
    const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'photos', Key: 'signed.txt' }), { expiresIn: 300 });
    const got = await fetch(getUrl);
    assert.equal(got.status, 200);
    assert.equal(await got.text(), 'signed body');
    const tampered = await fetch(getUrl.replace('signed.txt', 'other.txt'));
    assert.equal(tampered.status, 403);
  });

  test('cross-front: S3 writes read natively with the same digest and dedup with native uploads; native writes read by S3', async () => {
    const data = randomData(100_000);
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'cross/s3', Body: data }));
    const meta = (await (await d.api('/api/buckets/photos/objects/cross/s3?metadata')).json()) as { digest: string };
    assert.equal(meta.digest, sha256(data));
    const native = await d.api('/api/buckets/photos/objects/cross/s3');
    assert.equal(Buffer.from(await native.arrayBuffer()).equals(data), true);

    const before = await stats();
    const up = await d.api('/api/buckets/photos/objects/cross/native', { method: 'PUT', body: data });
    assert.equal(up.status, 201);
    assert.equal(((await up.json()) as { digest: string }).digest, sha256(data));
    assert.equal((await stats()).blobs, before.blobs, 'deduplicated with the S3 upload');

    const other = Buffer.from('written natively');
    assert.equal((await d.api('/api/buckets/photos/objects/cross/other', { method: 'PUT', body: other, headers: { 'content-type': 'text/plain' } })).status, 201);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'photos', Key: 'cross/other' }));
    assert.equal(await got.Body!.transformToString(), 'written natively');
    assert.equal(got.ContentType, 'text/plain');
    // A content type no header can carry (any text can be written natively) is answered as binary/octet-stream.
    const odd = await d.api('/api/buckets/photos/objects/cross/other', {
      method: 'PATCH',
      body: JSON.stringify({ content_type: 'text/plain\u4e2d' }),
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(odd.status, 200);
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: 'photos', Key: 'cross/other' }))).ContentType, 'binary/octet-stream');
    assert.equal((await d.api('/api/buckets/photos/objects/cross/other')).headers.get('content-type'), 'application/octet-stream');
    // No MD5 was stored for a native write: its ETag is the content's SHA-256.
    assert.equal(got.ETag, `"${sha256(other).replace(/^sha256:/, '')}"`);
  });

  test('raw requests: MalformedXML, NotImplemented, HEAD errors without a body, anonymous reads of public_read buckets, virtual-host style', async () => {
    const notBoolean = '<Delete><Quiet>maybe</Quiet><Object><Key>a</Key></Object></Delete>';
    for (const body of ['<Delete><Object><Key>a</Key></Object>', '<!DOCTYPE x [<!ENTITY e "x">]><Delete><Object><Key>&e;</Key></Object></Delete>', '<Other/>', notBoolean]) {
      const res = await signedFetch('POST', '/photos?delete', body);
      assert.equal(res.status, 400);
      assert.match(await res.text(), /<Code>MalformedXML<\/Code>/);
    }
    const tagging = await signedFetch('PUT', '/photos?tagging', '<Tagging/>');
    assert.equal(tagging.status, 501);
    assert.match(await tagging.text(), /<Code>NotImplemented<\/Code>/);
    const torrent = await signedFetch('GET', '/photos/k?torrent');
    assert.equal(torrent.status, 501);
    const head = await signedFetch('HEAD', '/photos/none');
    assert.equal(head.status, 404);
    assert.equal(await head.text(), '');
    assert.ok(head.headers.get('x-amz-request-id'));
    const badVersion = await signedFetch('GET', '/photos/none?versionId=abc');
    assert.equal(badVersion.status, 400);
    assert.match(await badVersion.text(), /<Code>InvalidArgument<\/Code>/);

    // public_read (set natively): anonymous GetObject/HeadObject only, no x-amz-meta, no overrides.
    assert.equal((await d.api('/api/buckets/pub', { method: 'PUT', body: JSON.stringify({ public_read: true }), headers: { 'content-type': 'application/json' } })).status, 201);
    await s3.send(new PutObjectCommand({ Bucket: 'pub', Key: 'hello.txt', Body: 'hello', Metadata: { secret: 's' } }));
    const anon = await fetch(`${d.s3Url}/pub/hello.txt`);
    assert.equal(anon.status, 200);
    assert.equal(await anon.text(), 'hello');
    assert.equal(anon.headers.get('x-amz-meta-secret'), null);
    assert.equal((await fetch(`${d.s3Url}/pub/hello.txt`, { method: 'HEAD' })).status, 200);
    assert.equal((await fetch(`${d.s3Url}/pub/hello.txt?response-content-type=text/html`)).status, 400);
    assert.equal((await fetch(`${d.s3Url}/pub?list-type=2`)).status, 403);
    assert.equal((await fetch(`${d.s3Url}/pub/new.txt`, { method: 'PUT', body: 'x' })).status, 403);
    for (const sub of ['acl', 'tagging']) {
      const other = await fetch(`${d.s3Url}/pub/hello.txt?${sub}`);
      assert.equal(other.status, 403, `anonymous GET ?${sub}`);
      assert.match(await other.text(), /<Code>AccessDenied<\/Code>/);
    }
    assert.equal((await signedFetch('GET', '/pub/hello.txt?acl')).status, 200, 'signed, the ACL reads');

    // A key XML cannot carry is refused, and the error echoing it stays well-formed XML (U+FFFD in its place).
    for (const bad of ['k/%01ctl', 'k/%00nul', 'k/non%EF%BF%BFchar', 'k/non%EF%BF%BEchar']) {
      const refused = await signedFetch('PUT', `/photos/${bad}`, 'x');
      const text = await refused.text();
      assert.equal(refused.status, 400, bad);
      assert.match(text, /<Code>InvalidArgument<\/Code>/, bad);
      assert.doesNotMatch(text, /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/, `${bad}: nothing XML 1.0 cannot hold`);
      assert.match(text, /<Resource>\/photos\/k\/[^<]*\uFFFD/, bad);
    }

    // Limits are core's: a bucket's max_object_size refuses a larger PutObject, and a copy of a larger object.
    assert.equal((await d.api('/api/buckets/small', { method: 'PUT', body: JSON.stringify({ max_object_size: 10 }), headers: { 'content-type': 'application/json' } })).status, 201);
    assert.deepEqual(await s3Error(s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'big', Body: 'x'.repeat(11) }))), { code: 'EntityTooLarge', status: 400 });
    await s3.send(new PutObjectCommand({ Bucket: 'pub', Key: 'twenty', Body: 'x'.repeat(20) }));
    assert.deepEqual(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'small', Key: 'big', CopySource: 'pub/twenty' }))), { code: 'EntityTooLarge', status: 400 });

    // Virtual-host style: the bucket from Host, the whole path is the key.
    const vhost = await rawGet(d.s3Url!, '/hello.txt', `pub.${DOMAIN}`);
    assert.deepEqual(vhost, { status: 200, body: 'hello' });
    assert.equal((await rawGet(d.s3Url!, '/pub/hello.txt', DOMAIN)).status, 200, 'path style on the bare domain');
  });
});
