// A session's multipart upload turned into an object and back. An unfinished upload's parts cannot be read,
// so a process that lost a session's hash seals them into `blobs/<id>` and goes on in a new upload whose
// first parts are server-side copies of that object; a restore does the same from a committed blob.
import type { Cursor, Part } from './cursor.ts';
import { EMPTY, partsSize, sizeOf } from './cursor.ts';
import { abortUpload, completeUpload, copyIntoUpload, copyObject, copyPart, createUpload, headObject, listParts, uploadFiller } from './s3-objects.ts';
import { errorCode, isUploadGone, type S3Context } from './s3-client.ts';
import { UploadLeaseLost } from '../metadata-store.ts';

const unquote = (etag: string) => etag.replace(/^"|"$/g, '');

/**
 * Completes the session's upload at `blobs/<id>` from the cursor's parts, its tail copied server-side as the
 * last part, and checks that the object holds exactly the cursor's bytes. The cursor must have an upload.
 */
export async function completeSession(ctx: S3Context, id: string, cur: Cursor): Promise<void> {
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  const parts: Part[] = [...cur.p];
  if (cur.t) parts.push(await copyPart(ctx, ctx.layout.tailKey(id, cur.t[0]), key, cur.u!, parts.length + 1, 0, cur.t[1] - 1));
  try {
    await completeUpload(ctx, key, cur.u!, parts);
  } catch (err) {
    if (errorCode(err) !== 'InvalidPart') throw err;
    await completeAround(ctx, id, cur);
    return;
  }
  await checkSize(ctx, key, sizeOf(cur));
}

/**
 * RGW (16.2) refuses to complete an upload with a list that leaves out parts it holds (AWS does not): parts
 * an append uploaded that were never recorded (it failed, was refused, or its process died) and that later
 * appends did not overwrite. A part cannot be deleted alone, so: complete with all of them, the recorded
 * ones first (the object then starts with exactly their bytes), and make the exact object from that prefix
 * and the tail. The listing only names the unrecorded parts; the recorded ones must be in it unchanged.
 */
async function completeAround(ctx: S3Context, id: string, cur: Cursor): Promise<void> {
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  const listed = await listParts(ctx, key, cur.u!);
  const byNumber = new Map(listed.map((p) => [p[0], p]));
  for (const [n, etag, size] of cur.p) {
    const l = byNumber.get(n);
    if (!l || unquote(l[1]) !== unquote(etag) || l[2] !== size) throw new Error(`part ${n} of ${key} is not the part recorded for it`);
  }
  const extra = listed.filter((p) => p[0] > cur.p.length);
  if (extra.length === 0) throw new Error(`the S3 store refused to complete ${key} (InvalidPart) though it holds just the recorded parts`);
  // Every part but the last must reach the minimum size; a short one (a seal's tail copy that was never
  // completed) is overwritten with filler, as nobody reads past the recorded parts.
  for (let i = 0; i < extra.length - 1; i++) {
    if (extra[i]![2] < ctx.minPartSize) extra[i] = await uploadFiller(ctx, key, cur.u!, extra[i]![0], ctx.minPartSize);
  }
  await completeUpload(ctx, key, cur.u!, [...cur.p, ...extra]);
  await exactFromPrefix(ctx, id, cur);
}

/**
 * `blobs/<id>` starts with the bytes of the cursor's parts and may hold more: a second upload at the same
 * key copies exactly those server-side and adds the tail, so the object holds the session's bytes.
 */
async function exactFromPrefix(ctx: S3Context, id: string, cur: Cursor): Promise<void> {
  const key = ctx.layout.keyOf(ctx.layout.sessionLocation(id));
  // The one rewrite of an existing object in place: never once another node holds the session (it may have
  // completed it, and the object is then its blob).
  if (!(await ctx.stillHolds(id))) throw new UploadLeaseLost(id);
  const uploadId = await createUpload(ctx, key);
  try {
    const parts = await copyIntoUpload(ctx, key, partsSize(cur), key, uploadId, 1);
    if (cur.t) parts.push(await copyPart(ctx, ctx.layout.tailKey(id, cur.t[0]), key, uploadId, parts.length + 1, 0, cur.t[1] - 1));
    await completeUpload(ctx, key, uploadId, parts);
  } catch (err) {
    await abortUpload(ctx, key, uploadId).catch(() => {});
    throw err;
  }
  await checkSize(ctx, key, sizeOf(cur));
}

/** Throws unless the object at `key` holds `size` bytes. */
export async function checkSize(ctx: S3Context, key: string, size: number): Promise<void> {
  const head = await headObject(ctx, key);
  if (head?.size !== size) throw new Error(`${key} holds ${head === null ? 'nothing' : `${head.size} bytes`} after completion, not the ${size} bytes written`);
}

/**
 * Makes `blobs/<id>` hold the session's `offset` bytes: completes the cursor's upload, or, when that upload
 * is gone, finishes what an interrupted seal or completion left (see settleSealed). Throws when neither
 * holds the bytes.
 */
export async function seal(ctx: S3Context, id: string, cur: Cursor, offset: number): Promise<void> {
  try {
    await completeSession(ctx, id, cur);
  } catch (err) {
    if (!isUploadGone(err) || !(await settleSealed(ctx, id, cur, offset))) throw err;
  }
}

/**
 * For a cursor whose upload is gone (only a completion of this session takes it, and every completion puts
 * the recorded parts first), what `blobs/<id>` holds: 'exact', the session's bytes; 'prefix', the bytes of
 * the recorded parts and more (a completion around unrecorded parts, interrupted) with the tail still
 * there; null, neither.
 */
export async function sealedState(ctx: S3Context, id: string, cur: Cursor, offset: number): Promise<'exact' | 'prefix' | null> {
  const head = await headObject(ctx, ctx.layout.keyOf(ctx.layout.sessionLocation(id)));
  if (head === null || head.size < partsSize(cur)) return null;
  if (head.size === offset) return 'exact';
  if (cur.t && (await headObject(ctx, ctx.layout.tailKey(id, cur.t[0])))?.size !== cur.t[1]) return null;
  return 'prefix';
}

/** For a cursor whose upload is gone: true once `blobs/<id>` holds exactly the session's bytes, false when it cannot. */
export async function settleSealed(ctx: S3Context, id: string, cur: Cursor, offset: number): Promise<boolean> {
  const state = await sealedState(ctx, id, cur, offset);
  if (state === 'prefix') await exactFromPrefix(ctx, id, cur);
  return state !== null;
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
