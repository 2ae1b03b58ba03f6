// The S3-compatible ByteStore (Ceph RGW, MinIO, AWS S3): every blob's bytes at a unique key, never reused,
// so a location is `blobs/<uuid>` and a commit moves nothing. One-shot uploads stream into a PutObject or
// a multipart upload while hashing; sessions live in s3-uploads.ts; downloads stream GetObject bodies.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { BytesNotFoundError, type AppendResult, type BlobCopy, type ByteRange, type ByteStore, type Location, type StagedBlob, type UploadCursor } from '../byte-store.ts';
import { KeyLayout } from './keys.ts';
import { ingest, PartBuffers, PartGatherer, PartUploader } from './part-writer.ts';
import { checkOptions, describeFailure, endpointName, errorCode, makeClient, makePut, type S3Context, type S3StoreOptions } from './s3-client.ts';
import { CopyBudget, ObjectCopy } from './s3-copy.ts';
import { completeUpload, copyObject, deleteObject, getObject, headObject, listKeys } from './s3-objects.ts';
import { S3Uploads } from './s3-uploads.ts';

export type { S3StoreOptions } from './s3-client.ts';

export class S3ByteStore implements ByteStore {
  readonly kind = 's3';
  /** Handles of this process's staged blobs not yet committed nor discarded. */
  private readonly staged = new Set<string>();
  /** Locations of this process's stages from their first byte until they are discarded (see stage). */
  private readonly inFlight = new Set<string>();
  /** What downloads may gather beyond a chunk each, together (see ObjectCopy). */
  private readonly copyBudget = new CopyBudget();
  private readonly uploads: S3Uploads;

  private constructor(private readonly ctx: S3Context) {
    this.uploads = new S3Uploads(ctx);
  }

  /** Checks the options and makes the client; nothing is sent (ping() tests the store). */
  static async open(opts: S3StoreOptions): Promise<S3ByteStore> {
    const sizes = checkOptions(opts);
    const layout = new KeyLayout(opts.prefix);
    const buffers = new PartBuffers(sizes.partSize, sizes.partsInFlight + 1);
    const client = makeClient(opts);
    return new S3ByteStore({
      client,
      bucket: opts.bucket,
      layout,
      ...sizes,
      buffers,
      endpointName: endpointName(opts),
      put: makePut(opts, client),
      stillHolds: async () => true,
    });
  }

  /** Closes the client's idle connections. */
  close(): void {
    this.ctx.client.destroy();
  }

  async stage(source: Readable): Promise<StagedBlob> {
    const handle = uuidv7();
    const location = this.ctx.layout.newBlobLocation(handle);
    const key = this.ctx.layout.keyOf(location);
    // Hidden from list() until discard: a sweep of row-less keys must not take bytes whose row is still
    // being written (an object completed from a multipart upload may look old already: on AWS its
    // LastModified is when the upload began).
    this.inFlight.add(location);
    const hash = createHash('sha256');
    let size = 0;
    const gatherer = new PartGatherer(this.ctx.buffers);
    const uploader = new PartUploader(this.ctx, key, null, 1);
    try {
      const { sourceError } = await ingest(source, gatherer, uploader, (chunk) => {
        hash.update(chunk);
        size += chunk.length;
      });
      if (sourceError !== undefined) throw sourceError;
      const rest = gatherer.rest();
      if (uploader.uploadId === null) {
        // Smaller than a part: one PUT of what gathered.
        await this.ctx.put(key, rest);
      } else {
        if (rest.length > 0) await uploader.add(rest);
        await uploader.settle();
        await completeUpload(this.ctx, key, uploader.uploadId, uploader.parts);
      }
    } catch (err) {
      // Nothing is left: the parts are aborted, and a PUT that failed late is deleted in case it landed.
      await uploader.discard();
      await deleteObject(this.ctx, key).catch(() => {});
      this.inFlight.delete(location);
      throw err;
    }
    this.staged.add(handle);
    return { digest: `sha256:${hash.digest('hex')}`, size, handle };
  }

  /** The bytes are already at their unique key: nothing moves. */
  async commit(staged: StagedBlob): Promise<Location> {
    if (!this.staged.delete(staged.handle)) throw new Error('no staged bytes for this handle (discarded, or committed before)');
    return this.ctx.layout.newBlobLocation(staged.handle);
  }

  async discard(staged: StagedBlob): Promise<void> {
    // Committed or not, its row is written (or refused) by now: list() may name it again.
    this.inFlight.delete(this.ctx.layout.newBlobLocation(staged.handle));
    if (!this.staged.delete(staged.handle)) return;
    await deleteObject(this.ctx, this.ctx.layout.keyOf(this.ctx.layout.newBlobLocation(staged.handle)));
  }

  async stat(location: Location): Promise<{ size: number; modifiedAt: number; regular: boolean } | null> {
    const head = await headObject(this.ctx, this.ctx.layout.keyOf(location));
    return head === null ? null : { ...head, regular: true };
  }

  async openRead(location: Location, range?: ByteRange): Promise<Readable> {
    return (await this.open(location, range)) ?? Readable.from([]);
  }

  async openCopy(location: Location, range?: ByteRange): Promise<BlobCopy> {
    return new ObjectCopy((await this.open(location, range)) ?? Readable.from([]), this.copyBudget);
  }

  /** The body of the object (or a range of it); null for a range past its end; BytesNotFoundError when absent. */
  private async open(location: Location, range?: ByteRange): Promise<Readable | null> {
    try {
      const body = await getObject(this.ctx, this.ctx.layout.keyOf(location), range);
      if (body === null) throw new BytesNotFoundError(location);
      return body;
    } catch (err) {
      // A range that starts past the end reads nothing, as from a file.
      if (errorCode(err) === 'InvalidRange') return null;
      throw err;
    }
  }

  async delete(location: Location): Promise<void> {
    await deleteObject(this.ctx, this.ctx.layout.keyOf(location));
  }

  /** Every key under blobs/ that names a blob: committed, sealed by a session, or staged and orphaned. */
  async *list(): AsyncIterable<Location> {
    for await (const o of listKeys(this.ctx, this.ctx.layout.blobsPrefix())) {
      const rel = this.ctx.layout.relative(o.key);
      if (rel !== null && this.ctx.layout.classify(rel).kind === 'blob' && !this.inFlight.has(rel)) yield rel;
    }
  }

  nameOf(location: Location): string {
    return this.ctx.layout.keyOf(location);
  }

  /** Keys under the prefix that fit no layout (a bad name under blobs/ included). */
  async *strays(): AsyncIterable<string> {
    for await (const o of listKeys(this.ctx, this.ctx.layout.prefix)) {
      const rel = this.ctx.layout.relative(o.key);
      if (rel !== null && this.ctx.layout.classify(rel).kind === 'stray') yield o.key;
    }
  }

  async quarantine(location: Location): Promise<string | null> {
    const key = this.ctx.layout.keyOf(location);
    const head = await headObject(this.ctx, key);
    if (head === null) return null;
    const to = this.ctx.layout.quarantineKey(location);
    await copyObject(this.ctx, key, head.size, to);
    await deleteObject(this.ctx, key);
    return to;
  }

  /** A tiny write and delete: proves the store reachable, the credentials good and the bucket writable. */
  async ping(): Promise<void> {
    const key = this.ctx.layout.probeKey(uuidv7());
    try {
      await this.ctx.put(key, Buffer.alloc(0));
      await deleteObject(this.ctx, key);
    } catch (err) {
      throw new Error(describeFailure(err, this.ctx));
    }
  }

  async freeSpace(): Promise<number> {
    return Infinity;
  }

  createUpload(id: string): Promise<UploadCursor> {
    return this.uploads.createUpload(id);
  }

  appendUpload(id: string, offset: number, cursor: UploadCursor, source: Readable, onChunk: (chunk: Buffer) => void): Promise<AppendResult> {
    return this.uploads.appendUpload(id, offset, cursor, source, onChunk);
  }

  settleAppend(id: string, before: UploadCursor, after: UploadCursor): Promise<void> {
    return this.uploads.settleAppend(id, before, after);
  }

  abandonAppend(id: string, offset: number, cursor: UploadCursor, after?: UploadCursor): Promise<void> {
    return this.uploads.abandonAppend(id, offset, cursor, after);
  }

  recoverUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ cursor: UploadCursor } | null> {
    return this.uploads.recoverUpload(id, offset, cursor);
  }

  readUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ bytes: Readable; cursor: UploadCursor }> {
    return this.uploads.readUpload(id, offset, cursor);
  }

  guardSessionWrites(stillHolds: (id: string) => Promise<boolean>): void {
    this.ctx.stillHolds = stillHolds;
  }

  /** Always `blobs/<id>`, where the session's multipart upload completes; the digest plays no part. */
  uploadLocation(id: string, _digest: string): Location {
    return this.uploads.uploadLocation(id);
  }

  /** `blobs/<id>`: the session's upload completes there, and a seal (readUpload) puts its bytes there early. */
  sessionLocation(id: string): Location | null {
    return this.ctx.layout.isId(id) ? this.ctx.layout.sessionLocation(id) : null;
  }

  commitUpload(id: string, offset: number, cursor: UploadCursor, _digest: string): Promise<void> {
    return this.uploads.commitUpload(id, offset, cursor);
  }

  uploadCommitted(id: string, offset: number, cursor: UploadCursor, _digest: string): Promise<boolean | null> {
    return this.uploads.uploadCommitted(id, offset, cursor);
  }

  restoreUpload(id: string, location: Location, size: number): Promise<UploadCursor> {
    return this.uploads.restoreUpload(id, location, size);
  }

  deleteUpload(id: string, cursor: UploadCursor): Promise<void> {
    return this.uploads.deleteUpload(id, cursor);
  }

  listUploads(): AsyncIterable<string> {
    return this.uploads.listUploads();
  }
}
