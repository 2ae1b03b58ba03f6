// S3 multipart uploads as objects of a system bucket: the names and keys they live under, their state
// markers, what is read back from them, and the listing of a bucket's uploads (ListMultipartUploads).
import { createHash } from 'node:crypto';
import { KEY_END, type BucketRecord, type MetadataStore, type ObjectRecord } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';
import { refuseNul } from './text.ts';

/** The system bucket: a name parseBucketName refuses, so no user can create, list or reach it. */
export const MULTIPART_BUCKET = '.s3-multipart';
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_NUMBER = 10_000;
/** Below every character a key may hold: record keys sort by the user's key, then by upload id. */
export const SEP = '\u0001';
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const PAGE = 1000;

// An upload's state is its record's content: a change of state is a write with If-Match on the old digest,
// so two completes (or a complete and an abort) cannot both win, on one node or many.
const marker = (state: string) => Buffer.from(JSON.stringify({ state }));
export const OPEN = marker('open');
export const COMPLETING = marker('completing');
export const ABORTING = marker('aborting');
export const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const OPEN_DIGEST = digestOf(OPEN);
export const ABORTING_DIGEST = digestOf(ABORTING);

/** The final object's metadata, given when the upload starts. */
export interface UploadMeta {
  readonly contentType?: string;
  readonly filename?: string;
  /** `x-amz-meta-*`: the final object's properties, exactly. */
  readonly properties?: Readonly<Record<string, string>>;
}

export interface MultipartUpload {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  /** Principal id of who started it. */
  readonly initiator: string;
  /** Milliseconds since the epoch. */
  readonly initiated: number;
  readonly expiresAt: number;
  readonly meta: UploadMeta;
}

export interface StoredPart {
  readonly partNumber: number;
  /** Hex MD5 of the part's bytes. */
  readonly etag: string;
  readonly size: number;
  readonly lastModified: number;
}

export interface CompletedPart {
  readonly partNumber: number;
  /** As the client sent it: quotes and case do not matter. */
  readonly etag: string;
}

/** Why a complete was refused, in `details.reason` of an invalid_request (the S3 front names S3's code). */
export type PartProblem = 'no_parts' | 'invalid_part' | 'invalid_part_order' | 'part_too_small' | 'invalid_part_number';

export function partProblem(reason: PartProblem, message: string, details: Record<string, unknown> = {}): BlobdError {
  return new BlobdError('invalid_request', message, { reason, ...details });
}

export const noSuchUpload = (uploadId: string) =>
  new BlobdError('upload_not_found', 'the upload does not exist: it was completed or aborted, or its id is wrong', { upload_id: uploadId });

export const normEtag = (etag: string) => etag.trim().replace(/^"(.*)"$/, '$1').toLowerCase();
export const partKey = (uploadId: string, n: number) => `p/${uploadId}/${String(n).padStart(5, '0')}`;
export const recordKey = (bucket: string, key: string, uploadId: string) => `u/${bucket}/${key}${SEP}${uploadId}`;

export function checkPartNumber(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PART_NUMBER) {
    throw partProblem('invalid_part_number', `a part number is an integer from 1 to ${MAX_PART_NUMBER}`);
  }
}

export function uploadOf(bucket: string, key: string, uploadId: string, record: ObjectRecord): MultipartUpload {
  const p = record.properties as { initiator?: string; content_type?: string; filename?: string; meta?: Record<string, string> };
  return {
    bucket,
    key,
    uploadId,
    initiator: p.initiator ?? '',
    initiated: record.createdAt,
    expiresAt: record.expiresAt ?? Number.MAX_SAFE_INTEGER,
    meta: {
      ...(p.content_type !== undefined ? { contentType: p.content_type } : {}),
      ...(p.filename !== undefined ? { filename: p.filename } : {}),
      ...(p.meta !== undefined ? { properties: p.meta } : {}),
    },
  };
}

/**
 * The upload was started in this bucket, not in an earlier one of the same name (deleted since): its record
 * holds the bucket's creation time. Records written before that was kept hold none and count as this one's.
 */
export function sameIncarnation(record: ObjectRecord, bucket: BucketRecord | null): boolean {
  if (!bucket) return false;
  const created = (record.properties as { bucket_created?: unknown }).bucket_created;
  return typeof created !== 'number' || created === bucket.createdAt;
}

export function partOf(row: ObjectRecord): StoredPart {
  return {
    partNumber: Number(row.key.slice(row.key.lastIndexOf('/') + 1)),
    etag: row.etag ?? '',
    size: row.size,
    lastModified: row.revisionCreatedAt,
  };
}

export interface UploadPage {
  readonly uploads: MultipartUpload[];
  readonly commonPrefixes: string[];
  readonly truncated: boolean;
  readonly nextKeyMarker?: string;
  readonly nextUploadIdMarker?: string;
}

/**
 * One page of a bucket's uploads in key order, then upload id (start order): after `keyMarker` (and,
 * for that key, after `uploadIdMarker`), keys under `prefix`, rolled up at `delimiter` as S3 does. Records
 * `listed` refuses are skipped as if absent (an earlier bucket's of the same name).
 */
export async function listUploadsPage(
  meta: MetadataStore,
  name: string,
  q: { prefix?: string; delimiter?: string; keyMarker?: string; uploadIdMarker?: string; maxUploads: number },
  listed: (record: ObjectRecord, uploadId: string) => boolean = () => true,
): Promise<UploadPage> {
  const prefix = refuseNul(q.prefix ?? '', 'prefix');
  const delimiter = refuseNul(q.delimiter || undefined, 'delimiter');
  const keyMarker = refuseNul(q.keyMarker || undefined, 'key-marker');
  const max = Math.max(0, Math.min(PAGE, q.maxUploads));
  const base = `u/${name}/`;
  let after: string | null = null;
  if (keyMarker !== undefined) {
    const rolledUp = delimiter !== undefined && keyMarker.startsWith(prefix) && keyMarker.indexOf(delimiter, prefix.length) === keyMarker.length - delimiter.length;
    const idMarker = q.uploadIdMarker !== undefined && UUID_RE.test(q.uploadIdMarker) ? q.uploadIdMarker : undefined;
    // After a common prefix: past every key under it. After a key: past its uploads, or those up to the id.
    after = base + keyMarker + (rolledUp ? KEY_END : SEP + (idMarker ?? KEY_END));
  }
  const uploads: MultipartUpload[] = [];
  const commonPrefixes: string[] = [];
  let last: { key: string; uploadId: string } | undefined;
  const done = (truncated: boolean) => ({
    uploads,
    commonPrefixes,
    truncated,
    ...(truncated && last ? { nextKeyMarker: last.key, nextUploadIdMarker: last.uploadId } : {}),
  });
  if (max === 0) return done(false);
  // Each round moves `after` forward (past a row, or past a whole common prefix); the rows are finite.
  for (let round = 0; round < 1_000_000; round++) {
    const rows = await meta.listObjects({ bucket: MULTIPART_BUCKET, prefix: base + prefix, after, limit: max + 1 });
    let jumped = false;
    for (const row of rows) {
      const rest = row.key.slice(base.length);
      const sep = rest.lastIndexOf(SEP);
      const key = rest.slice(0, sep);
      const uploadId = rest.slice(sep + 1);
      if (!listed(row, uploadId)) {
        after = row.key;
        continue;
      }
      const at = delimiter === undefined ? -1 : key.indexOf(delimiter, prefix.length);
      if (uploads.length + commonPrefixes.length === max) return done(true);
      if (at >= 0) {
        const group = key.slice(0, at + delimiter!.length);
        commonPrefixes.push(group);
        last = { key: group, uploadId: '' };
        after = base + group + KEY_END;
        jumped = true;
        break;
      }
      uploads.push(uploadOf(name, key, uploadId, row));
      last = { key, uploadId };
      after = row.key;
    }
    if (!jumped && rows.length <= max) return done(false);
  }
  throw new BlobdError('internal_error', 'listing multipart uploads did not end');
}
