// Shared by the SigV4 and payload tests of the S3 front (test/s3api-sigv4.test.ts, test/s3api-payload.test.ts):
// a test key, requests signed by @smithy/signature-v4 in header and presigned form, the expected-S3Error check,
// and the bodies both files send.
import { Crc32, Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Principal } from '../../src/core/auth.ts';
import type { ChecksumAlgorithm } from '../../src/http/s3api/checksums.ts';
import { S3Error } from '../../src/http/s3api/errors.ts';
import type { verifiedBody } from '../../src/http/s3api/payload.ts';
import type { SigV4Request } from '../../src/http/s3api/sigv4.ts';
import { Sha256 } from './s3-signing.ts';

export const ACCESS_KEY = 'BKIDTESTACCESSKEY001';
export const SECRET = 'test/secret+key=with/odd+chars0123456789ab';
export const PRINCIPAL: Principal = { id: 's3key:test', scopes: ['bucket:*:read', 'bucket:*:write'] };
// AWS's worked examples ("Signature Calculations for the Authorization Header: Transferring Payload in Multiple
// Chunks", and the same with trailing headers) are signed with this key.
export const DOC_KEY = 'AKIAIOSFODNN7EXAMPLE';
export const DOC_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
export const keys = {
  async lookup(id: string) {
    if (id === ACCESS_KEY) return { secret: SECRET, principal: PRINCIPAL };
    if (id === DOC_KEY) return { secret: DOC_SECRET, principal: PRINCIPAL };
    return null;
  },
};
export const HOST = 'localhost:9000';
export const WHEN = new Date('2026-12-03T12:00:00Z');
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** An S3-style signer: the path is signed as sent (the S3 SDK encodes keys itself, uriEscapePath false). */
export function signer(secret = SECRET, accessKeyId = ACCESS_KEY, region = 'us-east-1'): SignatureV4 {
  return new SignatureV4({ credentials: { accessKeyId, secretAccessKey: secret }, region, service: 's3', sha256: Sha256, uriEscapePath: false });
}

/** What the S3 SDK does to a key segment: encodeURIComponent plus !'()*. */
export function encodeSegment(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
export function encodeKeyPath(bucket: string, key: string): string {
  return `/${bucket}/${key.split('/').map(encodeSegment).join('/')}`;
}

export function wire(req: { method: string; path: string; query?: Record<string, string | string[] | null>; headers: Record<string, string> }): SigV4Request {
  const rawQuery = Object.entries(req.query ?? {})
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((one) => [k, one]) : [[k, v ?? '']]))
    .map(([k, v]) => `${encodeSegment(k!)}=${encodeSegment(v!)}`)
    .join('&');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
  return { method: req.method, rawPath: req.path, rawQuery, headers };
}

export interface SignOptions {
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

/** The request a client would sign: `o`'s method, path and query, with `headers` under o.headers. */
function unsignedRequest(o: SignOptions, headers: Record<string, string>): HttpRequest {
  return new HttpRequest({
    method: o.method ?? 'GET',
    protocol: 'http:',
    hostname: 'localhost',
    port: 9000,
    path: o.path ?? '/bucket/key.txt',
    query: o.query ?? {},
    headers: { host: HOST, ...headers, ...o.headers },
  });
}

export async function headerSigned(o: SignOptions = {}): Promise<SigV4Request> {
  const request = unsignedRequest(o, { 'x-amz-content-sha256': o.payload ?? 'UNSIGNED-PAYLOAD' });
  const signed = await signer(o.secret, o.accessKeyId, o.region).sign(request, { signingDate: o.date ?? WHEN });
  return wire(signed as HttpRequest & { method: string; path: string; headers: Record<string, string> });
}

export async function presigned(o: SignOptions & { expiresIn?: number } = {}): Promise<SigV4Request> {
  // What @aws-sdk/s3-request-presigner does: the payload is UNSIGNED-PAYLOAD, hoisted into the query.
  const request = unsignedRequest(o, { 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD' });
  const signed = await signer(o.secret, o.accessKeyId, o.region).presign(request, { signingDate: o.date ?? WHEN, expiresIn: o.expiresIn ?? 900 });
  return wire(signed as HttpRequest & { method: string; path: string; headers: Record<string, string> });
}

export async function refused(promise: Promise<unknown>, code: string, status: number): Promise<S3Error> {
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

export const minutes = (n: number) => new Date(WHEN.getTime() + n * 60_000);

// Bodies.

export async function consume(vb: ReturnType<typeof verifiedBody>): Promise<Buffer> {
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


export function sdkChecksum(algorithm: ChecksumAlgorithm, data: Buffer): Promise<string> {
  const impl = { crc32: () => new Crc32(), crc32c: () => new Crc32c(), crc64nvme: () => new Crc64Nvme(), sha1: () => null, sha256: () => null }[algorithm]();
  if (impl === null) return Promise.resolve(createHash(algorithm).update(data).digest('base64'));
  impl.update(data);
  return impl.digest().then((d) => Buffer.from(d).toString('base64'));
}

export const DATA = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 251));
