// The one module that knows blobd's key layout in the bucket: every object key comes from here. It checks
// what it is given first (locations, ids, tail keys), so nothing can name a key outside the prefix.
import { randomBytes } from 'node:crypto';

const ID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const ID_RE = new RegExp(`^${ID}$`);
const BLOB_RE = new RegExp(`^blobs/(${ID})$`);
const TAIL_RE = new RegExp(`^uploads/(${ID})/(0|[1-9][0-9]{0,15})-([0-9a-f]{16})$`);
const QUARANTINE_RE = new RegExp(`^quarantine/blobs/${ID}$`);
const PROBE_RE = new RegExp(`^probes/${ID}$`);
/** A prefix: empty, or segments of safe characters each ending in '/'. */
const PREFIX_RE = /^(?:[A-Za-z0-9._-]+\/)*$/;

/** What a key under the prefix is, by its shape alone. */
export type KeyKind = { kind: 'blob'; id: string } | { kind: 'tail'; id: string } | { kind: 'quarantine' } | { kind: 'probe' } | { kind: 'stray' };

/**
 * Keys, all under `<prefix>`:
 * - `blobs/<uuid>`: a blob's bytes. A one-shot upload's are at a fresh uuidv7; a session's multipart upload
 *   targets `blobs/<session id>` (session ids are uuidv7, never reused). A location is this key without
 *   the prefix.
 * - `uploads/<session id>/<offset>-<random>`: a session's tail (its bytes past the last whole part, which
 *   starts at session offset `<offset>`); a fresh key for every tail written, never overwritten.
 * - `quarantine/<location>`: bytes fsck --repair moved aside.
 * - `probes/<uuid>`: ping's write test, deleted at once.
 */
export class KeyLayout {
  readonly prefix: string;

  constructor(prefix: string) {
    const p = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    if (!PREFIX_RE.test(p) || p.split('/').some((s) => s === '.' || s === '..')) {
      throw new Error(`the S3 key prefix "${prefix}" must be segments of letters, digits, '.', '_' or '-' separated by '/' (no '.' or '..' segments)`);
    }
    this.prefix = p;
  }

  /** The object key of a location (as `blobs/<uuid>`); throws for anything else. */
  keyOf(location: string): string {
    if (!BLOB_RE.test(location)) throw new Error('refusing to map a malformed location to an object key');
    return this.prefix + location;
  }

  /** The location of a fresh blob key. */
  newBlobLocation(id: string): string {
    return `blobs/${checkId(id)}`;
  }

  /** The location (and the multipart upload's target) of a session's bytes. */
  sessionLocation(id: string): string {
    return `blobs/${checkId(id)}`;
  }

  /** A fresh tail key (relative to the prefix) for a session's bytes from `offset` on. */
  newTail(id: string, offset: number): string {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error('refusing a tail key for a bad offset');
    return `uploads/${checkId(id)}/${offset}-${randomBytes(8).toString('hex')}`;
  }

  /** The object key of a session's tail; throws unless `tail` is one of that session's tail keys. */
  tailKey(id: string, tail: string): string {
    const m = TAIL_RE.exec(tail);
    if (!m || m[1] !== id) throw new Error('refusing to map a malformed tail to an object key');
    return this.prefix + tail;
  }

  /** Where a session's tails are listed. */
  tailsPrefix(id: string): string {
    return `${this.prefix}uploads/${checkId(id)}/`;
  }

  uploadsPrefix(): string {
    return `${this.prefix}uploads/`;
  }

  blobsPrefix(): string {
    return `${this.prefix}blobs/`;
  }

  quarantineKey(location: string): string {
    return `${this.prefix}quarantine/${this.keyOf(location).slice(this.prefix.length)}`;
  }

  probeKey(id: string): string {
    return `${this.prefix}probes/${checkId(id)}`;
  }

  /** True for a string that could be a session's or a blob's id. */
  isId(id: string): boolean {
    return ID_RE.test(id);
  }

  /** A listed key without the prefix, or null when it is not under the prefix. */
  relative(key: string): string | null {
    return key.startsWith(this.prefix) ? key.slice(this.prefix.length) : null;
  }

  /** What a key relative to the prefix is. */
  classify(rel: string): KeyKind {
    let m = BLOB_RE.exec(rel);
    if (m) return { kind: 'blob', id: m[1]! };
    m = TAIL_RE.exec(rel);
    if (m) return { kind: 'tail', id: m[1]! };
    if (QUARANTINE_RE.test(rel)) return { kind: 'quarantine' };
    if (PROBE_RE.test(rel)) return { kind: 'probe' };
    return { kind: 'stray' };
  }
}

/** A tail key's shape check without a session id to match (for the cursor codec's first pass). */
export function tailIdOf(tail: string): string | null {
  return TAIL_RE.exec(tail)?.[1] ?? null;
}

function checkId(id: string): string {
  if (!ID_RE.test(id)) throw new Error('refusing to map a malformed id to an object key');
  return id;
}
