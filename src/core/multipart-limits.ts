// The limits of an S3 multipart part. Parts live in core's own bucket, so nothing else keeps them within the
// target bucket's: a part is refused when it and the upload's other parts stored so far would not fit the
// target's max_object_size, what its quota has left, or --max-blob-size.
import type { BucketRecord, MetadataStore, ObjectRecord } from '../storage/metadata-store.ts';
import { tooLarge } from './byte-limit.ts';
import { BlobdError } from './errors.ts';
import { MAX_PART_NUMBER, partOf } from './multipart-records.ts';

/** Uploads whose part sizes one process remembers: 80 KiB each. */
const MAX_CACHED = 64;

export interface PartLimit {
  readonly bytes: number;
  readonly error: () => BlobdError;
}

/**
 * The most a part may hold, given the bytes of the upload's other parts (the part replaces an earlier upload
 * of its number, which is not counted). What remains open: several uploads at once (or parts of one upload
 * sent in parallel) are each checked against the same usage, so together they can hold more than the quota
 * has left until they are completed, aborted or expire; the complete checks the object again, as any write.
 */
export async function partLimit(b: BucketRecord, maxBlobSize: number | undefined, others: () => Promise<number>): Promise<PartLimit | undefined> {
  if (b.maxObjectSize === null && b.quotaBytes === null && maxBlobSize === undefined) return undefined;
  const stored = await others();
  const limits: PartLimit[] = [
    ...(b.maxObjectSize !== null ? [{ bytes: b.maxObjectSize - stored, error: () => tooLarge(b.maxObjectSize!, "bucket's max_object_size") }] : []),
    ...(maxBlobSize !== undefined ? [{ bytes: maxBlobSize - stored, error: () => tooLarge(maxBlobSize) }] : []),
    ...(b.quotaBytes !== null
      ? [{
          bytes: b.quotaBytes - b.storedBytes - stored,
          error: () => new BlobdError('quota_exceeded', `the bucket's quota of ${b.quotaBytes} bytes would be exceeded`, { quota_bytes: b.quotaBytes }),
        }]
      : []),
  ].map((l) => ({ ...l, bytes: Math.max(0, l.bytes) }));
  return limits.sort((x, y) => x.bytes - y.bytes)[0];
}

/**
 * The sizes of an upload's stored parts by part number, so that a part's limits do not list every earlier
 * part again (10,000 parts would read 50 million rows over an upload). Remembered only with metadata of its
 * own, where every part passes through this process; oldest dropped first, listed again when next needed.
 */
export class PartSizes {
  private readonly cached = new Map<string, Float64Array>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly rows: (uploadId: string) => AsyncIterable<ObjectRecord>,
  ) {}

  /** The bytes of the upload's parts other than `partNumber`. */
  async others(uploadId: string, partNumber: number): Promise<number> {
    const sizes = await this.sizes(uploadId);
    let sum = 0;
    for (let n = 1; n <= MAX_PART_NUMBER; n++) if (n !== partNumber) sum += sizes[n]!;
    return sum;
  }

  private async sizes(uploadId: string): Promise<Float64Array> {
    const known = this.cached.get(uploadId);
    if (known) return known;
    const sizes = new Float64Array(MAX_PART_NUMBER + 1);
    for await (const row of this.rows(uploadId)) sizes[partOf(row).partNumber] = row.size;
    if (this.meta.shared) return sizes;
    // Listed meanwhile by another part of the upload: that one took the parts stored since.
    const raced = this.cached.get(uploadId);
    if (raced) return raced;
    if (this.cached.size >= MAX_CACHED) this.cached.delete(this.cached.keys().next().value!);
    this.cached.set(uploadId, sizes);
    return sizes;
  }

  /** A part was stored. */
  note(uploadId: string, part: ObjectRecord): void {
    const sizes = this.cached.get(uploadId);
    if (sizes) sizes[partOf(part).partNumber] = part.size;
  }

  /** The upload ended. */
  forget(uploadId: string): void {
    this.cached.delete(uploadId);
  }
}
