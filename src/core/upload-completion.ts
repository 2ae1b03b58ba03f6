// Completing an upload session: the bytes verified by UploadService are committed to their location in the
// byte store, and the blob row, its reference (a pin, or an object revision) and the session's answer are
// recorded in one transaction. A session is never lost to a bucket that filled up or went away meanwhile:
// it stays open with its bytes. A completion a crash or a store failure interrupted is settled here too:
// finished, or reopened with a cursor the store can go on from.
import { v7 as uuidv7 } from 'uuid';
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore, ObjectRecord, UploadRecord } from '../storage/metadata-store.ts';
import type { BlobService } from './blobs.ts';
import type { CatalogService } from './catalog.ts';
import { BlobdError } from './errors.ts';
import type { UploadAppender } from './upload-appender.ts';

/** What a finished session answers (and answers again, for a repeated complete). */
export interface CompletedUpload {
  /** The digest for a pinned blob; the object's id for an upload into a bucket. */
  readonly id: string;
  readonly digest: string;
  readonly size: number;
  readonly filename: string | null;
  readonly deduplicated: boolean;
  readonly bucket?: string;
  readonly key?: string;
  readonly revision?: number;
}

export function notFound(id: string, expired = false): BlobdError {
  return expired
    ? new BlobdError('upload_not_found', 'the upload session has expired', { id, expired: true })
    : new BlobdError('upload_not_found', 'no such upload session (it may have expired or been destroyed)', { id });
}

export class UploadCompletion {
  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    private readonly blobs: BlobService,
    private readonly catalog: CatalogService,
    private readonly appender: UploadAppender,
    private readonly uploadTtlMs: number,
  ) {}

  /**
   * Before an upload into a bucket moves its bytes: the bucket must still exist and have room for them.
   * Refused here, the session stays open with its bytes, and a complete after the quota was raised (or
   * the bucket made again) finishes it.
   */
  private async checkTarget(row: UploadRecord): Promise<void> {
    if (row.bucket === null) return;
    const bucket = await this.catalog.getBucket(row.bucket);
    if (bucket.quotaBytes !== null && bucket.storedBytes + row.offset > bucket.quotaBytes) {
      throw new BlobdError('quota_exceeded', `the bucket's quota of ${bucket.quotaBytes} bytes would be exceeded; the session stays open`, {
        quota_bytes: bucket.quotaBytes,
        stored_bytes: bucket.storedBytes,
        offset: row.offset,
      });
    }
  }

  /**
   * Commit the verified bytes to their location in the byte store and finish; `row.cursor` is the cursor
   * they are under now. For an existing blob the row write keeps one copy (see MetadataStore.commitBlob).
   */
  async commit(row: UploadRecord, digest: string, fence?: string): Promise<CompletedUpload> {
    await this.checkTarget(row);
    const location = this.bytes.uploadLocation(row.id, digest);
    return this.blobs.lockDigest(digest, async () => {
      // The verified bytes are committed even when the blob exists (same content; a store of content
      // addresses heals a blob file that went missing or bad): one path for new and deduplicated blobs.
      // "Deduplicated" as for one-shot uploads: a row for these bytes existed (live or not).
      const deduplicated = (await this.meta.getBlob(digest)) !== null;
      // Two steps that a crash can split: "completing" records the digest and location first (claiming
      // the location), so recovery can ask the store whether the commit happened and finish or reopen.
      await this.meta.beginCompletion(row.id, digest, location, fence);
      try {
        await this.bytes.commitUpload(row.id, row.offset, row.cursor, digest);
      } catch (err) {
        // Still the session's → the commit did not happen: reopen. Otherwise the session stays "completing"
        // and the next request on it (or the next start) finishes it — not here, under this digest's lock.
        const committed = await this.bytes.uploadCommitted(row.id, row.offset, row.cursor, digest).catch(() => null);
        if (committed === false) await this.reopen(row, fence).catch(() => {});
        throw err;
      }
      await this.blobs.healing(digest, location);
      return await this.finish(row, digest, location, deduplicated, fence);
    });
  }

  /**
   * A session left "completing" (a crash, or a failure between committing the bytes and the rows) is
   * finished or reopened according to where the byte store says its bytes are: still the session's → the
   * commit did not happen; at their location → it did. Run under the session lock, or before the server
   * takes requests. Any other session is returned as it is.
   */
  async settle(row: UploadRecord, fence?: string): Promise<UploadRecord> {
    if (row.state !== 'completing') return row;
    const committed = await this.bytes.uploadCommitted(row.id, row.offset, row.cursor, row.digest!);
    if (committed === false) {
      await this.reopen(row, fence);
    } else if (committed) {
      // A completion begun before locations were recorded has none: the store's answer for it is the same.
      const location = row.location ?? this.bytes.uploadLocation(row.id, row.digest!);
      await this.blobs.lockDigest(row.digest!, () => this.finish(row, row.digest!, location, false, fence));
    } else {
      await this.meta.deleteUpload(row.id); // neither place has the bytes: nothing honest to resume
      throw notFound(row.id);
    }
    return (await this.meta.getUpload(row.id))!;
  }

  /**
   * Back to open after a commit that did not happen (the store still has the session's bytes), with a cursor
   * the store can go on from: a commit cut off half-way may have used up the one recorded (an object store's
   * multipart upload completed around parts no cursor named), and appends on it would fail.
   */
  async reopen(row: UploadRecord, fence?: string): Promise<void> {
    const goOn = await this.bytes.recoverUpload(row.id, row.offset, row.cursor);
    await this.meta.reopenUpload(row.id, goOn?.cursor ?? row.cursor, this.bytes.sessionLocation(row.id), fence);
  }

  /**
   * Record the blob's reference (a pin, or the object's next revision) and complete the session, in one
   * transaction. `checkTarget` refused a full or missing bucket before the bytes moved; a write that fills
   * the quota (or a bucket deleted) between that check and this transaction — two completes racing for
   * the last room, say — gets here, and the session is handed a copy of its bytes and stays open.
   */
  async finish(row: UploadRecord, digest: string, location: string, deduplicated: boolean, fence?: string): Promise<CompletedUpload> {
    const blob = { digest, size: row.offset, location };
    const base = { digest, size: row.offset, filename: row.filename, deduplicated };
    let result: CompletedUpload | undefined;
    const build = (object: ObjectRecord | null): string => {
      result = object
        ? { ...base, id: object.id, bucket: object.bucket, key: object.key, revision: object.revision }
        : { ...base, id: digest };
      return JSON.stringify(result);
    };
    const target =
      row.bucket !== null
        ? {
            revision: {
              bucket: row.bucket,
              key: row.key!,
              newObjectId: uuidv7(),
              contentType: row.contentType,
              filename: row.filename,
              createdBy: row.principal,
            },
          }
        : { pin: this.blobs.pinFor(row.principal, row.temporary) };
    const done = await this.meta.finishUpload(row.id, blob, target, build, Date.now() + this.uploadTtlMs, fence);
    if (!done.ok) {
      // The bytes were committed but no row references them: the session gets them back and stays open,
      // and the committed bytes go again unless they are the existing blob's (we hold the digest lock).
      // Crash here: the next request finishes this; GC removes bytes left behind.
      const cursor = await this.bytes.restoreUpload(row.id, location, row.offset);
      await this.meta.reopenUpload(row.id, cursor, this.bytes.sessionLocation(row.id), fence);
      // Unless the reopened session claims it as its own (an object store's key for the session).
      await this.blobs.dropUnclaimed(location);
      throw done.reason === 'quota_exceeded'
        ? new BlobdError('quota_exceeded', "the bucket's quota would be exceeded", { bucket: row.bucket })
        : done.reason === 'bucket_not_found'
          ? new BlobdError('bucket_not_found', `no bucket ${row.bucket}`, { bucket: row.bucket })
          : new BlobdError('precondition_failed', 'the object changed in a way that refuses this write');
    }
    this.appender.forget(row.id);
    // A dedup when a row of the digest was there before this complete began and the row write found it: a
    // store may write the row itself while committing the bytes (PostgreSQL's inline tier), before it.
    this.blobs.noteStored(done.created || !deduplicated);
    return result!;
  }
}
