// Every SQL statement about buckets, objects and revisions on PostgreSQL (listing: object-listing-repo.ts).
// Bucket counters (object_count, stored_bytes) change in the same transactions as the rows they count.
//
// Concurrency: N blobd nodes write at once, in READ COMMITTED with explicit row locks, not SERIALIZABLE.
// The bucket row is the lock: every write that adds or removes objects or revisions (addRevision,
// deleteObject, deleteBucket, and GC's expiry and purge through deleteObjectIn) first takes it FOR NO KEY
// UPDATE (deleteBucket: FOR UPDATE); setObjectMeta, which changes no counter, takes it FOR SHARE. Only then
// does it read objects, in a statement whose snapshot starts after the lock was granted, so quota, revision
// numbers, preconditions and max_revisions pruning are exact among writers on every node, and a metadata
// write can never be lost under a content write. Why not SERIALIZABLE: writers to one bucket queue for a
// short lock (predictable blocking) instead of failing with 40001 and replaying a retry loop — which neither
// PostgreSQL client does for us. Lock order is bucket row, then object rows, then the blob row (recordBlob),
// never the reverse; PgDb.tx replays a transaction chosen as a deadlock victim (40P01).
import type {
  AddRevisionResult,
  BucketRecord,
  BucketSettings,
  ListObjectsQuery,
  NewRevision,
  ObjectMeta,
  ObjectRecord,
  RevisionRecord,
  IfMatch,
} from '../metadata-store.ts';
import { ifMatchHolds } from '../metadata-store.ts';
import { recordBlob } from './blobs-repo.ts';
import type { PgDb, Queryable, Tx } from './db.ts';
import { OBJECT_COLUMNS, listObjects, toObject, type ObjectRow } from './object-listing-repo.ts';

interface BucketRow {
  name: string;
  max_object_size: number | null;
  quota_bytes: number | null;
  max_revisions: number | null;
  public_read: boolean;
  public_revisions: boolean;
  object_count: number;
  stored_bytes: number;
  created_at: number;
  updated_at: number;
  /** Objects (and the bytes of their revisions) past expires_at, not yet deleted: gone for readers. */
  expired_n: number;
  expired_bytes: number;
}

/** The object row as a content write needs it: its metadata, numbers and current digest. */
interface CurrentRow {
  id: string;
  latest: number;
  digest: string;
  content_type: string | null;
  filename: string | null;
  owner: string | null;
  tags: string[];
  properties: Record<string, unknown>;
  expires_at: number | null;
  created_at: number;
  created_by: string | null;
}

function toBucket(r: BucketRow): BucketRecord {
  return {
    name: r.name,
    maxObjectSize: r.max_object_size,
    quotaBytes: r.quota_bytes,
    maxRevisions: r.max_revisions,
    publicRead: r.public_read,
    publicRevisions: r.public_revisions,
    objectCount: r.object_count - r.expired_n,
    storedBytes: r.stored_bytes - r.expired_bytes,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function snapshotToMeta(m: Record<string, unknown>): ObjectMeta {
  return {
    contentType: (m.content_type as string | null) ?? null,
    filename: (m.filename as string | null) ?? null,
    owner: (m.owner as string | null) ?? null,
    tags: (m.tags as string[] | undefined) ?? [],
    properties: (m.properties as Record<string, unknown> | undefined) ?? {},
    expiresAt: (m.expires_at as number | null) ?? null,
  };
}

/** The metadata a revision keeps (what ?compare diffs), as SQLite's json_object writes it. */
function snapshotOf(m: ObjectMeta): string {
  return JSON.stringify({
    content_type: m.contentType,
    filename: m.filename,
    owner: m.owner,
    tags: m.tags,
    properties: m.properties,
    expires_at: m.expiresAt,
  });
}

/** A bucket row with what its expired objects hold (see BucketRow), for any query over `buckets b`. */
const bucketWithUsage = (q: Queryable, now: number) => q`
  SELECT b.*, e.n AS expired_n, e.bytes AS expired_bytes FROM buckets b
  CROSS JOIN LATERAL (
    SELECT count(DISTINCT o.id)::bigint AS n, coalesce(sum(r.size), 0)::bigint AS bytes
    FROM objects o JOIN revisions r ON r.object_id = o.id
    WHERE o.bucket = b.name AND o.expires_at IS NOT NULL AND o.expires_at <= ${now}
  ) e`;

/** Takes the bucket row's lock for a write that adds or removes objects or revisions; false: no bucket. */
async function lockBucket(tx: Tx, name: string): Promise<boolean> {
  return (await tx`SELECT 1 FROM buckets WHERE name = ${name} FOR NO KEY UPDATE`).length === 1;
}

/**
 * The body of MetadataStore.addRevision inside the caller's transaction (finishUpload runs it in its own).
 * Expired objects of the bucket are deleted first (they are gone for readers already), so the quota, the
 * preconditions and the next revision number see what readers see. Nothing is written before the checks
 * pass but that deletion (which holds either way); a 'blob_not_found' leaves the rest unwritten too.
 */
export async function addRevisionIn(tx: Tx, w: NewRevision, now: number): Promise<AddRevisionResult> {
  const [bucket] = await tx<{ stored_bytes: number; quota_bytes: number | null; max_revisions: number | null }[]>`
    SELECT stored_bytes, quota_bytes, max_revisions FROM buckets WHERE name = ${w.bucket} FOR NO KEY UPDATE`;
  if (!bucket) return { ok: false, reason: 'bucket_not_found' };
  // One statement (its snapshot begins after the lock): delete the expired objects with their counts, and
  // read the current object at the key.
  const [state] = await tx<({ gone_bytes: number } & Partial<CurrentRow>)[]>`
    WITH gone AS (
      DELETE FROM objects o WHERE o.bucket = ${w.bucket} AND o.expires_at IS NOT NULL AND o.expires_at <= ${now}
      RETURNING (SELECT coalesce(sum(r.size), 0) FROM revisions r WHERE r.object_id = o.id) AS bytes
    ), totals AS (
      SELECT count(*)::bigint AS n, coalesce(sum(bytes), 0)::bigint AS bytes FROM gone
    ), counted AS (
      UPDATE buckets SET object_count = object_count - t.n, stored_bytes = stored_bytes - t.bytes
      FROM totals t WHERE name = ${w.bucket} AND t.n > 0
    )
    SELECT t.bytes AS gone_bytes, cur.* FROM totals t LEFT JOIN (
      SELECT o.id, o.last_revision AS latest, r.digest, o.content_type, o.filename, o.owner, o.tags, o.properties,
        o.expires_at, o.created_at, o.created_by
      FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
      WHERE o.bucket = ${w.bucket} AND o.key = ${w.key} AND (o.expires_at IS NULL OR o.expires_at > ${now})
    ) cur ON true`;
  const current = state!.id === undefined || state!.id === null ? null : (state as unknown as CurrentRow);
  if (w.ifNoneMatch && current) return { ok: false, reason: 'precondition_failed' };
  if (w.ifMatch !== undefined && (!current || !ifMatchHolds(w.ifMatch, current.digest))) {
    return { ok: false, reason: 'precondition_failed' };
  }
  const storedBytes = bucket.stored_bytes - state!.gone_bytes;
  if (bucket.quota_bytes !== null && storedBytes + w.blob.size > bucket.quota_bytes) return { ok: false, reason: 'quota_exceeded' };

  const before: ObjectMeta = {
    contentType: w.contentType ?? current?.content_type ?? null,
    filename: w.filename ?? current?.filename ?? null,
    owner: current?.owner ?? null,
    tags: current?.tags ?? [],
    properties: current?.properties ?? {},
    expiresAt: current?.expires_at ?? null,
  };
  // Metadata sent with the content lands in the same transaction (and the revision's snapshot); a patch
  // that fails its checks throws, and nothing of the write is kept. Before the blob row: no work to undo.
  const meta = w.meta ? w.meta(before) : before;
  const recorded = await recordBlob(tx, w.blob, now);
  if (recorded === 'missing') return { ok: false, reason: 'blob_not_found' };

  const id = current ? current.id : w.newObjectId;
  const revision = current ? current.latest + 1 : 1;
  const tags = JSON.stringify(meta.tags);
  const properties = JSON.stringify(meta.properties);
  const object = current
    ? tx`UPDATE objects SET revision = ${revision}, last_revision = ${revision}, content_type = ${meta.contentType},
        filename = ${meta.filename}, owner = ${meta.owner}, tags = ${tags}::text::jsonb, properties = ${properties}::text::json,
        expires_at = ${meta.expiresAt}::bigint, updated_at = ${now} WHERE id = ${id}`
    : tx`INSERT INTO objects (id, bucket, key, revision, last_revision, content_type, filename, owner, tags, properties,
          expires_at, created_at, updated_at, created_by)
        VALUES (${id}, ${w.bucket}, ${w.key}, 1, 1, ${meta.contentType}, ${meta.filename}, ${meta.owner}, ${tags}::text::jsonb,
          ${properties}::text::json, ${meta.expiresAt}::bigint, ${now}, ${now}, ${w.createdBy})`;
  // max_revisions: revisions numbered at or below this go (numbers, as on SQLite, not a count).
  const pruneTo = bucket.max_revisions === null ? 0 : revision - bucket.max_revisions;
  await tx`
    WITH o AS (${object}), r AS (
      INSERT INTO revisions (object_id, revision, digest, size, content_type, filename, metadata, created_at, created_by, etag)
      VALUES (${id}, ${revision}, ${w.blob.digest}, ${w.blob.size}, ${meta.contentType}, ${meta.filename},
        ${snapshotOf(meta)}::text::json, ${now}, ${w.createdBy}, ${w.etag ?? null}::text)
    ), pruned AS (
      DELETE FROM revisions WHERE object_id = ${id} AND revision <= ${pruneTo} RETURNING size
    )
    UPDATE buckets SET object_count = object_count + ${current ? 0 : 1},
      stored_bytes = stored_bytes + ${w.blob.size}::bigint - (SELECT coalesce(sum(size), 0) FROM pruned)
    WHERE name = ${w.bucket}`;
  return {
    ok: true,
    blobCreated: recorded.created,
    object: {
      id,
      bucket: w.bucket,
      key: w.key,
      revision,
      latestRevision: revision,
      digest: w.blob.digest,
      size: w.blob.size,
      ...meta,
      createdAt: current ? current.created_at : now,
      updatedAt: now,
      createdBy: current ? current.created_by : w.createdBy,
      revisionCreatedAt: now,
      etag: w.etag ?? null,
    },
  };
}

/**
 * MetadataStore.deleteObject inside the caller's transaction, bucket counters included. An expired object
 * counts as absent unless `includeExpired` (GC's expiry and purges remove those).
 */
export async function deleteObjectIn(
  tx: Tx,
  bucket: string,
  key: string,
  revision: number | undefined,
  now: number,
  includeExpired: boolean,
  ifMatch?: IfMatch,
): Promise<boolean | 'precondition_failed'> {
  if (!(await lockBucket(tx, bucket))) return false;
  const [obj] = await tx<{ id: string; current: number; revisions: number; bytes: number; size: number | null; digest: string | null }[]>`
    SELECT o.id, o.revision AS current,
      (SELECT count(*) FROM revisions r WHERE r.object_id = o.id)::bigint AS revisions,
      (SELECT coalesce(sum(r.size), 0) FROM revisions r WHERE r.object_id = o.id)::bigint AS bytes,
      (SELECT r.size FROM revisions r WHERE r.object_id = o.id AND r.revision = ${revision ?? null}::bigint) AS size,
      (SELECT r.digest FROM revisions r WHERE r.object_id = o.id AND r.revision = coalesce(${revision ?? null}::bigint, o.revision)) AS digest
    FROM objects o WHERE o.bucket = ${bucket} AND o.key = ${key}
      AND (${includeExpired} OR o.expires_at IS NULL OR o.expires_at > ${now})`;
  if (!obj) return false;
  if (revision !== undefined && obj.size === null) return false;
  if (ifMatch !== undefined && (obj.digest === null || !ifMatchHolds(ifMatch, obj.digest))) return 'precondition_failed';
  if (revision === undefined || obj.revisions === 1) {
    // The whole object (its revisions follow by ON DELETE CASCADE).
    await tx`
      WITH o AS (DELETE FROM objects WHERE id = ${obj.id})
      UPDATE buckets SET object_count = object_count - 1, stored_bytes = stored_bytes - ${obj.bytes} WHERE name = ${bucket}`;
    return true;
  }
  // One revision; if it was the current one, the newest left becomes current.
  await tx`
    WITH r AS (DELETE FROM revisions WHERE object_id = ${obj.id} AND revision = ${revision}), o AS (
      UPDATE objects SET revision = (SELECT max(revision) FROM revisions WHERE object_id = ${obj.id} AND revision <> ${revision}),
        updated_at = ${now}
      WHERE id = ${obj.id} AND revision = ${revision}
    )
    UPDATE buckets SET stored_bytes = stored_bytes - ${obj.size} WHERE name = ${bucket}`;
  return true;
}

export class PgCatalogRepo {
  constructor(private readonly db: PgDb) {}

  async putBucket(name: string, s: BucketSettings): Promise<{ created: boolean }> {
    const now = Date.now();
    const [row] = await this.db.sql<{ created: boolean }[]>`
      INSERT INTO buckets (name, max_object_size, quota_bytes, max_revisions, public_read, public_revisions, created_at, updated_at)
      VALUES (${name}, ${s.maxObjectSize}::bigint, ${s.quotaBytes}::bigint, ${s.maxRevisions}::bigint, ${s.publicRead},
        ${s.publicRevisions}, ${now}, ${now})
      ON CONFLICT (name) DO UPDATE SET max_object_size = excluded.max_object_size, quota_bytes = excluded.quota_bytes,
        max_revisions = excluded.max_revisions, public_read = excluded.public_read,
        public_revisions = excluded.public_revisions, updated_at = excluded.updated_at
      RETURNING (xmax = 0) AS created`;
    return { created: row!.created };
  }

  async getBucket(name: string): Promise<BucketRecord | null> {
    const [row] = await this.db.sql<BucketRow[]>`${bucketWithUsage(this.db.sql, Date.now())} WHERE b.name = ${name}`;
    return row ? toBucket(row) : null;
  }

  /** Buckets in name order after `after`. */
  async listBuckets(limit: number, after: string | null): Promise<BucketRecord[]> {
    const rows = await this.db.sql<BucketRow[]>`
      ${bucketWithUsage(this.db.sql, Date.now())} WHERE b.name > ${after ?? ''} ORDER BY b.name LIMIT ${limit}`;
    return rows.map(toBucket);
  }

  async deleteBucket(name: string, force: boolean): Promise<'deleted' | 'not_found' | 'not_empty'> {
    const now = Date.now();
    return this.db.tx(async (tx) => {
      if ((await tx`SELECT 1 FROM buckets WHERE name = ${name} FOR UPDATE`).length === 0) return 'not_found';
      const [row] = await tx<BucketRow[]>`${bucketWithUsage(tx, now)} WHERE b.name = ${name}`;
      if (toBucket(row!).objectCount > 0 && !force) return 'not_empty';
      // Its objects go in the same statement (their revisions by ON DELETE CASCADE), before the foreign key
      // from objects to buckets is checked at its end.
      await tx`WITH o AS (DELETE FROM objects WHERE bucket = ${name}) DELETE FROM buckets WHERE name = ${name}`;
      return 'deleted';
    });
  }

  addRevision(input: NewRevision): Promise<AddRevisionResult> {
    return this.db.tx((tx) => addRevisionIn(tx, input, Date.now()));
  }

  async getObject(bucket: string, key: string, revision?: number): Promise<ObjectRecord | null> {
    const now = Date.now();
    const sql = this.db.sql;
    const [row] = await sql<ObjectRow[]>`
      SELECT ${OBJECT_COLUMNS(sql)} FROM objects o
      JOIN revisions r ON r.object_id = o.id AND r.revision = ${revision === undefined ? sql`o.revision` : sql`${revision}::bigint`}
      WHERE o.bucket = ${bucket} AND o.key = ${key} AND (o.expires_at IS NULL OR o.expires_at > ${now})`;
    return row ? toObject(row) : null;
  }

  /** Revisions newest first, those below `before` only; null when there is no such (unexpired) object. */
  async listRevisions(bucket: string, key: string, limit: number, before: number | null = null): Promise<RevisionRecord[] | null> {
    // One round trip: the object (no row: none) and its page of revisions (a row of NULLs: an empty page).
    const rows = await this.db.sql<Record<string, unknown>[]>`
      SELECT r.* FROM objects o LEFT JOIN LATERAL (
        SELECT revision, digest, size, content_type, filename, metadata, created_at, created_by, etag FROM revisions
        WHERE object_id = o.id AND revision < ${before ?? Number.MAX_SAFE_INTEGER}::bigint ORDER BY revision DESC LIMIT ${limit}
      ) r ON true
      WHERE o.bucket = ${bucket} AND o.key = ${key} AND (o.expires_at IS NULL OR o.expires_at > ${Date.now()})`;
    if (rows.length === 0) return null;
    return rows
      .filter((r) => r.revision !== null)
      .map((r) => ({
        revision: r.revision as number,
        metadata: snapshotToMeta(r.metadata as Record<string, unknown>),
        digest: r.digest as string,
        size: r.size as number,
        contentType: r.content_type as string | null,
        filename: r.filename as string | null,
        createdAt: r.created_at as number,
        createdBy: r.created_by as string | null,
        etag: r.etag as string | null,
      }));
  }

  /** The object row and its current revision's snapshot, under the bucket's shared lock (see the top). */
  async setObjectMeta(bucket: string, key: string, m: ObjectMeta, ifMatch?: IfMatch): Promise<ObjectRecord | null | 'precondition_failed'> {
    const now = Date.now();
    return this.db.tx(async (tx) => {
      if ((await tx`SELECT 1 FROM buckets WHERE name = ${bucket} FOR SHARE`).length === 0) return null;
      if (ifMatch !== undefined) {
        // The bucket's shared lock keeps content writes out until the update below (see the top).
        const [cur] = await tx<{ digest: string }[]>`
          SELECT r.digest FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
          WHERE o.bucket = ${bucket} AND o.key = ${key} AND (o.expires_at IS NULL OR o.expires_at > ${now})`;
        if (!cur) return null;
        if (!ifMatchHolds(ifMatch, cur.digest)) return 'precondition_failed';
      }
      const [row] = await tx<ObjectRow[]>`
        WITH o AS (
          UPDATE objects SET content_type = ${m.contentType}, filename = ${m.filename}, owner = ${m.owner},
            tags = ${JSON.stringify(m.tags)}::text::jsonb, properties = ${JSON.stringify(m.properties)}::text::json,
            expires_at = ${m.expiresAt}::bigint, updated_at = ${now}
          WHERE bucket = ${bucket} AND key = ${key} AND (expires_at IS NULL OR expires_at > ${now})
          RETURNING *
        ), r AS (
          UPDATE revisions r SET content_type = o.content_type, filename = o.filename, metadata = ${snapshotOf(m)}::text::json
          FROM o WHERE r.object_id = o.id AND r.revision = o.revision
          RETURNING r.*
        )
        SELECT ${OBJECT_COLUMNS(tx)} FROM o JOIN r ON r.object_id = o.id`;
      return row ? toObject(row) : null;
    });
  }

  deleteObject(bucket: string, key: string, revision?: number, ifMatch?: IfMatch): Promise<boolean | 'precondition_failed'> {
    return this.db.tx((tx) => deleteObjectIn(tx, bucket, key, revision, Date.now(), false, ifMatch));
  }

  listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]> {
    return listObjects(this.db.sql, query, Date.now());
  }
}
