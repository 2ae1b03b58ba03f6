// Every SQL statement about blob rows, pins and the byte-deletion queue. Statements are prepared once, at
// construction; the transactions are the caller's.
import type { Statement } from 'better-sqlite3';
import type { BlobRecord, ByteDeletion, NewBlob, PinInput } from '../metadata-store.ts';
import type { Db } from './db.ts';
import type { InlineRepo } from './inline-repo.ts';

/** A blob row as read: `location` is already the digest where the column holds NULL (see 008-locations.sql). */
export interface BlobRow {
  digest: string;
  size: number;
  location: string;
  created_at: number;
  quarantined_at: number | null;
}

/** The columns of a BlobRow, for any query over `blobs b`. */
export const BLOB_COLUMNS = 'b.digest, b.size, coalesce(b.location, b.digest) AS location, b.created_at, b.quarantined_at';

export function toBlobRecord(r: BlobRow): BlobRecord {
  return { digest: r.digest, size: r.size, location: r.location, createdAt: r.created_at, quarantined: r.quarantined_at !== null };
}

/** What the location column holds: NULL when the location is the digest itself (the local store's). */
const stored = (blob: NewBlob): string | null => (blob.location === blob.digest ? null : blob.location);

export class BlobsRepo {
  private readonly selectBlob: Statement<[string], BlobRow>;
  private readonly insertBlob: Statement<[string, number, string | null, number]>;
  private readonly relocate: Statement<[string | null, number, string]>;
  private readonly upsertPin: Statement<[string, string, number, number | null, number]>;
  private readonly enqueue: Statement<[string, string, number]>;
  private readonly queued: Statement<[number], ByteDeletion>;
  private readonly dequeue: Statement<[string]>;
  private readonly queuedAtOf: Statement<[string], number>;

  constructor(
    db: Db,
    /** The inline tier: a write that makes or re-adopts a row stores the bytes offered for it there. */
    private readonly inline: InlineRepo,
  ) {
    this.selectBlob = db.prepare(`SELECT ${BLOB_COLUMNS} FROM blobs b WHERE b.digest = ?`);
    this.insertBlob = db.prepare('INSERT INTO blobs (digest, size, location, created_at) VALUES (?, ?, ?, ?)');
    // A re-adopted row takes the verified size too: a size column that lied (so fsck quarantined the row) is fixed.
    this.relocate = db.prepare('UPDATE blobs SET location = ?, size = ?, quarantined_at = NULL WHERE digest = ?');
    this.upsertPin = db.prepare(`
      INSERT INTO pins (principal, digest, temporary, expires_at, created_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (principal, digest) DO UPDATE SET
        temporary  = pins.temporary AND excluded.temporary,
        expires_at = CASE WHEN pins.temporary AND excluded.temporary
                          THEN max(pins.expires_at, excluded.expires_at) ELSE NULL END`);
    // Queued once: a location already waiting keeps its place in the queue.
    this.enqueue = db.prepare('INSERT INTO byte_deletions (location, digest, queued_at) VALUES (?, ?, ?) ON CONFLICT (location) DO NOTHING');
    this.queued = db.prepare('SELECT location, digest FROM byte_deletions ORDER BY seq LIMIT ?');
    this.dequeue = db.prepare('DELETE FROM byte_deletions WHERE location = ?');
    this.queuedAtOf = db.prepare<[string], number>('SELECT queued_at FROM byte_deletions WHERE location = ?').pluck();
  }

  get(digest: string): BlobRecord | null {
    const row = this.selectBlob.get(digest);
    return row ? toBlobRecord(row) : null;
  }

  /**
   * Records a blob whose bytes are durable at blob.location; true when the row is new. An existing row keeps
   * its location and the new bytes are queued for deletion (a duplicate); a quarantined row takes the new
   * location instead (good bytes are in place again) and its old one is queued. A location the row names
   * either way is never queued (the local store's: the same content lands in the same place). Bytes offered
   * to the inline tier for the digest are stored with the row it names them at, in this transaction.
   */
  insert(blob: NewBlob, now: number): boolean {
    const row = this.selectBlob.get(blob.digest);
    if (!row) {
      this.insertBlob.run(blob.digest, blob.size, stored(blob), now);
      this.storeInline(blob, now, true);
      return true;
    }
    if (row.quarantined_at !== null) {
      this.relocate.run(stored(blob), blob.size, blob.digest);
      this.inline.replaceWithOffered(blob.digest, now, blob.location === blob.digest);
      if (row.location !== blob.location) this.queueDeletion(row.location, blob.digest, now);
    } else if (row.location !== blob.location) {
      this.queueDeletion(blob.location, blob.digest, now);
    } else {
      this.storeInline(blob, now, false); // verified bytes heal a damaged inline copy
    }
    return false;
  }

  /** The bytes offered for a row that names them at the digest (the inline tier's location), if any. */
  private storeInline(blob: NewBlob, now: number, newRow: boolean): void {
    if (blob.location === blob.digest) this.inline.storeOffered(blob.digest, now, newRow);
  }

  pin(digest: string, pin: PinInput, now: number): void {
    this.upsertPin.run(pin.principal, digest, pin.temporary ? 1 : 0, pin.temporary ? pin.expiresAt : null, now);
  }

  queueDeletion(location: string, digest: string, now: number): void {
    this.enqueue.run(location, digest, now);
  }

  /** Queued deletions, oldest first. */
  deletions(limit: number): ByteDeletion[] {
    return this.queued.all(limit);
  }

  finishDeletion(location: string): void {
    this.dequeue.run(location);
  }

  queuedAt(location: string): number | null {
    return this.queuedAtOf.get(location) ?? null;
  }
}
