// UploadService: the lifecycle of resumable upload sessions — initiate, append, complete, status, destroy,
// restart recovery and expiry — with one running SHA-256 per open session. It knows nothing of HTTP: the
// native routes and the tus front drive it alike. It must never acknowledge an offset that is not durable.
import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { ByteStore } from '../storage/byte-store.ts';
import { UploadLeaseLost, type MetadataStore, type UploadRecord } from '../storage/metadata-store.ts';
import { can, hashToken, tokenMatches, type Principal } from './auth.ts';
import type { BlobService } from './blobs.ts';
import { parseKey, type CatalogService } from './catalog.ts';
import { tooLarge, type BodySource } from './byte-limit.ts';
import type { Digest } from './digest.ts';
import type { DiskBudget } from './disk-budget.ts';
import { BlobdError } from './errors.ts';
import { NO_EVENTS, type StoreEvents } from './metrics.ts';
import { UploadAppender, type ChunkChecksum } from './upload-appender.ts';
import { notFound, UploadCompletion, type CompletedUpload } from './upload-completion.ts';
import { completeKnownDigest } from './known-digest.ts';
import { decodeCursor, isString, pageOf, type Page, type PageRequest } from './paging.ts';
import { NodeCoordination } from './coordination.ts';
import { UploadRecovery } from './upload-recovery.ts';
import { refuseNul } from './text.ts';

export interface UploadServiceOptions {
  readonly maxBlobSize: number;
  /** Inactivity after which a session expires. */
  readonly uploadTtlMs: number;
}

export interface InitiateInput {
  readonly principal: Principal;
  readonly filename?: string;
  readonly contentType?: string;
  readonly temporary?: boolean;
  readonly size?: number;
  readonly digest?: Digest;
  readonly bucket?: string;
  readonly key?: string;
  /** What the client attaches for itself (tus Upload-Metadata): kept and returned as sent. */
  readonly clientMetadata?: string;
  /** The most bytes the session may ever hold (a signed URL's max_size). */
  readonly sizeLimit?: number;
  /**
   * With `digest` of a blob that exists: complete at once, no bytes to send (default). tus turns it off —
   * its clients always send the bytes to the upload they created; the digest stays a precondition.
   */
  readonly completeKnownDigest?: boolean;
}

export type { CompletedUpload } from './upload-completion.ts';

export type Initiated =
  | { readonly kind: 'session'; readonly id: string; readonly token: string; readonly size: number | null; readonly expiresAt: number }
  | { readonly kind: 'completed'; readonly result: CompletedUpload };

export interface SessionStatus {
  readonly id: string;
  readonly offset: number;
  readonly size: number | null;
  readonly state: 'open' | 'completed';
  readonly expiresAt: number;
  readonly filename: string | null;
  readonly contentType: string | null;
  /** The digest of the completed blob; null while open. */
  readonly digest: string | null;
  readonly bucket: string | null;
  readonly key: string | null;
  readonly temporary: boolean;
  /** The digest named at initiate (a precondition of complete). */
  readonly expectedDigest: string | null;
  /** What the client attached at initiate, as sent; null if nothing. */
  readonly clientMetadata: string | null;
}

export interface AppendOptions {
  /** The client's idea of the current offset (`Upload-Offset`); a mismatch writes nothing. */
  readonly expectedOffset?: number;
  /** The body length the client announced, if any. */
  readonly length?: number;
  /** A checksum of this body (tus): kept only if it matches. */
  readonly checksum?: ChunkChecksum;
  /**
   * When another request of this process holds the session, wait for it (at most 5 s) instead of failing at
   * once, and if it is an append, cut its body first (tusd's lock release): a client whose connection died
   * unnoticed (a phone that changed networks) would otherwise be locked out of its own upload until the idle
   * timeout. What the cut request had sent is kept, as when a client goes away; the taking request then
   * meets its offset (409 with it, or the write goes on).
   */
  readonly takeOver?: boolean;
}

/** How long a take-over waits for the request it cut to let go of the session. */
const TAKEOVER_WAIT_MS = 5_000;

/** The request that holds a session in this process: how to cut its body, and when it let go. */
interface Holder {
  interrupt?: () => void;
  readonly released: Promise<void>;
}

const CONTENT_TYPE = /^[\x21-\x7e][\x20-\x7e]{0,254}$/;
/**
 * The most a client may attach to a session for itself: room for a long relativePath and more, while a row
 * (and every HEAD answer, a header) stays small. Node refuses request headers past 16 KiB in all anyway.
 */
export const MAX_CLIENT_METADATA = 8192;
/** What a session id looks like (a UUID); anything else names no session and never reaches a store. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class UploadService {
  /** Sessions with a request in flight: one at a time per session. */
  private readonly busy = new Map<string, Holder>();
  private readonly appender: UploadAppender;
  private readonly completion: UploadCompletion;
  private readonly recovery: UploadRecovery;

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly blobs: BlobService,
    private readonly catalog: CatalogService,
    private readonly disk: DiskBudget,
    private readonly options: UploadServiceOptions,
    events: StoreEvents = NO_EVENTS,
    private readonly nodes: NodeCoordination = new NodeCoordination(meta, 'local'),
  ) {
    this.appender = new UploadAppender(meta, bytes, catalog, disk, { ...options, portable: meta.shared }, events);
    this.completion = new UploadCompletion(meta, bytes, blobs, catalog, this.appender, options.uploadTtlMs);
    this.recovery = new UploadRecovery(meta, bytes, this.completion, nodes);
    if (nodes.shared) bytes.guardSessionWrites?.((id) => nodes.stillHolds(id));
  }

  async initiate(input: InitiateInput): Promise<Initiated> {
    if ((input.bucket === undefined) !== (input.key === undefined)) {
      throw new BlobdError('invalid_request', 'bucket and key go together');
    }
    // Sent back as the Content-Type of every download of it: a header value, nothing else.
    if (input.contentType !== undefined && !CONTENT_TYPE.test(input.contentType)) {
      throw new BlobdError('invalid_request', 'a content type is at most 255 printable ASCII characters');
    }
    refuseNul(input.filename, 'filename');
    // Returned as a header value: printable ASCII only, and bounded.
    const clientMetadata = input.clientMetadata || null;
    if (clientMetadata !== null && clientMetadata.length > MAX_CLIENT_METADATA) {
      throw new BlobdError('invalid_request', `the upload metadata (Upload-Metadata) is at most ${MAX_CLIENT_METADATA} bytes; this is ${clientMetadata.length}`, {
        limit: MAX_CLIENT_METADATA,
      });
    }
    if (clientMetadata !== null && !/^[\x20-\x7e]*$/.test(clientMetadata)) {
      throw new BlobdError('invalid_request', 'the upload metadata (Upload-Metadata) is printable ASCII');
    }
    const size = input.size ?? null;
    if (size !== null && size > this.options.maxBlobSize) throw tooLarge(this.options.maxBlobSize, 'maximum blob size');
    if (size !== null && input.sizeLimit !== undefined && size > input.sizeLimit) throw tooLarge(input.sizeLimit, "signed URL's max_size");
    if (input.bucket !== undefined) {
      parseKey(input.key!);
      const bucket = await this.catalog.getBucket(input.bucket);
      if (size !== null && bucket.maxObjectSize !== null && size > bucket.maxObjectSize) {
        throw tooLarge(bucket.maxObjectSize, "bucket's max_object_size");
      }
    }

    // A known digest (a pin, or an object's next revision) is done already, for callers who may know it.
    if ((input.completeKnownDigest ?? true) && input.digest !== undefined) {
      const done = await completeKnownDigest(this.blobs, this.catalog, { ...input, digest: input.digest, size });
      if (done) return { kind: 'completed', result: done };
    }

    const id = uuidv7();
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = now + this.options.uploadTtlMs;
    const create = async () => {
      // Bytes first, then row: a row always has its bytes. A row refused (a full disk) takes its bytes
      // along now; those a crash left without a row are swept at the next start.
      const cursor = await this.bytes.createUpload(id);
      await this.meta.createUpload({
        cursor,
        location: this.bytes.sessionLocation(id),
        id,
        tokenHash: hashToken(token),
        principal: input.principal.id,
        filename: input.filename ?? null,
        contentType: input.contentType ?? null,
        temporary: input.temporary ?? false,
        declaredSize: size,
        sizeLimit: input.sizeLimit ?? null,
        expectedDigest: input.digest ?? null,
        bucket: input.bucket ?? null,
        key: input.key ?? null,
        clientMetadata,
        createdAt: now,
        expiresAt,
      }).catch(async (err: unknown) => {
        await this.bytes.deleteUpload(id, cursor).catch(() => {});
        throw err;
      });
    };
    // A declared size is a promise of disk space: checked and recorded as one step.
    await (size !== null ? this.disk.reserve(size, create) : create());
    this.appender.started(id);
    return { kind: 'session', id, token, size, expiresAt };
  }

  async append(id: string, token: string | null, body: BodySource, opts: AppendOptions = {}): Promise<number> {
    await this.authorize(id, token);
    return this.locked(
      id,
      async (fence, leased, holder) => {
        // The row the lease was taken with (a shared store): no second read.
        const row = await this.settled(leased ?? (await this.load(id)), fence);
        if (row.state !== 'open') throw new BlobdError('upload_not_found', 'this upload session is already completed', { id });
        this.checkOffset(row, opts.expectedOffset);
        const interruptible = () => {
          const source = body();
          holder.interrupt = () => source.destroy(new BlobdError('request_aborted', 'another request took this upload session over'));
          return source;
        };
        return this.appender.append(row, interruptible, opts.length, opts.checksum, fence);
      },
      opts.takeOver === true,
    );
  }

  /**
   * Declare the length of a session started without one (tus `Upload-Defer-Length`): at least the bytes
   * it holds, within every limit, and reserved against free disk like a size declared at initiate.
   */
  async declareSize(id: string, token: string | null, size: number): Promise<void> {
    await this.authorize(id, token);
    await this.locked(id, async (fence, leased) => {
      const row = await this.settled(leased ?? (await this.load(id)), fence);
      if (row.state !== 'open') throw new BlobdError('upload_not_found', 'this upload session is already completed', { id });
      if (row.declaredSize !== null) {
        if (row.declaredSize === size) return;
        throw new BlobdError('invalid_request', `the session's size is ${row.declaredSize} already`, { size: row.declaredSize });
      }
      if (size < row.offset) throw new BlobdError('invalid_request', `the session holds ${row.offset} bytes already`, { offset: row.offset });
      if (size > this.options.maxBlobSize) throw tooLarge(this.options.maxBlobSize, 'maximum blob size');
      if (row.sizeLimit !== null && size > row.sizeLimit) throw tooLarge(row.sizeLimit, "signed URL's max_size");
      if (row.bucket !== null) {
        const bucket = await this.catalog.getBucket(row.bucket);
        if (bucket.maxObjectSize !== null && size > bucket.maxObjectSize) throw tooLarge(bucket.maxObjectSize, "bucket's max_object_size");
      }
      await this.disk.reserve(size - row.offset, () => this.meta.declareUploadSize(id, size));
    });
  }

  async complete(
    id: string,
    token: string | null,
    body: BodySource | null,
    opts: AppendOptions & { digest?: Digest } = {},
  ): Promise<CompletedUpload> {
    await this.authorize(id, token);
    return this.locked(id, async (fence, leased) => {
      let row = await this.settled(leased ?? (await this.load(id)), fence);
      if (row.state === 'completed') {
        const done = JSON.parse(row.result!) as CompletedUpload;
        if (opts.digest !== undefined && opts.digest !== done.digest) {
          throw new BlobdError('digest_mismatch', 'this session completed with another digest', { expected: opts.digest, actual: done.digest });
        }
        return done;
      }
      this.checkOffset(row, opts.expectedOffset);
      if (body) {
        // A final body cut short throws (request_aborted) after keeping what arrived: never complete on it.
        await this.appender.append(row, body, opts.length, opts.checksum, fence);
        row = await this.load(id);
      }
      if (row.declaredSize !== null && row.offset !== row.declaredSize) {
        throw new BlobdError('size_mismatch', `the session declared ${row.declaredSize} bytes but holds ${row.offset}`, {
          expected: row.declaredSize,
          actual: row.offset,
        });
      }
      const { digest, cursor } = await this.appender.digestOf(row, fence);
      row = { ...row, cursor };
      // Both the digest named at initiate and the one named now are preconditions.
      for (const expected of [row.expectedDigest, opts.digest]) {
        if (expected && expected !== digest) {
          throw new BlobdError('digest_mismatch', 'the uploaded bytes do not hash to the expected digest', { expected, actual: digest });
        }
      }
      return this.completion.commit(row, digest, fence);
    });
  }

  async status(id: string, token: string | null): Promise<SessionStatus> {
    const row = await this.authorize(id, token);
    return {
      id: row.id,
      offset: row.offset,
      size: row.declaredSize,
      state: row.state === 'completed' ? 'completed' : 'open',
      expiresAt: row.expiresAt,
      filename: row.filename,
      contentType: row.contentType,
      digest: row.state === 'completed' ? row.digest : null,
      bucket: row.bucket,
      key: row.key,
      temporary: row.temporary,
      expectedDigest: row.expectedDigest,
      clientMetadata: row.clientMetadata,
    };
  }

  /** The principal's open sessions, newest first (the records: callers show what they choose, never a token hash). */
  async listSessions(principal: Principal, page: PageRequest): Promise<Page<UploadRecord>> {
    const before = page.cursor === undefined ? null : decodeCursor(page.cursor, isString);
    return pageOf(await this.meta.listUploads(principal.id, page.limit + 1, before), page.limit, (s) => s.id);
  }

  /** Cancel a session and free its bytes now. */
  async destroy(id: string, token: string | null): Promise<void> {
    await this.authorize(id, token);
    await this.drop(id);
  }

  /**
   * The same with a principal's own credential instead of the session token: the principal that started
   * the session (a client that lost its upload token), or an admin. Anyone else is refused.
   */
  async cancel(id: string, principal: Principal): Promise<void> {
    const row = await this.load(id);
    if (row.principal !== principal.id && !can(principal, { action: 'admin' })) {
      throw new BlobdError('forbidden', 'another principal started this upload session: cancel it with its upload token, or as admin');
    }
    await this.drop(id);
  }

  private async drop(id: string): Promise<void> {
    await this.locked(id, async (fence, leased) => {
      const row = await this.settled(leased ?? (await this.load(id)), fence);
      await this.forget(row);
    });
  }

  /** After a restart: see UploadRecovery.recover. */
  recover(): Promise<{ resumed: number; removed: number }> {
    return this.recovery.recover();
  }

  /** How many sessions `expire(now)` would remove. */
  async countExpired(now = Date.now()): Promise<number> {
    return (await this.meta.listExpiredUploads(now)).length;
  }

  /** Remove sessions idle past the upload TTL (and completed ones past their replay window). */
  async expire(now = Date.now()): Promise<number> {
    let n = 0;
    for (const { id } of await this.meta.listExpiredUploads(now)) {
      if (this.busy.has(id)) continue; // a request is using it; it will push the expiry out
      await this.locked(id, async () => {
        const row = await this.meta.getUpload(id);
        if (row && row.state !== 'completing' && row.expiresAt <= now) {
          await this.forget(row);
          n++;
        }
      }).catch((err: unknown) => {
        // In use on another node since it was listed (it will push the expiry out), or gone already.
        if (!(err instanceof BlobdError && (err.code === 'upload_locked' || err.code === 'upload_not_found'))) throw err;
      });
    }
    return n;
  }

  // ---- internals ----

  /** The session, if the token opens it. Missing token 401, unknown or expired session 404, wrong token 403. */
  private async authorize(id: string, token: string | null): Promise<UploadRecord> {
    if (!token) throw new BlobdError('unauthorized', 'this route needs the session token in Upload-Token');
    const row = await this.load(id);
    if (!tokenMatches(token, row.tokenHash)) {
      throw new BlobdError('forbidden', 'the upload token does not open this session');
    }
    return row;
  }

  private async load(id: string): Promise<UploadRecord> {
    if (!SESSION_ID.test(id)) throw notFound(id); // ids are UUIDs: anything else is no session, unasked
    const row = await this.meta.getUpload(id);
    // A session with a request in flight is not expired: that request will push its expiry out.
    if (!row) throw notFound(id);
    if (row.expiresAt <= Date.now() && !this.busy.has(id)) throw notFound(id, true);
    return row;
  }

  /** The session, with a completion a crash or a failure interrupted settled first (UploadCompletion.settle). */
  private settled(row: UploadRecord, fence: string | undefined): Promise<UploadRecord> {
    return this.completion.settle(row, fence);
  }

  /**
   * Runs `fn` as the session's only request: in this process (the busy set), and, on a shared metadata
   * store, across nodes (a lease in the session's row, renewed while `fn` runs; session writes are fenced by
   * it). A lease taken over from a node that crashed or lost touch drops any hash this process kept: the
   * bytes are read back (an object store seals its multipart upload first, so a cut-off writer's late parts
   * can land nowhere).
   */
  private async locked<T>(
    id: string,
    fn: (fence: string | undefined, row: UploadRecord | null, holder: Holder) => Promise<T>,
    takeOver = false,
  ): Promise<T> {
    if (!SESSION_ID.test(id)) throw notFound(id);
    const current = this.busy.get(id);
    if (current && takeOver) {
      // An append's body is cut; any other holder (a completion, a status that settles) is waited for.
      current.interrupt?.();
      await Promise.race([current.released, new Promise((r) => setTimeout(r, TAKEOVER_WAIT_MS).unref())]);
    }
    if (this.busy.has(id)) {
      throw new BlobdError('upload_locked', 'another request is using this upload session; retry when it is done', { id });
    }
    let release!: () => void;
    const holder: Holder = { released: new Promise<void>((r) => (release = r)) };
    this.busy.set(id, holder);
    try {
      const hold = await this.nodes.holdSession(id);
      if (!hold) throw notFound(id);
      try {
        if (hold.takenOver && hold.row) {
          // Taken over from a node that crashed or lost touch: recover the session as a start would (its
          // store may hold what the old holder left half-done: a sealed upload, unrecorded parts), then read
          // it back once before appending (distrust).
          this.appender.distrust(id);
          await this.recovery.recoverOne(hold.row, hold.holder);
          return await fn(hold.holder, null, holder);
        }
        return await fn(hold.holder, hold.row, holder);
      } catch (err) {
        // Lost to another node meanwhile (this one stalled past its lease): the store's own failure (the
        // upload it wrote to was sealed under it) says nothing useful; the client resumes at the new offset.
        const lost =
          err instanceof UploadLeaseLost ||
          (hold.holder !== undefined && !(err instanceof BlobdError) && !(await this.nodes.stillHolds(id).catch(() => true)));
        if (lost) throw new BlobdError('upload_locked', 'another node took this upload session over; ask for its offset and resume', { id });
        throw err;
      } finally {
        await hold.release();
      }
    } finally {
      this.busy.delete(id);
      release();
    }
  }

  private checkOffset(row: UploadRecord, expected: number | undefined): void {
    if (expected !== undefined && expected !== row.offset) {
      throw new BlobdError('offset_mismatch', `the session is at offset ${row.offset}, not ${expected}`, { offset: row.offset });
    }
  }

  /** Drop a session: its row first (so nobody resumes it), then its bytes. */
  private async forget(row: UploadRecord): Promise<void> {
    await this.meta.deleteUpload(row.id);
    this.appender.forget(row.id);
    if (row.state !== 'completed') await this.bytes.deleteUpload(row.id, row.cursor);
  }
}
