// The seam for rows: the domain-level, atomic operations core needs from a metadata store. Each method is
// one transaction inside the implementation; core never stitches raw reads and writes together.
// SQLite is the first implementation; a PostgreSQL one must pass test/contracts/metadata-store.ts unchanged.

/** A stored blob: its bytes are durable under `digest` before this row exists (G2). */
export interface BlobRecord {
  readonly digest: string;
  readonly size: number;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
}

/** A principal's claim on a blob uploaded without a bucket. */
export interface PinInput {
  readonly principal: string;
  readonly temporary: boolean;
  /** Milliseconds since the epoch; null for a pin that never expires. */
  readonly expiresAt: number | null;
}

export interface MetadataStore {
  getBlob(digest: string): Promise<BlobRecord | null>;
  /**
   * Record a blob whose bytes are already durable and, when given, pin it for a principal — together, in
   * one transaction. `created` is false when the blob row already existed. A repeated pin by the same
   * principal keeps the stronger claim (permanent beats temporary; the later expiry wins).
   */
  commitBlob(blob: { digest: string; size: number }, pin?: PinInput): Promise<{ created: boolean }>;
  /** Resolves when the store can answer and write; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
