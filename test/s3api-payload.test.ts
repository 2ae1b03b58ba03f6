// Verified bodies of the S3 front (verifiedBody), in process (no daemon): aws-chunked framing signed and
// unsigned, with and without trailers (AWS's documented examples, and bodies built here chunk by chunk following
// the AWS docs), Content-MD5 and x-amz-checksum-* checks, and bounded memory. Signatures: test/s3api-sigv4.test.ts.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { BlobdError } from '../src/core/errors.ts';
import { checkWorker, stopCheckWorkerForTests } from '../src/http/s3api/check-worker.ts';
import { CHECKSUM_ALGORITHMS, createChecksum } from '../src/http/s3api/checksums.ts';
import { S3Error } from '../src/http/s3api/errors.ts';
import { verifiedBody } from '../src/http/s3api/payload.ts';
import { verifyRequest, type SigV4Request, type VerifiedRequest } from '../src/http/s3api/sigv4.ts';
import {
  consume,
  DATA,
  DOC_KEY,
  DOC_SECRET,
  EMPTY_SHA256,
  headerSigned,
  keys,
  PRINCIPAL,
  refused,
  sdkChecksum,
  WHEN,
} from './helpers/sigv4-fixtures.ts';

/** Splits a body into pieces of awkward sizes, so framing lines and CRLFs straddle reads. */
function pieces(body: Buffer, size = 777): Readable {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) out.push(body.subarray(at, at + size));
  return Readable.from(out);
}

async function bodyRefused(vb: ReturnType<typeof verifiedBody>, code: string, status: number): Promise<void> {
  await refused(consume(vb), code, status);
}

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
// AWS's worked examples ("Signature Calculations for the Authorization Header: Transferring Payload in Multiple
// Chunks", and the same with trailing headers): 66560 bytes of 'a' in 64 KiB chunks, signed with DOC_KEY.
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

  test('a body of 1 MiB or more is checked on the worker thread alike: every hash, every mismatch', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024 + 3);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    const other = Buffer.from(big);
    other[big.length - 1] = 1;
    const size = { 'content-length': String(big.length) };
    const hex = createHash('sha256').update(big).digest('hex');
    const verified = await verifyRequest(await headerSigned({ method: 'PUT', payload: hex }), keys, WHEN);
    const vb = verifiedBody(pieces(big, 65_536), verified, { ...size, 'content-md5': md5b64(big), 'x-amz-checksum-crc32': await sdkChecksum('crc32', big) });
    assert.ok((await consume(vb)).equals(big));
    assert.equal(vb.md5Hex(), createHash('md5').update(big).digest('hex'));
    assert.deepEqual(vb.checksum(), { header: 'x-amz-checksum-crc32', value: await sdkChecksum('crc32', big) });
    await bodyRefused(verifiedBody(pieces(other, 65_536), verified, size), 'XAmzContentSHA256Mismatch', 400);
    await bodyRefused(verifiedBody(pieces(big, 65_536), null, { ...size, 'content-md5': md5b64(other) }), 'BadDigest', 400);
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const name = `x-amz-checksum-${algorithm}`;
      const ok = verifiedBody(pieces(big, 65_536), null, { ...size, [name]: await sdkChecksum(algorithm, big) });
      assert.ok((await consume(ok)).equals(big), algorithm);
      assert.equal(ok.md5Hex(), createHash('md5').update(big).digest('hex'));
      await bodyRefused(verifiedBody(pieces(big, 65_536), null, { ...size, [name]: await sdkChecksum(algorithm, other) }), 'BadDigest', 400);
      const asked = verifiedBody(pieces(big, 65_536), null, { ...size, 'x-amz-sdk-checksum-algorithm': algorithm });
      await consume(asked);
      assert.deepEqual(asked.checksum(), { header: name, value: await sdkChecksum(algorithm, big) });
    }
  });

  test('bodies checked side by side share the worker: past the end of its shared memory and past its bound, each hash is its own', async () => {
    // 3 × 9 MiB handed over at once, never waiting: the 16 MiB the worker shares wraps around, and what finds
    // it full goes over as buffers of their own; the hashes must not mix up bodies or bytes either way.
    const bodies = [0, 1, 2].map((n) => Buffer.from(Array.from({ length: 9 * 1024 * 1024 + n * 7 }, (_, i) => (i * (n + 3)) & 0xff)));
    const checks = bodies.map(() => checkWorker().start(false, 'crc32'));
    for (let at = 0; at < bodies[0]!.length + 100; at += 100_003) {
      bodies.forEach((b, i) => {
        if (at < b.length) checks[i]!.update(b.subarray(at, Math.min(b.length, at + 100_003)));
      });
    }
    const results = await Promise.all(checks.map((c) => c.finish()));
    for (const [i, b] of bodies.entries()) {
      assert.equal(results[i]!.md5Hex, createHash('md5').update(b).digest('hex'));
      assert.equal(results[i]!.checksum, await sdkChecksum('crc32', b));
    }
  });

  test('a check worker that stops fails the bodies it had with an S3 503; the next body gets a new worker', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 7);
    const size = { 'content-length': String(big.length) };
    const source = new PassThrough();
    const cut = verifiedBody(source, null, size);
    const consumed = consume(cut);
    source.write(big.subarray(0, 1024 * 1024));
    await new Promise((r) => setTimeout(r, 20));
    await stopCheckWorkerForTests();
    source.end(big.subarray(1024 * 1024));
    await refused(consumed, 'ServiceUnavailable', 503);
    const next = verifiedBody(pieces(big, 65_536), null, { ...size, 'content-md5': md5b64(big) });
    assert.ok((await consume(next)).equals(big));
    assert.equal(next.md5Hex(), createHash('md5').update(big).digest('hex'));
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
