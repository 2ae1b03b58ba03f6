// The three sides of the S3-API bench, each doing the same work on a bucket of its own: Ceph RGW and blobd's
// S3-compatible front through the same AWS SDK v3 client configuration (path style, us-east-1, the SDK's
// default checksums) with lib-storage's Upload for multipart, and blobd's native routes through the bench's
// node:http client (an upload session bound to the key by digest, PUT and GET of the object). Bodies stream.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { expect, send } from './bench-http.ts';
import type { Payload } from './generated-payload.ts';

export interface Side {
  readonly name: string;
  /** Uploads the payload to `key` (multipart, or a native session). */
  upload(key: string, p: Payload): Promise<void>;
  /** Reads `key` to the end; the byte count, or with `hash` the `sha256:<hex>` digest. Throws unless `size` bytes came. */
  get(key: string, size: number, hash?: boolean): Promise<string>;
  /** One small object in one request. */
  put(key: string, body: Buffer): Promise<void>;
  /** Untimed clean-up: the object, and on blobd its bytes too (nothing waits for GC). */
  remove(key: string): Promise<void>;
}

/** A running blobd: its native URL, its S3 front's URL, the admin token, the pid whose CPU is read. */
export interface Blobd {
  readonly url: string;
  readonly s3Url: string;
  readonly token: string;
  readonly pid: number;
}

/** The client every S3 side uses: only endpoint and credentials differ; everything else is the SDK's default. */
export function sdkClient(endpoint: string, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
}

/** What the SDK settles on by default (for the report): request and response checksum modes. */
export async function checksumDefaults(s3: S3Client): Promise<string> {
  return `requestChecksumCalculation=${await s3.config.requestChecksumCalculation()}, responseChecksumValidation=${await s3.config.responseChecksumValidation()}`;
}

/** An SDK error as one line: code, message, status and request id (what a request file needs). */
export function describeSdkError(err: unknown): string {
  const e = err as Error & { Code?: string; $metadata?: { httpStatusCode?: number; requestId?: string }; $response?: { headers?: Record<string, string> } };
  const meta = e.$metadata ? ` (HTTP ${e.$metadata.httpStatusCode ?? '?'}, x-amz-request-id ${e.$metadata.requestId ?? '?'})` : '';
  return `${e.name}${e.Code && e.Code !== e.name ? `/${e.Code}` : ''}: ${e.message}${meta}`;
}

const auth = (b: Blobd) => ({ authorization: `Bearer ${b.token}` });

/** An access key with read, write and delete on every bucket, from the admin route. */
export async function blobdS3Key(b: Blobd): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  const body = Buffer.from(JSON.stringify({ scopes: ['bucket:*:read', 'bucket:*:write', 'bucket:*:delete'] }));
  const res = await send(`${b.url}/api/s3-keys`, { headers: { ...auth(b), 'content-type': 'application/json' }, body });
  if (res.status !== 201 && res.status !== 200) throw new Error(`POST /api/s3-keys: ${res.status} ${res.body.slice(0, 300)}`);
  const key = JSON.parse(res.body) as { access_key_id: string; secret_access_key: string };
  return { accessKeyId: key.access_key_id, secretAccessKey: key.secret_access_key };
}

async function blobDigestOf(b: Blobd, bucket: string, key: string): Promise<string> {
  const res = await expect(200, `${b.url}/api/buckets/${bucket}/objects/${encodeURIComponent(key)}?metadata`, { method: 'GET', headers: auth(b) });
  return (JSON.parse(res.body) as { digest: string }).digest;
}

async function createNativeBucket(b: Blobd, bucket: string): Promise<void> {
  const res = await send(`${b.url}/api/buckets/${bucket}`, { method: 'PUT', headers: { ...auth(b), 'content-type': 'application/json' }, body: Buffer.from('{}') });
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT bucket ${bucket}: ${res.status} ${res.body.slice(0, 300)}`);
}

async function forgetBlob(b: Blobd, digest: string): Promise<void> {
  const res = await send(`${b.url}/api/blobs/${digest}?force=true`, { method: 'DELETE', headers: auth(b) });
  if (res.status !== 204 && res.status !== 404) throw new Error(`DELETE blob ${digest}: ${res.status} ${res.body.slice(0, 300)}`);
}

export interface SdkSideOptions {
  partSize: number;
  queueSize: number;
  /**
   * On blobd's front: the bucket is made through the native admin route (an S3 key with bucket scopes may
   * not create buckets: that needs admin), and remove() also frees the blob.
   */
  blobd?: Blobd;
}

/** RGW or blobd's front: CreateBucket, lib-storage Upload, GetObject, PutObject, DeleteObject. */
export async function sdkSide(name: string, s3: S3Client, bucket: string, o: SdkSideOptions): Promise<Side> {
  if (o.blobd) await createNativeBucket(o.blobd, bucket);
  else await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    name,
    async upload(key, p) {
      await new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: p.stream() }, partSize: o.partSize, queueSize: o.queueSize }).done();
    },
    async get(key, size, hash = false) {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const h = hash ? createHash('sha256') : null;
      let bytes = 0;
      for await (const c of res.Body as Readable) {
        bytes += (c as Buffer).length;
        h?.update(c as Buffer);
      }
      if (bytes !== size) throw new Error(`${name} GetObject ${key}: ${bytes} bytes, want ${size}`);
      return h ? `sha256:${h.digest('hex')}` : String(bytes);
    },
    async put(key, body) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    async remove(key) {
      const digest = o.blobd ? await blobDigestOf(o.blobd, bucket, key) : undefined;
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      if (o.blobd && digest) await forgetBlob(o.blobd, digest);
    },
  };
}

/**
 * blobd's native routes: a session (initiate, appends of `append` bytes with Upload-Offset, complete; the
 * client does not know the digest, as an S3 client does not) bound to the key with a JSON PUT by digest;
 * GET of the object; a raw-body PUT of the object for small ones.
 */
export async function nativeSide(b: Blobd, bucket: string, append: number): Promise<Side> {
  await createNativeBucket(b, bucket);
  const objectUrl = (key: string) => `${b.url}/api/buckets/${bucket}/objects/${encodeURIComponent(key)}`;
  const putObject = async (key: string, body: Buffer, type: string) => {
    const res = await send(objectUrl(key), { method: 'PUT', headers: { ...auth(b), 'content-type': type }, body });
    if (res.status !== 201 && res.status !== 200) throw new Error(`native PUT ${bucket}/${key}: ${res.status} ${res.body.slice(0, 300)}`);
  };
  return {
    name: 'native',
    async upload(key, p) {
      const init = await expect(202, `${b.url}/api/blobs/uploads?size=${p.size}`, { headers: auth(b) });
      const s = JSON.parse(init.body) as { id: string; token: string };
      for (let off = 0; off < p.size; off += append) {
        const len = Math.min(append, p.size - off);
        await expect(203, `${b.url}/api/blobs/uploads/${s.id}/append`, {
          headers: { 'upload-token': s.token, 'upload-offset': String(off) },
          body: { stream: p.stream(off, off + len), length: len },
        });
      }
      const done = await expect(201, `${b.url}/api/blobs/uploads/${s.id}/complete`, { headers: { 'upload-token': s.token } });
      const { digest } = JSON.parse(done.body) as { digest: string };
      await putObject(key, Buffer.from(JSON.stringify({ digest })), 'application/json');
    },
    async get(key, size, hash = false) {
      const res = await expect(200, objectUrl(key), { method: 'GET', headers: auth(b), discard: !hash, hash });
      if (res.bytes !== size) throw new Error(`native GET ${bucket}/${key}: ${res.bytes} bytes, want ${size}`);
      return hash ? res.body : String(res.bytes);
    },
    put: (key, body) => putObject(key, body, 'application/octet-stream'),
    async remove(key) {
      const digest = await blobDigestOf(b, bucket, key);
      await expect(204, objectUrl(key), { method: 'DELETE', headers: auth(b) });
      await forgetBlob(b, digest);
    },
  };
}
