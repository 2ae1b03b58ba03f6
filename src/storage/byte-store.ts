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

/**
 * An open blob (or one range of it) to copy out without a buffer allocated per chunk: the download path.
 * It must be copied or closed, once.
 */
export interface BlobCopy {
  /**
   * Calls `write` with each chunk in order, one at a time: the next chunk is read only once the promise
   * `write` returned for the last one settles, and the chunk's buffer is reused then, so `write` must be
   * done with it by that time. A writer that never settles (a client that stopped reading) thus holds one
   * chunk. Resolves with the bytes copied (fewer than asked when the stored bytes are shorter); rejects
   * when a write rejects. Closes the blob either way.
   */
  pipeTo(write: (chunk: Buffer) => Promise<void>): Promise<number>;
  close(): Promise<void>;
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
  /**
   * Size and last write (ms since the epoch) of what is stored under the digest, or null when nothing is.
   * `regular` is false when something other than a plain file of bytes sits there (it is never followed).
   */
  stat(digest: string): Promise<{ size: number; modifiedAt: number; regular: boolean } | null>;
  /** A stream of the blob's bytes (optionally one range); rejects with a not-found error when absent. */
  openRead(digest: string, range?: ByteRange): Promise<Readable>;
  /** The blob's bytes (optionally one range) to copy out; rejects with a not-found error when absent. */
  openCopy(digest: string, range?: ByteRange): Promise<BlobCopy>;
  /** Remove the bytes of a blob; absent bytes are not an error. */
  delete(digest: string): Promise<void>;
  /** Every digest that has bytes, in no particular order. */
  list(): AsyncIterable<string>;
  /** Where a blob's bytes are, as a name for reports (relative to the data root); never a full path. */
  nameOf(digest: string): string;
  /** Names (relative to the data root) of stored things that are not blobs of any digest (for fsck). */
  strays(): AsyncIterable<string>;
  /** Move a blob's bytes out of the way, keeping them (fsck --repair); the name they got, or null if absent. */
  quarantine(digest: string): Promise<string | null>;
  /** Resolves when bytes can be written now; rejects otherwise. */
  ping(): Promise<void>;
  /** Bytes the store can still take (free disk, for the local implementation). */
  freeSpace(): Promise<number>;

  // Upload sessions: bytes that grow by appends until they are committed as a blob.

  /** Create the session's empty, durable byte file. */
  createUpload(id: string): Promise<void>;
  /**
   * Write `source` into the session's bytes from `offset` on and make what was written durable. Each chunk
   * is passed to `onChunk` as it is read (so hashing runs beside the writes); every chunk that arrived is
   * written, so once the promise resolves the chunks passed are exactly the bytes now durable after
   * `offset`. When the source fails (a client gone mid-body) the bytes that arrived are kept and the
   * source's error is returned with their count; when writing fails the promise rejects and the file may
   * hold a partial tail past `offset` that the caller must truncate (and `onChunk` may have seen more).
   */
  appendUpload(
    id: string,
    offset: number,
    source: Readable,
    onChunk: (chunk: Buffer) => void,
  ): Promise<{ written: number; sourceError?: unknown }>;
  /** Cut the session's bytes back to `length`, durably. */
  truncateUpload(id: string, length: number): Promise<void>;
  /** Size of the session's byte file, or null when it has none. */
  uploadSize(id: string): Promise<number | null>;
  /** The first `length` bytes of the session (to rebuild a hash after a restart). */
  readUpload(id: string, length: number): Promise<Readable>;
  /** Move the session's bytes into place as the blob `digest`: atomic and durable when it resolves. */
  commitUpload(id: string, digest: string): Promise<void>;
  /**
   * Give a session back a copy of the blob its bytes became (a completion whose rows could not be
   * written): atomic and durable when it resolves; the blob's own bytes stay as they are.
   */
  restoreUpload(id: string, digest: string): Promise<void>;
  /** Free the session's bytes; absent bytes are not an error. */
  deleteUpload(id: string): Promise<void>;
  /** Every session id that has bytes. */
  listUploads(): AsyncIterable<string>;
}

/** Thrown by openRead and openCopy when the bytes for a digest do not exist. */
export class BytesNotFoundError extends Error {
  constructor(readonly digest: string) {
    super(`no bytes stored for ${digest}`);
    this.name = 'BytesNotFoundError';
  }
}
