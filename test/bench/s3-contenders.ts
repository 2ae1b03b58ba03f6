// The two sides of the S3 bench: blobd started with --store s3 on an RGW bucket and driven through its native
// session API (initiate, appends with Upload-Offset, complete with the digest), and the same RGW used directly
// through the AWS SDK (lib-storage Upload, GetObject, PutObject). Every body is streamed, never held whole.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { startDaemon, type Daemon } from '../helpers/daemon.ts';
import type { Rgw } from '../helpers/rgw.ts';
import { expect } from './bench-http.ts';
import type { Payload } from './generated-payload.ts';

/** `blobd serve --store s3` on `bucket` with blobd's default part size; reuse `dataDir` to restart. */
export function startS3Daemon(rgw: Rgw, bucket: string, dataDir: string): Promise<Daemon> {
  return startDaemon({
    dataDir,
    args: ['--store', 's3', '--s3-endpoint', rgw.endpoint, '--s3-bucket', bucket, '--s3-region', rgw.region, '--s3-force-path-style'],
    env: { BLOBD_S3_ACCESS_KEY_ID: rgw.accessKeyId, BLOBD_S3_SECRET_ACCESS_KEY: rgw.secretAccessKey },
  });
}

const auth = (d: Daemon) => ({ authorization: `Bearer ${d.token}` });

export interface Session {
  id: string;
  token: string;
}

export async function initiate(d: Daemon, size: number): Promise<Session> {
  const res = await expect(202, `${d.url}/api/blobs/uploads?size=${size}`, { headers: auth(d) });
  return JSON.parse(res.body) as Session;
}

/** Appends the payload's bytes [start, end) in appends of `step` bytes, each with its Upload-Offset precondition. */
export async function appendRange(d: Daemon, s: Session, p: Payload, start: number, end: number, step: number): Promise<void> {
  for (let off = start; off < end; off += step) {
    const len = Math.min(step, end - off);
    await expect(203, `${d.url}/api/blobs/uploads/${s.id}/append`, {
      headers: { 'upload-token': s.token, 'upload-offset': String(off) },
      body: { stream: p.stream(off, off + len), length: len },
    });
  }
}

/** Completes the session (verifying `digest` when given) and returns the blob's digest. */
export async function complete(d: Daemon, s: Session, digest?: string): Promise<string> {
  const q = digest ? `?digest=${digest}` : '';
  const res = await expect(201, `${d.url}/api/blobs/uploads/${s.id}/complete${q}`, { headers: { 'upload-token': s.token } });
  const got = (JSON.parse(res.body) as { digest: string }).digest;
  if (digest && got !== digest) throw new Error(`session ${s.id} completed as ${got}, want ${digest}`);
  return got;
}

/** A whole session upload of the payload, as a client that knows its digest does it. */
export async function sessionUpload(d: Daemon, p: Payload, step: number, digest?: string): Promise<string> {
  const s = await initiate(d, p.size);
  await appendRange(d, s, p, 0, p.size, step);
  return complete(d, s, digest);
}

/** GET /api/blobs/<digest>, counting (or with `hash` hashing) the body; throws unless `size` bytes came. */
export async function download(d: Daemon, digest: string, size: number, hash = false): Promise<string> {
  const res = await expect(200, `${d.url}/api/blobs/${digest}`, { method: 'GET', headers: auth(d), discard: !hash, hash });
  if (res.bytes !== size) throw new Error(`GET ${digest}: ${res.bytes} bytes, want ${size}`);
  return res.body;
}

export async function postSmall(d: Daemon, body: Buffer): Promise<void> {
  await expect(201, `${d.url}/api/blobs`, { headers: auth(d), body });
}

export async function forget(d: Daemon, digest: string): Promise<void> {
  await expect(204, `${d.url}/api/blobs/${digest}?force=true`, { method: 'DELETE', headers: auth(d) });
}

/** The limit: the same bytes straight to RGW with lib-storage's Upload (what an S3-native client does). */
export async function directUpload(s3: S3Client, bucket: string, key: string, p: Payload, partSize: number, queueSize: number): Promise<void> {
  await new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: p.stream() }, partSize, queueSize }).done();
}

/** GetObject read to the end: the byte count, or with `hash` the digest. */
export async function directGet(s3: S3Client, bucket: string, key: string, size: number, hash = false): Promise<string> {
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const h = hash ? createHash('sha256') : null;
  let bytes = 0;
  for await (const c of res.Body as Readable) {
    bytes += (c as Buffer).length;
    h?.update(c as Buffer);
  }
  if (bytes !== size) throw new Error(`GetObject ${key}: ${bytes} bytes, want ${size}`);
  return h ? `sha256:${h.digest('hex')}` : String(bytes);
}

export async function directPut(s3: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

export async function directDelete(s3: S3Client, bucket: string, key: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}
