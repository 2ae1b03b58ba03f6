// Every SQL statement about buckets, objects and revisions. Statements are prepared once (list queries:
// once per filter shape). Bucket counters (object_count, stored_bytes) change in the same statements'
// transactions as the rows they count.
import type { Statement } from 'better-sqlite3';
import type {
  AddRevisionResult,
  BucketRecord,
  BucketSettings,
  ListObjectsQuery,
  PropertyFilter,
  NewRevision,
  ObjectMeta,
  ObjectRecord,
  RevisionRecord,
} from '../metadata-store.ts';
import { ifMatchHolds, KEY_END, type IfMatch } from '../metadata-store.ts';
import type { BlobsRepo } from './blobs-repo.ts';
import { finiteNumber } from '../finite-number.ts';
import type { Db } from './db.ts';

interface BucketRow {
  name: string;
  max_object_size: number | null;
  quota_bytes: number | null;
  max_revisions: number | null;
  public_read: number;
  public_revisions: number;
  object_count: number;
  stored_bytes: number;
  created_at: number;
  updated_at: number;
}

interface ObjectRow {
  id: string;
  bucket: string;
  key: string;
  latest: number;
  revision: number;
  digest: string;
  size: number;
  content_type: string | null;
  filename: string | null;
  owner: string | null;
  tags: string;
  properties: string;
  expires_at: number | null;
  created_at: number;
  updated_at: number;
  created_by: string | null;
  revision_created_at: number;
  etag: string | null;
}

/** An object whose expires_at passed is gone for every reader at once (GC only reclaims it later). */
const UNEXPIRED = '(o.expires_at IS NULL OR o.expires_at > @now)';

/** The operators of `property.NAME_OP=VALUE` filters (plain `property.NAME=VALUE` is `eq`). */
export const PROPERTY_OPS = { eq: '=', ne: '=', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

const OBJECT_COLUMNS = `o.id, o.bucket, o.key, o.last_revision AS latest, r.revision, r.digest, r.size, r.content_type,
  r.filename, o.owner, o.tags, o.properties, o.expires_at, o.created_at, o.updated_at, o.created_by,
  r.created_at AS revision_created_at, r.etag`;

/** The object row's metadata as the JSON a revision keeps. */
const SNAPSHOT = `json_object('content_type', o.content_type, 'filename', o.filename, 'owner', o.owner,
  'tags', json(o.tags), 'properties', json(o.properties), 'expires_at', o.expires_at)`;

function snapshotToMeta(text: string): ObjectMeta {
  const m = JSON.parse(text) as Record<string, unknown>;
  return {
    contentType: (m.content_type as string | null) ?? null,
    filename: (m.filename as string | null) ?? null,
    owner: (m.owner as string | null) ?? null,
    tags: (m.tags as string[] | undefined) ?? [],
    properties: (m.properties as Record<string, unknown> | undefined) ?? {},
    expiresAt: (m.expires_at as number | null) ?? null,
  };
}


type MetaRow = Pick<ObjectRow, 'content_type' | 'filename' | 'owner' | 'tags' | 'properties' | 'expires_at'>;

function rowToMeta(r: MetaRow): ObjectMeta {
  return {
    contentType: r.content_type,
    filename: r.filename,
    owner: r.owner,
    tags: JSON.parse(r.tags) as string[],
    properties: JSON.parse(r.properties) as Record<string, unknown>,
    expiresAt: r.expires_at,
  };
}

/** A bucket row, less what its expired objects (not yet deleted by GC) hold: they are gone for readers. */
function toBucket(r: BucketRow, expired: { n: number; bytes: number }): BucketRecord {
  return {
    name: r.name,
    maxObjectSize: r.max_object_size,
    quotaBytes: r.quota_bytes,
    maxRevisions: r.max_revisions,
    publicRead: r.public_read === 1,
    publicRevisions: r.public_revisions === 1,
    objectCount: r.object_count - expired.n,
    storedBytes: r.stored_bytes - expired.bytes,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toObject(r: ObjectRow): ObjectRecord {
  return {
    id: r.id,
    bucket: r.bucket,
    key: r.key,
    revision: r.revision,
    latestRevision: r.latest,
    digest: r.digest,
    size: r.size,
    ...rowToMeta(r),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    createdBy: r.created_by,
    revisionCreatedAt: r.revision_created_at,
    etag: r.etag,
  };
}

export class CatalogRepo {
  private readonly s: Record<string, Statement<any[], any>>;
  private readonly listCache = new Map<string, Statement<any[], ObjectRow>>();

  constructor(private readonly db: Db, private readonly blobs: BlobsRepo) {
    const p = (sql: string) => db.prepare(sql);
    this.s = {
      upsertBucket: p(`INSERT INTO buckets (name, max_object_size, quota_bytes, max_revisions, public_read, created_at, updated_at)
        VALUES (@name, @max_object_size, @quota_bytes, @max_revisions, @public_read, @now, @now)
        ON CONFLICT (name) DO UPDATE SET max_object_size = excluded.max_object_size, quota_bytes = excluded.quota_bytes,
          max_revisions = excluded.max_revisions, public_read = excluded.public_read, updated_at = excluded.updated_at`),
      setPublicRevisions: p('UPDATE buckets SET public_revisions = ? WHERE name = ?'),
      expiredUsage: p(`SELECT count(DISTINCT o.id) AS n, coalesce(sum(r.size), 0) AS bytes FROM objects o
        JOIN revisions r ON r.object_id = o.id WHERE o.bucket = ? AND o.expires_at IS NOT NULL AND o.expires_at <= ?`),
      expiredIn: p('SELECT key FROM objects WHERE bucket = ? AND expires_at IS NOT NULL AND expires_at <= ?').pluck(),
      bucketExists: p('SELECT 1 FROM buckets WHERE name = ?').pluck(),
      getBucket: p('SELECT * FROM buckets WHERE name = ?'),
      listBuckets: p('SELECT * FROM buckets WHERE name > ? ORDER BY name LIMIT ?'),
      deleteBucket: p('DELETE FROM buckets WHERE name = ?'),
      deleteBucketObjects: p('DELETE FROM objects WHERE bucket = ?'),
      currentObject: p(`SELECT ${OBJECT_COLUMNS} FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
        WHERE o.bucket = @bucket AND o.key = @key AND ${UNEXPIRED}`),
      objectAtRevision: p(`SELECT ${OBJECT_COLUMNS} FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = @revision
        WHERE o.bucket = @bucket AND o.key = @key AND ${UNEXPIRED}`),
      objectId: p(`SELECT id, revision FROM objects o WHERE bucket = @bucket AND key = @key AND ${UNEXPIRED}`),
      anyObjectId: p('SELECT id, revision FROM objects WHERE bucket = ? AND key = ?'),
      anyCurrentObject: p(`SELECT ${OBJECT_COLUMNS} FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
        WHERE o.id = ?`),
      objectMeta: p('SELECT content_type, filename, owner, tags, properties, expires_at FROM objects WHERE id = ?'),
      insertObject: p(`INSERT INTO objects (id, bucket, key, revision, content_type, filename, created_at, updated_at, created_by)
        VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)`),
      bumpObject: p(`UPDATE objects SET revision = ?, last_revision = ?, content_type = coalesce(?, content_type), filename = coalesce(?, filename),
        updated_at = ? WHERE id = ?`),
      insertRevision: p(`INSERT INTO revisions (object_id, revision, digest, size, content_type, filename, metadata, created_at, created_by, etag)
        SELECT ?, ?, ?, ?, o.content_type, o.filename, ${SNAPSHOT}, ?, ?, ? FROM objects o WHERE o.id = ?`),
      setMeta: p(`UPDATE objects SET content_type = ?, filename = ?, owner = ?, tags = ?, properties = ?, expires_at = ?,
        updated_at = ? WHERE id = ?`),
      snapshotCurrent: p(`UPDATE revisions SET content_type = o.content_type, filename = o.filename, metadata = ${SNAPSHOT}
        FROM objects o WHERE o.id = revisions.object_id AND revisions.revision = o.revision AND o.id = ?`),
      prunable: p('SELECT revision, size FROM revisions WHERE object_id = ? AND revision <= ?'),
      deleteRevision: p('DELETE FROM revisions WHERE object_id = ? AND revision = ?'),
      revisionSize: p('SELECT size FROM revisions WHERE object_id = ? AND revision = ?').pluck(),
      revisionDigest: p('SELECT digest FROM revisions WHERE object_id = ? AND revision = ?').pluck(),
      revisionsOf: p(`SELECT revision, digest, size, content_type, filename, metadata, created_at, created_by, etag FROM revisions
        WHERE object_id = ? AND revision < ? ORDER BY revision DESC LIMIT ?`),
      totalSize: p('SELECT coalesce(sum(size), 0) FROM revisions WHERE object_id = ?').pluck(),
      revisionCount: p('SELECT count(*) FROM revisions WHERE object_id = ?').pluck(),
      latestRevision: p('SELECT max(revision) FROM revisions WHERE object_id = ?').pluck(),
      setObjectRevision: p('UPDATE objects SET revision = ?, updated_at = ? WHERE id = ?'),
      deleteObject: p('DELETE FROM objects WHERE id = ?'),
      countBucket: p('UPDATE buckets SET object_count = object_count + ?, stored_bytes = stored_bytes + ? WHERE name = ?'),
    };
  }

  putBucket(name: string, b: BucketSettings, now: number): boolean {
    const existed = this.s.bucketExists!.get(name) !== undefined;
    this.s.upsertBucket!.run({
      name,
      max_object_size: b.maxObjectSize,
      quota_bytes: b.quotaBytes,
      max_revisions: b.maxRevisions,
      public_read: b.publicRead ? 1 : 0,
      now,
    });
    this.s.setPublicRevisions!.run(b.publicRevisions ? 1 : 0, name);
    return !existed;
  }

  getBucket(name: string, now: number): BucketRecord | null {
    const row = this.s.getBucket!.get(name) as BucketRow | undefined;
    return row ? this.withUsage(row, now) : null;
  }

  listBuckets(limit: number, after: string | null, now: number): BucketRecord[] {
    return (this.s.listBuckets!.all(after ?? '', limit) as BucketRow[]).map((r) => this.withUsage(r, now));
  }

  private withUsage(row: BucketRow, now: number): BucketRecord {
    return toBucket(row, this.s.expiredUsage!.get(row.name, now) as { n: number; bytes: number });
  }

  /** Runs inside the caller's transaction. */
  deleteBucket(name: string, force: boolean, now: number): 'deleted' | 'not_found' | 'not_empty' {
    const bucket = this.getBucket(name, now);
    if (!bucket) return 'not_found';
    if (bucket.objectCount > 0 && !force) return 'not_empty';
    this.s.deleteBucketObjects!.run(name); // revisions follow by ON DELETE CASCADE
    this.s.deleteBucket!.run(name);
    return 'deleted';
  }

  /**
   * Runs inside the caller's transaction. Expired objects of the bucket are deleted first (they are gone
   * for readers already), so the quota, the preconditions and the next revision number see what readers see.
   */
  addRevision(w: NewRevision, now: number): AddRevisionResult {
    if (w.blob.mustExist) {
      const row = this.blobs.get(w.blob.digest);
      if (!row || row.quarantined) return { ok: false, reason: 'blob_not_found' };
    }
    for (const key of this.s.expiredIn!.all(w.bucket, now) as string[]) this.deleteObject(w.bucket, key, undefined, now, true);
    const bucket = this.getBucket(w.bucket, now);
    if (!bucket) return { ok: false, reason: 'bucket_not_found' };
    const current = this.s.currentObject!.get({ bucket: w.bucket, key: w.key, now }) as ObjectRow | undefined;
    if (w.ifNoneMatch && current) return { ok: false, reason: 'precondition_failed' };
    if (w.ifMatch !== undefined && (!current || !ifMatchHolds(w.ifMatch, current.digest))) {
      return { ok: false, reason: 'precondition_failed' };
    }
    if (bucket.quotaBytes !== null && bucket.storedBytes + w.blob.size > bucket.quotaBytes) {
      return { ok: false, reason: 'quota_exceeded' };
    }
    const blobCreated = this.blobs.insert(w.blob, now);
    let id: string;
    let revision: number;
    if (current) {
      id = current.id;
      revision = current.latest + 1;
      this.s.bumpObject!.run(revision, revision, w.contentType, w.filename, now, id);
    } else {
      id = w.newObjectId;
      revision = 1;
      this.s.insertObject!.run(id, w.bucket, w.key, w.contentType, w.filename, now, now, w.createdBy);
    }
    if (w.meta) {
      // Metadata sent with the content lands in the same transaction (and the revision's snapshot); a
      // patch that fails its checks throws, and nothing of the write is kept.
      const m = w.meta(rowToMeta(this.s.objectMeta!.get(id) as MetaRow));
      this.s.setMeta!.run(m.contentType, m.filename, m.owner, JSON.stringify(m.tags), JSON.stringify(m.properties), m.expiresAt, now, id);
    }
    this.s.insertRevision!.run(id, revision, w.blob.digest, w.blob.size, now, w.createdBy, w.etag ?? null, id);
    this.s.countBucket!.run(current ? 0 : 1, w.blob.size, w.bucket);
    if (bucket.maxRevisions !== null) {
      for (const old of this.s.prunable!.all(id, revision - bucket.maxRevisions) as { revision: number; size: number }[]) {
        this.s.deleteRevision!.run(id, old.revision);
        this.s.countBucket!.run(0, -old.size, w.bucket);
      }
    }
    const written = this.s.currentObject!.get({ bucket: w.bucket, key: w.key, now }) as ObjectRow | undefined;
    // Metadata may set an expires_at in the past: the write happened, and the object is gone at once.
    return { ok: true, object: toObject(written ?? (this.s.anyCurrentObject!.get(id) as ObjectRow)), blobCreated };
  }

  getObject(bucket: string, key: string, revision: number | undefined, now: number): ObjectRecord | null {
    const row = (revision === undefined
      ? this.s.currentObject!.get({ bucket, key, now })
      : this.s.objectAtRevision!.get({ revision, bucket, key, now })) as ObjectRow | undefined;
    return row ? toObject(row) : null;
  }

  /** Revisions newest first, those below `before` only; null when there is no such (unexpired) object. */
  listRevisions(bucket: string, key: string, limit: number, before: number | null, now: number): RevisionRecord[] | null {
    const obj = this.s.objectId!.get({ bucket, key, now }) as { id: string } | undefined;
    if (!obj) return null;
    return (this.s.revisionsOf!.all(obj.id, before ?? Number.MAX_SAFE_INTEGER, limit) as Record<string, unknown>[]).map((r) => ({
      revision: r.revision as number,
      metadata: snapshotToMeta(r.metadata as string),
      digest: r.digest as string,
      size: r.size as number,
      contentType: r.content_type as string | null,
      filename: r.filename as string | null,
      createdAt: r.created_at as number,
      createdBy: r.created_by as string | null,
      etag: r.etag as string | null,
    }));
  }

  /** Runs inside the caller's transaction. */
  setObjectMeta(bucket: string, key: string, m: ObjectMeta, now: number, ifMatch?: IfMatch): ObjectRecord | null | 'precondition_failed' {
    const obj = this.s.objectId!.get({ bucket, key, now }) as { id: string; revision: number } | undefined;
    if (!obj) return null;
    if (ifMatch !== undefined && !ifMatchHolds(ifMatch, this.s.revisionDigest!.get(obj.id, obj.revision) as string)) return 'precondition_failed';
    this.s.setMeta!.run(m.contentType, m.filename, m.owner, JSON.stringify(m.tags), JSON.stringify(m.properties), m.expiresAt, now, obj.id);
    this.s.snapshotCurrent!.run(obj.id);
    return toObject(this.s.anyCurrentObject!.get(obj.id) as ObjectRow);
  }

  /**
   * Runs inside the caller's transaction. An expired object counts as absent unless `includeExpired`
   * (GC's expiry and purges remove those).
   */
  deleteObject(bucket: string, key: string, revision: number | undefined, now: number, includeExpired = false, ifMatch?: IfMatch): boolean | 'precondition_failed' {
    const obj = (includeExpired ? this.s.anyObjectId!.get(bucket, key) : this.s.objectId!.get({ bucket, key, now })) as
      | { id: string; revision: number }
      | undefined;
    if (!obj) return false;
    if (ifMatch !== undefined) {
      const digest = this.s.revisionDigest!.get(obj.id, revision ?? obj.revision) as string | undefined;
      if (digest === undefined) return false;
      if (!ifMatchHolds(ifMatch, digest)) return 'precondition_failed';
    }
    if (revision === undefined || (this.s.revisionCount!.get(obj.id) as number) === 1) {
      if (revision !== undefined && this.s.revisionSize!.get(obj.id, revision) === undefined) return false;
      const bytes = this.s.totalSize!.get(obj.id) as number;
      this.s.deleteObject!.run(obj.id);
      this.s.countBucket!.run(-1, -bytes, bucket);
      return true;
    }
    const size = this.s.revisionSize!.get(obj.id, revision) as number | undefined;
    if (size === undefined) return false;
    this.s.deleteRevision!.run(obj.id, revision);
    this.s.countBucket!.run(0, -size, bucket);
    if (revision === obj.revision) {
      this.s.setObjectRevision!.run(this.s.latestRevision!.get(obj.id), now, obj.id);
    }
    return true;
  }

  listObjects(q: ListObjectsQuery, now: number): ObjectRecord[] {
    // One lower bound, the larger of cursor and prefix (compared as UTF-8 bytes, SQLite's BINARY order):
    // given both, the planner picked `key > ''` and walked the bucket from its start to the prefix.
    const after = q.after ?? '';
    const fromCursor = after !== '' && Buffer.compare(Buffer.from(after), Buffer.from(q.prefix)) >= 0;
    const where = ['o.bucket = @bucket', fromCursor ? 'o.key > @after' : 'o.key >= @prefix', 'o.key < @prefixEnd', UNEXPIRED];
    const params: Record<string, unknown> = {
      bucket: q.bucket,
      ...(fromCursor ? { after } : { prefix: q.prefix }),
      prefixEnd: q.prefix + KEY_END,
      limit: q.limit,
      now,
    };
    if (q.owner !== undefined) {
      where.push('o.owner = @owner');
      params.owner = q.owner;
    }
    if (q.tag !== undefined) {
      where.push('EXISTS (SELECT 1 FROM json_each(o.tags) WHERE value = @tag)');
      params.tag = q.tag;
    }
    (q.properties ?? []).forEach((f, i) => {
      where.push(propertyCondition(f, i));
      params[`path${i}`] = `$."${f.name}"`;
      if (f.op !== 'exists') {
        params[`value${i}`] = f.value;
        params[`number${i}`] = finiteNumber(f.value);
      }
    });
    const sql = `SELECT ${OBJECT_COLUMNS} FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
      WHERE ${where.join(' AND ')} ORDER BY o.key LIMIT @limit`;
    let stmt = this.listCache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql) as Statement<any[], ObjectRow>;
      this.listCache.set(sql, stmt);
    }
    return stmt.all(params).map(toObject);
  }
}

/**
 * One property filter as SQL. Values have kinds: numbers (a JSON number, or a string that parses as a
 * finite number, such as "100"), other text, and the rest (true, false, null, objects, arrays). `eq` and
 * `ne` compare numbers as numbers and anything else by its text (`true`, `null`, JSON for objects);
 * `gt`/`gte`/`lt`/`lte` compare numbers with numbers and text with text only, never across kinds. `ne` also
 * matches objects without the property; `exists` tests presence.
 */
function propertyCondition(f: PropertyFilter, i: number): string {
  const type = `json_type(o.properties, @path${i})`;
  if (f.op === 'exists') return f.value === 'false' ? `${type} IS NULL` : `${type} IS NOT NULL`;
  const value = `json_extract(o.properties, @path${i})`;
  const asNumber = `(CASE WHEN ${type} IN ('integer', 'real') THEN ${value} WHEN ${type} = 'text' THEN blobd_number(${value}) END)`;
  const asText = `(CASE ${type} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE CAST(${value} AS TEXT) END)`;
  const numeric = finiteNumber(f.value) !== null;
  const sqlOp = PROPERTY_OPS[f.op];
  let test: string;
  if (f.op === 'eq' || f.op === 'ne') {
    test = numeric ? `coalesce(${asNumber} = @number${i}, ${asText} = @value${i})` : `${asText} = @value${i}`;
  } else {
    test = numeric
      ? `${asNumber} ${sqlOp} @number${i}`
      : `${type} = 'text' AND blobd_number(${value}) IS NULL AND ${value} ${sqlOp} @value${i}`;
  }
  return f.op === 'ne' ? `(${type} IS NULL OR NOT coalesce(${test}, 0))` : `coalesce(${test}, 0)`;
}
