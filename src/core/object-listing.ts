// Listing a bucket's objects: one keyset-paged page with S3-style prefix and delimiter, or every match for
// an export, with owner, tag and property filters (property.NAME_OP=VALUE). Keys, not offsets, mark where
// a page ends, so concurrent writes never make a page repeat or skip an existing key.
import type { MetadataStore, ObjectRecord, PropertyFilter } from '../storage/metadata-store.ts';
import { KEY_END } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';
import { decodeCursor, encodeCursor } from './paging.ts';
import { refuseNul } from './text.ts';

const PROPERTY_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;
const PROPERTY_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'exists'] as const;

export interface ListOptions {
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly limit?: number;
  readonly cursor?: string;
  /**
   * Start after this key when no cursor is given (S3's start-after and marker). With a delimiter, a key that
   * is itself one of the listing's common prefixes means after that whole group.
   */
  readonly startAfter?: string;
  readonly owner?: string;
  readonly tag?: string;
  readonly properties?: readonly PropertyFilter[];
}

export interface ListPage {
  readonly items: ObjectRecord[];
  readonly commonPrefixes: string[];
  readonly nextCursor: string | null;
}

/**
 * `property.NAME_OP=VALUE` → a filter: a trailing `_eq`, `_ne`, `_gt`, `_gte`, `_lt`, `_lte` or `_exists`
 * is the operator, and without one the operator is `eq` (so a property named `size_gt` is matched with
 * `property.size_gt_eq=…`). `_exists` takes `true` or `false`.
 */
export function propertyFilter(param: string, value: string): PropertyFilter {
  const m = /^(.+)_(eq|ne|gt|gte|lt|lte|exists)$/.exec(param);
  const name = m ? m[1]! : param;
  const op = (m ? m[2]! : 'eq') as (typeof PROPERTY_OPS)[number];
  if (!PROPERTY_NAME_RE.test(name)) {
    throw new BlobdError('invalid_request', 'a property name is [A-Za-z0-9_.-]{1,128}', { property: name.slice(0, 100) });
  }
  if (op === 'exists' && value !== 'true' && value !== 'false') {
    throw new BlobdError('invalid_request', `property.${name}_exists is true or false`);
  }
  return { name, op, value: refuseNul(value, `property.${param}`) };
}

/** A listing prefix: in NFC like every key (a prefix that is not could match no key). */
function parsePrefix(prefix: string | undefined): string {
  refuseNul(prefix, 'prefix');
  if (prefix !== undefined && prefix.normalize('NFC') !== prefix) {
    throw new BlobdError('invalid_key', 'a prefix is in Unicode NFC, as keys are', { prefix: prefix.slice(0, 100) });
  }
  return prefix ?? '';
}

/** Where a listing given `startAfter` begins (see ListOptions.startAfter). */
function startAfterKey(opts: ListOptions, prefix: string): string {
  const key = refuseNul(opts.startAfter, 'start-after') ?? '';
  const d = opts.delimiter;
  if (d && key.startsWith(prefix) && key.endsWith(d) && key.indexOf(d, prefix.length) === key.length - d.length) return key + KEY_END;
  return key;
}

const encodeKeyCursor = (after: string) => encodeCursor({ a: after });
const decodeKeyCursor = (cursor: string) =>
  decodeCursor(cursor, (v): v is { a: string } => {
    const a = typeof v === 'object' && v !== null ? (v as { a?: unknown }).a : undefined;
    return typeof a === 'string' && !a.includes('\u0000'); // a key never holds a NUL: no cursor of ours does
  }).a;

/** The filters a listing queries by; like every stored string they hold no NUL. */
function filters(opts: ListOptions) {
  refuseNul(opts.owner, 'owner');
  refuseNul(opts.tag, 'tag');
  refuseNul(opts.delimiter, 'delimiter');
  return {
    ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
    ...(opts.tag !== undefined ? { tag: opts.tag } : {}),
    ...(opts.properties?.length ? { properties: opts.properties } : {}),
  };
}

/**
 * One page of `bucket` in key order. With a delimiter, keys that share the part of their name up to the
 * next delimiter after the prefix are rolled into one common prefix (as S3 does), and the page skips past
 * the whole group. The cursor is the last key (or group end) emitted.
 */
export async function listPage(meta: MetadataStore, bucket: string, opts: ListOptions): Promise<ListPage> {
  const prefix = parsePrefix(opts.prefix);
  const limit = opts.limit ?? 1000;
  const where = filters(opts);
  let after = opts.cursor ? decodeKeyCursor(opts.cursor) : startAfterKey(opts, prefix);
  const items: ObjectRecord[] = [];
  const commonPrefixes: string[] = [];
  // With a delimiter every common prefix restarts the scan past its group, so fetch in small batches.
  const batch = opts.delimiter ? Math.min(limit + 1, 32) : limit + 1;
  scan: for (;;) {
    const rows = await meta.listObjects({ bucket, prefix, after, limit: batch, ...where });
    for (const row of rows) {
      // A full page with a row still to come: there is more.
      if (items.length + commonPrefixes.length === limit) return { items, commonPrefixes, nextCursor: encodeKeyCursor(after) };
      const at = opts.delimiter ? row.key.indexOf(opts.delimiter, prefix.length) : -1;
      if (at >= 0) {
        const group = row.key.slice(0, at + opts.delimiter!.length);
        commonPrefixes.push(group);
        after = group + KEY_END; // past every key of the group: query again from there
        continue scan;
      }
      items.push(row);
      after = row.key;
    }
    if (rows.length === batch && batch <= limit) continue; // a short batch was full: there may be more
    return { items, commonPrefixes, nextCursor: null };
  }
}

/** Every match of `bucket`, 1000 rows at a time; the options are checked before the first row is read. */
export function exportAll(meta: MetadataStore, bucket: string, opts: ListOptions): AsyncIterable<ObjectRecord> {
  const prefix = parsePrefix(opts.prefix);
  const where = filters(opts);
  return (async function* () {
    let after = '';
    for (;;) {
      const rows = await meta.listObjects({ bucket, prefix, after, limit: 1000, ...where });
      yield* rows;
      if (rows.length < 1000) return;
      after = rows[rows.length - 1]!.key;
    }
  })();
}
