// PostgreSQL's inline tier (see ../inline-blobs.ts): small blobs' bytes in the `content` column of their
// own blob row (bytea), written by the row's write (blobWrite) from the bytes offered for it in this
// process, and gone with the row. Across nodes that is what keeps G4: no node deletes the bytes of a row
// that names them (delete only clears bytes a row no longer names at the digest), so a GC on one node and
// a new upload of the same content on another can never leave a row without its bytes.
import type { NewBlob } from '../metadata-store.ts';
import { OfferedBytes, type InlineBlobs } from '../inline-blobs.ts';
import type { PgDb } from './db.ts';

/** A blob write with the bytes to keep in its row (blobWrite reads them), set by the store itself. */
export type InlineNewBlob = NewBlob & { readonly content?: Buffer | null };

const PAGE = 1000;

export class PgInlineRepo implements InlineBlobs {
  /** Bytes offered for row writes to come in this process. */
  private readonly offered = new OfferedBytes();

  constructor(private readonly db: PgDb) {}

  offer(digest: string, bytes: Buffer): void {
    this.offered.offer(digest, bytes);
  }

  withdraw(digest: string): void {
    this.offered.withdraw(digest);
  }

  /** The write of `blob` with the bytes offered for it, when its row names them at the digest. */
  withContent<B extends NewBlob>(blob: B): B & InlineNewBlob {
    if (blob.location !== blob.digest || blob.mustExist) return blob;
    const bytes = this.offered.get(blob.digest);
    return bytes ? { ...blob, content: bytes } : blob;
  }

  /**
   * A small upload session's bytes at its complete, before the row write that references them: the blob
   * row itself, at the digest, with the bytes and no reference yet. A row in place at the digest takes
   * them when it has none or other ones (verified bytes heal), and a quarantined one is healed by them
   * (no longer quarantined: its damaged bytes are gone), as a row write with offered bytes re-adopts it.
   * Durable on return (its own commit). GC leaves an unreferenced row with bytes alone while a session
   * completing into its location claims it, as the session's completing state does here, and collects it
   * as any unreferenced row otherwise.
   */
  async put(digest: string, bytes: Buffer): Promise<void> {
    await this.db.sql`
      INSERT INTO blobs (digest, size, location, created_at, content)
      VALUES (${digest}, ${bytes.length}::bigint, ${digest}, ${Date.now()}::bigint, ${bytes}::bytea)
      ON CONFLICT (digest) DO UPDATE SET content = excluded.content, size = excluded.size, quarantined_at = NULL
        WHERE blobs.location = excluded.location
          AND (blobs.content IS DISTINCT FROM excluded.content OR blobs.quarantined_at IS NOT NULL OR blobs.size <> excluded.size)`;
  }

  async read(digest: string): Promise<Buffer | null> {
    const [r] = await this.db.sql<{ content: Buffer }[]>`SELECT content FROM blobs WHERE digest = ${digest} AND content IS NOT NULL`;
    return r?.content ?? null;
  }

  async rowWithoutBytes(digest: string): Promise<boolean> {
    return (await this.db.sql`SELECT 1 FROM blobs WHERE digest = ${digest} AND content IS NULL`).length > 0;
  }

  async stat(digest: string): Promise<{ size: number; modifiedAt: number } | null> {
    const [r] = await this.db.sql<{ size: number; created_at: number }[]>`
      SELECT octet_length(content) AS size, created_at FROM blobs WHERE digest = ${digest} AND content IS NOT NULL`;
    return r ? { size: Number(r.size), modifiedAt: Number(r.created_at) } : null;
  }

  /** Only bytes no row names at the digest any more (a quarantined row that took another location). */
  async delete(digest: string): Promise<void> {
    await this.db.sql`UPDATE blobs SET content = NULL WHERE digest = ${digest} AND location <> digest AND content IS NOT NULL`;
  }

  async *list(): AsyncIterable<string> {
    for (let after = ''; ; ) {
      const rows = await this.db.sql<{ digest: string }[]>`
        SELECT digest FROM blobs WHERE content IS NOT NULL AND digest > ${after} ORDER BY digest LIMIT ${PAGE}`;
      for (const r of rows) yield r.digest;
      if (rows.length < PAGE) return;
      after = rows.at(-1)!.digest;
    }
  }

  /**
   * Only the bytes of a row fsck marked quarantined: another node may have healed it since (new bytes,
   * the mark cleared), and those must stay.
   */
  quarantine(digest: string): Promise<boolean> {
    return this.moveAside(digest, this.db.sql`quarantined_at IS NOT NULL`);
  }

  setAside(digest: string, damaged: Buffer): Promise<boolean> {
    return this.moveAside(digest, this.db.sql`content = ${damaged}::bytea`);
  }

  /** The row's bytes into inline_quarantine, in one statement, when `condition` holds for it. */
  private async moveAside(digest: string, condition: ReturnType<PgDb['sql']>): Promise<boolean> {
    const [r] = await this.db.sql<{ n: number }[]>`
      WITH old AS (
        SELECT digest, content FROM blobs WHERE digest = ${digest} AND content IS NOT NULL AND ${condition} FOR UPDATE
      ), moved AS (
        INSERT INTO inline_quarantine (digest, content, quarantined_at) SELECT digest, content, ${Date.now()}::bigint FROM old
      ), cleared AS (
        UPDATE blobs SET content = NULL WHERE digest IN (SELECT digest FROM old)
      )
      SELECT count(*)::int AS n FROM old`;
    return r!.n > 0;
  }

  async totals(): Promise<{ blobs: number; bytes: number }> {
    const [r] = await this.db.sql<{ blobs: number; bytes: string }[]>`
      SELECT count(*)::int AS blobs, coalesce(sum(octet_length(content)), 0)::bigint AS bytes FROM blobs WHERE content IS NOT NULL`;
    return { blobs: r!.blobs, bytes: Number(r!.bytes) };
  }
}
