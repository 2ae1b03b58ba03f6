// Hand-made SigV4 requests for tests of the S3 front: what no SDK command would send (malformed XML, an
// unknown subresource, a HEAD whose error must have no body), signed with @smithy/signature-v4 over
// node:crypto, the payload unsigned.
import { S3ServiceException } from '@aws-sdk/client-s3';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import { createHash, createHmac } from 'node:crypto';

/** The hash class SignatureV4 wants (HMAC when given a secret), over node:crypto. */
export class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(typeof data === 'string' ? data : bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}

function bytes(data: ArrayBuffer | ArrayBufferView): Buffer {
  return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
}

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** The headers that sign `method base+pathAndQuery` with `credentials` (region us-east-1, UNSIGNED-PAYLOAD). */
async function signedHeaders(base: string, credentials: S3Credentials, method: string, pathAndQuery: string, body: string | undefined, headers: Record<string, string>) {
  const url = new URL(base + pathAndQuery);
  const request = new HttpRequest({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
    body,
  });
  const signer = new SignatureV4({ credentials, region: 'us-east-1', service: 's3', sha256: Sha256, uriEscapePath: false });
  return { url, headers: (await signer.sign(request)).headers };
}

/**
 * fetch of `base + pathAndQuery` signed with `credentials` (region us-east-1, UNSIGNED-PAYLOAD). The path
 * is signed as written: percent-encode it the way the request should carry it.
 */
export async function signedFetch(
  base: string,
  credentials: S3Credentials,
  method: string,
  pathAndQuery: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  const signed = await signedHeaders(base, credentials, method, pathAndQuery, body, headers);
  return fetch(signed.url, { method, headers: signed.headers, body });
}

/**
 * Like signedFetch, over node:http so that a header may be sent more than once (an array: one line per value),
 * signed as SigV4 wants a repeated header: its values joined with ','.
 */
export async function signedRepeatedHeaders(
  base: string,
  credentials: S3Credentials,
  method: string,
  pathAndQuery: string,
  body: string,
  headers: Record<string, string | string[]>,
): Promise<{ status: number; body: string }> {
  const joined = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
  const { url, headers: signed } = await signedHeaders(base, credentials, method, pathAndQuery, body, joined);
  const sent: Record<string, string | string[]> = { ...signed, ...headers, 'content-length': String(Buffer.byteLength(body)) };
  const { request: httpRequest } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: sent }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A new S3 key of the daemon with these scopes, made through its admin route. */
export async function s3KeyOf(d: { api(path: string, init?: RequestInit): Promise<Response> }, scopes: readonly string[]): Promise<S3Credentials> {
  const res = await d.api('/api/s3-keys', { method: 'POST', body: JSON.stringify({ scopes }), headers: { 'content-type': 'application/json' } });
  if (res.status !== 201) throw new Error(`POST /api/s3-keys answered ${res.status}: ${await res.text()}`);
  const k = (await res.json()) as { access_key_id: string; secret_access_key: string };
  return { accessKeyId: k.access_key_id, secretAccessKey: k.secret_access_key };
}

/** The S3 error an SDK call failed with: its code and HTTP status (fails the test when the call succeeds). */
export async function s3Error(p: Promise<unknown>): Promise<{ code: string; status: number | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof S3ServiceException) return { code: err.name, status: err.$metadata.httpStatusCode };
    throw err;
  }
  throw new Error('the call succeeded');
}
