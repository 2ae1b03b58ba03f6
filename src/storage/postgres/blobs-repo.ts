// Every SQL statement about blob rows, pins and the byte-deletion queue on PostgreSQL. A write that
// references a blob locks its row in the transaction that inserts the reference, so that a GC delete on
// another node (which locks the row first, then re-checks) and a dedup can never both win (G4).
import type { BlobRecord, ByteDeletion, NewBlob, PinInput } from '../metadata-store.ts';
import type { Queryable, Tx } from './db.ts';
import type { InlineNewBlob } from './inline-repo.ts';

/** A blob row as read. */
export interface BlobRow {
  digest: string;
  size: number;
  location: string;
  created_at: number;
  quarantined_at: number | null;
}

export function toBlobRecord(r: BlobRow): BlobRecord {
  return { digest: r.digest, size: r.size, location: r.location, createdAt: r.created_at, quarantined: r.quarantined_at !== null };
}

/**
 * Records a blob whose bytes are durable at blob.location, inside the caller's transaction, in one statement
 * that leaves the row locked until the transaction ends. The location rules of MetadataStore.commitBlob: a
 * new row takes the location; an existing row keeps its own unless it is quarantined (then it takes the new
 * one and loses the mark); a location the row does not end up naming is queued in byte_deletions, and the
 * location it names is taken out of the queue (the same content at the same content address again).
 * With `mustExist` it only references (and locks) a readable row: 'missing' when there is none, nothing written.
 * Given the pool instead of a transaction, the statement is a transaction of its own (one round trip).
 */
export async function recordBlob(tx: Tx | Queryable, blob: NewBlob, now: number, pin?: PinInput | null): Promise<{ created: boolean } | 'missing'> {
  if (blob.mustExist) {
    const rows = await tx<{ digest: string }[]>`
      WITH b AS (
        SELECT digest FROM blobs WHERE digest = ${blob.digest} AND quarantined_at IS NULL FOR UPDATE
      ), p AS (
        ${pinInsert(tx, pin ?? null, now)}
      )
      SELECT digest FROM b`;
    return rows.length === 0 ? 'missing' : { created: false };
  }
  const rows = await tx<{ created: boolean }[]>`WITH ${blobWrite(tx, blob, now, pin ?? null, null)} SELECT created FROM b`;
  return { created: rows[0]!.created };
}

/**
 * The CTEs of a blob write (not mustExist): `old`, `b` (the row written: digest, location, created), `queued`,
 * `named_again` and `p` (the pin). With `gate` (the name of an earlier CTE), nothing is written unless that
 * CTE has a row: finishUpload makes the blob write depend on the session's update in one statement.
 * The upsert locks the row. `old` is the location the row named as of this statement's snapshot (read
 * without a lock: a FOR UPDATE here could run after the upsert in the same statement and then see nothing).
 * If another node changed the row meanwhile, queueing that older location again is harmless: it is a
 * location no row names (unique keys are never reused; the row's own location is never queued).
 */
export function blobWrite(q: Queryable, blob: InlineNewBlob, now: number, pin: PinInput | null, gate: string | null) {
  const from = gate === null ? q`` : q`FROM ${q(gate)}`;
  // Inline bytes (PgInlineRepo): a new row takes them; a quarantined one takes them with the new location;
  // a row in place at the same location takes them too when they differ (verified bytes heal damaged ones).
  return q`
    old AS (
      SELECT location FROM blobs WHERE digest = ${blob.digest}
    ), b AS (
      INSERT INTO blobs (digest, size, location, created_at, content)
      SELECT ${blob.digest}::text, ${blob.size}::bigint, ${blob.location}::text, ${now}::bigint, ${blob.content ?? null}::bytea ${from}
      ON CONFLICT (digest) DO UPDATE SET
        location = CASE WHEN blobs.quarantined_at IS NULL THEN blobs.location ELSE excluded.location END,
        size = CASE WHEN blobs.quarantined_at IS NULL THEN blobs.size ELSE excluded.size END,
        content = CASE WHEN blobs.quarantined_at IS NOT NULL THEN excluded.content
                       WHEN excluded.content IS NOT NULL AND blobs.location = excluded.location
                            AND blobs.content IS DISTINCT FROM excluded.content THEN excluded.content
                       ELSE blobs.content END,
        quarantined_at = NULL
      RETURNING digest, location, (xmax = 0) AS created
    ), queued AS (
      INSERT INTO byte_deletions (location, digest, queued_at)
      SELECT l.location, b.digest, ${now}::bigint
      FROM (SELECT ${blob.location}::text AS location UNION SELECT location FROM old) l, b
      WHERE NOT b.created AND l.location <> b.location
      ON CONFLICT (location) DO NOTHING
    ), named_again AS (
      DELETE FROM byte_deletions WHERE location IN (SELECT location FROM b)
    ), p AS (
      ${pinInsert(q, pin, now)}
    )`;
}

/**
 * The pin part of a blob write (a fragment over the CTE `b`): a repeated pin by the same principal keeps the
 * stronger claim — permanent beats temporary; between temporary ones the later expiry wins.
 */
function pinInsert(tx: Queryable, pin: PinInput | null, now: number) {
  if (!pin) return tx`SELECT 1`;
  return tx`
    INSERT INTO pins (principal, digest, temporary, expires_at, created_at)
    SELECT ${pin.principal}, b.digest, ${pin.temporary}, ${pin.temporary ? pin.expiresAt : null}::bigint, ${now}::bigint FROM b
    ON CONFLICT (principal, digest) DO UPDATE SET
      temporary  = pins.temporary AND excluded.temporary,
      expires_at = CASE WHEN pins.temporary AND excluded.temporary
                        THEN greatest(pins.expires_at, excluded.expires_at) ELSE NULL END`;
}

export async function getBlob(q: Queryable, digest: string): Promise<BlobRecord | null> {
  const rows = await q<BlobRow[]>`SELECT digest, size, location, created_at, quarantined_at FROM blobs WHERE digest = ${digest}`;
  return rows[0] ? toBlobRecord(rows[0]) : null;
}

/** Queues a location whose row is gone (a GC delete, a purge); a location already waiting keeps its place. */
export async function queueDeletion(q: Queryable, location: string, digest: string, now: number): Promise<void> {
  await q`INSERT INTO byte_deletions (location, digest, queued_at) VALUES (${location}, ${digest}, ${now})
    ON CONFLICT (location) DO NOTHING`;
}

/** Queued deletions, oldest first. Several nodes may read the same ones: deleting bytes twice is harmless. */
export async function listByteDeletions(q: Queryable, limit: number): Promise<ByteDeletion[]> {
  const rows = await q<ByteDeletion[]>`SELECT location, digest FROM byte_deletions ORDER BY seq LIMIT ${limit}`;
  return rows.map((r) => ({ location: r.location, digest: r.digest }));
}

export async function finishByteDeletion(q: Queryable, location: string): Promise<void> {
  await q`DELETE FROM byte_deletions WHERE location = ${location}`;
}

export async function deletionQueuedAt(q: Queryable, location: string): Promise<number | null> {
  const [r] = await q<{ queued_at: number }[]>`SELECT queued_at FROM byte_deletions WHERE location = ${location}`;
  return r ? r.queued_at : null;
}
