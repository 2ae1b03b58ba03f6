// SigV4 verification of the S3 front (verifyRequest), in process (no daemon): requests signed by the SDK's own
// signers (@smithy/signature-v4, @aws-sdk/client-s3 over a real socket) in the Authorization header and as
// presigned URLs; clock skew; keys and paths as the S3 SDK encodes them. Bodies: test/s3api-payload.test.ts.
import { GetObjectCommand, PutObjectCommand, S3Client, type ChecksumAlgorithm as SdkChecksumAlgorithm } from '@aws-sdk/client-s3';
import { HttpRequest } from '@smithy/core/protocols';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from '../src/http/s3api/checksums.ts';
import { errorXml, toS3Error } from '../src/http/s3api/errors.ts';
import { verifiedBody } from '../src/http/s3api/payload.ts';
import { verifyRequest } from '../src/http/s3api/sigv4.ts';
import {
  ACCESS_KEY,
  consume,
  DATA,
  encodeKeyPath,
  encodeSegment,
  headerSigned,
  HOST,
  keys,
  minutes,
  presigned,
  PRINCIPAL,
  refused,
  SECRET,
  sdkChecksum,
  signer,
  WHEN,
} from './helpers/sigv4-fixtures.ts';

describe('SigV4 in the Authorization header', () => {
  test('a GET and a PUT signed by @smithy/signature-v4 verify, with the principal and payload mode', async () => {
    const get = await verifyRequest(await headerSigned(), keys, WHEN);
    assert.ok(get !== null);
    assert.equal(get.accessKeyId, ACCESS_KEY);
    assert.deepEqual(get.principal, PRINCIPAL);
    assert.deepEqual(get.payload, { kind: 'unsigned' });
    assert.equal(get.scope, '20261203/us-east-1/s3/aws4_request');
    assert.equal(get.amzDate, '20261203T120000Z');

    const body = Buffer.from('hello world');
    const hex = createHash('sha256').update(body).digest('hex');
    const put = await verifyRequest(
      await headerSigned({ method: 'PUT', payload: hex, headers: { 'content-type': 'text/plain', 'x-amz-meta-colour': '  blue   and\tgreen ' } }),
      keys,
      WHEN,
    );
    assert.deepEqual(put?.payload, { kind: 'sha256', hex });
  });

  test('any region the client put in its scope is accepted; query parameters are part of the signature', async () => {
    const req = await headerSigned({ region: 'eu-central-1', query: { 'list-type': '2', prefix: 'a b/ü+=', 'max-keys': '10', delimiter: '/' } });
    const verified = await verifyRequest(req, keys, WHEN);
    assert.equal(verified?.scope, '20261203/eu-central-1/s3/aws4_request');
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace('max-keys=10', 'max-keys=11') }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    // A subresource with no value (`?uploads`) is the name with an empty value in the canonical query.
    const uploads = await headerSigned({ method: 'POST', query: { uploads: '' } });
    assert.ok(uploads.rawQuery === 'uploads=');
    assert.ok(await verifyRequest({ ...uploads, rawQuery: 'uploads' }, keys, WHEN));
  });

  test('keys with spaces, unicode, + = ~ % and odd punctuation verify as the S3 SDK encodes them', async () => {
    for (const key of ['with space.txt', 'ünïcødé/ключ/鍵.bin', 'a+b=c~d%e.txt', "it's (1)*!.txt", 'dir//double/./dot/../x', '%2F literally']) {
      const path = encodeKeyPath('bucket', key);
      assert.ok(await verifyRequest(await headerSigned({ path }), keys, WHEN), key);
    }
  });

  test('a path sent less encoded than it was signed verifies through the canonical re-encoding', async () => {
    // Signed as AWS's canonical UriEncode would have it; sent with + and ! left as typed (both are legal in a path).
    const req = await headerSigned({ path: '/bucket/a%2Bb%21c%20d' });
    assert.ok(await verifyRequest({ ...req, rawPath: '/bucket/a+b!c%20d' }, keys, WHEN));
    assert.ok(await verifyRequest({ ...req, rawPath: '/bucket/a%2bb%21c%20d' }, keys, WHEN), 'lower-case escapes');
    await refused(verifyRequest({ ...req, rawPath: '/bucket/a+b!c%20e' }, keys, WHEN), 'SignatureDoesNotMatch', 403);
  });

  test('bad escapes and bytes that are not UTF-8 in a path are compared as bytes, never a crash', async () => {
    for (const path of ['/bucket/%FF%FE', '/bucket/a%zz%', '/bucket/%E0%A4%A']) {
      assert.ok(await verifyRequest(await headerSigned({ path }), keys, WHEN), path);
      const other = await headerSigned({ path: '/bucket/x' });
      await refused(verifyRequest({ ...other, rawPath: path }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    }
  });

  test('the Date header stands in for x-amz-date when that is absent', async () => {
    // SignatureV4 always adds x-amz-date, so this request is built by hand as a client signing Date would, and
    // its string to sign signed by the SDK (signer.sign(string) derives the key and HMACs).
    const date = 'Thu, 03 Dec 2026 12:00:00 GMT';
    const canonical = ['GET', '/bucket/key.txt', '', `date:${date}`, `host:${HOST}`, 'x-amz-content-sha256:UNSIGNED-PAYLOAD', '', 'date;host;x-amz-content-sha256', 'UNSIGNED-PAYLOAD'].join('\n');
    const scope = '20261203/us-east-1/s3/aws4_request';
    const toSign = `AWS4-HMAC-SHA256\n20261203T120000Z\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const signature = await signer().sign(toSign, { signingDate: WHEN });
    const headers = {
      host: HOST,
      date,
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      authorization: `AWS4-HMAC-SHA256 Credential=${ACCESS_KEY}/${scope}, SignedHeaders=date;host;x-amz-content-sha256, Signature=${signature}`,
    };
    const verified = await verifyRequest({ method: 'GET', rawPath: '/bucket/key.txt', rawQuery: '', headers }, keys, WHEN);
    assert.equal(verified?.amzDate, '20261203T120000Z');
    await refused(verifyRequest({ method: 'GET', rawPath: '/bucket/key.txt', rawQuery: '', headers: { ...headers, date: 'Thu, 03 Dec 2026 12:00:01 GMT' } }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    // A Date that is not signed could be replaced by a fresh one on a captured request.
    const unsignedDate = { ...headers, authorization: headers.authorization.replaceAll('date;host', 'host') };
    await refused(verifyRequest({ method: 'GET', rawPath: '/bucket/key.txt', rawQuery: '', headers: unsignedDate }, keys, WHEN), 'AuthorizationHeaderMalformed', 400);
  });

  test('clock skew: 14 minutes either way is fine, 16 is RequestTimeTooSkewed', async () => {
    for (const skew of [-14, 14]) assert.ok(await verifyRequest(await headerSigned({ date: minutes(skew) }), keys, WHEN), `${skew} min`);
    for (const skew of [-16, 16]) {
      const err = await refused(verifyRequest(await headerSigned({ date: minutes(skew) }), keys, WHEN), 'RequestTimeTooSkewed', 403);
      assert.equal(err.extra['MaxAllowedSkewMilliseconds'], '900000');
    }
  });

  test('a wrong secret is SignatureDoesNotMatch, an unknown key InvalidAccessKeyId; neither says the expected signature', async () => {
    const req = await headerSigned({ secret: 'not-the-secret' });
    const err = await refused(verifyRequest(req, keys, WHEN), 'SignatureDoesNotMatch', 403);
    const good = await headerSigned();
    const expected = /Signature=([0-9a-f]{64})/.exec(String(good.headers['authorization']))![1]!;
    const text = JSON.stringify({ message: err.message, extra: err.extra, xml: errorXml(err, '/bucket/key.txt', 'r') });
    assert.ok(!text.includes(expected) && !text.includes(SECRET));
    await refused(verifyRequest(await headerSigned({ accessKeyId: 'BKIDNOSUCHKEY0000000' }), keys, WHEN), 'InvalidAccessKeyId', 403);
  });

  test('a tampered method, header or unsigned x-amz-* header is refused', async () => {
    const req = await headerSigned({ method: 'PUT', headers: { 'x-amz-meta-a': '1' } });
    await refused(verifyRequest({ ...req, method: 'POST' }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, headers: { ...req.headers, 'x-amz-meta-a': '2' } }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    const extra = await refused(verifyRequest({ ...req, headers: { ...req.headers, 'x-amz-meta-b': 'sneaked' } }, keys, WHEN), 'AccessDenied', 403);
    assert.equal(extra.extra['HeadersNotSigned'], 'x-amz-meta-b');
  });

  test('malformed or foreign Authorization headers get S3 4xx errors, and no credentials at all is anonymous', async () => {
    const base = await headerSigned();
    const withAuth = (authorization: string) => ({ ...base, headers: { ...base.headers, authorization } });
    const auth = String(base.headers['authorization']);
    await refused(verifyRequest(withAuth('AWS4-HMAC-SHA256 Credential=abc'), keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    await refused(verifyRequest(withAuth(auth.replace('/s3/', '/ec2/')), keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    await refused(verifyRequest(withAuth(auth.replace('/20261203/', '/20261202/')), keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    await refused(verifyRequest(withAuth(auth.replace(/SignedHeaders=[^,]*/, 'SignedHeaders=x-amz-date')), keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    await refused(verifyRequest(withAuth('Bearer abc'), keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    await refused(verifyRequest(withAuth(`AWS ${ACCESS_KEY}:c2lnbmF0dXJl`), keys, WHEN), 'InvalidRequest', 400);
    await refused(verifyRequest(withAuth(auth.replace('AWS4-HMAC-SHA256', 'AWS4-ECDSA-P256-SHA256')), keys, WHEN), 'InvalidRequest', 400);
    await refused(verifyRequest(withAuth(auth.replace(/Signature=\w+/, 'Signature=zz')), keys, WHEN), 'SignatureDoesNotMatch', 403);
    const { 'x-amz-date': _date, ...noDate } = base.headers;
    await refused(verifyRequest({ ...base, headers: noDate }, keys, WHEN), 'AccessDenied', 403);
    await refused(verifyRequest({ ...base, headers: { ...base.headers, 'x-amz-date': '2026-12-03T12:00:00Z' } }, keys, WHEN), 'AuthorizationHeaderMalformed', 400);
    const { 'x-amz-content-sha256': _sha, ...noSha } = base.headers;
    const missing = await refused(verifyRequest({ ...base, headers: noSha }, keys, WHEN), 'InvalidRequest', 400);
    assert.match(missing.message, /x-amz-content-sha256/);
    await refused(verifyRequest(await headerSigned({ payload: 'SOMETHING-ELSE' }), keys, WHEN), 'InvalidArgument', 400);
    assert.equal(await verifyRequest({ method: 'GET', rawPath: '/bucket/key', rawQuery: '', headers: { host: HOST } }, keys, WHEN), null);
  });

  test('x-amz-content-sha256 streaming values give their payload modes', async () => {
    const modes = {
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': { kind: 'chunked-signed', trailer: false },
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': { kind: 'chunked-signed', trailer: true },
      'STREAMING-UNSIGNED-PAYLOAD-TRAILER': { kind: 'chunked-unsigned-trailer' },
    };
    for (const [payload, mode] of Object.entries(modes)) {
      const verified = await verifyRequest(await headerSigned({ method: 'PUT', payload }), keys, WHEN);
      assert.deepEqual(verified?.payload, mode);
    }
  });
});

describe('SigV4 presigned URLs', () => {
  test('a presigned GET and PUT verify until they expire; the payload is unsigned', async () => {
    const get = await presigned({ expiresIn: 3600 });
    assert.match(get.rawQuery, /X-Amz-Signature=/);
    const verified = await verifyRequest(get, keys, minutes(59));
    assert.deepEqual(verified?.payload, { kind: 'unsigned' });
    const expired = await refused(verifyRequest(get, keys, minutes(61)), 'AccessDenied', 403);
    assert.match(expired.message, /expired/);
    const put = await presigned({ method: 'PUT', path: encodeKeyPath('bucket', 'a b+c/ü.txt'), expiresIn: 604_800 });
    assert.ok(await verifyRequest(put, keys, minutes(7 * 24 * 60 - 1)));
    // Signed long before it is used: no skew rule, only the expiry.
    assert.ok(await verifyRequest(await presigned({ expiresIn: 7200 }), keys, minutes(100)));
  });

  test('tampered presigned URLs are refused', async () => {
    const req = await presigned({ query: { 'response-content-type': 'text/plain' } });
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace('text%2Fplain', 'text%2Fhtml') }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, rawQuery: `${req.rawQuery}&extra=1` }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, rawPath: '/bucket/other.txt' }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, method: 'PUT' }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=604801') }, keys, WHEN), 'AuthorizationQueryParametersError', 400);
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=86400') }, keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace(/&?X-Amz-Credential=[^&]*/, '') }, keys, WHEN), 'AuthorizationQueryParametersError', 400);
    await refused(verifyRequest({ ...req, rawQuery: req.rawQuery.replace('AWS4-HMAC-SHA256', 'AWS4-HMAC-SHA1') }, keys, WHEN), 'InvalidRequest', 400);
    await refused(verifyRequest(await presigned({ secret: 'wrong' }), keys, WHEN), 'SignatureDoesNotMatch', 403);
    await refused(verifyRequest(await presigned({ accessKeyId: 'BKIDNOSUCHKEY0000000' }), keys, WHEN), 'InvalidAccessKeyId', 403);
    await refused(verifyRequest({ ...req, headers: { ...req.headers, authorization: 'AWS4-HMAC-SHA256 x' } }, keys, WHEN), 'InvalidArgument', 400);
    const v2 = { method: 'GET', rawPath: '/bucket/key.txt', rawQuery: `AWSAccessKeyId=${ACCESS_KEY}&Expires=1700000000&Signature=abc`, headers: { host: HOST } };
    await refused(verifyRequest(v2, keys, WHEN), 'InvalidRequest', 400);
  });

  test("a presigned URL's holder cannot add x-amz-* headers the signer did not sign (a copy source, metadata); body checks may be added", async () => {
    const put = await presigned({ method: 'PUT', expiresIn: 3600 });
    for (const extra of [
      { 'x-amz-copy-source': '/other-bucket/secret' },
      { 'x-amz-metadata-directive': 'REPLACE' },
      { 'x-amz-meta-owner': 'mallory' },
    ]) {
      const err = await refused(verifyRequest({ ...put, headers: { ...put.headers, ...extra } }, keys, WHEN), 'AccessDenied', 403);
      assert.equal(err.extra.HeadersNotSigned, Object.keys(extra)[0]);
    }
    const checked = { 'x-amz-checksum-crc32': 'AAAAAA==', 'x-amz-sdk-checksum-algorithm': 'CRC32', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    assert.ok(await verifyRequest({ ...put, headers: { ...put.headers, ...checked } }, keys, WHEN));
  });
});

// ------------------------------------------------------------------------------------------------------
// The real S3 client over a socket: what it signs and sends by default is what we verify.

interface Seen {
  path: string;
  mode: string;
  content: Buffer;
  md5: string;
  checksum: { header: string; value: string } | undefined;
}

describe('@aws-sdk/client-s3 against the verifier over HTTP', () => {
  let server: Server;
  let endpoint: string;
  const seen: Seen[] = [];

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    try {
      const verified = await verifyRequest({ method: req.method ?? 'GET', rawPath, rawQuery: q < 0 ? '' : url.slice(q + 1), headers: req.headers }, keys);
      if (req.method === 'PUT') {
        const vb = verifiedBody(req, verified, req.headers);
        const content = await consume(vb);
        const checksum = vb.checksum();
        seen.push({ path: rawPath, mode: verified?.payload.kind ?? 'anonymous', content, md5: vb.md5Hex(), checksum });
        res.writeHead(200, { ETag: `"${vb.md5Hex()}"`, ...(checksum === undefined ? {} : { [checksum.header]: checksum.value }) });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    } catch (err) {
      const s3 = toS3Error(err);
      res.writeHead(s3.status, { 'content-type': 'application/xml' });
      res.end(errorXml(s3, rawPath, 'test-request'));
    }
  }

  before(async () => {
    server = createServer((req, res) => void handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const client = (secret = SECRET, accessKeyId = ACCESS_KEY) =>
    new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId, secretAccessKey: secret }, maxAttempts: 1 });

  test('PutObject with default checksums (Buffer and stream bodies) and GetObject, for awkward keys', async () => {
    const s3 = client();
    const keysToTry = ['plain.txt', 'with space/and more.txt', 'ünïcødé/ключ/鍵.bin', 'a+b=c~d%e.txt', "it's (1)*!&$@:;,?#[].txt"];
    for (const key of keysToTry) {
      seen.length = 0;
      await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: DATA }));
      await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: Readable.from([DATA.subarray(0, 20_000), DATA.subarray(20_000)]), ContentLength: DATA.length }));
      assert.equal(seen.length, 2, key);
      // A Buffer body goes out payload-signed with a checksum header, a stream as aws-chunked with a trailer.
      assert.deepEqual(seen.map((one) => one.mode), ['sha256', 'chunked-unsigned-trailer'], key);
      for (const one of seen) {
        assert.equal(decodeURIComponent(one.path), `/bucket/${key}`);
        assert.ok(one.content.equals(DATA), `${key} via ${one.mode}`);
        assert.equal(one.md5, createHash('md5').update(DATA).digest('hex'));
        assert.deepEqual(one.checksum, { header: 'x-amz-checksum-crc32', value: await sdkChecksum('crc32', DATA) });
      }
      const got = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: key }));
      assert.equal(await got.Body?.transformToString(), 'hello');
    }
    s3.destroy();
  });

  test('each checksum algorithm the SDK offers verifies, in a header and in a trailer', async () => {
    const s3 = client();
    const names: Record<ChecksumAlgorithm, SdkChecksumAlgorithm> = { crc32: 'CRC32', crc32c: 'CRC32C', crc64nvme: 'CRC64NVME', sha1: 'SHA1', sha256: 'SHA256' };
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      seen.length = 0;
      await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: DATA, ChecksumAlgorithm: names[algorithm] }));
      await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: Readable.from([DATA]), ContentLength: DATA.length, ChecksumAlgorithm: names[algorithm] }));
      assert.equal(seen.length, 2);
      for (const one of seen) assert.deepEqual(one.checksum, { header: `x-amz-checksum-${algorithm}`, value: await sdkChecksum(algorithm, DATA) }, `${algorithm} ${one.mode}`);
    }
    s3.destroy();
  });

  test('a wrong secret and an unknown key come back to the SDK as S3 errors', async () => {
    await assert.rejects(client('wrong-secret').send(new GetObjectCommand({ Bucket: 'bucket', Key: 'k' })), { name: 'SignatureDoesNotMatch' });
    await assert.rejects(client(SECRET, 'BKIDNOSUCHKEY0000000').send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: 'x' })), {
      name: 'InvalidAccessKeyId',
    });
  });

  test('presigned GET and PUT URLs work from fetch', async () => {
    const port = Number(new URL(endpoint).port);
    const sign = async (method: string, key: string) => {
      const request = new HttpRequest({
        method,
        protocol: 'http:',
        hostname: '127.0.0.1',
        port,
        path: encodeKeyPath('bucket', key),
        headers: { host: `127.0.0.1:${port}`, 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD' },
      });
      const p = await signer().presign(request, { expiresIn: 300 });
      const query = Object.entries(p.query ?? {}).map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(String(v))}`).join('&');
      return `${endpoint}${p.path}?${query}`;
    };
    const get = await fetch(await sign('GET', 'a b/ü+.txt'));
    assert.equal(get.status, 200);
    assert.equal(await get.text(), 'hello');
    seen.length = 0;
    const put = await fetch(await sign('PUT', 'up load.bin'), { method: 'PUT', body: DATA });
    assert.equal(put.status, 200);
    assert.ok(seen[0]?.content.equals(DATA));
    const tampered = (await sign('GET', 'k')).replace('/bucket/k', '/bucket/j');
    const refusedGet = await fetch(tampered);
    assert.equal(refusedGet.status, 403);
    assert.match(await refusedGet.text(), /<Code>SignatureDoesNotMatch<\/Code>/);
  });
});
