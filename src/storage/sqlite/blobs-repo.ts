// Every SQL statement about blobs and pins. Statements are prepared once, at construction.
import type { Statement } from 'better-sqlite3';
import type { BlobRecord, PinInput } from '../metadata-store.ts';
import type { Db } from './db.ts';

interface BlobRow {
  digest: string;
  size: number;
  created_at: number;
  quarantined_at: number | null;
}

export class BlobsRepo {
  private readonly selectBlob: Statement<[string], BlobRow>;
  private readonly insertBlob: Statement<[string, number, number]>;
  private readonly upsertPin: Statement<[string, string, number, number | null, number]>;

  constructor(db: Db) {
    this.selectBlob = db.prepare('SELECT digest, size, created_at, quarantined_at FROM blobs WHERE digest = ?');
    // Every insert comes after good bytes were put in place (or found in place): it heals a quarantined row.
    this.insertBlob = db.prepare(`
      INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)
      ON CONFLICT (digest) DO UPDATE SET quarantined_at = NULL WHERE blobs.quarantined_at IS NOT NULL`);
    this.upsertPin = db.prepare(`
      INSERT INTO pins (principal, digest, temporary, expires_at, created_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (principal, digest) DO UPDATE SET
        temporary  = pins.temporary AND excluded.temporary,
        expires_at = CASE WHEN pins.temporary AND excluded.temporary
                          THEN max(pins.expires_at, excluded.expires_at) ELSE NULL END`);
  }

  get(digest: string): BlobRecord | null {
    const row = this.selectBlob.get(digest);
    return row ? { digest: row.digest, size: row.size, createdAt: row.created_at, quarantined: row.quarantined_at !== null } : null;
  }

  /** Inserts the blob row unless it exists (and clears a quarantine mark); true when it was inserted. */
  insert(digest: string, size: number, now: number): boolean {
    const existed = this.selectBlob.get(digest) !== undefined;
    this.insertBlob.run(digest, size, now);
    return !existed;
  }

  pin(digest: string, pin: PinInput, now: number): void {
    this.upsertPin.run(pin.principal, digest, pin.temporary ? 1 : 0, pin.temporary ? pin.expiresAt : null, now);
  }
}
