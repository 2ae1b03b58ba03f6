// The SQLite MetadataStore: each domain operation is one short synchronous transaction, wrapped in a
// Promise to honour the async interface. Never hold a transaction across an await.
import type {
  AddRevisionResult,
  BlobCommitTicket,
  BlobRecord,
  BucketRecord,
  BucketSettings,
  ByteDeletion,
  ListObjectsQuery,
  MetadataStore,
  NewBlob,
  NewRevision,
  NewUpload,
  ObjectMeta,
  ObjectRecord,
  PinInput,
  RevisionRecord,
  FinishResult,
  IdempotencyClaim,
  PinRecord,
  StoreStats,
  NewToken,
  TokenRecord,
  UploadRecord,
  UploadState,
  UploadTarget,
  LeaseOutcome,
  IfMatch,
} from '../metadata-store.ts';
import { CoordinationRepo } from './coordination-repo.ts';
import { AccessRepo } from './access-repo.ts';
import { CatalogRepo } from './catalog-repo.ts';
import { LifecycleRepo } from './lifecycle-repo.ts';
import { GroupCommit, writeBlobRow } from './group-commit.ts';
import { BlobsRepo } from './blobs-repo.ts';
import { InlineRepo } from './inline-repo.ts';
import { ensurePrivateFile } from '../fs/private-file.ts';
import { openDatabase, type Db } from './db.ts';
import { WalCheckpointer } from './wal-checkpointer.ts';
import { isStorageFull, type SpaceReserve } from '../storage-full.ts';
import { UploadsRepo } from './uploads-repo.ts';

export class SqliteMetadataStore implements MetadataStore {
  /** One process per data directory (its lock): nothing else shares this database. */
  readonly shared = false;
  private readonly coordination: CoordinationRepo;
  private readonly leaseTx: (id: string, holder: string, now: number, until: number) => { outcome: LeaseOutcome; row: UploadRecord } | null;
  private readonly pinExistingTx: (digest: string, pin: PinInput, size: number | undefined) => BlobRecord | null;
  private readonly blobs: BlobsRepo;
  /** Small blobs' bytes, stored by their rows' writes (see ../inline-blobs.ts). */
  readonly inline: InlineRepo;
  private readonly uploads: UploadsRepo;
  private readonly catalog: CatalogRepo;
  private readonly access: AccessRepo;
  private readonly lifecycle: LifecycleRepo;
  private readonly purgeTx: (digest: string, now: number) => { revisions: number; pins: number } | null;
  private readonly expireTx: (now: number, dryRun: boolean) => { pins: number; objects: number };
  private readonly deleteGarbageTx: (digest: string, createdBefore: number, now: number) => boolean;
  private readonly claimTx: (principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder: string | null) => IdempotencyClaim;
  private readonly deleteBucketTx: (name: string, force: boolean) => 'deleted' | 'not_found' | 'not_empty';
  private readonly setObjectMetaTx: (bucket: string, key: string, meta: ObjectMeta, ifMatch: IfMatch | undefined) => ObjectRecord | null | 'precondition_failed';
  private readonly deleteObjectTx: (bucket: string, key: string, revision: number | undefined, ifMatch: IfMatch | undefined) => boolean | 'precondition_failed';
  private readonly groups: GroupCommit;
  /** The daemon's WAL checkpoints, on a thread of their own (see wal-checkpointer.ts); none offline. */
  private readonly checkpointer: WalCheckpointer | null;
  private readonly finishUploadTx: (
    id: string,
    blob: NewBlob,
    target: UploadTarget,
    result: (object: ObjectRecord | null) => string,
    expiresAt: number,
    holder: string | undefined,
  ) => FinishResult;
  private readonly pingStmt;

  constructor(
    private readonly db: Db,
    /** How long a group of blob commits may wait for announced ones (tests lengthen it to see the waiting). */
    groupWindowMs?: number,
    /** Space given up when a write that frees space finds the disk full (see `freeing`). */
    private readonly reserve?: SpaceReserve,
    /** Checkpoint the WAL on a thread of its own (the daemon; not offline tools or in-memory databases). */
    checkpointThread = false,
  ) {
    this.checkpointer = checkpointThread && !db.memory ? new WalCheckpointer(db) : null;
    this.inline = new InlineRepo(db);
    this.blobs = new BlobsRepo(db, this.inline);
    this.uploads = new UploadsRepo(db);
    this.catalog = new CatalogRepo(db, this.blobs);
    this.access = new AccessRepo(db);
    this.lifecycle = new LifecycleRepo(db, this.catalog, this.blobs);
    this.purgeTx = db.transaction((digest: string, now: number) => this.lifecycle.purge(digest, now)).immediate;
    this.expireTx = db.transaction((now: number, dryRun: boolean) => this.lifecycle.expire(now, dryRun)).immediate;
    this.deleteGarbageTx = db.transaction((digest: string, createdBefore: number, now: number) =>
      this.lifecycle.deleteIfGarbage(digest, createdBefore, now),
    ).immediate;
    this.claimTx = db.transaction((principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder: string | null) =>
      this.access.claim(principal, key, fingerprint, now, staleBefore, holder),
    ).immediate;
    this.coordination = new CoordinationRepo(db);
    this.leaseTx = db.transaction((id: string, holder: string, now: number, until: number) => this.uploads.acquireLease(id, holder, now, until)).immediate;
    this.pinExistingTx = db.transaction((digest: string, pin: PinInput, size: number | undefined) => {
      const now = Date.now();
      const row = this.blobs.get(digest);
      if (!row || row.quarantined || (size !== undefined && row.size !== size) || !this.lifecycle.live(digest, now)) return null;
      this.blobs.pin(digest, pin, now);
      return row;
    }).immediate;
    this.deleteBucketTx = db.transaction((name: string, force: boolean) => this.catalog.deleteBucket(name, force, Date.now())).immediate;
    this.setObjectMetaTx = db.transaction((bucket: string, key: string, meta: ObjectMeta, ifMatch: IfMatch | undefined) =>
      this.catalog.setObjectMeta(bucket, key, meta, Date.now(), ifMatch),
    ).immediate;
    this.deleteObjectTx = db.transaction((bucket: string, key: string, revision: number | undefined, ifMatch: IfMatch | undefined) =>
      this.catalog.deleteObject(bucket, key, revision, Date.now(), false, ifMatch),
    ).immediate;
    this.pingStmt = db.prepare('SELECT 1');
    this.groups = new GroupCommit(db, this.blobs, (w, now) => this.catalog.addRevision(w, now), groupWindowMs, () =>
      this.checkpointer?.committed(),
    );
    this.finishUploadTx = db.transaction(
      (id: string, blob: NewBlob, target: UploadTarget, result: (object: ObjectRecord | null) => string, expiresAt: number, holder: string | undefined) => {
        const now = Date.now();
        let created: boolean;
        let object: ObjectRecord | null = null;
        if ('pin' in target) {
          created = writeBlobRow(this.blobs, blob, target.pin, now);
        } else {
          const added = this.catalog.addRevision({ ...target.revision, blob }, now);
          if (!added.ok) return added; // nothing was written before this point
          created = added.blobCreated;
          object = added.object;
        }
        if (!this.uploads.markCompleted(id, blob.digest, result(object), now, expiresAt, holder)) {
          throw new Error(`upload session ${id} is not open or completing`);
        }
        return { ok: true as const, created, object };
      },
    ).immediate;
  }

  static open(file: string, options: { groupWindowMs?: number; reserve?: SpaceReserve; checkpointThread?: boolean } = {}): SqliteMetadataStore {
    let db: Db;
    try {
      db = openDatabase(file);
    } catch (err) {
      // Opening replays a WAL a crash left behind, which may need room: a daemon must start on a full disk.
      if (!isStorageFull(err) || !options.reserve?.release()) throw err;
      db = openDatabase(file);
    }
    return new SqliteMetadataStore(db, options.groupWindowMs, options.reserve, options.checkpointThread);
  }

  /**
   * Runs a write that frees space (a delete, an expiry, GC). On a full disk SQLite cannot even log a
   * delete in its WAL; then the disk reserve is given up and the write tried once more, so that deletes and
   * GC can always run and free space.
   */
  private freeing<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (!isStorageFull(err) || !this.reserve?.release()) throw err;
      return write();
    }
  }

  async getBlob(digest: string): Promise<BlobRecord | null> {
    return this.blobs.get(digest);
  }

  /** Group commit: see group-commit.ts. */
  commitBlob(blob: NewBlob, pin?: PinInput): Promise<{ created: boolean }> {
    return this.groups.commit(blob, pin);
  }

  announceBlobCommit(): BlobCommitTicket {
    return this.groups.announce();
  }

  /** Transactions that committed grouped writes (blob rows, revisions), for tests. */
  get blobCommitGroups(): number {
    return this.groups.groups;
  }


  async createUpload(upload: NewUpload): Promise<void> {
    this.uploads.insert(upload);
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    return this.uploads.get(id);
  }

  async advanceUpload(id: string, offset: number, expiresAt: number, cursor: string | null, holder?: string, hashState?: string | null): Promise<void> {
    if (!this.uploads.advance(id, offset, cursor, Date.now(), expiresAt, holder, hashState)) throw new Error(`upload session ${id} is not open`);
  }

  async acquireUploadLease(id: string, holder: string, now: number, until: number): Promise<{ outcome: LeaseOutcome; row: UploadRecord } | null> {
    return this.leaseTx(id, holder, now, until);
  }

  async renewUploadLease(id: string, holder: string, until: number): Promise<boolean> {
    return this.uploads.renewLease(id, holder, until);
  }

  async releaseUploadLease(id: string, holder: string): Promise<void> {
    this.freeing(() => this.uploads.releaseLease(id, holder));
  }

  async declareUploadSize(id: string, size: number): Promise<boolean> {
    return this.uploads.declareSize(id, size, Date.now());
  }

  async beginCompletion(id: string, digest: string, location: string, holder?: string): Promise<void> {
    if (!this.uploads.markCompleting(id, digest, location, Date.now(), holder)) throw new Error(`upload session ${id} is not open`);
  }

  async reopenUpload(id: string, cursor: string | null, location: string | null, holder?: string): Promise<void> {
    this.uploads.reopen(id, cursor, location, Date.now(), holder);
  }

  async finishUpload(
    id: string,
    blob: NewBlob,
    target: UploadTarget,
    result: (object: ObjectRecord | null) => string,
    expiresAt: number,
    holder?: string,
  ): Promise<FinishResult> {
    return this.finishUploadTx(id, blob, target, result, expiresAt, holder);
  }

  async deleteUpload(id: string): Promise<void> {
    this.freeing(() => this.uploads.delete(id));
  }

  async listUploads(principal: string, limit: number, before: string | null): Promise<UploadRecord[]> {
    return this.uploads.byPrincipal(principal, limit, before, Date.now());
  }

  async listUnfinishedUploads(): Promise<UploadRecord[]> {
    return this.uploads.unfinished();
  }

  async listExpiredUploads(now: number): Promise<{ id: string; state: UploadState }[]> {
    return this.uploads.expired(now);
  }

  async reservedUploadBytes(now: number): Promise<number> {
    return this.uploads.reserved(now);
  }

  async putBucket(name: string, settings: BucketSettings): Promise<{ created: boolean }> {
    return { created: this.catalog.putBucket(name, settings, Date.now()) };
  }

  async getBucket(name: string): Promise<BucketRecord | null> {
    return this.catalog.getBucket(name, Date.now());
  }

  async listBuckets(limit: number, after: string | null): Promise<BucketRecord[]> {
    return this.catalog.listBuckets(limit, after, Date.now());
  }

  async deleteBucket(name: string, force: boolean): Promise<'deleted' | 'not_found' | 'not_empty'> {
    return this.freeing(() => this.deleteBucketTx(name, force));
  }

  async addRevision(input: NewRevision): Promise<AddRevisionResult> {
    return this.groups.addRevision(input);
  }

  async getObject(bucket: string, key: string, revision?: number): Promise<ObjectRecord | null> {
    return this.catalog.getObject(bucket, key, revision, Date.now());
  }

  async listRevisions(bucket: string, key: string, limit: number, before: number | null = null): Promise<RevisionRecord[] | null> {
    return this.catalog.listRevisions(bucket, key, limit, before, Date.now());
  }

  async setObjectMeta(bucket: string, key: string, meta: ObjectMeta, ifMatch?: IfMatch): Promise<ObjectRecord | null | 'precondition_failed'> {
    return this.setObjectMetaTx(bucket, key, meta, ifMatch);
  }

  async deleteObject(bucket: string, key: string, revision?: number, ifMatch?: IfMatch): Promise<boolean | 'precondition_failed'> {
    return this.freeing(() => this.deleteObjectTx(bucket, key, revision, ifMatch));
  }

  async listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]> {
    return this.catalog.listObjects(query, Date.now());
  }

  async createToken(token: NewToken): Promise<void> {
    this.access.createToken({ ...token, lastUsedAt: null });
  }

  async getToken(id: string): Promise<TokenRecord | null> {
    return this.access.getToken(id);
  }

  async listTokens(limit: number, after: string | null): Promise<TokenRecord[]> {
    return this.access.listTokens(limit, after);
  }

  async deleteToken(id: string): Promise<boolean> {
    return this.freeing(() => this.access.deleteToken(id));
  }

  async touchToken(id: string, at: number, notBefore: number): Promise<void> {
    try {
      this.access.touchToken(id, at, notBefore);
    } catch (err) {
      // Bookkeeping only: a full disk must not refuse a request over when its token was last used.
      if (!isStorageFull(err)) throw err;
    }
  }

  async claimIdempotencyKey(principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder?: string): Promise<IdempotencyClaim> {
    return this.claimTx(principal, key, fingerprint, now, staleBefore, holder ?? null);
  }

  async saveIdempotentResponse(principal: string, key: string, bodyHash: string | null, response: Buffer): Promise<void> {
    this.access.save(principal, key, bodyHash, response);
  }

  async releaseIdempotencyKey(principal: string, key: string): Promise<void> {
    this.freeing(() => this.access.release(principal, key));
  }

  async dropPendingIdempotencyKeys(keep?: readonly string[]): Promise<number> {
    return this.freeing(() => this.access.dropPending(keep));
  }

  async deleteIdempotencyRecordsBefore(before: number): Promise<number> {
    return this.freeing(() => this.access.deleteBefore(before));
  }

  async pinExistingBlob(digest: string, pin: PinInput, size?: number): Promise<BlobRecord | null> {
    return this.pinExistingTx(digest, pin, size);
  }

  async listPins(principal: string, limit: number, after: { createdAt: number; digest: string } | null): Promise<PinRecord[]> {
    return this.lifecycle.pins(principal, limit, after, Date.now());
  }

  async dropPin(principal: string, digest: string): Promise<boolean> {
    return this.freeing(() => this.lifecycle.dropPin(principal, digest, Date.now()));
  }

  async isBlobLive(digest: string): Promise<boolean> {
    return this.lifecycle.live(digest, Date.now());
  }

  async purgeBlob(digest: string): Promise<{ revisions: number; pins: number } | null> {
    return this.freeing(() => this.purgeTx(digest, Date.now()));
  }

  async expirePinsAndObjects(now: number, dryRun: boolean): Promise<{ pins: number; objects: number }> {
    return this.freeing(() => this.expireTx(now, dryRun));
  }

  async listGarbageBlobs(createdBefore: number, now: number, limit: number, afterExpiry = false): Promise<BlobRecord[]> {
    return this.lifecycle.garbage(createdBefore, now, limit, afterExpiry);
  }

  async deleteGarbageBlob(digest: string, createdBefore: number, now: number): Promise<boolean> {
    return this.freeing(() => this.deleteGarbageTx(digest, createdBefore, now));
  }

  async listByteDeletions(limit: number): Promise<ByteDeletion[]> {
    return this.blobs.deletions(limit);
  }

  async finishByteDeletion(location: string): Promise<void> {
    this.freeing(() => this.blobs.finishDeletion(location));
  }

  async deletionQueuedAt(location: string): Promise<number | null> {
    return this.blobs.queuedAt(location);
  }

  async listBlobsAfter(after: string, limit: number): Promise<BlobRecord[]> {
    return this.lifecycle.blobsAfter(after, limit);
  }

  async markQuarantined(digest: string): Promise<void> {
    this.lifecycle.quarantine(digest, Date.now());
  }

  async isLocationClaimed(location: string): Promise<boolean> {
    return this.lifecycle.claimed(location);
  }

  async addGcHold(id: string, expiresAt: number): Promise<void> {
    this.lifecycle.addHold(id, expiresAt, Date.now());
  }

  async releaseGcHold(id: string): Promise<void> {
    this.freeing(() => this.lifecycle.releaseHold(id));
  }

  async acquireLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    return this.coordination.acquire(name, holder, now, until);
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    this.freeing(() => this.coordination.release(name, holder));
  }

  async liveLeaseHolders(prefix: string, now: number): Promise<{ name: string; holder: string }[]> {
    return this.coordination.live(prefix, now);
  }

  async getSecret(name: string): Promise<Buffer | null> {
    return this.coordination.secret(name);
  }

  async ensureSecret(name: string, value: Buffer): Promise<Buffer> {
    return this.coordination.ensureSecret(name, value, Date.now());
  }

  async listSecrets(prefix: string): Promise<{ name: string; value: Buffer }[]> {
    return this.coordination.secrets(prefix);
  }

  async deleteSecret(name: string): Promise<boolean> {
    return this.freeing(() => this.coordination.deleteSecret(name));
  }

  async stats(): Promise<StoreStats> {
    return this.lifecycle.stats(Date.now());
  }

  async backupTo(file: string): Promise<void> {
    // SQLite's online backup, all pages in one step: one read transaction, so the copy is one consistent
    // snapshot (copied in small steps, every write by the daemon meanwhile would restart it). The copy is
    // made 0600 first, as SQLite would create it readable to others.
    ensurePrivateFile(file);
    await this.db.backup(file, { progress: () => 0x7fffffff });
  }

  async ping(): Promise<void> {
    this.pingStmt.get();
    // A database that can be read but not written is not ready either. Without waiting: the call is
    // synchronous, and a lock held elsewhere must not freeze the process for busy_timeout.
    this.db.pragma('busy_timeout = 0');
    try {
      this.db.exec('BEGIN IMMEDIATE; ROLLBACK');
    } finally {
      this.db.pragma('busy_timeout = 5000');
    }
  }

  async close(): Promise<void> {
    this.groups.close();
    await this.checkpointer?.close();
    if (this.db.open) this.db.close();
  }
}
