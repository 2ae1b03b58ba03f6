// The PostgreSQL MetadataStore: what N blobd processes share. Each domain operation is one statement where
// a CTE can do it, else one short READ COMMITTED transaction ordered by explicit row locks (blob row, bucket
// row, session lease). Never holds a transaction across anything but its own statements.
import type {
  AddRevisionResult,
  BlobCommitTicket,
  BlobRecord,
  BucketRecord,
  BucketSettings,
  ByteDeletion,
  FinishResult,
  IdempotencyClaim,
  LeaseOutcome,
  ListObjectsQuery,
  MetadataStore,
  NewBlob,
  NewRevision,
  NewToken,
  NewUpload,
  ObjectMeta,
  ObjectRecord,
  PinInput,
  PinRecord,
  RevisionRecord,
  StoreStats,
  TokenRecord,
  UploadRecord,
  UploadState,
  UploadTarget,
  IfMatch,
} from '../metadata-store.ts';
import * as access from './access-repo.ts';
import * as blobs from './blobs-repo.ts';
import { addRevisionIn, PgCatalogRepo } from './catalog-repo.ts';
import { PgInlineRepo } from './inline-repo.ts';
import * as coordination from './coordination-repo.ts';
import { PgDb, type PgOptions } from './db.ts';
import * as lifecycle from './lifecycle-repo.ts';
import { migrate } from './migrate.ts';
import { openError } from './open-error.ts';
import * as uploads from './uploads-repo.ts';

/** Thrown inside a transaction to undo it and answer with a refusal instead. */
class Refused {
  constructor(readonly result: { ok: false; reason: 'bucket_not_found' | 'precondition_failed' | 'quota_exceeded' }) {}
}

/** How long ping waits for the database's answer. */
const PING_TIMEOUT_MS = 5000;

/** Methods that are not database operations (announceBlobCommit's ticket calls the tracked commitBlob). */
const UNTRACKED = new Set(['constructor', 'close', 'announceBlobCommit']);

export class PostgresMetadataStore implements MetadataStore {
  /** Several blobd processes may share this database. */
  readonly shared = true;
  private readonly catalog: PgCatalogRepo;

  /** Small blobs' bytes, kept in their rows (see inline-repo.ts). */
  readonly inline: PgInlineRepo;

  private constructor(private readonly db: PgDb) {
    this.catalog = new PgCatalogRepo(db);
    this.inline = new PgInlineRepo(db);
    // Every operation counts as in flight until it settles: close() (a shutdown, a restart) lets those that
    // began finish instead of cutting their connection, and refuses new ones.
    const self = this as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const name of Object.getOwnPropertyNames(PostgresMetadataStore.prototype)) {
      const method = Object.getOwnPropertyDescriptor(PostgresMetadataStore.prototype, name)?.value as unknown;
      if (typeof method !== 'function' || UNTRACKED.has(name)) continue;
      self[name] = (...args: unknown[]) => db.track(() => (method as (...a: unknown[]) => Promise<unknown>).apply(this, args));
    }
  }

  /**
   * Connects, brings the schema up to date (refusing one newer than this code) and checks that the database
   * answers. Errors never carry the URL's password.
   */
  static async open(url: string, options: PgOptions = {}): Promise<PostgresMetadataStore> {
    let db: PgDb;
    try {
      db = new PgDb(url, options);
    } catch (err) {
      throw openError(err, url);
    }
    try {
      await migrate(db);
    } catch (err) {
      await db.close().catch(() => {});
      throw openError(err, url);
    }
    return new PostgresMetadataStore(db);
  }

  /** Statements sent since the store opened (each one round trip; BEGIN and COMMIT count). */
  get queries(): number {
    return this.db.queries;
  }

  private get sql() {
    return this.db.sql;
  }

  async getBlob(digest: string): Promise<BlobRecord | null> {
    return blobs.getBlob(this.sql, digest);
  }

  /** One statement (blob row, queue, pin): atomic by itself, one round trip. */
  async commitBlob(blob: NewBlob, pin?: PinInput): Promise<{ created: boolean }> {
    const r = await blobs.recordBlob(this.sql, this.inline.withContent(blob), Date.now(), pin ?? null);
    if (r === 'missing') throw new Error(`blob ${blob.digest} is not stored (any more)`);
    return r;
  }

  /** No groups here: PostgreSQL commits concurrent transactions together by itself (commit_delay). */
  announceBlobCommit(): BlobCommitTicket {
    let used = false;
    const use = <T>(write: () => Promise<T>): Promise<T> => {
      if (used) return Promise.reject(new Error('this commit ticket was used already'));
      used = true;
      return write();
    };
    return {
      commit: (blob, pin) => use(() => this.commitBlob(blob, pin)),
      addRevision: (input) => use(() => this.addRevision(input)),
      cancel: () => {
        used = true;
      },
    };
  }

  async createUpload(upload: NewUpload): Promise<void> {
    await uploads.insertUpload(this.sql, upload);
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    return uploads.getUpload(this.sql, id);
  }

  async advanceUpload(id: string, offset: number, expiresAt: number, cursor: string | null, holder?: string, hashState?: string | null): Promise<void> {
    if (!(await uploads.advanceUpload(this.sql, id, offset, cursor, Date.now(), expiresAt, holder, hashState))) {
      throw new Error(`upload session ${id} is not open`);
    }
  }

  async acquireUploadLease(id: string, holder: string, now: number, until: number): Promise<{ outcome: LeaseOutcome; row: UploadRecord } | null> {
    return uploads.acquireUploadLease(this.sql, id, holder, now, until);
  }

  async renewUploadLease(id: string, holder: string, until: number): Promise<boolean> {
    return uploads.renewUploadLease(this.sql, id, holder, until);
  }

  async releaseUploadLease(id: string, holder: string): Promise<void> {
    await uploads.releaseUploadLease(this.sql, id, holder);
  }

  async declareUploadSize(id: string, size: number): Promise<boolean> {
    return uploads.declareUploadSize(this.sql, id, size, Date.now());
  }

  async beginCompletion(id: string, digest: string, location: string, holder?: string): Promise<void> {
    if (!(await uploads.markCompleting(this.sql, id, digest, location, Date.now(), holder))) {
      throw new Error(`upload session ${id} is not open`);
    }
  }

  async reopenUpload(id: string, cursor: string | null, location: string | null, holder?: string): Promise<void> {
    await uploads.reopenUpload(this.sql, id, cursor, location, Date.now(), holder);
  }

  async finishUpload(
    id: string,
    blob: NewBlob,
    target: UploadTarget,
    result: (object: ObjectRecord | null) => string,
    expiresAt: number,
    holder?: string,
  ): Promise<FinishResult> {
    blob = this.inline.withContent(blob);
    if ('pin' in target && !blob.mustExist) {
      const done = await uploads.completeWithPin(this.sql, id, blob, target.pin, result(null), Date.now(), expiresAt, holder);
      if (!done) throw new Error(`upload session ${id} is not open or completing`);
      return { ok: true, created: done.created, object: null };
    }
    try {
      return await this.db.tx(async (tx) => {
        const now = Date.now();
        let created: boolean;
        let object: ObjectRecord | null = null;
        if ('pin' in target) {
          const r = await blobs.recordBlob(tx, blob, now, target.pin);
          if (r === 'missing') throw new Error(`blob ${blob.digest} is not stored (any more)`);
          created = r.created;
        } else {
          const added = await addRevisionIn(tx, { ...target.revision, blob }, now);
          if (!added.ok) {
            if (added.reason === 'blob_not_found') throw new Error(`blob ${blob.digest} is not stored (any more)`);
            throw new Refused({ ok: false, reason: added.reason });
          }
          created = added.blobCreated;
          object = added.object;
        }
        if (!(await uploads.markCompleted(tx, id, blob.digest, result(object), now, expiresAt, holder))) {
          throw new Error(`upload session ${id} is not open or completing`);
        }
        return { ok: true as const, created, object };
      });
    } catch (err) {
      if (err instanceof Refused) return err.result;
      throw err;
    }
  }

  async deleteUpload(id: string): Promise<void> {
    await uploads.deleteUpload(this.sql, id);
  }

  async listUploads(principal: string, limit: number, before: string | null): Promise<UploadRecord[]> {
    return uploads.listUploads(this.sql, principal, limit, before, Date.now());
  }

  async listUnfinishedUploads(): Promise<UploadRecord[]> {
    return uploads.listUnfinishedUploads(this.sql);
  }

  async listExpiredUploads(now: number): Promise<{ id: string; state: UploadState }[]> {
    return uploads.listExpiredUploads(this.sql, now);
  }

  async reservedUploadBytes(now: number): Promise<number> {
    return uploads.reservedUploadBytes(this.sql, now);
  }

  putBucket(name: string, settings: BucketSettings): Promise<{ created: boolean }> {
    return this.catalog.putBucket(name, settings);
  }

  getBucket(name: string): Promise<BucketRecord | null> {
    return this.catalog.getBucket(name);
  }

  listBuckets(limit: number, after: string | null): Promise<BucketRecord[]> {
    return this.catalog.listBuckets(limit, after);
  }

  deleteBucket(name: string, force: boolean): Promise<'deleted' | 'not_found' | 'not_empty'> {
    return this.catalog.deleteBucket(name, force);
  }

  addRevision(input: NewRevision): Promise<AddRevisionResult> {
    return this.catalog.addRevision({ ...input, blob: this.inline.withContent(input.blob) });
  }

  getObject(bucket: string, key: string, revision?: number): Promise<ObjectRecord | null> {
    return this.catalog.getObject(bucket, key, revision);
  }

  listRevisions(bucket: string, key: string, limit: number, before?: number | null): Promise<RevisionRecord[] | null> {
    return this.catalog.listRevisions(bucket, key, limit, before);
  }

  setObjectMeta(bucket: string, key: string, meta: ObjectMeta, ifMatch?: IfMatch): Promise<ObjectRecord | null | 'precondition_failed'> {
    return this.catalog.setObjectMeta(bucket, key, meta, ifMatch);
  }

  deleteObject(bucket: string, key: string, revision?: number, ifMatch?: IfMatch): Promise<boolean | 'precondition_failed'> {
    return this.catalog.deleteObject(bucket, key, revision, ifMatch);
  }

  listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]> {
    return this.catalog.listObjects(query);
  }

  async createToken(token: NewToken): Promise<void> {
    await access.createToken(this.sql, token);
  }

  async getToken(id: string): Promise<TokenRecord | null> {
    return access.getToken(this.sql, id);
  }

  async listTokens(limit: number, after: string | null): Promise<TokenRecord[]> {
    return access.listTokens(this.sql, limit, after);
  }

  async deleteToken(id: string): Promise<boolean> {
    return access.deleteToken(this.sql, id);
  }

  async touchToken(id: string, at: number, notBefore: number): Promise<void> {
    await access.touchToken(this.sql, id, at, notBefore);
  }

  async claimIdempotencyKey(principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder?: string): Promise<IdempotencyClaim> {
    return access.claimIdempotencyKey(this.sql, principal, key, fingerprint, now, staleBefore, holder ?? null);
  }

  async saveIdempotentResponse(principal: string, key: string, bodyHash: string | null, response: Buffer): Promise<void> {
    await access.saveIdempotentResponse(this.sql, principal, key, bodyHash, response);
  }

  async releaseIdempotencyKey(principal: string, key: string): Promise<void> {
    await access.releaseIdempotencyKey(this.sql, principal, key);
  }

  async dropPendingIdempotencyKeys(keep?: readonly string[]): Promise<number> {
    return access.dropPendingIdempotencyKeys(this.sql, keep);
  }

  async deleteIdempotencyRecordsBefore(before: number): Promise<number> {
    return access.deleteIdempotencyRecordsBefore(this.sql, before);
  }

  async pinExistingBlob(digest: string, pin: PinInput, size?: number): Promise<BlobRecord | null> {
    return lifecycle.pinExistingBlob(this.sql, digest, pin, size, Date.now());
  }

  async listPins(principal: string, limit: number, after: { createdAt: number; digest: string } | null): Promise<PinRecord[]> {
    return lifecycle.listPins(this.sql, principal, limit, after, Date.now());
  }

  async dropPin(principal: string, digest: string): Promise<boolean> {
    return lifecycle.dropPin(this.sql, principal, digest, Date.now());
  }

  async purgeBlob(digest: string): Promise<{ revisions: number; pins: number } | null> {
    return lifecycle.purgeBlob(this.db, digest, Date.now());
  }

  async expirePinsAndObjects(now: number, dryRun: boolean): Promise<{ pins: number; objects: number }> {
    return lifecycle.expirePinsAndObjects(this.db, now, dryRun);
  }

  async listGarbageBlobs(createdBefore: number, now: number, limit: number, afterExpiry = false): Promise<BlobRecord[]> {
    return lifecycle.listGarbageBlobs(this.sql, createdBefore, now, limit, afterExpiry);
  }

  async deleteGarbageBlob(digest: string, createdBefore: number, now: number): Promise<boolean> {
    return lifecycle.deleteGarbageBlob(this.db, digest, createdBefore, now);
  }

  async listByteDeletions(limit: number): Promise<ByteDeletion[]> {
    return blobs.listByteDeletions(this.sql, limit);
  }

  async finishByteDeletion(location: string): Promise<void> {
    await blobs.finishByteDeletion(this.sql, location);
  }

  async deletionQueuedAt(location: string): Promise<number | null> {
    return blobs.deletionQueuedAt(this.sql, location);
  }

  async listBlobsAfter(after: string, limit: number): Promise<BlobRecord[]> {
    return lifecycle.listBlobsAfter(this.sql, after, limit);
  }

  async isBlobLive(digest: string): Promise<boolean> {
    return lifecycle.isBlobLive(this.sql, digest, Date.now());
  }

  async markQuarantined(digest: string): Promise<void> {
    await lifecycle.markQuarantined(this.sql, digest, Date.now());
  }

  async isLocationClaimed(location: string): Promise<boolean> {
    return lifecycle.isLocationClaimed(this.sql, location);
  }

  async addGcHold(id: string, expiresAt: number): Promise<void> {
    await lifecycle.addGcHold(this.sql, id, expiresAt, Date.now());
  }

  async releaseGcHold(id: string): Promise<void> {
    await lifecycle.releaseGcHold(this.sql, id);
  }

  async acquireLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    return coordination.acquireLease(this.sql, name, holder, now, until);
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await coordination.releaseLease(this.sql, name, holder);
  }

  async liveLeaseHolders(prefix: string, now: number): Promise<{ name: string; holder: string }[]> {
    return coordination.liveLeaseHolders(this.sql, prefix, now);
  }

  async getSecret(name: string): Promise<Buffer | null> {
    return coordination.getSecret(this.sql, name);
  }

  async ensureSecret(name: string, value: Buffer): Promise<Buffer> {
    return coordination.ensureSecret(this.sql, name, value, Date.now());
  }

  async listSecrets(prefix: string): Promise<{ name: string; value: Buffer }[]> {
    return coordination.listSecrets(this.sql, prefix);
  }

  async deleteSecret(name: string): Promise<boolean> {
    return coordination.deleteSecret(this.sql, name);
  }

  async stats(): Promise<StoreStats> {
    return lifecycle.stats(this.sql, Date.now());
  }

  async backupTo(_file: string): Promise<void> {
    throw new Error(
      'blobd does not copy a PostgreSQL database itself: back it up with PostgreSQL\'s own tools ' +
        '(pg_dump --format=custom, or continuous archiving), together with the byte store',
    );
  }

  /**
   * The database answers, within PING_TIMEOUT_MS, and takes writes (a standby or a read-only database does
   * not). Bounded: a database that went silent (a partition, a failover) must make readiness fail, not hang.
   */
  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(Object.assign(new Error(`the PostgreSQL database did not answer within ${PING_TIMEOUT_MS / 1000} s`), { code: 'CONNECT_TIMEOUT' }));
      }, PING_TIMEOUT_MS);
    });
    try {
      const [r] = await Promise.race([this.sql<{ ro: string }[]>`SELECT current_setting('transaction_read_only') AS ro`, silent]);
      if (r?.ro === 'on') throw new Error('the PostgreSQL database is read-only (a standby?)');
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
