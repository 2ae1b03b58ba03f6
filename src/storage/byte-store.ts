// The seam for bytes: everything core may do with blob bytes, and nothing about where they live.
// A local-filesystem implementation is the first; an S3-compatible one must fit the same shape.
import type { Readable } from 'node:stream';

/** Bytes that were streamed in, hashed and made durable, but are not yet visible under their digest. */
export interface StagedBlob {
  /** `sha256:<hex>` of exactly the staged bytes. */
  readonly digest: string;
  readonly size: number;
  /** Opaque handle owned by the byte store. */
  readonly handle: string;
}

/** Inclusive byte range, as in HTTP. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface ByteStore {
  /**
   * Stream `source` into staging while hashing it, and make the staged bytes durable before resolving.
   * If the source errors (client gone, a limit exceeded upstream) nothing is left behind and the error
   * is rethrown as it came.
   */
  stage(source: Readable): Promise<StagedBlob>;
  /** Make staged bytes readable under their digest: atomic and durable when it resolves. */
  commit(staged: StagedBlob): Promise<void>;
  /** Forget staged bytes. Never throws for an already discarded blob. */
  discard(staged: StagedBlob): Promise<void>;
  /** Size of the stored blob, or null when there are no bytes for that digest. */
  stat(digest: string): Promise<{ size: number } | null>;
  /** A stream of the blob's bytes (optionally one range); rejects with a not-found error when absent. */
  openRead(digest: string, range?: ByteRange): Promise<Readable>;
  /** Remove the bytes of a blob; absent bytes are not an error. */
  delete(digest: string): Promise<void>;
  /** Every digest that has bytes, in no particular order. */
  list(): AsyncIterable<string>;
  /** Resolves when bytes can be written now; rejects otherwise. */
  ping(): Promise<void>;
}

/** Thrown by openRead when the bytes for a digest do not exist. */
export class BytesNotFoundError extends Error {
  constructor(readonly digest: string) {
    super(`no bytes stored for ${digest}`);
    this.name = 'BytesNotFoundError';
  }
}
