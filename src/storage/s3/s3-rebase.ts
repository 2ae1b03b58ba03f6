// A session's multipart upload turned into an object and back. An unfinished upload's parts cannot be read,
// so a process that lost a session's hash seals them into `blobs/<id>` and goes on in a new upload whose
// first parts are server-side copies of that object; a restore does the same from a committed blob.
import type { Cursor, Part } from './cursor.ts';
import { EMPTY, sizeOf } from './cursor.ts';
import { abortUpload, completeUpload, copyIntoUpload, copyObject, copyPart, createUpload, headObject } from './s3-objects.ts';
import { isUploadGone, type S3Context } from './s3-client.ts';

/**
 * Completes the session's upload at `blobs/<id>` from the cursor's parts, its tail copied server-side as the
 * last part, and checks that the object holds exactly the cursor's bytes. The cursor must have an upload.
 */
export async function completeSession(ctx: S3Context, id: string, cur: Cursor): Promise<void> {
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  const parts: Part[] = [...cur.p];
  if (cur.t) parts.push(await copyPart(ctx, ctx.layout.tailKey(id, cur.t[0]), key, cur.u!, parts.length + 1, 0, cur.t[1] - 1));
  await completeUpload(ctx, key, cur.u!, parts);
  await checkSize(ctx, key, sizeOf(cur));
}

/** Throws unless the object at `key` holds `size` bytes. */
export async function checkSize(ctx: S3Context, key: string, size: number): Promise<void> {
  const head = await headObject(ctx, key);
  if (head?.size !== size) throw new Error(`${key} holds ${head === null ? 'nothing' : `${head.size} bytes`} after completion, not the ${size} bytes written`);
}

/**
 * Makes `blobs/<id>` hold the session's `offset` bytes: completes the cursor's upload, or, when that upload
 * is gone, finds it already done (a seal or completion that a crash or failure interrupted). Throws when
 * neither holds.
 */
export async function seal(ctx: S3Context, id: string, cur: Cursor, offset: number): Promise<void> {
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  try {
    await completeSession(ctx, id, cur);
  } catch (err) {
    if (!isUploadGone(err) || !(await isSealed(ctx, key, offset))) throw err;
  }
}

/** Whether `blobs/<id>` already holds the `offset` bytes of its session. */
export async function isSealed(ctx: S3Context, key: string, offset: number): Promise<boolean> {
  return (await headObject(ctx, key))?.size === offset;
}

/**
 * A session cursor for the `size` bytes of the object at `source`: a new upload at `blobs/<id>` whose
 * parts are server-side copies of it, or (under minPartSize, which a part that more parts follow must
 * reach) a copy of it as the session's tail. The source object is left as it is.
 */
export async function rebase(ctx: S3Context, id: string, source: string, size: number): Promise<Cursor> {
  if (size === 0) return EMPTY;
  if (size < ctx.minPartSize) {
    const tail = ctx.layout.newTail(id, 0);
    await copyObject(ctx, source, size, ctx.layout.tailKey(id, tail));
    return { u: null, p: [], t: [tail, size] };
  }
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  const uploadId = await createUpload(ctx, key);
  try {
    return { u: uploadId, p: await copyIntoUpload(ctx, source, size, key, uploadId, 1), t: null };
  } catch (err) {
    await abortUpload(ctx, key, uploadId).catch(() => {});
    throw err;
  }
}
