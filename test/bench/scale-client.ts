// What the scale bench sends to a blobd endpoint (one daemon, or nginx in front of several): one-shot
// uploads, a session (initiate, appends with Upload-Offset, complete), downloads by digest, object writes
// and reads, and the metadata statements counter read from each node's /metrics.
import { expect, send } from './bench-http.ts';
import type { Payload } from './generated-payload.ts';

/** Where requests go and with which token. */
export interface Endpoint {
  readonly url: string;
  readonly token: string;
}

const auth = (e: Endpoint) => ({ authorization: `Bearer ${e.token}` });

/** POST /api/blobs with `body`; returns the digest. */
export async function postBlob(e: Endpoint, body: Buffer): Promise<string> {
  const res = await expect(201, `${e.url}/api/blobs`, { headers: auth(e), body });
  return (JSON.parse(res.body) as { digest: string }).digest;
}

export interface Session {
  readonly id: string;
  readonly token: string;
}

export async function initiate(e: Endpoint, size: number): Promise<Session> {
  const res = await expect(202, `${e.url}/api/blobs/uploads?size=${size}`, { headers: auth(e) });
  return JSON.parse(res.body) as Session;
}

/** Appends the payload's bytes [start, end) in appends of `step` bytes, each with its Upload-Offset precondition. */
export async function appendRange(e: Endpoint, s: Session, p: Payload, start: number, end: number, step: number): Promise<void> {
  for (let off = start; off < end; off += step) {
    const len = Math.min(step, end - off);
    await expect(203, `${e.url}/api/blobs/uploads/${s.id}/append`, {
      headers: { 'upload-token': s.token, 'upload-offset': String(off) },
      body: { stream: p.stream(off, off + len), length: len },
    });
  }
}

/** Completes the session, verifying `digest` when given; returns the blob's digest. */
export async function complete(e: Endpoint, s: Session, digest?: string): Promise<string> {
  const q = digest ? `?digest=${digest}` : '';
  const res = await expect(201, `${e.url}/api/blobs/uploads/${s.id}/complete${q}`, { headers: { 'upload-token': s.token } });
  const got = (JSON.parse(res.body) as { digest: string }).digest;
  if (digest && got !== digest) throw new Error(`session ${s.id} completed as ${got}, want ${digest}`);
  return got;
}

/** A whole session upload of the payload, as a client that knows its digest does it. */
export async function sessionUpload(e: Endpoint, p: Payload, step: number, digest: string): Promise<void> {
  const s = await initiate(e, p.size);
  await appendRange(e, s, p, 0, p.size, step);
  await complete(e, s, digest);
}

/** GET /api/blobs/<digest> read to the end (counted, not kept); throws unless `size` bytes came. */
export async function getBlob(e: Endpoint, digest: string, size: number): Promise<void> {
  const res = await expect(200, `${e.url}/api/blobs/${digest}`, { method: 'GET', headers: auth(e), discard: true });
  if (res.bytes !== size) throw new Error(`GET ${digest}: ${res.bytes} bytes, want ${size}`);
}

export async function forget(e: Endpoint, digest: string): Promise<void> {
  await expect(204, `${e.url}/api/blobs/${digest}?force=true`, { method: 'DELETE', headers: auth(e) });
}

export async function putBucket(e: Endpoint, name: string): Promise<void> {
  const res = await send(`${e.url}/api/buckets/${name}`, { method: 'PUT', headers: { ...auth(e), 'content-type': 'application/json' }, body: Buffer.from('{}') });
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT bucket ${name}: ${res.status} ${res.body.slice(0, 300)}`);
}

export async function putObject(e: Endpoint, bucket: string, key: string, body: Buffer): Promise<void> {
  const res = await send(`${e.url}/api/buckets/${bucket}/objects/${key}`, { method: 'PUT', headers: { ...auth(e), 'content-type': 'application/octet-stream' }, body });
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT object ${bucket}/${key}: ${res.status} ${res.body.slice(0, 300)}`);
}

export async function getObject(e: Endpoint, bucket: string, key: string, size: number): Promise<void> {
  const res = await expect(200, `${e.url}/api/buckets/${bucket}/objects/${key}`, { method: 'GET', headers: auth(e), discard: true });
  if (res.bytes !== size) throw new Error(`GET object ${bucket}/${key}: ${res.bytes} bytes, want ${size}`);
}

/** The counter of metadata statements sent, from a node's /metrics; undefined when the node has none. */
export const QUERIES_METRIC = process.env.BENCH_SCALE_QUERIES_METRIC ?? 'blobd_metadata_queries_total';

export async function metadataQueries(nodeUrl: string): Promise<number | undefined> {
  const res = await expect(200, `${nodeUrl}/metrics`, { method: 'GET' });
  const line = res.body.split('\n').find((l) => l.startsWith(`${QUERIES_METRIC} `) || l.startsWith(`${QUERIES_METRIC}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}
