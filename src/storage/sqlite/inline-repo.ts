// The SQLite store's inline tier (see ../inline-blobs.ts): small blobs' bytes in a table of their own,
// written by the blob row's write (BlobsRepo.insert) from the bytes offered for it. Reads and deletes are
// short statements of their own.
import type { Statement } from 'better-sqlite3';
import { OfferedBytes, type InlineBlobs } from '../inline-blobs.ts';
import type { Db } from './db.ts';

const PAGE = 1000;

export class InlineRepo implements InlineBlobs {
  /** Bytes offered for row writes to come in this process. */
  private readonly offered = new OfferedBytes();
  private readonly upsert: Statement<[string, Buffer, number]>;
  private readonly select: Statement<[string], Buffer>;
  private readonly selectRow: Statement<[string], number>;
  private readonly selectStat: Statement<[string], { size: number; created_at: number }>;
  private readonly remove: Statement<[string]>;
  private readonly page: Statement<[string, number], string>;
  private readonly moveAside: Statement<[number, string]>;
  private readonly sums: Statement<[], { blobs: number; bytes: number }>;
  private readonly filed: Statement<[number, string, number], { digest: string; size: number }>;
  private readonly quarantineTx: (digest: string) => boolean;
  private readonly setAsideTx: (digest: string, damaged: Buffer) => boolean;
  private readonly putTx: (digest: string, bytes: Buffer) => void;

  constructor(db: Db) {
    this.upsert = db.prepare(`INSERT INTO inline_blobs (digest, content, created_at) VALUES (?, ?, ?)
      ON CONFLICT (digest) DO UPDATE SET content = excluded.content, created_at = excluded.created_at`);
    this.select = db.prepare('SELECT content FROM inline_blobs WHERE digest = ?').pluck() as Statement<[string], Buffer>;
    this.selectRow = db.prepare('SELECT 1 FROM blobs b WHERE b.digest = ? AND NOT EXISTS (SELECT 1 FROM inline_blobs i WHERE i.digest = b.digest)').pluck() as Statement<[string], number>;
    this.selectStat = db.prepare('SELECT length(content) AS size, created_at FROM inline_blobs WHERE digest = ?');
    this.remove = db.prepare('DELETE FROM inline_blobs WHERE digest = ?');
    this.page = db.prepare('SELECT digest FROM inline_blobs WHERE digest > ? ORDER BY digest LIMIT ?').pluck() as Statement<[string, number], string>;
    this.moveAside = db.prepare('INSERT INTO inline_quarantine (digest, content, quarantined_at) SELECT digest, content, ? FROM inline_blobs WHERE digest = ?');
    // Bytes a blob row names: bytes a crash left without one (GC removes them) are no blob of the store.
    this.sums = db.prepare(`SELECT count(*) AS blobs, coalesce(sum(length(i.content)), 0) AS bytes FROM inline_blobs i
      WHERE EXISTS (SELECT 1 FROM blobs b WHERE b.digest = i.digest)`);
    // Rows at their digest (location NULL) with no inline bytes: their bytes are a file of the local store.
    this.filed = db.prepare(`SELECT b.digest, b.size FROM blobs b
      WHERE b.location IS NULL AND b.quarantined_at IS NULL AND b.size <= ? AND b.digest > ?
        AND NOT EXISTS (SELECT 1 FROM inline_blobs i WHERE i.digest = b.digest)
      ORDER BY b.digest LIMIT ?`);
    // Verified bytes re-adopt a quarantined row, with their size (a size column that lied is fixed too).
    const heal = db.prepare('UPDATE blobs SET quarantined_at = NULL, size = ? WHERE digest = ? AND quarantined_at IS NOT NULL AND location IS NULL');
    this.putTx = db.transaction((digest: string, bytes: Buffer) => {
      this.upsert.run(digest, bytes, Date.now());
      heal.run(bytes.length, digest);
    }).immediate;
    const moveIfSame = db.prepare('INSERT INTO inline_quarantine (digest, content, quarantined_at) SELECT digest, content, ? FROM inline_blobs WHERE digest = ? AND content = ?');
    this.setAsideTx = db.transaction((digest: string, damaged: Buffer) => {
      if (moveIfSame.run(Date.now(), digest, damaged).changes === 0) return false;
      this.remove.run(digest);
      return true;
    }).immediate;
    this.quarantineTx = db.transaction((digest: string) => {
      if (this.moveAside.run(Date.now(), digest).changes === 0) return false;
      this.remove.run(digest);
      return true;
    }).immediate;
  }

  offer(digest: string, bytes: Buffer): void {
    this.offered.offer(digest, bytes);
  }

  withdraw(digest: string): void {
    this.offered.withdraw(digest);
  }

  /**
   * Inside the transaction of a row write that names the bytes at the digest: stores the bytes offered for
   * it, if any were (a blob whose bytes went to the file tier has none), unless the same bytes are there.
   * `newRow`: the row was just made, so bytes there are at most a deleted row's, queued for deletion: not
   * worth a look before the write.
   */
  storeOffered(digest: string, now: number, newRow: boolean): void {
    const bytes = this.offered.get(digest);
    if (bytes && (newRow || !this.select.get(digest)?.equals(bytes))) this.upsert.run(digest, bytes, now);
  }

  /**
   * Only the bytes offered for a quarantined row that a write re-adopts (in its transaction): at its digest,
   * those offered or none — bytes still there are the damaged ones a repair had not moved aside yet.
   */
  replaceWithOffered(digest: string, now: number, atDigest: boolean): void {
    const bytes = atDigest ? this.offered.get(digest) : undefined;
    if (bytes) this.upsert.run(digest, bytes, now);
    else this.remove.run(digest);
  }

  /** Its own transaction, synchronous=FULL: durable on return. Verified bytes heal a quarantined row at the digest. */
  async put(digest: string, bytes: Buffer): Promise<void> {
    this.putTx(digest, bytes);
  }

  async read(digest: string): Promise<Buffer | null> {
    return this.select.get(digest) ?? null;
  }

  async rowWithoutBytes(digest: string): Promise<boolean> {
    return this.selectRow.get(digest) !== undefined;
  }

  async stat(digest: string): Promise<{ size: number; modifiedAt: number } | null> {
    const r = this.selectStat.get(digest);
    return r ? { size: r.size, modifiedAt: r.created_at } : null;
  }

  async delete(digest: string): Promise<void> {
    this.remove.run(digest);
  }

  async *list(): AsyncIterable<string> {
    for (let page = this.page.all('', PAGE); page.length > 0; page = this.page.all(page.at(-1)!, PAGE)) yield* page;
  }

  async setAside(digest: string, damaged: Buffer): Promise<boolean> {
    return this.setAsideTx(digest, damaged);
  }

  async quarantine(digest: string): Promise<boolean> {
    return this.quarantineTx(digest);
  }

  /** Blobs of at most `max` bytes stored as a file (see repack.ts), in digest order after `after`. */
  filedUpTo(max: number, after: string, limit: number): { digest: string; size: number }[] {
    return this.filed.all(max, after, limit);
  }

  async totals(): Promise<{ blobs: number; bytes: number }> {
    return this.sums.get()!;
  }
}
