// The object operations the S3 store is built from, each one S3 call (or one paginated listing, or one
// server-side copy of any size) with the store's error handling: an absent key is a value, not an error.
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { Part } from './cursor.ts';
import { isNotFound, isUploadGone, MAX_PART_SIZE, MAX_PARTS, type S3Context } from './s3-client.ts';

/** Size and last write of the object at `key`, or null when there is none. */
export async function headObject(ctx: S3Context, key: string): Promise<{ size: number; modifiedAt: number } | null> {
  try {
    const res = await ctx.client.send(new HeadObjectCommand({ Bucket: ctx.bucket, Key: key }));
    return { size: res.ContentLength ?? 0, modifiedAt: res.LastModified?.getTime() ?? 0 };
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

/** The object's bytes (an inclusive range of them), or null when there is no object. */
export async function getObject(ctx: S3Context, key: string, range?: { start: number; end: number }): Promise<Readable | null> {
  try {
    const res = await ctx.client.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }));
    return res.Body as Readable;
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

/** The whole object in one buffer: only for tails, which are smaller than a part. */
export async function getSmallObject(ctx: S3Context, key: string, size: number): Promise<Buffer | null> {
  const body = await getObject(ctx, key);
  if (body === null) return null;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (at + chunk.length > size) {
      body.destroy();
      throw new Error(`${key} holds more than the ${size} bytes recorded for it`);
    }
    chunk.copy(out, at);
    at += chunk.length;
  }
  if (at !== size) throw new Error(`${key} holds ${at} bytes, not the ${size} recorded for it`);
  return out;
}

export async function deleteObject(ctx: S3Context, key: string): Promise<void> {
  // S3 answers a DELETE of an absent key with 204 too.
  await ctx.client.send(new DeleteObjectCommand({ Bucket: ctx.bucket, Key: key }));
}

/** A delete whose failure only leaves a leftover that recovery or deleteUpload removes later. */
export async function deleteQuietly(ctx: S3Context, key: string): Promise<void> {
  await deleteObject(ctx, key).catch(() => {});
}

/** Every key under `prefix`, a page at a time (never the whole listing in memory). */
export async function* listKeys(ctx: S3Context, prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }> {
  let token: string | undefined;
  do {
    const res = await ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of res.Contents ?? []) if (o.Key) yield { key: o.Key, size: o.Size ?? 0, modifiedAt: o.LastModified?.getTime() ?? 0 };
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
}

/** The "directories" one level below `prefix` (`prefix<name>/`), a page at a time. */
export async function* listDirs(ctx: S3Context, prefix: string): AsyncIterable<string> {
  let token: string | undefined;
  do {
    const res = await ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
    for (const p of res.CommonPrefixes ?? []) if (p.Prefix) yield p.Prefix;
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
}

/** Open multipart uploads whose key starts with `prefix`. */
export async function* listUploadsUnder(ctx: S3Context, prefix: string): AsyncIterable<{ key: string; uploadId: string }> {
  let keyMarker: string | undefined;
  let idMarker: string | undefined;
  for (;;) {
    const res = await ctx.client.send(new ListMultipartUploadsCommand({ Bucket: ctx.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }));
    for (const u of res.Uploads ?? []) if (u.Key && u.UploadId) yield { key: u.Key, uploadId: u.UploadId };
    if (!res.IsTruncated) return;
    keyMarker = res.NextKeyMarker;
    idMarker = res.NextUploadIdMarker;
    if (!keyMarker) return;
  }
}

/** Every part the open upload holds, by number (ETags as the store lists them). Only ever used to find parts the cursor does not name. */
export async function listParts(ctx: S3Context, key: string, uploadId: string): Promise<Part[]> {
  const parts: Part[] = [];
  let marker: string | undefined;
  for (;;) {
    const res = await ctx.client.send(new ListPartsCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
    for (const p of res.Parts ?? []) if (p.PartNumber && p.ETag) parts.push([p.PartNumber, p.ETag, p.Size ?? 0]);
    if (!res.IsTruncated || !res.NextPartNumberMarker) return parts.sort((a, b) => a[0] - b[0]);
    marker = res.NextPartNumberMarker;
  }
}

/** Overwrites part `n` with `size` zero bytes: a part whose bytes nobody reads, made big enough to be listed. */
export async function uploadFiller(ctx: S3Context, key: string, uploadId: string, n: number, size: number): Promise<Part> {
  const res = await ctx.client.send(new UploadPartCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: Buffer.alloc(size) }));
  if (!res.ETag) throw new Error(`the S3 store gave no ETag for part ${n} of ${key}`);
  return [n, res.ETag, size];
}

/** Whether the multipart upload is still open (one ListParts page: existence only, never its parts). */
export async function uploadIsOpen(ctx: S3Context, key: string, uploadId: string): Promise<boolean> {
  try {
    await ctx.client.send(new ListPartsCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId, MaxParts: 1 }));
    return true;
  } catch (err) {
    if (isUploadGone(err)) return false;
    throw err;
  }
}

export async function createUpload(ctx: S3Context, key: string): Promise<string> {
  const res = await ctx.client.send(new CreateMultipartUploadCommand({ Bucket: ctx.bucket, Key: key }));
  if (!res.UploadId) throw new Error(`the S3 store gave no upload id for ${key}`);
  return res.UploadId;
}

/** Aborts a multipart upload; one already gone is fine. */
export async function abortUpload(ctx: S3Context, key: string, uploadId: string): Promise<void> {
  try {
    await ctx.client.send(new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId }));
  } catch (err) {
    if (!isUploadGone(err)) throw err;
  }
}

/** Aborts every open multipart upload of exactly `key` but `keep`. */
export async function abortUploadsOf(ctx: S3Context, key: string, keep: string | null): Promise<void> {
  const doomed: string[] = [];
  for await (const u of listUploadsUnder(ctx, key)) if (u.key === key && u.uploadId !== keep) doomed.push(u.uploadId);
  for (const id of doomed) await abortUpload(ctx, key, id);
}

/** Completes from the caller's part list (the cursor's): RGW's answer carries an empty ETag, so none is used. */
export async function completeUpload(ctx: S3Context, key: string, uploadId: string, parts: readonly Part[]): Promise<void> {
  await ctx.client.send(
    new CompleteMultipartUploadCommand({
      Bucket: ctx.bucket,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts.map(([n, etag]) => ({ PartNumber: n, ETag: etag })) },
    }),
  );
}

/** The `x-amz-copy-source` of a key in the store's bucket. */
function copySource(ctx: S3Context, key: string): string {
  return encodeURIComponent(`${ctx.bucket}/${key}`).replace(/%2F/g, '/');
}

/** One part copied server-side from bytes [start, end] of `source`. */
export async function copyPart(ctx: S3Context, source: string, key: string, uploadId: string, n: number, start: number, end: number): Promise<Part> {
  const res = await ctx.client.send(
    new UploadPartCopyCommand({ Bucket: ctx.bucket, Key: key, UploadId: uploadId, PartNumber: n, CopySource: copySource(ctx, source), CopySourceRange: `bytes=${start}-${end}` }),
  );
  const etag = res.CopyPartResult?.ETag;
  if (!etag) throw new Error(`the S3 store gave no ETag for part ${n} of ${key}`);
  return [n, etag, end - start + 1];
}

/**
 * Bytes per server-side copy part: big enough for few parts, small enough that one copy (which moves no
 * byte over the client's socket until it is done) ends well inside the socket timeout.
 */
const COPY_RANGE = 256 * 1024 * 1024;

/**
 * Copies all `size` bytes of `source` into the open upload as parts `first`, `first + 1` …, every one at
 * least minPartSize (so more parts may follow), up to partsInFlight at once. The parts, in order.
 */
export async function copyIntoUpload(ctx: S3Context, source: string, size: number, key: string, uploadId: string, first: number): Promise<Part[]> {
  const step = Math.max(COPY_RANGE, ctx.minPartSize);
  const ranges: [number, number][] = [];
  for (let start = 0; start < size; start += step) ranges.push([start, Math.min(size, start + step) - 1]);
  // A short last range joins the one before it (still far below 5 GiB).
  if (ranges.length > 1 && ranges.at(-1)![1] - ranges.at(-1)![0] + 1 < ctx.minPartSize) ranges.splice(-2, 2, [ranges.at(-2)![0], size - 1]);
  if (first + ranges.length - 1 > MAX_PARTS) throw new Error(`a multipart upload of more than ${MAX_PARTS} parts`);
  const parts: Part[] = new Array(ranges.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < ranges.length && !failure) {
      const i = next++;
      try {
        parts[i] = await copyPart(ctx, source, key, uploadId, first + i, ranges[i]![0], ranges[i]![1]);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  // Every copy settles before this returns or throws: the caller may abort the upload right after.
  await Promise.all(Array.from({ length: Math.min(ctx.partsInFlight, ranges.length) }, worker));
  if (failure) throw failure.error;
  return parts;
}

/** A server-side copy of the whole object: CopyObject up to 5 GiB, a multipart copy beyond. */
export async function copyObject(ctx: S3Context, source: string, size: number, key: string): Promise<void> {
  if (size <= MAX_PART_SIZE) {
    await ctx.client.send(new CopyObjectCommand({ Bucket: ctx.bucket, Key: key, CopySource: copySource(ctx, source) }));
    return;
  }
  const uploadId = await createUpload(ctx, key);
  try {
    await completeUpload(ctx, key, uploadId, await copyIntoUpload(ctx, source, size, key, uploadId, 1));
  } catch (err) {
    await abortUpload(ctx, key, uploadId).catch(() => {});
    throw err;
  }
}
