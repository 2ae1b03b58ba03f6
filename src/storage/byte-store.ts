// The seam for bytes: everything core may do with blob bytes, and nothing about where they live. The
// local-filesystem store (storage/fs) and the S3-compatible one (storage/s3) fit the same shape.
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
   * when a write rejects. Closes the blob either way. With `keep`, the writer keeps the chunks it is given
   * (a stream it pushes them into): a store that reuses its buffers reads into new ones instead.
   */
  pipeTo(write: (chunk: Buffer) => Promise<void>, opts?: { keep?: boolean }): Promise<number>;
  close(): Promise<void>;
}

/** Inclusive byte range, as in HTTP. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * Where a blob's bytes are, as the byte store named them when it committed them; the blob's row keeps it
 * and every read, delete or check names it. The local store's locations are content addresses (the digest:
 * the same content always lands in one place); an object store's are unique keys, never reused.
 */
export type Location = string;

/**
 * Where an open upload session's bytes stand, opaque to everyone but the byte store that made it (an
 * object store's part list and tail; null for the local store). The metadata store records it in the same
 * write as the session's offset, so the two never disagree.
 */
export type UploadCursor = string | null;

export interface AppendResult {
  /** Bytes of the source now durable after the offset. */
  readonly written: number;
  /** The cursor that covers them: record it with the new offset, then call settleAppend. */
  readonly cursor: UploadCursor;
  /** The source's own failure (a client gone mid-body), after keeping what arrived. */
  readonly sourceError?: unknown;
}

export interface ByteStore {
  /**
   * True when only this process ever writes the store's bytes (the data directory, under its lock), even
   * with several nodes on one metadata store: then bytes without a row are this process's own leftovers,
   * never another node's commit in progress.
   */
  readonly local?: boolean;
  /** True when a blob's location is its digest (the data directory's content addresses). */
  readonly contentAddressed?: boolean;
  /**
   * With several nodes on one store: `stillHolds(id)` says whether this process still holds session `id`
   * (its lease). A store that may rewrite a session's existing object in place (an object store repairing
   * an interrupted seal) asks it first and throws UploadLeaseLost instead. Optional: a store whose sessions
   * are this process's alone needs none.
   */
  guardSessionWrites?(stillHolds: (id: string) => Promise<boolean>): void;
  /**
   * Stream `source` into staging while hashing it, and make the staged bytes durable before resolving.
   * If the source errors (client gone, a limit exceeded upstream) nothing is left behind and the error
   * is rethrown as it came.
   */
  stage(source: Readable): Promise<StagedBlob>;
  /**
   * Make staged bytes readable at a location, atomic and durable when it resolves, and name it. A store
   * whose locations are content addresses puts the bytes in place even when the blob exists (same content:
   * it heals a missing or bad copy) and names the same location again.
   */
  commit(staged: StagedBlob): Promise<Location>;
  /**
   * Called once for every staged blob when its row is written or refused, committed or not: forgets staged
   * bytes that were not committed. Never throws for an already discarded blob.
   */
  discard(staged: StagedBlob): Promise<void>;
  /**
   * Size and last write (ms since the epoch) of what is stored at the location, or null when nothing is.
   * `regular` is false when something other than plain bytes sits there (it is never followed).
   */
  stat(location: Location): Promise<{ size: number; modifiedAt: number; regular: boolean } | null>;
  /** A stream of the bytes (optionally one range); rejects with BytesNotFoundError when absent. */
  openRead(location: Location, range?: ByteRange): Promise<Readable>;
  /** The bytes (optionally one range) to copy out; rejects with BytesNotFoundError when absent. */
  openCopy(location: Location, range?: ByteRange): Promise<BlobCopy>;
  /** Remove the bytes at a location; absent bytes are not an error. */
  delete(location: Location): Promise<void>;
  /** Every location that holds committed (or staged-and-orphaned) blob bytes, in no particular order. */
  list(): AsyncIterable<Location>;
  /**
   * A location as a name for reports (relative to the data root, an object key, `inline/<digest>`); never a
   * full path. Asynchronous where the name depends on which tier holds the bytes.
   */
  nameOf(location: Location): string | Promise<string>;
  /** Names of stored things that are neither blobs nor sessions' bytes (for fsck). */
  strays(): AsyncIterable<string>;
  /**
   * For a blob held twice whose copy in use is damaged while the other verifies (the tiered store's inline
   * bytes beside a file): the damaged copy is moved aside and the other serves the blob. True when that
   * happened; stores with one copy of each blob leave it out.
   */
  dropDamagedCopy?(location: Location): Promise<boolean>;
  /** Move a blob's bytes out of the way, keeping them (fsck --repair); the name they got, or null if absent. */
  quarantine(location: Location): Promise<string | null>;
  /** Resolves when bytes can be written now; rejects otherwise (with a message that says why). */
  ping(): Promise<void>;
  /** Bytes the store can still take (free disk for the local store; Infinity where the store has no such limit). */
  freeSpace(): Promise<number>;
  /** What kind of store this is, for readiness and logs: 'fs' or 's3'. */
  readonly kind: string;

  // Upload sessions: bytes that grow by appends until they are committed as a blob. Every method that
  // changes them takes the cursor recorded with the session's acknowledged offset.

  /** Make the session's (empty) bytes durably ready for appends; the cursor to record with offset 0. */
  createUpload(id: string): Promise<UploadCursor>;
  /**
   * Write `source` into the session's bytes from `offset` on and make what was written durable. Each chunk
   * is passed to `onChunk` as it is read (so hashing runs beside the writes); once the promise resolves the
   * chunks passed are exactly the bytes now durable after `offset`, covered by the cursor it returns. When
   * the source fails (a client gone mid-body) the bytes that arrived are kept and the source's error is
   * returned. When writing fails the promise rejects (and `onChunk` may have seen more than is durable): the
   * caller then calls abandonAppend.
   */
  appendUpload(id: string, offset: number, cursor: UploadCursor, source: Readable, onChunk: (chunk: Buffer) => void): Promise<AppendResult>;
  /** The append's cursor `after` is recorded: free what only `before` needed. Never throws. */
  settleAppend(id: string, before: UploadCursor, after: UploadCursor): Promise<void>;
  /**
   * An append whose result was not recorded (it failed, or was refused after it): put the session back to
   * `offset` and `cursor`, durably. `after` is the append's cursor when appendUpload resolved.
   */
  abandonAppend(id: string, offset: number, cursor: UploadCursor, after?: UploadCursor): Promise<void>;
  /**
   * After a restart: check that the session's acknowledged bytes are all there and drop anything past them.
   * The cursor to go on with (record it when it differs), or null when acknowledged bytes are gone.
   */
  recoverUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ cursor: UploadCursor } | null>;
  /**
   * The session's first `offset` bytes, to rebuild its hash in a process that lacks it, with the cursor to
   * go on with: record it (when it differs) before the next append, then call settleAppend.
   */
  readUpload(id: string, offset: number, cursor: UploadCursor): Promise<{ bytes: Readable; cursor: UploadCursor }>;
  /** Where commitUpload puts the session's bytes once they hash to `digest`. */
  uploadLocation(id: string, digest: string): Location;
  /**
   * A location that is the session's own while it lives (an object store's key for it, where its bytes may
   * sit sealed before they complete), claimed by the session so that no sweep takes it; null where
   * locations are content addresses. Never throws.
   */
  sessionLocation(id: string): Location | null;
  /** Put the session's `offset` bytes at uploadLocation(id, digest): atomic and durable when it resolves. */
  commitUpload(id: string, offset: number, cursor: UploadCursor, digest: string): Promise<void>;
  /**
   * Whether commitUpload happened, for a completion a crash interrupted: true when the bytes are at their
   * location, false when they are still the session's (it can reopen), null when neither holds them.
   */
  uploadCommitted(id: string, offset: number, cursor: UploadCursor, digest: string): Promise<boolean | null>;
  /**
   * Give a session back the bytes it committed to `location` (a completion whose rows could not be
   * written), as session bytes of `size` that no longer need the location: durable when it resolves; the
   * cursor to record. The bytes at the location stay as they are.
   */
  restoreUpload(id: string, location: Location, size: number): Promise<UploadCursor>;
  /** Free the session's bytes (never a location a blob was committed to); absent bytes are not an error. */
  deleteUpload(id: string, cursor: UploadCursor): Promise<void>;
  /** Every session id that has bytes. */
  listUploads(): AsyncIterable<string>;
}

/** Thrown by openRead and openCopy when no bytes are stored at a location. */
export class BytesNotFoundError extends Error {
  constructor(readonly location: string) {
    super(`no bytes stored at ${location}`);
    this.name = 'BytesNotFoundError';
  }
}
