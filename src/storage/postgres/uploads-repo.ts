// Every SQL statement about upload sessions on PostgreSQL, each operation one statement (one round trip).
// A session's lease (lease_holder, lease_until) says which node serves it; fenced writes change the row only
// while the lease is the writer's, so a node that lost it can never move a session another node now serves.
import { UploadLeaseLost, type LeaseOutcome, type NewBlob, type NewUpload, type PinInput, type UploadRecord, type UploadState } from '../metadata-store.ts';
import { blobWrite } from './blobs-repo.ts';
import type { Queryable } from './db.ts';
import { toUploadRecord, type UploadRow } from '../rows.ts';

/**
 * The outcome of a fenced UPDATE in the same statement: `changed` (rows it changed) and, from the statement's
 * snapshot, whether the row exists and who held its lease — enough to tell a lost lease from a wrong state.
 */
interface FenceRow {
  changed: number;
  found: boolean;
  lease_holder: string | null;
}

/** Throws UploadLeaseLost when a fenced write changed nothing because another holder has the lease. */
function checkFence(id: string, holder: string | undefined, r: FenceRow | undefined): boolean {
  if (r && r.changed > 0) return true;
  if (holder !== undefined && r?.found && r.lease_holder !== holder) throw new UploadLeaseLost(id);
  return false;
}

export async function insertUpload(q: Queryable, u: NewUpload): Promise<void> {
  await q`
    INSERT INTO upload_sessions (id, token_hash, principal, filename, content_type, temporary, declared_size,
      size_limit, expected_digest, bucket, key, client_metadata, cursor, location, created_at, updated_at, expires_at)
    VALUES (${u.id}, ${u.tokenHash}, ${u.principal}, ${u.filename}, ${u.contentType}, ${u.temporary}, ${u.declaredSize},
      ${u.sizeLimit}, ${u.expectedDigest}, ${u.bucket}, ${u.key}, ${u.clientMetadata}, ${u.cursor}, ${u.location},
      ${u.createdAt}, ${u.createdAt}, ${u.expiresAt})`;
}

export async function getUpload(q: Queryable, id: string): Promise<UploadRecord | null> {
  const rows = await q<UploadRow[]>`SELECT * FROM upload_sessions WHERE id = ${id}`;
  return rows[0] ? toUploadRecord(rows[0]) : null;
}

export async function declareUploadSize(q: Queryable, id: string, size: number, now: number): Promise<boolean> {
  const r = await q`UPDATE upload_sessions SET declared_size = ${size}, updated_at = ${now}
    WHERE id = ${id} AND state = 'open' AND declared_size IS NULL`;
  return r.count === 1;
}

/**
 * The offset, its cursor and (when given) the hash state in one write: they never disagree. False when the
 * session is not open.
 */
export async function advanceUpload(
  q: Queryable, id: string, offset: number, cursor: string | null, now: number, expiresAt: number, holder?: string,
  hashState?: string | null,
): Promise<boolean> {
  const h = holder ?? null;
  const [r] = await q<FenceRow[]>`
    WITH u AS (
      UPDATE upload_sessions SET upload_offset = ${offset}, cursor = ${cursor}, updated_at = ${now}, expires_at = ${expiresAt},
        hash_state = CASE WHEN ${hashState !== undefined} THEN ${hashState ?? null}::text ELSE hash_state END
      WHERE id = ${id} AND state = 'open' AND (${h}::text IS NULL OR lease_holder = ${h}::text) RETURNING 1
    )
    SELECT (SELECT count(*) FROM u)::int AS changed, s.id IS NOT NULL AS found, s.lease_holder
    FROM (SELECT 1) one LEFT JOIN upload_sessions s ON s.id = ${id}`;
  return checkFence(id, holder, r);
}

export async function markCompleting(q: Queryable, id: string, digest: string, location: string, now: number, holder?: string): Promise<boolean> {
  const h = holder ?? null;
  const [r] = await q<FenceRow[]>`
    WITH u AS (
      UPDATE upload_sessions SET state = 'completing', digest = ${digest}, location = ${location}, updated_at = ${now}
      WHERE id = ${id} AND state = 'open' AND (${h}::text IS NULL OR lease_holder = ${h}::text) RETURNING 1
    )
    SELECT (SELECT count(*) FROM u)::int AS changed, s.id IS NOT NULL AS found, s.lease_holder
    FROM (SELECT 1) one LEFT JOIN upload_sessions s ON s.id = ${id}`;
  return checkFence(id, holder, r);
}

export async function reopenUpload(q: Queryable, id: string, cursor: string | null, location: string | null, now: number, holder?: string): Promise<void> {
  const h = holder ?? null;
  const [r] = await q<FenceRow[]>`
    WITH u AS (
      UPDATE upload_sessions SET state = 'open', digest = NULL, cursor = ${cursor}, location = ${location}, updated_at = ${now}
      WHERE id = ${id} AND state = 'completing' AND (${h}::text IS NULL OR lease_holder = ${h}::text) RETURNING 1
    )
    SELECT (SELECT count(*) FROM u)::int AS changed, s.id IS NOT NULL AS found, s.lease_holder
    FROM (SELECT 1) one LEFT JOIN upload_sessions s ON s.id = ${id}`;
  checkFence(id, holder, r);
}

/**
 * The location is let go: the blob row names it now, or it was queued for deletion as a duplicate's. Fenced
 * when `holder` is given: the session must be completing under that holder's lease (UploadLeaseLost when
 * another holds it). False when the session is not open or completing.
 */
export async function markCompleted(
  q: Queryable, id: string, digest: string, result: string, now: number, expiresAt: number, holder?: string,
): Promise<boolean> {
  const h = holder ?? null;
  const [r] = await q<FenceRow[]>`
    WITH u AS (
      UPDATE upload_sessions SET state = 'completed', digest = ${digest}, location = NULL, result = ${result},
        updated_at = ${now}, expires_at = ${expiresAt}
      WHERE id = ${id} AND state IN ('open', 'completing')
        AND (${h}::text IS NULL OR (state = 'completing' AND lease_holder = ${h}::text)) RETURNING 1
    )
    SELECT (SELECT count(*) FROM u)::int AS changed, s.id IS NOT NULL AS found, s.lease_holder
    FROM (SELECT 1) one LEFT JOIN upload_sessions s ON s.id = ${id}`;
  return checkFence(id, holder, r);
}

/**
 * finishUpload with a pin, as one statement (atomic by itself, one round trip): the session's update (fenced
 * as markCompleted) gates the blob write and the pin, so when the session cannot complete nothing is written.
 * Null when it could not (after checkFence threw UploadLeaseLost if that is why).
 */
export async function completeWithPin(
  q: Queryable, id: string, blob: NewBlob, pin: PinInput, result: string, now: number, expiresAt: number, holder?: string,
): Promise<{ created: boolean } | null> {
  const h = holder ?? null;
  const [r] = await q<(FenceRow & { created: boolean | null })[]>`
    WITH u AS (
      UPDATE upload_sessions SET state = 'completed', digest = ${blob.digest}, location = NULL, result = ${result},
        updated_at = ${now}, expires_at = ${expiresAt}
      WHERE id = ${id} AND state IN ('open', 'completing')
        AND (${h}::text IS NULL OR (state = 'completing' AND lease_holder = ${h}::text)) RETURNING 1
    ), ${blobWrite(q, blob, now, pin, 'u')}
    SELECT (SELECT count(*) FROM u)::int AS changed, (SELECT created FROM b) AS created, s.id IS NOT NULL AS found, s.lease_holder
    FROM (SELECT 1) one LEFT JOIN upload_sessions s ON s.id = ${id}`;
  return checkFence(id, holder, r) ? { created: r!.created === true } : null;
}

export async function deleteUpload(q: Queryable, id: string): Promise<void> {
  await q`DELETE FROM upload_sessions WHERE id = ${id}`;
}

export async function listUploads(q: Queryable, principal: string, limit: number, before: string | null, now: number): Promise<UploadRecord[]> {
  const rows = await q<UploadRow[]>`
    SELECT * FROM upload_sessions WHERE principal = ${principal} AND id < ${before ?? '\u{10FFFF}'} AND state = 'open'
      AND expires_at > ${now} ORDER BY id DESC LIMIT ${limit}`;
  return rows.map(toUploadRecord);
}

export async function listUnfinishedUploads(q: Queryable): Promise<UploadRecord[]> {
  const rows = await q<UploadRow[]>`SELECT * FROM upload_sessions WHERE state IN ('open', 'completing')`;
  return rows.map(toUploadRecord);
}

/** Completing sessions are recovery's to decide; a session whose lease is live is in use. */
export async function listExpiredUploads(q: Queryable, now: number): Promise<{ id: string; state: UploadState }[]> {
  const rows = await q<{ id: string; state: UploadState }[]>`
    SELECT id, state FROM upload_sessions WHERE expires_at <= ${now} AND state IN ('open', 'completed')
      AND (lease_until IS NULL OR lease_until <= ${now}) ORDER BY id`;
  return rows.map((r) => ({ id: r.id, state: r.state }));
}

export async function reservedUploadBytes(q: Queryable, now: number): Promise<number> {
  const [r] = await q<{ reserved: number }[]>`
    SELECT coalesce(sum(declared_size - upload_offset), 0)::bigint AS reserved FROM upload_sessions
    WHERE state = 'open' AND declared_size IS NOT NULL AND expires_at > ${now}`;
  return r!.reserved;
}

/**
 * One statement: `old` reads and locks the row (the holder before), `taken` changes it when the lease is free,
 * the holder's own or lapsed; when nothing changed the row is returned as it is ('busy'), and no row at all
 * means no such session.
 */
export async function acquireUploadLease(
  q: Queryable, id: string, holder: string, now: number, until: number,
): Promise<{ outcome: LeaseOutcome; row: UploadRecord } | null> {
  const rows = await q<(UploadRow & { taken: boolean; old_holder: string | null })[]>`
    WITH old AS (
      SELECT id, lease_holder FROM upload_sessions WHERE id = ${id} FOR UPDATE
    ), taken AS (
      UPDATE upload_sessions s SET lease_holder = ${holder}, lease_until = ${until}
      FROM old
      WHERE s.id = old.id AND (old.lease_holder IS NULL OR old.lease_holder = ${holder} OR s.lease_until <= ${now})
      RETURNING s.*
    )
    SELECT taken.*, true AS taken, old.lease_holder AS old_holder FROM taken, old
    UNION ALL
    SELECT s.*, false, old.lease_holder FROM upload_sessions s JOIN old ON s.id = old.id WHERE NOT EXISTS (SELECT 1 FROM taken)`;
  const r = rows[0];
  if (!r) return null;
  // The holder as locked (the row's other columns are as of the statement's start).
  if (!r.taken) return { outcome: 'busy', row: { ...toUploadRecord(r), leaseHolder: r.old_holder } };
  const takenOver = r.old_holder !== null && r.old_holder !== holder;
  return { outcome: takenOver ? 'taken_over' : 'acquired', row: toUploadRecord(r) };
}

export async function renewUploadLease(q: Queryable, id: string, holder: string, until: number): Promise<boolean> {
  const r = await q`UPDATE upload_sessions SET lease_until = ${until} WHERE id = ${id} AND lease_holder = ${holder}`;
  return r.count === 1;
}

export async function releaseUploadLease(q: Queryable, id: string, holder: string): Promise<void> {
  await q`UPDATE upload_sessions SET lease_holder = NULL, lease_until = NULL WHERE id = ${id} AND lease_holder = ${holder}`;
}
