// SigV4 verification and verified bodies of the S3 front, in process (no daemon): requests signed by the
// SDK's own signers (@smithy/signature-v4, @aws-sdk/client-s3 over a real socket), AWS's documented
// aws-chunked examples, and bodies built here chunk by chunk following the AWS docs.
import { Crc32, Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc';
import { GetObjectCommand, PutObjectCommand, S3Client, type ChecksumAlgorithm as SdkChecksumAlgorithm } from '@aws-sdk/client-s3';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import type { Principal } from '../src/core/auth.ts';
import { BlobdError } from '../src/core/errors.ts';
import { CHECKSUM_ALGORITHMS, createChecksum, type ChecksumAlgorithm } from '../src/http/s3api/checksums.ts';
import { errorXml, S3Error, toS3Error } from '../src/http/s3api/errors.ts';
import { verifiedBody } from '../src/http/s3api/payload.ts';
import { verifyRequest, type SigV4Request, type VerifiedRequest } from '../src/http/s3api/sigv4.ts';

const ACCESS_KEY = 'BKIDTESTACCESSKEY001';
const SECRET = 'test/secret+key=with/odd+chars0123456789ab';
const PRINCIPAL: Principal = { id: 's3key:test', scopes: ['bucket:*:read', 'bucket:*:write'] };
const keys = {
  async lookup(id: string) {
    if (id === ACCESS_KEY) return { secret: SECRET, principal: PRINCIPAL };
    if (id === DOC_KEY) return { secret: DOC_SECRET, principal: PRINCIPAL };
    return null;
  },
};
const HOST = 'localhost:9000';
const WHEN = new Date('2026-12-03T12:00:00Z');
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** The hash class SignatureV4 wants (HMAC when given a secret), over node:crypto. */
class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : toBuffer(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(typeof data === 'string' ? data : toBuffer(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}
function toBuffer(data: ArrayBuffer | ArrayBufferView): Buffer {
  return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
}

/** An S3-style signer: the path is signed as sent (the S3 SDK encodes keys itself, uriEscapePath false). */
function signer(secret = SECRET, accessKeyId = ACCESS_KEY, region = 'us-east-1'): SignatureV4 {
  return new SignatureV4({ credentials: { accessKeyId, secretAccessKey: secret }, region, service: 's3', sha256: Sha256, uriEscapePath: false });
}

/** What the S3 SDK does to a key segment: encodeURIComponent plus !'()*. */
function encodeSegment(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
function encodeKeyPath(bucket: string, key: string): string {
  return `/${bucket}/${key.split('/').map(encodeSegment).join('/')}`;
}

function wire(req: { method: string; path: string; query?: Record<string, string | string[] | null>; headers: Record<string, string> }): SigV4Request {
  const rawQuery = Object.entries(req.query ?? {})
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((one) => [k, one]) : [[k, v ?? '']]))
    .map(([k, v]) => `${encodeSegment(k!)}=${encodeSegment(v!)}`)
    .join('&');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
  return { method: req.method, rawPath: req.path, rawQuery, headers };
}

interface SignOptions {
  method?: string;
  path?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  payload?: string;
  date?: Date;
  secret?: string;
  accessKeyId?: string;
  region?: string;
}

async function headerSigned(o: SignOptions = {}): Promise<SigV4Request> {
  const request = new HttpRequest({
    method: o.method ?? 'GET',
    protocol: 'http:',
    hostname: 'localhost',
    port: 9000,
    path: o.path ?? '/bucket/key.txt',
    query: o.query ?? {},
    headers: { host: HOST, 'x-amz-content-sha256': o.payload ?? 'UNSIGNED-PAYLOAD', ...o.headers },
  });
  const signed = await signer(o.secret, o.accessKeyId, o.region).sign(request, { signingDate: o.date ?? WHEN });
  return wire(signed as HttpRequest & { method: string; path: string; headers: Record<string, string> });
}

async function presigned(o: SignOptions & { expiresIn?: number } = {}): Promise<SigV4Request> {
  const request = new HttpRequest({
    method: o.method ?? 'GET',
    protocol: 'http:',
    hostname: 'localhost',
    port: 9000,
    path: o.path ?? '/bucket/key.txt',
    query: o.query ?? {},
    // What @aws-sdk/s3-request-presigner does: the payload is UNSIGNED-PAYLOAD, hoisted into the query.
    headers: { host: HOST, 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD', ...o.headers },
  });
  const signed = await signer(o.secret, o.accessKeyId, o.region).presign(request, { signingDate: o.date ?? WHEN, expiresIn: o.expiresIn ?? 900 });
  return wire(signed as HttpRequest & { method: string; path: string; headers: Record<string, string> });
}

async function refused(promise: Promise<unknown>, code: string, status: number): Promise<S3Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof S3Error, `expected S3Error ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.status, status);
  return caught;
}

const minutes = (n: number) => new Date(WHEN.getTime() + n * 60_000);

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
// Bodies.

async function consume(vb: ReturnType<typeof verifiedBody>): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(
    vb.body,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        parts.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(parts);
}

/** Splits a body into pieces of awkward sizes, so framing lines and CRLFs straddle reads. */
function pieces(body: Buffer, size = 777): Readable {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) out.push(body.subarray(at, at + size));
  return Readable.from(out);
}

async function bodyRefused(vb: ReturnType<typeof verifiedBody>, code: string, status: number): Promise<void> {
  await refused(consume(vb), code, status);
}

function sdkChecksum(algorithm: ChecksumAlgorithm, data: Buffer): Promise<string> {
  const impl = { crc32: () => new Crc32(), crc32c: () => new Crc32c(), crc64nvme: () => new Crc64Nvme(), sha1: () => null, sha256: () => null }[algorithm]();
  if (impl === null) return Promise.resolve(createHash(algorithm).update(data).digest('base64'));
  impl.update(data);
  return impl.digest().then((d) => Buffer.from(d).toString('base64'));
}

const DATA = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 251));

/** aws-chunked framing of `data`, signed when `signing` is given (AWS docs: "Transferring payload in multiple chunks"). */
function frame(
  data: Buffer,
  chunkSize: number,
  signing?: { key: Buffer; amzDate: string; scope: string; seed: string },
  trailer?: { name: string; value: string },
): Buffer {
  const out: Buffer[] = [];
  let previous = signing?.seed ?? '';
  const sign = (chunk: Buffer) => {
    const toSign = `AWS4-HMAC-SHA256-PAYLOAD\n${signing!.amzDate}\n${signing!.scope}\n${previous}\n${EMPTY_SHA256}\n${createHash('sha256').update(chunk).digest('hex')}`;
    previous = createHmac('sha256', signing!.key).update(toSign).digest('hex');
    return `;chunk-signature=${previous}`;
  };
  for (let at = 0; at < data.length; at += chunkSize) {
    const chunk = data.subarray(at, at + chunkSize);
    out.push(Buffer.from(`${chunk.length.toString(16)}${signing ? sign(chunk) : ''}\r\n`), chunk, Buffer.from('\r\n'));
  }
  out.push(Buffer.from(`0${signing ? sign(Buffer.alloc(0)) : ''}\r\n`));
  if (trailer !== undefined) {
    out.push(Buffer.from(`${trailer.name}:${trailer.value}\r\n`));
    if (signing !== undefined) {
      const hash = createHash('sha256').update(`${trailer.name}:${trailer.value}\n`).digest('hex');
      const sig = createHmac('sha256', signing.key).update(`AWS4-HMAC-SHA256-TRAILER\n${signing.amzDate}\n${signing.scope}\n${previous}\n${hash}`).digest('hex');
      out.push(Buffer.from(`x-amz-trailer-signature:${sig}\r\n`));
    }
  }
  out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

async function streamingRequest(payload: string, extraHeaders: Record<string, string> = {}): Promise<{ req: SigV4Request; verified: VerifiedRequest }> {
  const req = await headerSigned({
    method: 'PUT',
    payload,
    headers: { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(DATA.length), ...extraHeaders },
  });
  const verified = await verifyRequest(req, keys, WHEN);
  assert.ok(verified !== null);
  return { req, verified };
}
function signingOf(v: VerifiedRequest) {
  return { key: v.signingKey, amzDate: v.amzDate, scope: v.scope, seed: v.seedSignature };
}

// AWS's worked examples ("Signature Calculations for the Authorization Header: Transferring Payload in Multiple
// Chunks", and the same with trailing headers): 66560 bytes of 'a' in 64 KiB chunks.
const DOC_KEY = 'AKIAIOSFODNN7EXAMPLE';
const DOC_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const DOC_DATA = Buffer.alloc(66_560, 'a');
function docBody(signatures: readonly string[], trailer = ''): Buffer {
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${signatures[0]}\r\n`),
    DOC_DATA.subarray(0, 65_536),
    Buffer.from(`\r\n400;chunk-signature=${signatures[1]}\r\n`),
    DOC_DATA.subarray(65_536),
    Buffer.from(`\r\n0;chunk-signature=${signatures[2]}\r\n${trailer}\r\n`),
  ]);
}

describe('aws-chunked bodies', () => {
  test("AWS's documented chunk-signed PUT verifies: seed signature from the request, then each chunk", async () => {
    const headers = {
      host: 's3.amazonaws.com',
      'x-amz-date': '20130524T000000Z',
      'x-amz-storage-class': 'REDUCED_REDUNDANCY',
      authorization:
        `AWS4-HMAC-SHA256 Credential=${DOC_KEY}/20130524/us-east-1/s3/aws4_request,` +
        'SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,' +
        'Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
      'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': '66560',
      'content-length': '66824',
    };
    const req = { method: 'PUT', rawPath: '/examplebucket/chunkObject.txt', rawQuery: '', headers };
    const verified = await verifyRequest(req, keys, new Date('2013-05-24T00:01:00Z'));
    assert.ok(verified !== null);
    assert.equal(verified.seedSignature, '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9');
    const signatures = [
      'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
      '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
      'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
    ];
    const body = docBody(signatures);
    assert.equal(body.length, 66_824);
    const vb = verifiedBody(pieces(body, 1000), verified, headers);
    assert.equal(vb.declaredSize, 66_560);
    assert.ok((await consume(vb)).equals(DOC_DATA));
    assert.equal(vb.md5Hex(), createHash('md5').update(DOC_DATA).digest('hex'));
    for (let i = 0; i < 3; i++) {
      const changed = [...signatures];
      changed[i] = `${changed[i]!.slice(0, 63)}${changed[i]!.endsWith('0') ? '1' : '0'}`;
      await bodyRefused(verifiedBody(pieces(docBody(changed)), verified, headers), 'SignatureDoesNotMatch', 403);
    }
    const tampered = Buffer.from(body);
    tampered[5000] = 0x62;
    await bodyRefused(verifiedBody(pieces(tampered), verified, headers), 'SignatureDoesNotMatch', 403);
  });

  test("AWS's documented signed-trailer example: chunk chain, trailer canonical form and signature", async () => {
    const date = '20130524';
    let key = createHmac('sha256', `AWS4${DOC_SECRET}`).update(date).digest();
    for (const part of ['us-east-1', 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
    const verified: VerifiedRequest = {
      accessKeyId: DOC_KEY,
      principal: PRINCIPAL,
      payload: { kind: 'chunked-signed', trailer: true },
      signingKey: key,
      seedSignature: '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e',
      amzDate: '20130524T000000Z',
      scope: '20130524/us-east-1/s3/aws4_request',
    };
    const headers = { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '66560', 'x-amz-trailer': 'x-amz-checksum-crc32c' };
    const signatures = [
      'b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2',
      '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7',
      '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992',
    ];
    const trailer = 'x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n';
    const vb = verifiedBody(pieces(docBody(signatures, trailer), 333), verified, headers);
    assert.ok((await consume(vb)).equals(DOC_DATA));
    assert.deepEqual(vb.checksum(), { header: 'x-amz-checksum-crc32c', value: 'sOO8/Q==' });
    await bodyRefused(verifiedBody(pieces(docBody(signatures, trailer.replace('sOO8/Q==', 'sOO8/A=='))), verified, headers), 'SignatureDoesNotMatch', 403);
    // The form some clients send: the checksum line ended by a bare LF, then a CRLF line of its own.
    const lf = trailer.replace('\r\nx-amz-trailer-signature:', '\n\r\nx-amz-trailer-signature:');
    assert.ok((await consume(verifiedBody(pieces(docBody(signatures, lf), 333), verified, headers))).equals(DOC_DATA));
  });

  test('a signed chunked body verifies at any chunk size and split; tampering anywhere is SignatureDoesNotMatch', async () => {
    const { req, verified } = await streamingRequest('STREAMING-AWS4-HMAC-SHA256-PAYLOAD');
    for (const [chunkSize, split] of [[8192, 777], [1, 13], [DATA.length, 65_536], [DATA.length + 5, 1]] as const) {
      const data = chunkSize === 1 ? DATA.subarray(0, 200) : DATA;
      const headers = { ...req.headers, 'x-amz-decoded-content-length': String(data.length) };
      const vb = verifiedBody(pieces(frame(data, chunkSize, signingOf(verified)), split), verified, headers);
      assert.ok((await consume(vb)).equals(data), `chunk ${chunkSize}`);
    }
    const body = frame(DATA, 8192, signingOf(verified));
    const flipped = Buffer.from(body);
    flipped[20_000] = flipped[20_000]! ^ 1;
    await bodyRefused(verifiedBody(pieces(flipped), verified, req.headers), 'SignatureDoesNotMatch', 403);
    // Two equal chunks swapped: each signature is of its own bytes, only the chain says the order is wrong.
    const text = body.toString('latin1');
    const [a, b, ...rest] = text.split(/(?=2000;chunk-signature=)/);
    await bodyRefused(verifiedBody(pieces(Buffer.from([b, a, ...rest].join(''), 'latin1')), verified, req.headers), 'SignatureDoesNotMatch', 403);
    const unsignedChunk = Buffer.from(text.replace(/;chunk-signature=[0-9a-f]{64}/, ''), 'latin1');
    await bodyRefused(verifiedBody(pieces(unsignedChunk), verified, req.headers), 'IncompleteBody', 400);
  });

  test('signed chunks with a signed trailer, for every checksum algorithm; a wrong trailer checksum is BadDigest', async () => {
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const name = `x-amz-checksum-${algorithm}`;
      const { req, verified } = await streamingRequest('STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', { 'x-amz-trailer': name });
      const value = await sdkChecksum(algorithm, DATA);
      const vb = verifiedBody(pieces(frame(DATA, 10_000, signingOf(verified), { name, value })), verified, req.headers);
      assert.ok((await consume(vb)).equals(DATA));
      assert.deepEqual(vb.checksum(), { header: name, value }, algorithm);
      // Correctly signed over a checksum of other bytes: the signature holds, the content does not.
      const other = await sdkChecksum(algorithm, Buffer.from('other'));
      await bodyRefused(verifiedBody(pieces(frame(DATA, 10_000, signingOf(verified), { name, value: other })), verified, req.headers), 'BadDigest', 400);
    }
    const { req, verified } = await streamingRequest('STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', { 'x-amz-trailer': 'x-amz-checksum-crc32' });
    const value = await sdkChecksum('crc32', DATA);
    const text = frame(DATA, 10_000, signingOf(verified), { name: 'x-amz-checksum-crc32', value }).toString('latin1');
    const changed = text.replace(`crc32:${value}`, `crc32:${await sdkChecksum('crc32', Buffer.from('x'))}`);
    await bodyRefused(verifiedBody(pieces(Buffer.from(changed, 'latin1')), verified, req.headers), 'SignatureDoesNotMatch', 403);
    const unsigned = text.replace(/x-amz-trailer-signature:[0-9a-f]{64}\r\n/, '');
    await bodyRefused(verifiedBody(pieces(Buffer.from(unsigned, 'latin1')), verified, req.headers), 'IncompleteBody', 400);
  });

  test('unsigned chunks with a trailer (what the SDKs send by default), each algorithm; tampering is BadDigest', async () => {
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const name = `x-amz-checksum-${algorithm}`;
      const { req, verified } = await streamingRequest('STREAMING-UNSIGNED-PAYLOAD-TRAILER', { 'x-amz-trailer': name });
      const value = await sdkChecksum(algorithm, DATA);
      const body = frame(DATA, 16_384, undefined, { name, value });
      const vb = verifiedBody(pieces(body), verified, req.headers);
      assert.ok((await consume(vb)).equals(DATA));
      assert.deepEqual(vb.checksum(), { header: name, value });
      const flipped = Buffer.from(body);
      flipped[100] = flipped[100]! ^ 1;
      await bodyRefused(verifiedBody(pieces(flipped), verified, req.headers), 'BadDigest', 400);
    }
    const { req, verified } = await streamingRequest('STREAMING-UNSIGNED-PAYLOAD-TRAILER', { 'x-amz-trailer': 'x-amz-checksum-crc32' });
    const text = frame(DATA, 16_384, undefined, { name: 'x-amz-checksum-crc32', value: await sdkChecksum('crc32', DATA) }).toString('latin1');
    const missing = text.replace(/x-amz-checksum-crc32:[^\r]*\r\n/, '');
    await bodyRefused(verifiedBody(pieces(Buffer.from(missing, 'latin1')), verified, req.headers), 'IncompleteBody', 400);
    // minio-go (restic) ends each trailer line with a bare LF and closes the trailer with a CRLF line.
    const lfForm = text.replace(/(x-amz-checksum-crc32:[^\r]*)\r\n\r\n$/, '$1\n\r\n');
    assert.notEqual(lfForm, text);
    assert.ok((await consume(verifiedBody(pieces(Buffer.from(lfForm, 'latin1')), verified, req.headers))).equals(DATA));
    // The SDK for JavaScript ends a body without a checksum with `0\r\n` and nothing more.
    const { req: bare, verified: bareVerified } = await streamingRequest('STREAMING-UNSIGNED-PAYLOAD-TRAILER');
    const framed = frame(DATA, 16_384);
    assert.ok((await consume(verifiedBody(pieces(framed.subarray(0, framed.length - 2)), bareVerified, bare.headers))).equals(DATA));
  });

  test('the decoded length must match x-amz-decoded-content-length; cut and malformed framing is refused', async () => {
    const { req, verified } = await streamingRequest('STREAMING-AWS4-HMAC-SHA256-PAYLOAD');
    const body = frame(DATA, 8192, signingOf(verified));
    for (const declared of [DATA.length - 1, DATA.length + 1]) {
      await bodyRefused(verifiedBody(pieces(body), verified, { ...req.headers, 'x-amz-decoded-content-length': String(declared) }), 'IncompleteBody', 400);
    }
    const { 'x-amz-decoded-content-length': _gone, ...without } = req.headers;
    await bodyRefused(verifiedBody(pieces(body), verified, without), 'MissingContentLength', 411);
    await bodyRefused(verifiedBody(pieces(body.subarray(0, 30_000)), verified, req.headers), 'IncompleteBody', 400);
    await bodyRefused(verifiedBody(pieces(body.subarray(0, body.lastIndexOf('0;chunk-signature='))), verified, req.headers), 'IncompleteBody', 400);
    await bodyRefused(verifiedBody(pieces(Buffer.concat([Buffer.from('zz'), body])), verified, req.headers), 'IncompleteBody', 400);
    await bodyRefused(verifiedBody(pieces(Buffer.concat([body, Buffer.from('extra')])), verified, req.headers), 'IncompleteBody', 400);
    await bodyRefused(verifiedBody(pieces(Buffer.from(body.toString('latin1').replace('\r\n', '\n'), 'latin1')), verified, req.headers), 'IncompleteBody', 400);
    // A framing line that never ends is refused once it is longer than any real one, not buffered.
    const endless = Readable.from((function* () {
      for (let i = 0; i < 1000; i++) yield Buffer.alloc(1024, 0x41);
    })());
    await bodyRefused(verifiedBody(endless, verified, req.headers), 'IncompleteBody', 400);
    // Nor does an endless run of blank trailer lines keep the body open.
    const blanks = Readable.from((function* () {
      yield Buffer.from('0\r\n');
      for (let i = 0; i < 100_000; i++) yield Buffer.from('\r\n');
    })());
    await bodyRefused(verifiedBody(blanks, null, { 'content-encoding': 'aws-chunked' }), 'IncompleteBody', 400);
    // Content past the declared length is refused before it goes downstream.
    let passed = 0;
    const over = verifiedBody(pieces(frame(DATA, 8192)), null, { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '10000' });
    over.body.on('data', (piece: Buffer) => (passed += piece.length));
    await bodyRefused(over, 'IncompleteBody', 400);
    assert.ok(passed <= 10_000, `${passed} bytes went downstream`);
  });
});

describe('verifiedBody checks', () => {
  const md5b64 = (data: Buffer) => createHash('md5').update(data).digest('base64');

  test('a signed payload hash, Content-MD5 and x-amz-checksum-* header are checked; md5Hex is the ETag', async () => {
    const hex = createHash('sha256').update(DATA).digest('hex');
    const verified = await verifyRequest(await headerSigned({ method: 'PUT', payload: hex }), keys, WHEN);
    const headers = { 'content-length': String(DATA.length), 'content-md5': md5b64(DATA), 'x-amz-checksum-crc32c': await sdkChecksum('crc32c', DATA) };
    const vb = verifiedBody(pieces(DATA), verified, headers);
    assert.equal(vb.declaredSize, DATA.length);
    assert.ok((await consume(vb)).equals(DATA));
    assert.equal(vb.md5Hex(), createHash('md5').update(DATA).digest('hex'));
    assert.deepEqual(vb.checksum(), { header: 'x-amz-checksum-crc32c', value: headers['x-amz-checksum-crc32c'] });

    const other = Buffer.from(DATA);
    other[7] = other[7]! ^ 1;
    await bodyRefused(verifiedBody(pieces(other), verified, {}), 'XAmzContentSHA256Mismatch', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'content-md5': md5b64(other) }), 'BadDigest', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'content-md5': 'not-base64!' }), 'InvalidDigest', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'content-md5': Buffer.alloc(15).toString('base64') }), 'InvalidDigest', 400);
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const name = `x-amz-checksum-${algorithm}`;
      assert.ok((await consume(verifiedBody(pieces(DATA), null, { [name]: await sdkChecksum(algorithm, DATA) }))).equals(DATA));
      await bodyRefused(verifiedBody(pieces(DATA), null, { [name]: await sdkChecksum(algorithm, other) }), 'BadDigest', 400);
    }
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'x-amz-checksum-crc32': 'AAAA' }), 'InvalidRequest', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'x-amz-checksum-crc32': 'AAAAAA==', 'x-amz-checksum-sha1': 'AAAAAA==' }), 'InvalidRequest', 400);
  });

  test('x-amz-sdk-checksum-algorithm alone asks for the checksum to be computed and echoed', async () => {
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const vb = verifiedBody(pieces(DATA), null, { 'x-amz-sdk-checksum-algorithm': algorithm.toUpperCase() });
      await consume(vb);
      assert.deepEqual(vb.checksum(), { header: `x-amz-checksum-${algorithm}`, value: await sdkChecksum(algorithm, DATA) });
    }
    const plain = verifiedBody(pieces(DATA), null, {});
    await consume(plain);
    assert.equal(plain.checksum(), undefined);
  });

  test('the checksums module agrees with @aws-sdk/checksums on every algorithm, fed in pieces', async () => {
    const inputs = [Buffer.alloc(0), Buffer.from('hello world'), DATA];
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      for (const input of inputs) {
        const ours = createChecksum(algorithm);
        for (let at = 0; at < input.length; at += 1001) ours.update(input.subarray(at, at + 1001));
        assert.equal(await ours.digest(), await sdkChecksum(algorithm, input), `${algorithm} of ${input.length} bytes`);
      }
    }
  });

  test('a body nobody signed cannot claim signed chunks; a trailer needs aws-chunked; a cut request is request_aborted', async () => {
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' }), 'InvalidRequest', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'x-amz-trailer': 'x-amz-checksum-crc32' }), 'InvalidRequest', 400);
    await bodyRefused(verifiedBody(pieces(DATA), null, { 'x-amz-trailer': 'x-amz-checksum-md5', 'content-encoding': 'aws-chunked' }), 'InvalidRequest', 400);
    const cut = new Readable({ read() {} });
    cut.push(DATA.subarray(0, 1000));
    const vb = verifiedBody(cut, null, { 'content-length': String(DATA.length) });
    setImmediate(() => cut.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
    await assert.rejects(consume(vb), (err: unknown) => err instanceof BlobdError && err.code === 'request_aborted');
  });

  test('failures arrive before the end: a consumer committing on end never sees end', async () => {
    const vb = verifiedBody(pieces(DATA), null, { 'content-md5': md5b64(Buffer.from('x')) });
    let ended = false;
    vb.body.on('end', () => (ended = true));
    await assert.rejects(consume(vb), (err: unknown) => err instanceof S3Error && err.code === 'BadDigest');
    assert.equal(ended, false);
  });

  test('a 64 MiB unsigned-trailer body streams through with a bounded amount in flight', async () => {
    const total = 64 * 1024 * 1024;
    const chunk = 64 * 1024;
    let produced = 0;
    let consumed = 0;
    let maxInFlight = 0;
    const crc = createChecksum('crc32');
    const md5 = createHash('md5');
    const source = Readable.from(
      (function* () {
        for (let at = 0; at < total; at += chunk) {
          const data = Buffer.alloc(chunk, at / chunk);
          crc.update(data);
          md5.update(data);
          produced += chunk;
          yield Buffer.concat([Buffer.from(`${chunk.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
        }
        yield Buffer.from('0\r\n');
      })(),
    );
    const trailerValue = { value: '' };
    const withTrailer = Readable.from(
      (async function* () {
        for await (const piece of source) yield piece as Buffer;
        trailerValue.value = await crc.digest();
        yield Buffer.from(`x-amz-checksum-crc32:${trailerValue.value}\r\n\r\n`);
      })(),
    );
    const headers = { 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'content-encoding': 'aws-chunked', 'x-amz-trailer': 'x-amz-checksum-crc32', 'x-amz-decoded-content-length': String(total) };
    const vb = verifiedBody(withTrailer, null, headers);
    await pipeline(
      vb.body,
      new Writable({
        write(data: Buffer, _e, cb) {
          consumed += data.length;
          maxInFlight = Math.max(maxInFlight, produced - consumed);
          cb();
        },
      }),
    );
    assert.equal(consumed, total);
    assert.equal(vb.md5Hex(), md5.digest('hex'));
    assert.deepEqual(vb.checksum(), { header: 'x-amz-checksum-crc32', value: trailerValue.value });
    assert.ok(maxInFlight <= 4 * 1024 * 1024, `at most 4 MiB between the producer and the consumer, saw ${maxInFlight}`);
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
