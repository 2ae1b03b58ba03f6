// S3's conditional requests, read against an object's ETag and Last-Modified: GetObject / HeadObject
// (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since → 412 or 304, in RFC 9110's order, as
// S3 evaluates them) and CopyObject's x-amz-copy-source-if-* (every failure is 412).
import { S3Error } from './errors.ts';

export interface Validators {
  /** Quoted, as sent in ETag. */
  readonly etag: string;
  readonly lastModified: Date;
}

/** A list of entity tags names this one (`*` names any); weak prefixes are compared away, as S3 does. */
function names(header: string, etag: string): boolean {
  const bare = (t: string) => t.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
  return header.trim() === '*' || header.split(',').some((t) => bare(t) === bare(etag));
}

/** An HTTP date, or undefined when it is not one (an invalid date is ignored, RFC 9110 §13.1.3). */
function httpDate(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const t = Date.parse(header);
  return Number.isNaN(t) ? undefined : t;
}

/** Last-Modified is whole seconds on the wire: compare at that precision. */
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

export type Outcome = 'proceed' | 'not-modified';

const failed = () => new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Match' });

/** GetObject / HeadObject: 412 (thrown), 304 ('not-modified'), or go on. */
export function evaluateRead(header: (name: string) => string | undefined, v: Validators): Outcome {
  const ifMatch = header('if-match');
  if (ifMatch !== undefined) {
    if (!names(ifMatch, v.etag)) throw failed();
  } else {
    const since = httpDate(header('if-unmodified-since'));
    if (since !== undefined && seconds(v.lastModified) > Math.floor(since / 1000)) {
      throw new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Unmodified-Since' });
    }
  }
  const ifNoneMatch = header('if-none-match');
  if (ifNoneMatch !== undefined) return names(ifNoneMatch, v.etag) ? 'not-modified' : 'proceed';
  const since = httpDate(header('if-modified-since'));
  if (since !== undefined && seconds(v.lastModified) <= Math.floor(since / 1000)) return 'not-modified';
  return 'proceed';
}

/** CopyObject / UploadPartCopy: x-amz-copy-source-if-* against the source; any failure is 412. */
export function evaluateCopySource(header: (name: string) => string | undefined, v: Validators): void {
  const ifMatch = header('x-amz-copy-source-if-match');
  const ifNoneMatch = header('x-amz-copy-source-if-none-match');
  const modified = httpDate(header('x-amz-copy-source-if-modified-since'));
  const unmodified = httpDate(header('x-amz-copy-source-if-unmodified-since'));
  // S3: when If-Match holds, If-Unmodified-Since is not asked; when If-None-Match fails to match, If-Modified-Since is not.
  if (ifMatch !== undefined ? !names(ifMatch, v.etag) : unmodified !== undefined && seconds(v.lastModified) > Math.floor(unmodified / 1000)) {
    throw new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'x-amz-copy-source-If-Match' });
  }
  if (ifNoneMatch !== undefined ? names(ifNoneMatch, v.etag) : modified !== undefined && seconds(v.lastModified) <= Math.floor(modified / 1000)) {
    throw new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'x-amz-copy-source-If-None-Match' });
  }
}
