// Listing objects on PostgreSQL: key order (byte order: keys are COLLATE "C"), cursor, prefix, owner, tag
// and property filters, in one statement. Reads only; it takes no locks.
import type { ListObjectsQuery, ObjectRecord, PropertyFilter } from '../metadata-store.ts';
import { KEY_END } from '../metadata-store.ts';
import type { PendingQuery, Row } from 'postgres';
import type { Queryable } from './db.ts';
import { finiteNumber } from '../finite-number.ts';

type Fragment = PendingQuery<Row[]>;

export interface ObjectRow {
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
  tags: string[];
  properties: Record<string, unknown>;
  expires_at: number | null;
  created_at: number;
  updated_at: number;
  created_by: string | null;
  revision_created_at: number;
  etag: string | null;
}

/** The columns of an ObjectRow, for any query over `objects o` joined with the revision `r` it is read as of. */
export const OBJECT_COLUMNS = (q: Queryable) =>
  q.unsafe(`o.id, o.bucket, o.key, o.last_revision AS latest, r.revision, r.digest, r.size, r.content_type,
    r.filename, o.owner, o.tags, o.properties, o.expires_at, o.created_at, o.updated_at, o.created_by,
    r.created_at AS revision_created_at, r.etag`);

export function toObject(r: ObjectRow): ObjectRecord {
  return {
    id: r.id,
    bucket: r.bucket,
    key: r.key,
    revision: r.revision,
    latestRevision: r.latest,
    digest: r.digest,
    size: r.size,
    contentType: r.content_type,
    filename: r.filename,
    owner: r.owner,
    tags: r.tags,
    properties: r.properties,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    createdBy: r.created_by,
    revisionCreatedAt: r.revision_created_at,
    etag: r.etag,
  };
}

/** The text before the first U+0000: for text without one, `x > s` ⇔ `x > beforeNul(s)` and `x < s` ⇔ `x <= beforeNul(s)`. */
const beforeNul = (s: string): string => s.slice(0, s.indexOf('\0'));

/** The operators of `property.NAME_OP=VALUE` filters (plain `property.NAME=VALUE` is `eq`). */
const PROPERTY_OPS = { eq: '=', ne: '=', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** Objects in key order after the cursor, filtered; at most `limit`. Objects past expires_at are gone. */
export async function listObjects(sql: Queryable, q: ListObjectsQuery, now: number): Promise<ObjectRecord[]> {
  // PostgreSQL text cannot hold U+0000, which no key, owner or tag holds either (SQLite answers such a query
  // with nothing): nothing matches such a prefix, owner or tag, and a cursor past 'ab\0…' is one past 'ab'.
  if ([q.prefix, q.owner, q.tag].some((s) => s?.includes('\0'))) return [];
  if (q.after?.includes('\0')) q = { ...q, after: beforeNul(q.after) };
  // One lower bound, the larger of cursor and prefix (compared as UTF-8 bytes, the "C" collation's order).
  const after = q.after ?? '';
  const fromCursor = after !== '' && Buffer.compare(Buffer.from(after), Buffer.from(q.prefix)) >= 0;
  const where = [
    sql`o.bucket = ${q.bucket}`,
    fromCursor ? sql`o.key > ${after}` : sql`o.key >= ${q.prefix}`,
    sql`o.key < ${q.prefix + KEY_END}`,
    sql`(o.expires_at IS NULL OR o.expires_at > ${now})`,
  ];
  if (q.owner !== undefined) where.push(sql`o.owner = ${q.owner}`);
  if (q.tag !== undefined) where.push(sql`o.tags @> ${JSON.stringify([q.tag])}::text::jsonb`);
  for (const f of q.properties ?? []) where.push(propertyCondition(sql, f));
  const conditions = where.reduce((all, c) => sql`${all} AND ${c}`);
  const rows = await sql<ObjectRow[]>`
    SELECT ${OBJECT_COLUMNS(sql)} FROM objects o JOIN revisions r ON r.object_id = o.id AND r.revision = o.revision
    WHERE ${conditions} ORDER BY o.key LIMIT ${q.limit}`;
  return rows.map(toObject);
}

/**
 * One property filter as SQL, as on SQLite. Values have kinds: numbers (a JSON number, or a string that
 * parses as a finite number, such as "100"), other text, and the rest (true, false, null, objects, arrays).
 * `eq` and `ne` compare numbers as numbers and anything else by its text (`true`, `null`, the JSON of an
 * object as written); `gt`/`gte`/`lt`/`lte` compare numbers with numbers and text with text only (in byte
 * order), never across kinds. `ne` also matches objects without the property; `exists` tests presence.
 */
function propertyCondition(sql: Queryable, f: PropertyFilter) {
  const type = sql`json_typeof(o.properties -> ${f.name}::text)`;
  if (f.op === 'exists') return f.value === 'false' ? sql`${type} IS NULL` : sql`${type} IS NOT NULL`;
  const value = sql`(o.properties ->> ${f.name}::text)`;
  const asNumber = sql`(CASE ${type} WHEN 'number' THEN ${value}::double precision WHEN 'string' THEN blobd_number(${value}) END)`;
  const asText = sql`(CASE ${type} WHEN 'null' THEN 'null' ELSE ${value} END)`;
  if (f.value.includes('\0')) return nulValueCondition(sql, f, type, value);
  const number = finiteNumber(f.value);
  const op = sql.unsafe(PROPERTY_OPS[f.op]);
  let test;
  if (f.op === 'eq' || f.op === 'ne') {
    test = number !== null
      ? sql`coalesce(${asNumber} = ${number}::double precision, ${asText} = ${f.value}::text)`
      : sql`${asText} = ${f.value}::text`;
  } else {
    test = number !== null
      ? sql`${asNumber} ${op} ${number}::double precision`
      : sql`(${type} = 'string' AND blobd_number(${value}) IS NULL AND ${value} COLLATE "C" ${op} ${f.value}::text)`;
  }
  return f.op === 'ne' ? sql`(${type} IS NULL OR NOT coalesce(${test}, false))` : sql`coalesce(${test}, false)`;
}

/**
 * A filter value with U+0000 (which PostgreSQL text cannot hold) as SQLite would answer it: it is no number,
 * and a property's text holds none, so `eq` matches nothing, `ne` everything, and a range compares by the
 * text before the U+0000 (see beforeNul).
 */
function nulValueCondition(sql: Queryable, f: PropertyFilter, type: Fragment, value: Fragment) {
  if (f.op === 'eq') return sql`false`;
  if (f.op === 'ne') return sql`true`;
  const op = sql.unsafe(f.op === 'gt' || f.op === 'gte' ? '>' : '<=');
  return sql`coalesce(${type} = 'string' AND blobd_number(${value}) IS NULL AND ${value} COLLATE "C" ${op} ${beforeNul(f.value)}::text, false)`;
}
