// The life of blobs after they are stored, on PostgreSQL: pins by principal, expiry of pins and objects,
// garbage (found, then deleted under the blob row's lock after a fresh re-check, its bytes queued in the same
// transaction), purges, quarantine marks, claimed locations, GC holds and the numbers of /api/admin/stats.
import type { BlobRecord, PinInput, PinRecord, StoreStats } from '../metadata-store.ts';
import { toBlobRecord, type BlobRow } from './blobs-repo.ts';
import { deleteObjectIn } from './catalog-repo.ts';
import type { PgDb, Queryable } from './db.ts';

const BLOB_COLUMNS = 'b.digest, b.size, b.location, b.created_at, b.quarantined_at';

/** A pin that still holds at `now`. */
const validPin = (q: Queryable, now: number) => q`(p.expires_at IS NULL OR p.expires_at > ${now})`;

/** "Nothing references blob b": no object revision and no pin still valid at `now`. */
function unreferenced(q: Queryable, now: number, afterExpiry: boolean) {
  const revision = afterExpiry
    ? q`SELECT 1 FROM revisions r JOIN objects o ON o.id = r.object_id
        WHERE r.digest = b.digest AND (o.expires_at IS NULL OR o.expires_at > ${now})`
    : q`SELECT 1 FROM revisions r WHERE r.digest = b.digest`;
  return q`NOT EXISTS (${revision}) AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.digest = b.digest AND ${validPin(q, now)})`;
}

/** "Blob b is live": an unexpired object revision or a valid pin references it. */
function live(q: Queryable, now: number) {
  return q`(EXISTS (SELECT 1 FROM revisions r JOIN objects o ON o.id = r.object_id
      WHERE r.digest = b.digest AND (o.expires_at IS NULL OR o.expires_at > ${now}))
    OR EXISTS (SELECT 1 FROM pins p WHERE p.digest = b.digest AND ${validPin(q, now)}))`;
}

interface PinRow {
  digest: string;
  size: number;
  temporary: boolean;
  expires_at: number | null;
  created_at: number;
}

/** A principal's valid pins, newest first (expired temporary ones are gone for the caller before GC runs). */
export async function listPins(
  q: Queryable, principal: string, limit: number, after: { createdAt: number; digest: string } | null, now: number,
): Promise<PinRecord[]> {
  const page = after ? q`AND (p.created_at, p.digest) < (${after.createdAt}::bigint, ${after.digest}::text)` : q``;
  const rows = await q<PinRow[]>`
    SELECT p.digest, b.size, p.temporary, p.expires_at, p.created_at FROM pins p JOIN blobs b ON b.digest = p.digest
    WHERE p.principal = ${principal} AND ${validPin(q, now)} ${page}
    ORDER BY p.created_at DESC, p.digest DESC LIMIT ${limit}`;
  return rows.map((r) => ({ digest: r.digest, size: r.size, temporary: r.temporary, expiresAt: r.expires_at, createdAt: r.created_at }));
}

/** An expired temporary pin is gone for its principal already: false, as for no pin. */
export async function dropPin(q: Queryable, principal: string, digest: string, now: number): Promise<boolean> {
  const r = await q`DELETE FROM pins p WHERE p.principal = ${principal} AND p.digest = ${digest} AND ${validPin(q, now)}`;
  return r.count === 1;
}

export async function isBlobLive(q: Queryable, digest: string, now: number): Promise<boolean> {
  const [r] = await q<{ live: boolean }[]>`SELECT ${live(q, now)} AS live FROM blobs b WHERE b.digest = ${digest}`;
  return r?.live ?? false;
}

/**
 * Pins the blob if a readable, live row (of `size`, when given) exists, in one statement that locks the row
 * before the pin goes in: a GC delete on another node either committed first (the lock then finds no row:
 * null) or waits for this pin and, re-checking after its own lock, sees it.
 */
export async function pinExistingBlob(q: Queryable, digest: string, pin: PinInput, size: number | undefined, now: number): Promise<BlobRecord | null> {
  const rows = await q<BlobRow[]>`
    WITH b AS (
      SELECT ${q.unsafe(BLOB_COLUMNS)} FROM blobs b
      WHERE b.digest = ${digest} AND b.quarantined_at IS NULL AND (${size ?? null}::bigint IS NULL OR b.size = ${size ?? null}::bigint)
        AND ${live(q, now)}
      FOR UPDATE
    ), p AS (
      INSERT INTO pins (principal, digest, temporary, expires_at, created_at)
      SELECT ${pin.principal}, b.digest, ${pin.temporary}, ${pin.temporary ? pin.expiresAt : null}::bigint, ${now}::bigint FROM b
      ON CONFLICT (principal, digest) DO UPDATE SET
        temporary  = pins.temporary AND excluded.temporary,
        expires_at = CASE WHEN pins.temporary AND excluded.temporary
                          THEN greatest(pins.expires_at, excluded.expires_at) ELSE NULL END
    )
    SELECT * FROM b`;
  return rows[0] ? toBlobRecord(rows[0]) : null;
}

/** Objects deleted per transaction by an expiry pass: it holds their bucket's lock only that long. */
const EXPIRY_BATCH = 100;

/**
 * Expired temporary pins and objects: counted, or (unless `dryRun`) deleted — objects in transactions of at
 * most EXPIRY_BATCH objects of one bucket each, so that a long pass never makes a bucket's writers wait for
 * all of it (they would fail past lock_timeout). Each object goes whole, with its bucket's counters.
 */
export async function expirePinsAndObjects(db: PgDb, now: number, dryRun: boolean): Promise<{ pins: number; objects: number }> {
  if (dryRun) {
    const [r] = await db.sql<{ pins: number; objects: number }[]>`
      SELECT (SELECT count(*) FROM pins WHERE expires_at IS NOT NULL AND expires_at <= ${now}) AS pins,
        (SELECT count(*) FROM objects WHERE expires_at IS NOT NULL AND expires_at <= ${now}) AS objects`;
    return { pins: r!.pins, objects: r!.objects };
  }
  const expired = await db.sql<{ bucket: string; key: string }[]>`
    SELECT bucket, key FROM objects WHERE expires_at IS NOT NULL AND expires_at <= ${now} ORDER BY bucket, key`;
  let objects = 0;
  for (let i = 0; i < expired.length; ) {
    const bucket = expired[i]!.bucket;
    const batch: string[] = [];
    for (; i < expired.length && expired[i]!.bucket === bucket && batch.length < EXPIRY_BATCH; i++) batch.push(expired[i]!.key);
    objects += await db.tx(async (tx) => {
      let n = 0;
      for (const key of batch) if (await deleteObjectIn(tx, bucket, key, undefined, now, true)) n++;
      return n;
    });
  }
  const pins = await db.sql`DELETE FROM pins WHERE expires_at IS NOT NULL AND expires_at <= ${now}`;
  return { pins: pins.count, objects };
}

export async function listGarbageBlobs(q: Queryable, createdBefore: number, now: number, limit: number, afterExpiry: boolean): Promise<BlobRecord[]> {
  const rows = await q<BlobRow[]>`
    SELECT ${q.unsafe(BLOB_COLUMNS)} FROM blobs b
    WHERE b.created_at < ${createdBefore} AND ${unreferenced(q, now, afterExpiry)}
    ORDER BY b.digest LIMIT ${limit}`;
  return rows.map(toBlobRecord);
}

/**
 * Deletes the blob's row if it is still garbage and no GC hold is active, queueing its location; true when it
 * did. A row whose bytes are in it (the inline tier) stays while an upload session completing into its
 * digest claims them (a file's claim is checked by the deletion queue instead). The row is locked first; the re-check is a fresh statement after the lock (READ COMMITTED), so it sees
 * any reference whose transaction locked the row before this one — a dedup on another node wins or loses whole.
 */
export async function deleteGarbageBlob(db: PgDb, digest: string, createdBefore: number, now: number): Promise<boolean> {
  return db.tx(async (tx) => {
    const locked = await tx`SELECT 1 FROM blobs WHERE digest = ${digest} AND created_at < ${createdBefore} FOR UPDATE`;
    if (locked.count === 0) return false;
    const [r] = await tx<{ deleted: number }[]>`
      WITH g AS (
        SELECT b.digest FROM blobs b
        WHERE b.digest = ${digest} AND ${unreferenced(tx, now, false)}
          AND NOT EXISTS (SELECT 1 FROM gc_holds WHERE expires_at > ${now})
          -- Inline bytes go with the row: not while a session completing into this digest relies on them.
          AND (b.content IS NULL OR NOT EXISTS (
            SELECT 1 FROM upload_sessions s WHERE s.location = b.location AND s.state = 'completing'))
      ), pins_gone AS (
        DELETE FROM pins WHERE digest IN (SELECT digest FROM g)
      ), gone AS (
        DELETE FROM blobs WHERE digest IN (SELECT digest FROM g) RETURNING digest, location
      ), queued AS (
        INSERT INTO byte_deletions (location, digest, queued_at) SELECT location, digest, ${now}::bigint FROM gone
        ON CONFLICT (location) DO NOTHING
      )
      SELECT count(*)::int AS deleted FROM gone`;
    return r!.deleted === 1;
  });
}

/**
 * Every revision using the blob (newest first per object, so an object falls back to an older revision that
 * uses another blob), its pins and its row, its location queued; null when there is no such blob.
 */
export async function purgeBlob(db: PgDb, digest: string, now: number): Promise<{ revisions: number; pins: number } | null> {
  return db.tx(async (tx) => {
    const locked = await tx`SELECT 1 FROM blobs WHERE digest = ${digest} FOR UPDATE`;
    if (locked.count === 0) return null;
    const revisions = await tx<{ bucket: string; key: string; revision: number }[]>`
      SELECT o.bucket, o.key, r.revision FROM revisions r JOIN objects o ON o.id = r.object_id
      WHERE r.digest = ${digest} ORDER BY o.bucket, o.key, r.revision DESC`;
    for (const r of revisions) await deleteObjectIn(tx, r.bucket, r.key, r.revision, now, true);
    const [r] = await tx<{ pins: number }[]>`
      WITH pins_gone AS (
        DELETE FROM pins WHERE digest = ${digest} RETURNING 1
      ), gone AS (
        DELETE FROM blobs WHERE digest = ${digest} RETURNING digest, location
      ), queued AS (
        INSERT INTO byte_deletions (location, digest, queued_at) SELECT location, digest, ${now}::bigint FROM gone
        ON CONFLICT (location) DO NOTHING
      )
      SELECT count(*)::int AS pins FROM pins_gone`;
    return { revisions: revisions.length, pins: r!.pins };
  });
}

export async function listBlobsAfter(q: Queryable, after: string, limit: number): Promise<BlobRecord[]> {
  const rows = await q<BlobRow[]>`
    SELECT ${q.unsafe(BLOB_COLUMNS)} FROM blobs b WHERE b.digest > ${after} ORDER BY b.digest LIMIT ${limit}`;
  return rows.map(toBlobRecord);
}

export async function markQuarantined(q: Queryable, digest: string, now: number): Promise<void> {
  await q`UPDATE blobs SET quarantined_at = ${now} WHERE digest = ${digest}`;
}

/** A blob row names the location, or an unfinished session claims it. */
export async function isLocationClaimed(q: Queryable, location: string): Promise<boolean> {
  const [r] = await q<{ claimed: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM blobs WHERE location = ${location})
      OR EXISTS (SELECT 1 FROM upload_sessions WHERE location = ${location} AND state IN ('open', 'completing')) AS claimed`;
  return r!.claimed;
}

/** Holds that ran out are dropped on the way (a crashed holder leaves one behind). */
export async function addGcHold(q: Queryable, id: string, expiresAt: number, now: number): Promise<void> {
  await q`
    WITH old AS (DELETE FROM gc_holds WHERE expires_at <= ${now} AND id <> ${id})
    INSERT INTO gc_holds (id, expires_at) VALUES (${id}, ${expiresAt})
    ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`;
}

export async function releaseGcHold(q: Queryable, id: string): Promise<void> {
  await q`DELETE FROM gc_holds WHERE id = ${id}`;
}

/** What is stored and referenced now: quarantined blobs, expired pins and expired objects are not counted. */
export async function stats(q: Queryable, now: number): Promise<StoreStats> {
  const [r] = await q<StoreStats[]>`
    SELECT
      (SELECT count(*) FROM blobs WHERE quarantined_at IS NULL) AS blobs,
      (SELECT coalesce(sum(size), 0) FROM blobs WHERE quarantined_at IS NULL)::bigint AS "storedBytes",
      ((SELECT coalesce(sum(r.size), 0) FROM revisions r JOIN objects o ON o.id = r.object_id
          WHERE o.expires_at IS NULL OR o.expires_at > ${now})
        + (SELECT coalesce(sum(b.size), 0) FROM pins p JOIN blobs b ON b.digest = p.digest WHERE ${validPin(q, now)}))::bigint
        AS "logicalBytes",
      (SELECT count(*) FROM pins p WHERE ${validPin(q, now)}) AS pins,
      (SELECT count(*) FROM objects WHERE expires_at IS NULL OR expires_at > ${now}) AS objects,
      (SELECT count(*) FROM upload_sessions WHERE state = 'open') AS "openSessions",
      (SELECT coalesce(sum(upload_offset), 0) FROM upload_sessions WHERE state = 'open')::bigint AS "openSessionBytes"`;
  return { ...r! };
}
