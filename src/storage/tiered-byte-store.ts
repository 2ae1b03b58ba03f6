// Two tiers behind one ByteStore: blobs up to --inline-max bytes go to the metadata store's inline tier
// (their bytes written by their row's own transaction, see inline-blobs.ts), larger ones to the byte store
// it wraps (the data directory or an S3 bucket). A blob's location is its digest in the inline tier, so
// every reader, deleter and checker names a blob the same way whichever tier holds it; a location is
// looked up inline first (one indexed lookup) and then in the wrapped store. Upload sessions are the
// wrapped store's; a small one completes into the inline tier when the wrapped store's locations are
// content addresses too (the data directory), so that one digest is stored in one place.
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { BytesNotFoundError, type AppendResult, type BlobCopy, type ByteRange, type ByteStore, type Location, type StagedBlob, type UploadCursor } from './byte-store.ts';
import { MAX_INLINE_BYTES } from '../config.ts';
import { inlineQuarantineName, sha256Of as sha256, type InlineBlobs } from './inline-blobs.ts';

/** A small body read whole, or the first bytes of a larger one and the stream of the rest. */
type Head = { readonly whole: Buffer } | { readonly rest: Readable };

/** Staged for the inline tier: the bytes, whether commit offered them for the row write, or staged them as a file. */
interface InlineStaged {
  readonly bytes: Buffer;
  offered: boolean;
  file?: StagedBlob;
}

const isDigest = (location: Location) => location.startsWith('sha256:');

export class TieredByteStore implements ByteStore {
  /** Inline-staged blobs not yet discarded, by handle. */
  private readonly staged = new Map<string, InlineStaged>();

  constructor(
    private readonly inner: ByteStore,
    private readonly inline: InlineBlobs,
    /** Bodies up to this many bytes are stored inline; 0: none (existing inline blobs stay readable). */
    private readonly max: number,
  ) {
    if (inner.guardSessionWrites) this.guardSessionWrites = (stillHolds) => inner.guardSessionWrites!(stillHolds);
  }

  guardSessionWrites?: (stillHolds: (id: string) => Promise<boolean>) => void;

  get local(): boolean | undefined {
    return this.inner.local;
  }

  get contentAddressed(): boolean | undefined {
    return this.inner.contentAddressed;
  }

  get kind(): string {
    return this.inner.kind;
  }

  /** Inline-staged blobs held in memory now (for tests). */
  get stagedInline(): number {
    return this.staged.size;
  }

  async stage(source: Readable): Promise<StagedBlob> {
    if (this.max === 0) return this.inner.stage(source);
    const head = await this.readHead(source);
    if ('rest' in head) return this.inner.stage(head.rest);
    const handle = `inline:${randomUUID()}`;
    this.staged.set(handle, { bytes: head.whole, offered: false });
    return { digest: sha256(head.whole), size: head.whole.length, handle };
  }

  /**
   * Reads the body until it ends (then it is small: whole) or passes the threshold (then what was read is
   * put back at its head and the stream goes on to the wrapped store). Holds at most max + one chunk.
   */
  private readHead(source: Readable): Promise<Head> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (head: Head | null, err?: unknown) => {
        source.off('readable', onReadable);
        source.off('end', onEnd);
        source.off('error', onError);
        source.off('close', onClose);
        if (head) resolve(head);
        else reject(err);
      };
      const onReadable = () => {
        for (let chunk = source.read() as Buffer | null; chunk !== null; chunk = source.read() as Buffer | null) {
          chunks.push(chunk);
          size += chunk.length;
          if (size > this.max) {
            // Back at the head of the stream, as one chunk: the wrapped store reads it first.
            source.unshift(chunks.length === 1 ? chunk : Buffer.concat(chunks, size));
            return done({ rest: source });
          }
        }
      };
      const onEnd = () => done({ whole: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
      const onError = (err: unknown) => done(null, err);
      // Destroyed without an error (after 'error', or after 'end', the others have settled it already).
      const onClose = () => done(null, new Error('the body was closed before it ended'));
      if (source.errored) return reject(source.errored);
      if (source.readableEnded) return resolve({ whole: Buffer.alloc(0) });
      source.on('error', onError);
      source.on('end', onEnd);
      source.on('close', onClose);
      source.on('readable', onReadable);
    });
  }

  /**
   * Inline bytes are stored by the row write that comes next, durable with it (InlineBlobs.offer) — also
   * when the row exists, so that verified bytes heal a damaged or missing inline copy, as a file put in
   * place heals a file (the store skips bytes identical to those in place). Always offered, even when the
   * same bytes are there now: with several nodes the row may be collected before this write, and its bytes
   * with it. A blob that has a file (stored before the inline tier, or under a smaller --inline-max) stays
   * a file: put in place again.
   */
  async commit(staged: StagedBlob): Promise<Location> {
    const held = this.staged.get(staged.handle);
    if (!held) return this.commitFile(staged);
    if (held.offered || held.file) throw new Error('this staged blob was committed already');
    // Only a blob that has a row and no inline bytes can have a file to keep (one query and no filesystem
    // call for a new blob).
    if (this.inner.contentAddressed && (await this.inline.rowWithoutBytes(staged.digest)) && (await this.inner.stat(staged.digest))) {
      held.file = await this.inner.stage(Readable.from([held.bytes], { objectMode: false }));
      return this.inner.commit(held.file);
    }
    this.inline.offer(staged.digest, held.bytes);
    held.offered = true;
    return staged.digest;
  }

  /**
   * A body over --inline-max, for the wrapped store. Its digest may have inline bytes (stored under a larger
   * --inline-max): intact ones stay the blob's one copy, offered to the row write as a small body's are, and
   * no file is written; damaged ones give way to the verified file, which then serves the blob.
   */
  private async commitFile(staged: StagedBlob): Promise<Location> {
    if (!this.inner.contentAddressed || staged.size > MAX_INLINE_BYTES) return this.inner.commit(staged);
    const current = await this.inline.read(staged.digest);
    if (!current) return this.inner.commit(staged);
    if (current.length === staged.size && sha256(current) === staged.digest) {
      // discard() withdraws the offer and drops the staged file.
      this.staged.set(staged.handle, { bytes: current, offered: true, file: staged });
      this.inline.offer(staged.digest, current);
      return staged.digest;
    }
    const location = await this.inner.commit(staged);
    await this.inline.setAside(staged.digest, current);
    return location;
  }

  async discard(staged: StagedBlob): Promise<void> {
    const held = this.staged.get(staged.handle);
    if (!held) return this.inner.discard(staged);
    this.staged.delete(staged.handle);
    if (held.offered) this.inline.withdraw(staged.digest);
    if (held.file) await this.inner.discard(held.file);
  }

  /**
   * Whether the wrapped store may hold bytes at the location: its own locations, and a digest where its
   * locations are content addresses too (a small blob stored as a file before the inline tier). An object
   * store's locations are keys, never digests: a digest is the inline tier's alone there.
   */
  private innerMayHold(location: Location): boolean {
    return !isDigest(location) || this.inner.contentAddressed === true;
  }

  async stat(location: Location): Promise<{ size: number; modifiedAt: number; regular: boolean } | null> {
    const st = isDigest(location) ? await this.inline.stat(location) : null;
    if (st) return { ...st, regular: true };
    return this.innerMayHold(location) ? this.inner.stat(location) : null;
  }

  async openRead(location: Location, range?: ByteRange): Promise<Readable> {
    const bytes = isDigest(location) ? await this.inline.read(location) : null;
    if (bytes) return Readable.from([slice(bytes, range)], { objectMode: false });
    if (!this.innerMayHold(location)) throw new BytesNotFoundError(location);
    return this.inner.openRead(location, range);
  }

  async openCopy(location: Location, range?: ByteRange): Promise<BlobCopy> {
    const bytes = isDigest(location) ? await this.inline.read(location) : null;
    if (bytes) return new BufferCopy(slice(bytes, range));
    if (!this.innerMayHold(location)) throw new BytesNotFoundError(location);
    return this.inner.openCopy(location, range);
  }

  /** Both tiers: a blob stored in one may have been stored in the other before (another --inline-max). */
  async delete(location: Location): Promise<void> {
    if (isDigest(location)) await this.inline.delete(location);
    if (this.innerMayHold(location)) await this.inner.delete(location);
  }

  async *list(): AsyncIterable<Location> {
    yield* this.inline.list();
    for await (const location of this.inner.list()) {
      if (!isDigest(location) || !(await this.inline.stat(location))) yield location;
    }
  }

  async nameOf(location: Location): Promise<string> {
    // A digest whose bytes are in the table is named there, whatever the inner store would call it.
    if (isDigest(location) && this.innerMayHold(location) && (await this.inline.stat(location))) return `inline/${location}`;
    return this.innerMayHold(location) ? this.inner.nameOf(location) : `inline/${location}`;
  }

  strays(): AsyncIterable<string> {
    return this.inner.strays();
  }

  /**
   * A blob whose inline bytes are damaged while an intact file of it is in the wrapped store (kept under a
   * smaller --inline-max, or by a repack cut short): the inline bytes are moved aside and the file serves
   * the blob. True when that happened.
   */
  async dropDamagedCopy(location: Location): Promise<boolean> {
    if (!isDigest(location) || !this.inner.contentAddressed) return false;
    const bytes = await this.inline.read(location);
    if (!bytes || sha256(bytes) === location || !(await this.inner.stat(location))?.regular) return false;
    const hash = createHash('sha256');
    for await (const chunk of await this.inner.openRead(location)) hash.update(chunk as Buffer);
    return `sha256:${hash.digest('hex')}` === location && this.inline.setAside(location, bytes);
  }

  async quarantine(location: Location): Promise<string | null> {
    if (isDigest(location) && (await this.inline.quarantine(location))) return inlineQuarantineName(location);
    return this.innerMayHold(location) ? this.inner.quarantine(location) : null;
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  freeSpace(): Promise<number> {
    return this.inner.freeSpace();
  }

  createUpload(id: string): Promise<UploadCursor> {
    return this.inner.createUpload(id);
  }

  appendUpload(id: string, offset: number, cursor: UploadCursor, source: Readable, onChunk: (chunk: Buffer) => void): Promise<AppendResult> {
    return this.inner.appendUpload(id, offset, cursor, source, onChunk);
  }

  settleAppend(id: string, before: UploadCursor, after: UploadCursor): Promise<void> {
    return this.inner.settleAppend(id, before, after);
  }

  abandonAppend(id: string, offset: number, cursor: UploadCursor, after?: UploadCursor): Promise<void> {
    return this.inner.abandonAppend(id, offset, cursor, after);
  }

  recoverUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ cursor: UploadCursor } | null> {
    return this.inner.recoverUpload(id, offset, cursor);
  }

  readUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ bytes: Readable; cursor: UploadCursor }> {
    return this.inner.readUpload(id, offset, cursor);
  }

  uploadLocation(id: string, digest: string): Location {
    return this.inner.uploadLocation(id, digest);
  }

  sessionLocation(id: string): Location | null {
    return this.inner.sessionLocation(id);
  }

  /**
   * Where the wrapped store's locations are content addresses (the data directory, one node: the digest
   * lock covers this), a small session completes into the inline tier: its bytes are read, verified and
   * stored there durably (InlineBlobs.put: SQLite's table, or PostgreSQL's blob row, unreferenced until the
   * complete's row write; GC keeps a row whose bytes a completing session relies on), and then the
   * session's file goes — the same two steps as the wrapped store's rename, so a crash between them leaves
   * the session's bytes in place (uploadCommitted: not committed; a new complete stores them again). An intact inline copy of
   * the digest needs no second one whatever the session's size; a damaged one is replaced (or, for a
   * session too large for the tier, dropped once the file is in place). Over an object store sessions
   * complete there.
   */
  async commitUpload(id: string, offset: number, cursor: UploadCursor, digest: string): Promise<void> {
    if (!this.inner.contentAddressed) return this.inner.commitUpload(id, offset, cursor, digest);
    const current = await this.inline.read(digest);
    const small = this.max > 0 && offset <= this.max;
    if (current && sha256(current) === digest) return this.inner.deleteUpload(id, cursor);
    if (small && (current || !(await this.inner.stat(digest)))) {
      await this.inline.put(digest, await this.sessionBytes(id, offset, cursor, digest));
      return this.inner.deleteUpload(id, cursor);
    }
    await this.inner.commitUpload(id, offset, cursor, digest);
    // Damaged, and the file now holds the verified bytes (a store that keeps bytes in their row clears
    // them only once no row names them: fsck finds them there).
    if (current) await this.inline.delete(digest);
  }

  /**
   * The wrapped store's answer first: a session whose bytes are still its own has not committed, whatever
   * the inline tier holds (a copy there may be another row's, and damaged). Once they are gone, bytes in
   * the inline tier are the commit's.
   */
  async uploadCommitted(id: string, offset: number, cursor: UploadCursor, digest: string): Promise<boolean | null> {
    const own = await this.inner.uploadCommitted(id, offset, cursor, digest);
    if (own !== null || !this.inner.contentAddressed) return own;
    return (await this.inline.stat(digest)) ? true : null;
  }

  /** A session's `offset` bytes, read whole and checked against `digest`. */
  private async sessionBytes(id: string, offset: number, cursor: UploadCursor, digest: string): Promise<Buffer> {
    const { bytes } = await this.inner.readUpload(id, offset, cursor);
    const chunks: Buffer[] = [];
    for await (const chunk of bytes) chunks.push(chunk as Buffer);
    const whole = Buffer.concat(chunks);
    if (whole.length !== offset || sha256(whole) !== digest) {
      throw new Error(`upload session ${id}: its ${offset} bytes do not hash to ${digest}`);
    }
    return whole;
  }

  /** A session's bytes back from where its complete put them (the row could not be written). */
  async restoreUpload(id: string, location: Location, size: number): Promise<UploadCursor> {
    const bytes = isDigest(location) ? await this.inline.read(location) : null;
    if (!bytes) return this.inner.restoreUpload(id, location, size);
    await this.inner.deleteUpload(id, null);
    const cursor = await this.inner.createUpload(id);
    const appended = await this.inner.appendUpload(id, 0, cursor, Readable.from([bytes], { objectMode: false }), () => {});
    if (appended.sourceError !== undefined || appended.written !== bytes.length) throw new Error(`upload session ${id}: its bytes could not be given back`);
    await this.inner.settleAppend(id, cursor, appended.cursor);
    return appended.cursor;
  }

  deleteUpload(id: string, cursor: UploadCursor): Promise<void> {
    return this.inner.deleteUpload(id, cursor);
  }

  listUploads(): AsyncIterable<string> {
    return this.inner.listUploads();
  }
}

/** One inclusive range of the bytes (all of them without one); shorter when the bytes are. */
const slice = (bytes: Buffer, range?: ByteRange) => (range ? bytes.subarray(range.start, range.end + 1) : bytes);

/** A BlobCopy of bytes in memory: one write. */
class BufferCopy implements BlobCopy {
  constructor(private readonly bytes: Buffer) {}

  async pipeTo(write: (chunk: Buffer) => Promise<void>): Promise<number> {
    if (this.bytes.length > 0) await write(this.bytes);
    return this.bytes.length;
  }

  async close(): Promise<void> {}
}
