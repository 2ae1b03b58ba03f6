// The seam between the tiered byte store (tiered-byte-store.ts) and a metadata store that keeps small
// blobs' bytes in its own database. The bytes are written by the blob row's own write, in its
// transaction: a row and its inline bytes become durable in one commit (G1), and one group commit makes
// many small blobs durable at once. A blob's location is its digest in either tier (a content address),
// so dedup, the digest lock and the deletion queue treat both tiers alike.
import { createHash } from 'node:crypto';

export interface InlineBlobs {
  /**
   * Bytes that hash to `digest`, for a row write of it that is about to come: a write that makes the row
   * (or re-adopts a quarantined one) stores them with it; one that finds the row in place leaves them.
   * Offers of one digest are counted; each is taken back by `withdraw` once its row write is done.
   */
  offer(digest: string, bytes: Buffer): void;
  /** Takes one offer of `digest` back (the row write is done, or will not come). */
  withdraw(digest: string): void;
  /**
   * Store bytes that hash to `digest` now, in a durable transaction of their own, before any reference: a
   * small upload session's bytes at its complete (the session's completing state claims the location
   * meanwhile). SQLite keeps them without a row; PostgreSQL, which keeps bytes in their blob row, writes
   * that row (unreferenced until the complete's row write).
   */
  put(digest: string, bytes: Buffer): Promise<void>;
  /** The stored bytes of `digest`, or null when none are stored inline. */
  read(digest: string): Promise<Buffer | null>;
  /** Whether a blob row of `digest` exists without bytes stored inline (they are in the other tier, or lost). */
  rowWithoutBytes(digest: string): Promise<boolean>;
  /** Size and when they were stored (ms since the epoch), or null. */
  stat(digest: string): Promise<{ size: number; modifiedAt: number } | null>;
  /** Remove them; absent bytes are not an error. */
  delete(digest: string): Promise<void>;
  /** Every digest whose bytes are stored inline, in digest order. */
  list(): AsyncIterable<string>;
  /**
   * Move them aside (kept for inspection, never served); false when there were none. A store several nodes
   * share moves only the bytes of a row marked quarantined (another node may have healed it meanwhile).
   */
  quarantine(digest: string): Promise<boolean>;
  /**
   * Move them aside only if they are still exactly `damaged` (bytes that do not hash to the digest, read
   * just before): a copy of the blob elsewhere that verified takes over. False when they changed meanwhile
   * (verified bytes healed them) or are gone.
   */
  setAside(digest: string, damaged: Buffer): Promise<boolean>;
  /** Blobs and bytes stored inline now. */
  totals(): Promise<{ blobs: number; bytes: number }>;
}

/** The digest of bytes held whole (an inline-sized body or blob), as `sha256:<hex>`. */
export const sha256Of = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Where inline bytes moved aside by quarantine are named in reports (a table of the metadata database). */
export const inlineQuarantineName = (digest: string) => `inline_quarantine/${digest}`;

/** Bytes offered for row writes to come in this process (InlineBlobs.offer), by digest, counted per offer. */
export class OfferedBytes {
  private readonly held = new Map<string, { bytes: Buffer; offers: number }>();

  offer(digest: string, bytes: Buffer): void {
    const h = this.held.get(digest);
    if (h) h.offers++;
    else this.held.set(digest, { bytes, offers: 1 });
  }

  withdraw(digest: string): void {
    const h = this.held.get(digest);
    if (h && --h.offers === 0) this.held.delete(digest);
  }

  /** The bytes offered for `digest` and not all withdrawn yet. */
  get(digest: string): Buffer | undefined {
    return this.held.get(digest)?.bytes;
  }
}
