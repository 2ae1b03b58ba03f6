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

export type UploadState = 'open' | 'completing' | 'completed';

/** An upload session as stored. Times are milliseconds since the epoch. */
export interface UploadRecord {
  readonly id: string;
  /** Hex SHA-256 of the session's secret token; the token itself is never stored. */
  readonly tokenHash: string;
  readonly principal: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly temporary: boolean;
  readonly declaredSize: number | null;
  readonly expectedDigest: string | null;
  readonly bucket: string | null;
  readonly key: string | null;
  /** Bytes received and durable. */
  readonly offset: number;
  readonly state: UploadState;
  /** Set once completion has begun: the digest the bytes hashed to. */
  readonly digest: string | null;
  /** The JSON body of the completion answer, replayed for a repeated complete. */
  readonly result: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly expiresAt: number;
}

export type NewUpload = Omit<UploadRecord, 'offset' | 'state' | 'digest' | 'result' | 'updatedAt'>;

export interface MetadataStore {
  getBlob(digest: string): Promise<BlobRecord | null>;
  /**
   * Record a blob whose bytes are already durable and, when given, pin it for a principal — together, in
   * one transaction. `created` is false when the blob row already existed. A repeated pin by the same
   * principal keeps the stronger claim (permanent beats temporary; the later expiry wins).
   */
  commitBlob(blob: { digest: string; size: number }, pin?: PinInput): Promise<{ created: boolean }>;
  createUpload(upload: NewUpload): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | null>;
  /** Record that an open session's durable bytes now end at `offset`; pushes its expiry out. */
  advanceUpload(id: string, offset: number, expiresAt: number): Promise<void>;
  /** open → completing, remembering the digest, before the bytes move into the blob store. */
  beginCompletion(id: string, digest: string): Promise<void>;
  /** completing → open again (the move did not happen). */
  reopenUpload(id: string): Promise<void>;
  /**
   * In one transaction: record the blob (if new), pin it when asked, and mark the session completed with
   * the answer to replay. `created` is false when the blob row already existed.
   */
  finishUpload(
    id: string,
    blob: { digest: string; size: number },
    pin: PinInput | null,
    result: string,
    expiresAt: number,
  ): Promise<{ created: boolean }>;
  deleteUpload(id: string): Promise<void>;
  /** Sessions that are open or completing: what a restart must recover. */
  listUnfinishedUploads(): Promise<UploadRecord[]>;
  /** Sessions whose expiry has passed (completing ones excepted: only recovery may decide those). */
  listExpiredUploads(now: number): Promise<{ id: string; state: UploadState }[]>;
  /** Sum over live open sessions of the declared size not yet received: disk space promised to clients. */
  reservedUploadBytes(now: number): Promise<number>;
  /** Resolves when the store can answer and write; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
