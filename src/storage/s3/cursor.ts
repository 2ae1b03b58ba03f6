// An S3 session's cursor: its multipart upload, the parts recorded in it, and its tail object, as the compact
// JSON the metadata store keeps with the offset. Completion is built from this list, never from ListParts.
import type { KeyLayout } from './keys.ts';
import { MAX_PARTS } from './s3-client.ts';

/** [part number, ETag, bytes]; numbers run 1, 2, 3 … in order. */
export type Part = readonly [number, string, number];
/** [tail key relative to the prefix, bytes]: the session's bytes past its last part (fewer than a part). */
export type Tail = readonly [string, number];

export interface Cursor {
  /** The multipart upload at `blobs/<session id>`, or null before the first whole part. */
  readonly u: string | null;
  readonly p: readonly Part[];
  readonly t: Tail | null;
}

export const EMPTY: Cursor = { u: null, p: [], t: null };

/** The bytes a cursor covers: its parts then its tail. */
export function sizeOf(c: Cursor): number {
  let n = c.t?.[1] ?? 0;
  for (const p of c.p) n += p[2];
  return n;
}

export function partsSize(c: Cursor): number {
  return sizeOf(c) - (c.t?.[1] ?? 0);
}

/** The stored form; the empty session is null (what createUpload returns). */
export function encodeCursor(c: Cursor): string | null {
  if (c.u === null && c.p.length === 0 && c.t === null) return null;
  return JSON.stringify({ u: c.u, p: c.p, t: c.t });
}

/** A stored cursor of session `id`, checked in full: a malformed one throws rather than naming a wrong key. */
export function decodeCursor(stored: string | null, id: string, layout: KeyLayout): Cursor {
  if (stored === null) return EMPTY;
  let raw: unknown;
  try {
    raw = JSON.parse(stored);
  } catch {
    throw new Error('malformed S3 upload cursor (not JSON)');
  }
  const bad = (what: string) => new Error(`malformed S3 upload cursor (${what})`);
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const { u, p, t } = raw as { u?: unknown; p?: unknown; t?: unknown };
  if (u !== null && (typeof u !== 'string' || u === '')) throw bad('upload id');
  if (!Array.isArray(p) || p.length > MAX_PARTS) throw bad('parts');
  if (p.length > 0 && u === null) throw bad('parts without an upload');
  const parts: Part[] = p.map((part: unknown, i) => {
    if (!Array.isArray(part) || part.length !== 3) throw bad('part');
    const [n, etag, size] = part as unknown[];
    if (n !== i + 1 || typeof etag !== 'string' || !isCount(size) || size === 0) throw bad(`part ${i + 1}`);
    return [n, etag, size];
  });
  let tail: Tail | null = null;
  if (t !== null) {
    if (!Array.isArray(t) || t.length !== 2 || typeof t[0] !== 'string' || !isCount(t[1]) || t[1] === 0) throw bad('tail');
    layout.tailKey(id, t[0]); // throws unless it is one of this session's tail keys
    tail = [t[0], t[1]];
  }
  return { u: u as string | null, p: parts, t: tail };
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}
