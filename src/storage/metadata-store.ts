// The seam for rows: the domain-level, atomic operations core needs from a metadata store. Each method is
// one transaction inside the implementation; core never stitches raw reads and writes together.
// SQLite is the first implementation; a PostgreSQL one must pass test/contracts/metadata-store.ts unchanged.
import type { InlineBlobs } from './inline-blobs.ts';

/** A stored blob: its bytes are durable at `location` before this row exists (G2). */
export interface BlobRecord {
  readonly digest: string;
  readonly size: number;
  /** Where the byte store put the bytes (ByteStore's Location); a row always names one. */
  readonly location: string;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** fsck moved its bytes to quarantine: it reads as absent until the same bytes are stored again. */
  readonly quarantined: boolean;
}

/** A principal's claim on a blob uploaded without a bucket. */
export interface PinInput {
  readonly principal: string;
  readonly temporary: boolean;
  /** Milliseconds since the epoch; null for a pin that never expires. */
  readonly expiresAt: number | null;
}

export type UploadState = 'open' | 'completing' | 'completed';

/** An upload session as stored. Times are milliseconds since the epoch. */
export interface UploadRecord {
  readonly id: string;
  /** Hex SHA-256 of the session's secret token; the token itself is never stored. */
  readonly tokenHash: string;
  readonly principal: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly temporary: boolean;
  readonly declaredSize: number | null;
  /** The most bytes the session may hold (a signed URL's max_size); null for no limit of its own. */
  readonly sizeLimit: number | null;
  readonly expectedDigest: string | null;
  readonly bucket: string | null;
  readonly key: string | null;
  /**
   * What the client attached to the session for itself, kept and returned as sent (tus Upload-Metadata;
   * core bounds its size). Opaque to the store; null when the client sent none.
   */
  readonly clientMetadata: string | null;
  /** Bytes received and durable. */
  readonly offset: number;
  readonly state: UploadState;
  /** Set once completion has begun: the digest the bytes hashed to. */
  readonly digest: string | null;
  /** The JSON body of the completion answer, replayed for a repeated complete. */
  readonly result: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly expiresAt: number;
  /** The byte store's cursor for the bytes up to `offset` (ByteStore's UploadCursor), recorded with it. */
  readonly cursor: string | null;
  /**
   * A running-hash state another process can go on from (opaque to the store; core's format says which
   * offset it covers), or null. Written by advanceUpload only when given.
   */
  readonly hashState: string | null;
  /**
   * Who holds the session's lease (acquireUploadLease), or null when nobody does: a session let go cleanly
   * has nothing for a restarted node to recover.
   */
  readonly leaseHolder: string | null;
  /**
   * A location the session claims (see isLocationClaimed): its own location in the byte store while it is
   * open, if the store gives sessions one; the location its bytes are committed to while completing.
   */
  readonly location: string | null;
}

export type NewUpload = Omit<UploadRecord, 'offset' | 'state' | 'digest' | 'result' | 'updatedAt' | 'hashState' | 'leaseHolder'>;

/** A blob about to be recorded: its bytes are durable at `location`. */
export interface NewBlob {
  readonly digest: string;
  readonly size: number;
  readonly location: string;
  /**
   * No new bytes come with this write: it references the row that exists (its location is that row's).
   * If no row exists any more, or it is quarantined, the write changes nothing and fails with
   * 'blob_not_found' — it must never make a row at a location that GC may have queued for deletion.
   */
  readonly mustExist?: boolean;
}

/**
 * Thrown by a fenced session write (advanceUpload, beginCompletion, reopenUpload given a `holder`) when the
 * session's lease is no longer that holder's: another node took it over. Nothing was written.
 */
export class UploadLeaseLost extends Error {
  override name = 'UploadLeaseLost';
  constructor(readonly id: string) {
    super(`the lease on upload session ${id} was taken over`);
  }
}

/**
 * What acquireUploadLease did: 'acquired' (nobody held it), 'taken_over' (a holder's lease had run out
 * without being let go: it crashed or lost touch), 'busy' (another holder's lease is live; nothing changed).
 */
export type LeaseOutcome = 'acquired' | 'taken_over' | 'busy';

/** Bytes that no row points to any more, queued for deletion by the transaction that let go of them. */
export interface ByteDeletion {
  readonly location: string;
  readonly digest: string;
}

export interface BucketSettings {
  readonly maxObjectSize: number | null;
  readonly quotaBytes: number | null;
  readonly maxRevisions: number | null;
  readonly publicRead: boolean;
  /** With publicRead: anonymous readers may also read older revisions, ?revisions and ?compare. */
  readonly publicRevisions: boolean;
}

export interface BucketRecord extends BucketSettings {
  readonly name: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly objectCount: number;
  /** Sum of the sizes of every revision in the bucket (what the quota counts); expired objects left out. */
  readonly storedBytes: number;
}

/** Metadata of an object that a content write does not have to restate. */
export interface ObjectMeta {
  readonly contentType: string | null;
  readonly filename: string | null;
  readonly owner: string | null;
  readonly tags: readonly string[];
  readonly properties: Readonly<Record<string, unknown>>;
  readonly expiresAt: number | null;
}

/** An object as of one revision (the current one unless asked otherwise). */
export interface ObjectRecord extends ObjectMeta {
  readonly id: string;
  readonly bucket: string;
  readonly key: string;
  readonly revision: number;
  readonly latestRevision: number;
  readonly digest: string;
  readonly size: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly createdBy: string | null;
  /** When this revision was written. */
  readonly revisionCreatedAt: number;
  /** The entity tag this revision was written with (NewRevision.etag), or null when none was given. */
  readonly etag: string | null;
}

export interface RevisionRecord {
  readonly revision: number;
  /** The object's metadata as of this revision. */
  readonly metadata: ObjectMeta;
  readonly digest: string;
  readonly size: number;
  readonly contentType: string | null;
  readonly filename: string | null;
  readonly createdAt: number;
  readonly createdBy: string | null;
  /** The entity tag this revision was written with, or null. */
  readonly etag: string | null;
}

export interface NewRevision {
  readonly bucket: string;
  readonly key: string;
  /** Id for the object if this write creates it. */
  readonly newObjectId: string;
  readonly blob: NewBlob;
  /** Content type and filename of this content; null keeps what the object had. */
  readonly contentType: string | null;
  readonly filename: string | null;
  readonly createdBy: string;
  /** `If-Match`: the write happens only if the current digest is one of these (or, for '*', if the object exists). */
  readonly ifMatch?: IfMatch;
  /** `If-None-Match: *`: the write happens only if the object does not exist. */
  readonly ifNoneMatch?: boolean;
  /**
   * Metadata sent with the content: called inside the write's transaction with the object's metadata as
   * of this write (empty for a new object); what it returns is stored with the revision. A throw undoes
   * the whole write.
   */
  readonly meta?: (current: ObjectMeta) => ObjectMeta;
  /**
   * An entity tag a front computed for this content (the S3 front: an MD5), stored with the revision and
   * opaque to the store. Absent or null: the revision has none (native writes do not pay for one).
   */
  readonly etag?: string | null;
}

export type AddRevisionResult =
  | { readonly ok: true; readonly object: ObjectRecord; readonly blobCreated: boolean }
  | { readonly ok: false; readonly reason: 'bucket_not_found' | 'precondition_failed' | 'quota_exceeded' | 'blob_not_found' };

/**
 * Sorts after every key in UTF-8 byte order (keys may never contain it): `prefix + KEY_END` bounds a
 * prefix, and `group + KEY_END` is a cursor past a whole common prefix.
 */
export const KEY_END = '\u{10FFFF}';

/** `property.NAME_OP=VALUE`: numbers compare as numbers when both sides are finite numbers, else as text. */
export interface PropertyFilter {
  readonly name: string;
  readonly op: 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'exists';
  /** For `exists`: 'true' or 'false'. */
  readonly value: string;
}

export interface ListObjectsQuery {
  readonly bucket: string;
  readonly prefix: string;
  /** Only keys after this one (the cursor). */
  readonly after: string | null;
  readonly limit: number;
  readonly owner?: string;
  readonly tag?: string;
  readonly properties?: readonly PropertyFilter[];
}

/** What a completed upload session references its blob with. */
export type UploadTarget = { readonly pin: PinInput } | { readonly revision: Omit<NewRevision, 'blob'> };

export type FinishResult =
  | { readonly ok: true; readonly created: boolean; readonly object: ObjectRecord | null }
  | { readonly ok: false; readonly reason: 'bucket_not_found' | 'precondition_failed' | 'quota_exceeded' | 'blob_not_found' };

/** A principal's pin, as listed. */
export interface PinRecord {
  readonly digest: string;
  readonly size: number;
  readonly temporary: boolean;
  readonly expiresAt: number | null;
  readonly createdAt: number;
}

/** What /api/admin/stats reports. */
export interface StoreStats {
  readonly blobs: number;
  readonly storedBytes: number;
  /** Sum over every reference (object revision or pin) of its blob's size. */
  readonly logicalBytes: number;
  readonly pins: number;
  readonly objects: number;
  readonly openSessions: number;
  readonly openSessionBytes: number;
}

/** An API token as stored: its hash, never the token. Times are milliseconds since the epoch. */
export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  /** Hex SHA-256 of the whole token. */
  readonly tokenHash: string;
  readonly scopes: readonly string[];
  readonly createdBy: string;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly lastUsedAt: number | null;
}

export type NewToken = Omit<TokenRecord, 'lastUsedAt'>;

/** What an Idempotency-Key remembers of the first request made with it. */
export interface IdempotencyRecord {
  readonly principal: string;
  readonly key: string;
  /** What identifies the request apart from its body (method, path, query, headers that matter). */
  readonly fingerprint: string;
  /** SHA-256 of the request body, known once the first request finished. */
  readonly bodyHash: string | null;
  /** The sealed answer to replay; null while the first request is still running. */
  readonly response: Buffer | null;
  readonly createdAt: number;
}

export type IdempotencyClaim = { readonly claimed: true } | { readonly claimed: false; readonly record: IdempotencyRecord };

/** An announced commitBlob or addRevision (MetadataStore.announceBlobCommit): one of them, once. */
export interface BlobCommitTicket {
  /** The announced commitBlob itself. */
  commit(blob: NewBlob, pin?: PinInput): Promise<{ created: boolean }>;
  /** Or the announced write is an object's revision (which writes its blob row too): addRevision itself. */
  addRevision(input: NewRevision): Promise<AddRevisionResult>;
  /** The commit will not come (the request failed first). Nothing after commit or a first cancel. */
  cancel(): void;
}

export interface MetadataStore {
  /** The inline tier for small blobs' bytes, in a store that has one (see inline-blobs.ts). */
  readonly inline?: InlineBlobs;
  /**
   * True when other processes (blobd nodes) may share this store: core then coordinates through it
   * (session leases, named leases, shared secrets) instead of trusting in-process state alone.
   */
  readonly shared: boolean;
  getBlob(digest: string): Promise<BlobRecord | null>;
  /**
   * Record a blob whose bytes are already durable and, when given, pin it for a principal — together, in
   * one transaction. `created` is false when the blob row already existed. A repeated pin by the same
   * principal keeps the stronger claim (permanent beats temporary; the later expiry wins).
   *
   * Locations, the same in every write that records a blob (commitBlob, addRevision, finishUpload): a new
   * row takes the blob's location. An existing row keeps its own, unless fsck quarantined it: then it takes
   * the new one (and loses the mark). A location that the row does not end up naming is queued for deletion
   * (listByteDeletions) in the same transaction — the duplicate's bytes, or the quarantined row's old ones.
   */
  commitBlob(blob: NewBlob, pin?: PinInput): Promise<{ created: boolean }>;
  /**
   * A commitBlob announced ahead, while the blob's bytes are still being put in place: a store that commits
   * blobs in groups may hold a group open a few milliseconds for it instead of committing without it. A hint
   * for speed only; a store without groups answers at once. The ticket is used by `commit`, or given back
   * by `cancel` when the commit will not come; `cancel` after `commit` does nothing.
   */
  announceBlobCommit(): BlobCommitTicket;
  createUpload(upload: NewUpload): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | null>;
  /**
   * Record that an open session's durable bytes now end at `offset`, with their cursor; pushes its expiry out.
   * Fenced when `holder` is given: throws UploadLeaseLost (writing nothing) unless the lease is `holder`'s.
   * `hashState`, when given (a string or null), is written in the same update; left as it was otherwise.
   */
  advanceUpload(id: string, offset: number, expiresAt: number, cursor: string | null, holder?: string, hashState?: string | null): Promise<void>;
  /**
   * Take the session's lease for `holder` until `until` (ms): granted when nobody holds it, when `holder`
   * holds it already, or when the holder's lease ended at or before `now` ('taken_over'). 'busy' when another
   * holder's lease is live, and nothing changes. Null when there is no such session. The row is returned as
   * it is after the change (one round trip for "load and lock").
   */
  acquireUploadLease(id: string, holder: string, now: number, until: number): Promise<{ outcome: LeaseOutcome; row: UploadRecord } | null>;
  /** Move a held lease's end to `until`; false when `holder` no longer holds it. */
  renewUploadLease(id: string, holder: string, until: number): Promise<boolean>;
  /** Let go of the lease if `holder` holds it (else nothing). */
  releaseUploadLease(id: string, holder: string): Promise<void>;
  /** Set the size of an open session that had none (it then counts as reserved disk); false if it had one. */
  declareUploadSize(id: string, size: number): Promise<boolean>;
  /** open → completing, remembering the digest and the location, before the bytes are committed there. Fenced by `holder` as advanceUpload. */
  beginCompletion(id: string, digest: string, location: string, holder?: string): Promise<void>;
  /** completing → open again (the commit did not happen, or its bytes were restored), with this cursor and location. Fenced by `holder` as advanceUpload. */
  reopenUpload(id: string, cursor: string | null, location: string | null, holder?: string): Promise<void>;
  /**
   * In one transaction: record the blob (if new) and its reference — a pin, or the next revision of an
   * object — and mark the session completed with the answer to replay (built from the revision written).
   * When the revision cannot be written (bucket gone, quota, precondition) nothing changes. Fenced when
   * `holder` is given: the session must be completing under that holder's lease, else UploadLeaseLost is
   * thrown and nothing changes.
   */
  finishUpload(
    id: string,
    blob: NewBlob,
    target: UploadTarget,
    result: (object: ObjectRecord | null) => string,
    expiresAt: number,
    holder?: string,
  ): Promise<FinishResult>;
  deleteUpload(id: string): Promise<void>;
  /** A principal's open sessions (live, not completed), newest first, those with ids below `before` only. */
  listUploads(principal: string, limit: number, before: string | null): Promise<UploadRecord[]>;
  /** Sessions that are open or completing: what a restart must recover. */
  listUnfinishedUploads(): Promise<UploadRecord[]>;
  /**
   * Sessions whose expiry has passed (completing ones excepted: only recovery may decide those; and those
   * whose lease is live at `now`: a request is using them and will push the expiry out).
   */
  listExpiredUploads(now: number): Promise<{ id: string; state: UploadState }[]>;
  /** Sum over live open sessions of the declared size not yet received: disk space promised to clients. */
  reservedUploadBytes(now: number): Promise<number>;
  /** Create a bucket or replace its settings; `created` tells which. */
  putBucket(name: string, settings: BucketSettings): Promise<{ created: boolean }>;
  getBucket(name: string): Promise<BucketRecord | null>;
  /** Buckets in name order after `after`. */
  listBuckets(limit: number, after: string | null): Promise<BucketRecord[]>;
  /** Delete a bucket; unless `force`, only an empty one. With `force`, its objects and revisions go too. */
  deleteBucket(name: string, force: boolean): Promise<'deleted' | 'not_found' | 'not_empty'>;
  /**
   * In one transaction: check the bucket, the preconditions and the quota, record the blob (if new) and
   * the object's next revision, and drop revisions beyond the bucket's max_revisions.
   */
  addRevision(input: NewRevision): Promise<AddRevisionResult>;
  /**
   * The object as of `revision` (default: its latest), or null. An object whose expires_at has passed is
   * gone for every read and write at once (null here, absent from listings, usage and stats), even before
   * GC deletes its rows; a write to its key deletes it and starts a new object.
   */
  getObject(bucket: string, key: string, revision?: number): Promise<ObjectRecord | null>;
  /** Revisions of an object newest first, those numbered below `before` only; null when there is no such object. */
  listRevisions(bucket: string, key: string, limit: number, before?: number | null): Promise<RevisionRecord[] | null>;
  /**
   * Replace an object's metadata (and its current revision's snapshot); null when there is no such object,
   * 'precondition_failed' (nothing changed) when `ifMatch` does not hold for its current content.
   */
  setObjectMeta(bucket: string, key: string, meta: ObjectMeta, ifMatch?: IfMatch): Promise<ObjectRecord | null | 'precondition_failed'>;
  /**
   * Delete an object with all its revisions, or one revision (the object goes with its last one); false when
   * there is no such object or revision, 'precondition_failed' (nothing deleted) when `ifMatch` does not hold
   * for the content deleted (the current one, or that revision's).
   */
  deleteObject(bucket: string, key: string, revision?: number, ifMatch?: IfMatch): Promise<boolean | 'precondition_failed'>;
  /** Objects in key order after the cursor, filtered; at most `limit`. */
  listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]>;
  createToken(token: NewToken): Promise<void>;
  getToken(id: string): Promise<TokenRecord | null>;
  /** Tokens in id (creation) order after `after`. */
  listTokens(limit: number, after: string | null): Promise<TokenRecord[]>;
  deleteToken(id: string): Promise<boolean>;
  /** Record that a token was used at `at`, unless a use after `notBefore` is recorded already. */
  touchToken(id: string, at: number, notBefore: number): Promise<void>;
  /**
   * In one transaction: claim (principal, key) for a request with this fingerprint — unless a record
   * created at or after `staleBefore` exists, which is returned instead (older ones are replaced).
   */
  claimIdempotencyKey(principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder?: string): Promise<IdempotencyClaim>;
  /** Store the answer of a claimed key's request (only while the claim is pending). */
  saveIdempotentResponse(principal: string, key: string, bodyHash: string | null, response: Buffer): Promise<void>;
  /** Drop a pending claim (its request failed; a retry with the key runs again). */
  releaseIdempotencyKey(principal: string, key: string): Promise<void>;
  /**
   * Drop pending claims whose requests cannot be running any more: every one (at start of the only
   * process), or, given `keep`, all but those claimed by a holder in `keep` (the live nodes). Claims made
   * without a holder count as no live node's.
   */
  dropPendingIdempotencyKeys(keep?: readonly string[]): Promise<number>;
  /** Remove answered records created before `before`. */
  deleteIdempotencyRecordsBefore(before: number): Promise<number>;
  /**
   * In one transaction: pin the blob for a principal if a readable row exists — not quarantined, live (an
   * unexpired pin or object revision references it) and, when `size` is given, of that size. Returns the
   * row, or null (and changes nothing). A GC pass on any node either sees the pin or has removed the row.
   */
  pinExistingBlob(digest: string, pin: PinInput, size?: number): Promise<BlobRecord | null>;
  /** A principal's pins, newest first, after the cursor (the last pin of the previous page). */
  listPins(principal: string, limit: number, after: { createdAt: number; digest: string } | null): Promise<PinRecord[]>;
  /** Drop one principal's pin; false when it had none (an expired temporary pin counts as none). */
  dropPin(principal: string, digest: string): Promise<boolean>;
  /**
   * In one transaction: delete every object revision that uses the blob (objects left without revisions
   * go), every pin and the row, and queue its location for deletion. Null when there is no such blob.
   */
  purgeBlob(digest: string): Promise<{ revisions: number; pins: number } | null>;
  /** Expired temporary pins and objects whose expires_at passed: counted, or (unless dryRun) deleted. */
  expirePinsAndObjects(now: number, dryRun: boolean): Promise<{ pins: number; objects: number }>;
  /**
   * Blobs created before `createdBefore` that nothing references at `now` (at most `limit`, by digest).
   * `afterExpiry`: as if objects whose expires_at passed were gone already (what a dry run reports).
   */
  listGarbageBlobs(createdBefore: number, now: number, limit: number, afterExpiry?: boolean): Promise<BlobRecord[]>;
  /**
   * In one transaction: delete the blob's row if it is still garbage (as listGarbageBlobs decides) and no
   * GC hold is active, and queue its location for deletion; true when it did.
   */
  deleteGarbageBlob(digest: string, createdBefore: number, now: number): Promise<boolean>;
  /** Queued byte deletions, oldest first, at most `limit`. */
  listByteDeletions(limit: number): Promise<ByteDeletion[]>;
  /** The bytes of a queued deletion are gone (or must stay: a row points there again): drop it from the queue. */
  finishByteDeletion(location: string): Promise<void>;
  /**
   * When the location was queued for deletion (ms since the epoch), or null when it is not queued: its row
   * went, and its bytes go at the next drain (fsck: bytes on their way out are no orphans, unless they wait
   * for much longer than a drain takes).
   */
  deletionQueuedAt(location: string): Promise<number | null>;
  /** Blob rows in digest order after `after` (for fsck). */
  listBlobsAfter(after: string, limit: number): Promise<BlobRecord[]>;
  /** True when an unexpired object revision or an unexpired pin references the blob (it is live). */
  isBlobLive(digest: string): Promise<boolean>;
  /** Mark a blob whose bytes were moved to quarantine. */
  markQuarantined(digest: string): Promise<void>;
  /** True when a blob row names the location, or a session completing into it does. */
  isLocationClaimed(location: string): Promise<boolean>;
  /** Pause blob removal by GC until `expiresAt` (or release); the same id again moves its expiry. */
  addGcHold(id: string, expiresAt: number): Promise<void>;
  releaseGcHold(id: string): Promise<void>;
  /**
   * A named lease, one holder at a time across nodes ('gc', 'fsck', 'node:<id>'): granted (true) when
   * nobody holds it, `holder` holds it already (its end moves to `until`), or the holder's lease ended at or
   * before `now`.
   */
  acquireLease(name: string, holder: string, now: number, until: number): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;
  /** Holders of live leases (ending after `now`) whose names start with `prefix`. */
  liveLeaseHolders(prefix: string, now: number): Promise<{ name: string; holder: string }[]>;
  /** A secret shared by every node (signing keys, the admin token), or null. */
  getSecret(name: string): Promise<Buffer | null>;
  /** Store `value` under `name` unless a secret is there already (the first writer wins); returns the stored one. */
  ensureSecret(name: string, value: Buffer): Promise<Buffer>;
  /** Secrets whose names start with `prefix`, in name order. */
  listSecrets(prefix: string): Promise<{ name: string; value: Buffer }[]>;
  /** Remove a secret; true when there was one. */
  deleteSecret(name: string): Promise<boolean>;
  stats(): Promise<StoreStats>;
  /** A consistent copy of the whole database at `file` (online: writers go on meanwhile). */
  backupTo(file: string): Promise<void>;
  /** Resolves when the store can answer and write; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** `If-Match` of a write or delete: digests (`sha256:…`), any of which the content must have; '*': any content. */
export type IfMatch = string | readonly string[];

/** Does `If-Match` hold for content of this digest? */
export function ifMatchHolds(ifMatch: IfMatch, digest: string): boolean {
  const tags = typeof ifMatch === 'string' ? [ifMatch] : ifMatch;
  return tags.includes('*') || tags.includes(digest);
}
