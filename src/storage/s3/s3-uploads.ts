// Upload sessions on S3: a multipart upload at `blobs/<id>` holds the whole parts, a tail object the bytes
// past them. Every tail write goes to a fresh key and the old tail is deleted only once the metadata store
// recorded the new cursor (settleAppend), so an acknowledged byte is never lost to a failed write (G1).
import { Readable } from 'node:stream';
import type { AppendResult, Location, UploadCursor } from '../byte-store.ts';
import { decodeCursor, encodeCursor, partsSize, sizeOf, type Cursor } from './cursor.ts';
import { ingest, PartGatherer, PartUploader } from './part-writer.ts';
import type { S3Context } from './s3-client.ts';
import { abortUpload, abortUploadsOf, copyObject, deleteObject, deleteQuietly, getObject, getSmallObject, headObject, listDirs, listKeys, listUploadsUnder, uploadIsOpen } from './s3-objects.ts';
import { checkSize, rebase, seal, sealedState, settleSealed } from './s3-rebase.ts';

export class S3Uploads {
  constructor(private readonly ctx: S3Context) {}

  private cursor(stored: UploadCursor, id: string, offset?: number): Cursor {
    const cur = decodeCursor(stored, id, this.ctx.layout);
    if (offset !== undefined && sizeOf(cur) !== offset) throw new Error(`the S3 upload cursor covers ${sizeOf(cur)} bytes, not the offset ${offset}`);
    return cur;
  }

  private blobKey(id: string): string {
    return this.ctx.layout.keyOf(this.ctx.layout.sessionLocation(id));
  }

  /** Nothing to make: the upload is created at the first whole part, the tail at the first append. */
  async createUpload(id: string): Promise<UploadCursor> {
    this.ctx.layout.sessionLocation(id); // checks the id
    return null;
  }

  async appendUpload(id: string, offset: number, stored: UploadCursor, source: Readable, onChunk: (chunk: Buffer) => void): Promise<AppendResult> {
    const cur = this.cursor(stored, id, offset);
    // The body may fail while the tail is fetched: its error stays on the stream for ingest to return.
    const quiet = () => {};
    source.on('error', quiet);
    const gatherer = new PartGatherer(this.ctx.buffers);
    const uploader = new PartUploader(this.ctx, this.blobKey(id), cur.u, cur.p.length + 1);
    let written = 0;
    let newTail: string | null = null;
    try {
      if (cur.t) {
        const bytes = await getSmallObject(this.ctx, this.ctx.layout.tailKey(id, cur.t[0]), cur.t[1]);
        if (bytes === null) throw new Error(`the tail of upload ${id} is gone`);
        gatherer.push(bytes);
      }
      const { sourceError } = await ingest(source, gatherer, uploader, (chunk) => {
        written += chunk.length;
        onChunk(chunk);
      });
      if (written === 0) {
        await uploader.settle();
        return sourceError === undefined ? { written, cursor: stored } : { written, cursor: stored, sourceError };
      }
      const rest = gatherer.rest();
      await uploader.settle();
      const p = [...cur.p, ...uploader.parts];
      let t: Cursor['t'] = null;
      if (rest.length > 0) {
        const start = partsSize(cur) + uploader.parts.length * this.ctx.partSize;
        newTail = this.ctx.layout.newTail(id, start);
        await this.ctx.put(this.ctx.layout.tailKey(id, newTail), rest);
        t = [newTail, rest.length];
      }
      const cursor = encodeCursor({ u: uploader.uploadId, p, t });
      return sourceError === undefined ? { written, cursor } : { written, cursor, sourceError };
    } catch (err) {
      source.destroy();
      await uploader.discard();
      // A PUT that failed may still have landed (a timeout after the store wrote it).
      if (newTail !== null) await deleteQuietly(this.ctx, this.ctx.layout.tailKey(id, newTail));
      throw err;
    } finally {
      source.off('error', quiet);
    }
  }

  /** `after` is recorded: `before`'s tail, if it is another, holds only bytes `after` covers elsewhere. */
  async settleAppend(id: string, before: UploadCursor, after: UploadCursor): Promise<void> {
    try {
      const b = this.cursor(before, id);
      const a = this.cursor(after, id);
      if (b.t && b.t[0] !== a.t?.[0]) await deleteQuietly(this.ctx, this.ctx.layout.tailKey(id, b.t[0]));
    } catch {
      // Never throws: a leftover tail is removed by recoverUpload or deleteUpload.
    }
  }

  /**
   * The recorded cursor stays: a tail only `after` named goes, and so does an upload only `after` started.
   * Parts `after` added to the recorded upload are simply left out at completion (and overwritten by the
   * next append, which uses the same part numbers).
   */
  async abandonAppend(id: string, offset: number, stored: UploadCursor, after?: UploadCursor): Promise<void> {
    const cur = this.cursor(stored, id, offset);
    if (after === undefined) return;
    const a = this.cursor(after, id);
    if (a.t && a.t[0] !== cur.t?.[0]) await deleteQuietly(this.ctx, this.ctx.layout.tailKey(id, a.t[0]));
    if (a.u !== null && a.u !== cur.u) await abortUpload(this.ctx, this.blobKey(id), a.u).catch(() => {});
  }

  async recoverUpload(id: string, offset: number, stored: UploadCursor): Promise<{ cursor: UploadCursor } | null> {
    const cur = this.cursor(stored, id, offset);
    const key = this.blobKey(id);
    if (cur.u !== null && !(await uploadIsOpen(this.ctx, key, cur.u))) {
      // Completed or sealed, and the crash came before the cursor that followed was recorded: the bytes
      // are whole in the object; go on from a copy of them. The old tail's bytes are in it too.
      if (!(await settleSealed(this.ctx, id, cur, offset))) return null;
      await abortUploadsOf(this.ctx, key, null);
      await this.deleteTails(id, null);
      return { cursor: encodeCursor(await rebase(this.ctx, id, key, offset)) };
    }
    if (cur.t && (await headObject(this.ctx, this.ctx.layout.tailKey(id, cur.t[0])))?.size !== cur.t[1]) return null;
    await this.deleteTails(id, cur.t?.[0] ?? null);
    await abortUploadsOf(this.ctx, key, cur.u);
    return { cursor: stored };
  }

  /** Deletes the session's tail objects but `keep`. */
  private async deleteTails(id: string, keep: string | null): Promise<void> {
    const doomed: string[] = [];
    const keepKey = keep === null ? null : this.ctx.layout.tailKey(id, keep);
    for await (const o of listKeys(this.ctx, this.ctx.layout.tailsPrefix(id))) if (o.key !== keepKey) doomed.push(o.key);
    for (const k of doomed) await deleteObject(this.ctx, k);
  }

  /**
   * Without an upload the bytes are the tail's, as they stand. With one, they cannot be read back: seal
   * them into `blobs/<id>`, read that, and go on in a new upload that starts as a copy of it.
   */
  async readUpload(id: string, offset: number, stored: UploadCursor): Promise<{ bytes: Readable; cursor: UploadCursor }> {
    const cur = this.cursor(stored, id, offset);
    if (cur.u === null) {
      if (cur.t === null) return { bytes: Readable.from([]), cursor: stored };
      const bytes = await getObject(this.ctx, this.ctx.layout.tailKey(id, cur.t[0]));
      if (bytes === null) throw new Error(`the tail of upload ${id} is gone`);
      return { bytes, cursor: stored };
    }
    const key = this.blobKey(id);
    await seal(this.ctx, id, cur, offset);
    const next = await rebase(this.ctx, id, key, offset);
    const bytes = await getObject(this.ctx, key);
    if (bytes === null) throw new Error(`the sealed bytes of upload ${id} are gone`);
    return { bytes, cursor: encodeCursor(next) };
  }

  uploadLocation(id: string): Location {
    return this.ctx.layout.sessionLocation(id);
  }

  async commitUpload(id: string, offset: number, stored: UploadCursor): Promise<void> {
    const cur = this.cursor(stored, id, offset);
    const key = this.blobKey(id);
    // seal, not a bare completion: a completion that failed or crashed half-way is finished, not refused.
    if (cur.u !== null) await seal(this.ctx, id, cur, offset);
    else if (cur.t !== null) {
      // A tail is smaller than a part, so far below CopyObject's 5 GiB.
      await copyObject(this.ctx, this.ctx.layout.tailKey(id, cur.t[0]), cur.t[1], key);
      await checkSize(this.ctx, key, offset);
    } else await this.ctx.put(key, Buffer.alloc(0));
    if (cur.t) await deleteQuietly(this.ctx, this.ctx.layout.tailKey(id, cur.t[0]));
  }

  async uploadCommitted(id: string, offset: number, stored: UploadCursor): Promise<boolean | null> {
    const cur = this.cursor(stored, id, offset);
    const key = this.blobKey(id);
    if (cur.u !== null) {
      if (await uploadIsOpen(this.ctx, key, cur.u)) return false;
      // 'prefix': a completion interrupted half-way; the session still has its bytes and may go on.
      const state = await sealedState(this.ctx, id, cur, offset);
      return state === 'exact' ? true : state === 'prefix' ? false : null;
    }
    if ((await headObject(this.ctx, key))?.size === offset) return true;
    if (cur.t === null) return false; // the empty session holds nothing that could be lost
    return (await headObject(this.ctx, this.ctx.layout.tailKey(id, cur.t[0])))?.size === cur.t[1] ? false : null;
  }

  async restoreUpload(id: string, location: Location, size: number): Promise<UploadCursor> {
    const source = this.ctx.layout.keyOf(location);
    const head = await headObject(this.ctx, source);
    if (head?.size !== size) throw new Error(`${source} holds ${head === null ? 'nothing' : `${head.size} bytes`}, not the ${size} to restore`);
    await abortUploadsOf(this.ctx, this.blobKey(id), null);
    return encodeCursor(await rebase(this.ctx, id, source, size));
  }

  /** Aborts the session's uploads and deletes its tails; `blobs/<id>` may be a committed blob and stays. */
  async deleteUpload(id: string, stored: UploadCursor): Promise<void> {
    const key = this.blobKey(id);
    let u: string | null = null;
    try {
      u = this.cursor(stored, id).u;
    } catch {
      // A cursor that cannot be read: the listings below still find what the session has.
    }
    if (u !== null) await abortUpload(this.ctx, key, u);
    await abortUploadsOf(this.ctx, key, null);
    await this.deleteTails(id, null);
  }

  /**
   * Ids with tails, then ids with open uploads under blobs/. A one-shot upload in flight (a body over one
   * part) has an open upload there too, under the fresh id of its blob key.
   */
  async *listUploads(): AsyncIterable<string> {
    const seen = new Set<string>();
    const uploads = this.ctx.layout.uploadsPrefix();
    for await (const dir of listDirs(this.ctx, uploads)) {
      const id = dir.slice(uploads.length, -1);
      if (this.ctx.layout.isId(id) && !seen.has(id)) {
        seen.add(id);
        yield id;
      }
    }
    for await (const u of listUploadsUnder(this.ctx, this.ctx.layout.blobsPrefix())) {
      const rel = this.ctx.layout.relative(u.key);
      const kind = rel === null ? null : this.ctx.layout.classify(rel);
      if (kind?.kind === 'blob' && !seen.has(kind.id)) {
        seen.add(kind.id);
        yield kind.id;
      }
    }
  }
}
