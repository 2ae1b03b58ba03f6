// Every SQL statement about the life of blobs after they are stored: pins by principal, expiry of pins and
// objects, which blobs are garbage (and queueing their bytes for deletion with the row), quarantine marks,
// which locations are claimed, GC holds and the numbers of /api/admin/stats.
// Statements are prepared once; the transactions are the caller's (sqlite-metadata-store.ts).
import type { Statement } from 'better-sqlite3';
import type { BlobRecord, PinRecord, StoreStats } from '../metadata-store.ts';
import { BLOB_COLUMNS, toBlobRecord, type BlobRow, type BlobsRepo } from './blobs-repo.ts';
import type { CatalogRepo } from './catalog-repo.ts';
import type { Db } from './db.ts';

interface PinRow {
  digest: string;
  size: number;
  temporary: number;
  expires_at: number | null;
  created_at: number;
}

/** "Nothing references this blob": no object revision and no pin that is still valid at `@now`. */
const UNREFERENCED = `NOT EXISTS (SELECT 1 FROM revisions r WHERE r.digest = b.digest)
  AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.digest = b.digest AND (p.expires_at IS NULL OR p.expires_at > @now))`;
/** The same once expiry has run: revisions of objects whose expires_at passed no longer count (dry runs). */
const UNREFERENCED_AFTER_EXPIRY = `NOT EXISTS (SELECT 1 FROM revisions r JOIN objects o ON o.id = r.object_id
    WHERE r.digest = b.digest AND (o.expires_at IS NULL OR o.expires_at > @now))
  AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.digest = b.digest AND (p.expires_at IS NULL OR p.expires_at > @now))`;

/**
 * "Bytes at this location belong to something": a blob row names it (a NULL location names the digest), or
 * an unfinished session is committing into it. Each part is one indexed lookup (see test/sqlite-schema).
 */
export const LOCATION_CLAIMED = `SELECT EXISTS (SELECT 1 FROM blobs WHERE location = @location)
  OR EXISTS (SELECT 1 FROM blobs WHERE digest = @location AND location IS NULL)
  OR EXISTS (SELECT 1 FROM upload_sessions WHERE location = @location AND state IN ('open', 'completing'))`;

export class LifecycleRepo {
  private readonly s: Record<string, Statement<any[], any>>;

  constructor(db: Db, private readonly catalog: CatalogRepo, private readonly blobs: BlobsRepo) {
    const p = (sql: string) => db.prepare(sql);
    this.s = {
      pinsFirst: p(`SELECT p.digest, b.size, p.temporary, p.expires_at, p.created_at FROM pins p JOIN blobs b ON b.digest = p.digest
        WHERE p.principal = @principal AND (p.expires_at IS NULL OR p.expires_at > @now)
        ORDER BY p.created_at DESC, p.digest DESC LIMIT @limit`),
      pinsAfter: p(`SELECT p.digest, b.size, p.temporary, p.expires_at, p.created_at FROM pins p JOIN blobs b ON b.digest = p.digest
        WHERE p.principal = @principal AND (p.expires_at IS NULL OR p.expires_at > @now)
          AND (p.created_at < @created OR (p.created_at = @created AND p.digest < @digest))
        ORDER BY p.created_at DESC, p.digest DESC LIMIT @limit`),
      deletePin: p('DELETE FROM pins WHERE principal = @principal AND digest = @digest AND (expires_at IS NULL OR expires_at > @now)'),
      live: p(`SELECT EXISTS (SELECT 1 FROM revisions r JOIN objects o ON o.id = r.object_id
          WHERE r.digest = @digest AND (o.expires_at IS NULL OR o.expires_at > @now))
        OR EXISTS (SELECT 1 FROM pins p WHERE p.digest = @digest AND (p.expires_at IS NULL OR p.expires_at > @now))`).pluck(),
      countExpiredPins: p('SELECT count(*) FROM pins WHERE expires_at IS NOT NULL AND expires_at <= ?').pluck(),
      deleteExpiredPins: p('DELETE FROM pins WHERE expires_at IS NOT NULL AND expires_at <= ?'),
      expiredObjects: p('SELECT bucket, key FROM objects WHERE expires_at IS NOT NULL AND expires_at <= ?'),
      garbage: p(`SELECT ${BLOB_COLUMNS} FROM blobs b
        WHERE b.created_at < @before AND ${UNREFERENCED} ORDER BY b.digest LIMIT @limit`),
      garbageAfterExpiry: p(`SELECT ${BLOB_COLUMNS} FROM blobs b
        WHERE b.created_at < @before AND ${UNREFERENCED_AFTER_EXPIRY} ORDER BY b.digest LIMIT @limit`),
      isGarbage: p(`SELECT 1 FROM blobs b WHERE b.digest = @digest AND b.created_at < @before AND ${UNREFERENCED}`).pluck(),
      held: p('SELECT 1 FROM gc_holds WHERE expires_at > ? LIMIT 1').pluck(),
      deletePinsOf: p('DELETE FROM pins WHERE digest = ?'),
      deleteBlob: p('DELETE FROM blobs WHERE digest = ? RETURNING coalesce(location, digest)').pluck(),
      revisionsOf: p(`SELECT o.bucket, o.key, r.revision FROM revisions r JOIN objects o ON o.id = r.object_id
        WHERE r.digest = ? ORDER BY o.bucket, o.key, r.revision`),
      blobsAfter: p(`SELECT ${BLOB_COLUMNS} FROM blobs b WHERE b.digest > ? ORDER BY b.digest LIMIT ?`),
      quarantine: p('UPDATE blobs SET quarantined_at = ? WHERE digest = ?'),
      claimed: p(LOCATION_CLAIMED).pluck(),
      addHold: p('INSERT INTO gc_holds (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at'),
      releaseHold: p('DELETE FROM gc_holds WHERE id = ?'),
      dropOldHolds: p('DELETE FROM gc_holds WHERE expires_at <= ?'),
      blobStats: p('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs WHERE quarantined_at IS NULL'),
      revisionBytes: p(`SELECT coalesce(sum(r.size), 0) FROM revisions r JOIN objects o ON o.id = r.object_id
        WHERE o.expires_at IS NULL OR o.expires_at > ?`).pluck(),
      pinStats: p(`SELECT count(*) AS n, coalesce(sum(b.size), 0) AS bytes FROM pins p JOIN blobs b ON b.digest = p.digest
        WHERE p.expires_at IS NULL OR p.expires_at > ?`),
      objectCount: p('SELECT count(*) FROM objects WHERE expires_at IS NULL OR expires_at > ?').pluck(),
      sessionStats: p(`SELECT count(*) AS n, coalesce(sum(upload_offset), 0) AS bytes FROM upload_sessions WHERE state = 'open'`),
    };
  }

  /** A principal's valid pins (expired temporary ones are gone for the caller even before GC runs). */
  pins(principal: string, limit: number, after: { createdAt: number; digest: string } | null, now: number): PinRecord[] {
    const rows = (after
      ? this.s.pinsAfter!.all({ principal, limit, now, created: after.createdAt, digest: after.digest })
      : this.s.pinsFirst!.all({ principal, limit, now })) as PinRow[];
    return rows.map((r) => ({ digest: r.digest, size: r.size, temporary: r.temporary === 1, expiresAt: r.expires_at, createdAt: r.created_at }));
  }

  /** An expired temporary pin is gone for its principal already: false, as for no pin. */
  dropPin(principal: string, digest: string, now: number): boolean {
    return this.s.deletePin!.run({ principal, digest, now }).changes === 1;
  }

  /** An unexpired revision or pin references the blob. */
  live(digest: string, now: number): boolean {
    return this.s.live!.get({ digest, now }) === 1;
  }

  /** Expired temporary pins and objects: counted, or (unless `dryRun`) deleted. */
  expire(now: number, dryRun: boolean): { pins: number; objects: number } {
    const objects = this.s.expiredObjects!.all(now) as { bucket: string; key: string }[];
    if (dryRun) return { pins: this.s.countExpiredPins!.get(now) as number, objects: objects.length };
    for (const o of objects) this.catalog.deleteObject(o.bucket, o.key, undefined, now, true);
    return { pins: this.s.deleteExpiredPins!.run(now).changes, objects: objects.length };
  }

  garbage(createdBefore: number, now: number, limit: number, afterExpiry: boolean): BlobRecord[] {
    const query = afterExpiry ? this.s.garbageAfterExpiry! : this.s.garbage!;
    return (query.all({ before: createdBefore, now, limit }) as BlobRow[]).map(toBlobRecord);
  }

  /** Deletes the blob row if it is still garbage and no hold pauses GC, queueing its bytes; true when it did. */
  deleteIfGarbage(digest: string, createdBefore: number, now: number): boolean {
    if (this.s.held!.get(now) !== undefined) return false;
    if (this.s.isGarbage!.get({ digest, before: createdBefore, now }) === undefined) return false;
    this.s.deletePinsOf!.run(digest); // expired ones only: a valid pin would have made it live
    return this.deleteRow(digest);
  }

  /** The row goes and its location is queued for deletion, together; false when there was no row. */
  private deleteRow(digest: string): boolean {
    const location = this.s.deleteBlob!.get(digest) as string | undefined;
    if (location === undefined) return false;
    this.blobs.queueDeletion(location, digest, Date.now());
    return true;
  }

  /** Every revision using the blob, its pins and its row (its bytes queued); null when there is no such blob. */
  purge(digest: string, now: number): { revisions: number; pins: number } | null {
    const revisions = this.s.revisionsOf!.all(digest) as { bucket: string; key: string; revision: number }[];
    // Newest first per object, so an object falls back to an older revision that uses another blob.
    for (const r of [...revisions].reverse()) this.catalog.deleteObject(r.bucket, r.key, r.revision, now, true);
    const pins = this.s.deletePinsOf!.run(digest).changes;
    if (!this.deleteRow(digest)) return null;
    return { revisions: revisions.length, pins };
  }

  blobsAfter(after: string, limit: number): BlobRecord[] {
    return (this.s.blobsAfter!.all(after, limit) as BlobRow[]).map(toBlobRecord);
  }

  quarantine(digest: string, now: number): void {
    this.s.quarantine!.run(now, digest);
  }

  /** True when bytes at this location belong to something: a blob row, or a session committing into it. */
  claimed(location: string): boolean {
    return this.s.claimed!.get({ location }) === 1;
  }

  addHold(id: string, expiresAt: number, now: number): void {
    this.s.dropOldHolds!.run(now);
    this.s.addHold!.run(id, expiresAt);
  }

  releaseHold(id: string): void {
    this.s.releaseHold!.run(id);
  }

  /** What is stored and referenced now: quarantined blobs, expired pins and expired objects are not counted. */
  stats(now: number): StoreStats {
    const blobs = this.s.blobStats!.get() as { n: number; bytes: number };
    const pins = this.s.pinStats!.get(now) as { n: number; bytes: number };
    const sessions = this.s.sessionStats!.get() as { n: number; bytes: number };
    return {
      blobs: blobs.n,
      storedBytes: blobs.bytes,
      logicalBytes: (this.s.revisionBytes!.get(now) as number) + pins.bytes,
      pins: pins.n,
      objects: this.s.objectCount!.get(now) as number,
      openSessions: sessions.n,
      openSessionBytes: sessions.bytes,
    };
  }
}
