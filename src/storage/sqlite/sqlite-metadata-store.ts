// The SQLite MetadataStore: each domain operation is one short synchronous transaction, wrapped in a
// Promise to honour the async interface. Never hold a transaction across an await.
import type { BlobRecord, MetadataStore, PinInput } from '../metadata-store.ts';
import { BlobsRepo } from './blobs-repo.ts';
import { openDatabase, type Db } from './db.ts';

export class SqliteMetadataStore implements MetadataStore {
  private readonly blobs: BlobsRepo;
  private readonly commitBlobTx: (blob: { digest: string; size: number }, pin?: PinInput) => boolean;
  private readonly pingStmt;

  constructor(private readonly db: Db) {
    this.blobs = new BlobsRepo(db);
    this.pingStmt = db.prepare('SELECT 1');
    this.commitBlobTx = db
      .transaction((blob: { digest: string; size: number }, pin?: PinInput) => {
        const now = Date.now();
        const created = this.blobs.insert(blob.digest, blob.size, now);
        if (pin) this.blobs.pin(blob.digest, pin, now);
        return created;
      })
      .immediate;
  }

  static open(file: string): SqliteMetadataStore {
    return new SqliteMetadataStore(openDatabase(file));
  }

  async getBlob(digest: string): Promise<BlobRecord | null> {
    return this.blobs.get(digest);
  }

  async commitBlob(blob: { digest: string; size: number }, pin?: PinInput): Promise<{ created: boolean }> {
    return { created: this.commitBlobTx(blob, pin) };
  }

  async ping(): Promise<void> {
    this.pingStmt.get();
    // A database that can be read but not written is not ready either.
    this.db.exec('BEGIN IMMEDIATE; ROLLBACK');
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
