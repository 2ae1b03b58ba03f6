// ListObjectsV2 and ListObjects (V1) over core's keyset-paged listing (prefix, delimiter, cursor). The
// continuation token is core's cursor as it is; start-after and marker are core's startAfter.
import type { ListPage } from '../../core/catalog.ts';
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord } from '../../storage/metadata-store.ts';
import { bucketOf, ownerXml } from './buckets.ts';
import type { S3Call } from './context.ts';
import { S3Error } from './errors.ts';
import { s3ETag } from './metadata.ts';
import { xmlAnswer, type XmlNode } from './xml.ts';

/** encoding-type=url: as S3 encodes (application/x-www-form-urlencoded, '/' kept), what clients unquote_plus. */
function urlEncode(text: string): string {
  return encodeURIComponent(text)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/')
    .replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

function maxKeysOf(call: S3Call): number {
  const raw = call.query.get('max-keys');
  if (raw === null || raw === '') return 1000;
  if (!/^\d{1,10}$/.test(raw)) throw new S3Error('InvalidArgument', 400, 'Provided max-keys not an integer or within integer range', { ArgumentName: 'max-keys', ArgumentValue: raw.slice(0, 100) });
  return Math.min(Number(raw), 1000);
}

export function encodingOf(call: S3Call): (text: string) => string {
  const encoding = call.query.get('encoding-type');
  if (encoding === null) return (t) => t;
  if (encoding.toLowerCase() !== 'url') throw new S3Error('InvalidArgument', 400, 'Invalid Encoding Method specified in Request', { ArgumentName: 'encoding-type', ArgumentValue: encoding.slice(0, 100) });
  return urlEncode;
}

/** A page of at most `maxKeys` entries (0 asks nothing of core: S3 answers an empty, untruncated page). */
async function page(call: S3Call, bucket: string, opts: { prefix: string; delimiter: string; maxKeys: number; cursor?: string; startAfter?: string }): Promise<ListPage> {
  await call.authorize({ action: 'bucket:read', bucket });
  if (opts.maxKeys === 0) {
    await call.deps.catalog.getBucket(bucket);
    return { items: [], commonPrefixes: [], nextCursor: null };
  }
  try {
    return await call.deps.catalog.listObjects(bucket, {
      ...(opts.prefix !== '' ? { prefix: opts.prefix } : {}),
      ...(opts.delimiter !== '' ? { delimiter: opts.delimiter } : {}),
      limit: opts.maxKeys,
      ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}),
      // A key (a client's start-after, or a NextMarker we gave out, possibly a common prefix: core skips its group).
      ...(opts.startAfter !== undefined ? { startAfter: opts.startAfter } : {}),
    });
  } catch (err) {
    // A continuation token this server did not give out, in S3's words.
    if (err instanceof BlobdError && err.details.field === 'cursor') throw badToken();
    throw err;
  }
}

const badToken = () => new S3Error('InvalidArgument', 400, 'The continuation token provided is incorrect', { ArgumentName: 'continuation-token' });

function contents(items: ObjectRecord[], enc: (t: string) => string, withOwner: boolean): XmlNode[] {
  return items.map((o) => ({
    Key: enc(o.key),
    LastModified: new Date(o.revisionCreatedAt).toISOString(),
    ETag: s3ETag(o),
    Size: o.size,
    ...(withOwner ? { Owner: ownerXml(o.createdBy ?? 'blobd') } : {}),
    StorageClass: 'STANDARD',
  }));
}

/** What both listing versions read alike: the bucket, prefix, delimiter, max-keys and the key encoding. */
function listingParams(call: S3Call) {
  const q = call.query;
  return { bucket: bucketOf(call), q, prefix: q.get('prefix') ?? '', delimiter: q.get('delimiter') ?? '', maxKeys: maxKeysOf(call), enc: encodingOf(call) };
}

export async function listObjectsV2(call: S3Call): Promise<Response> {
  const { bucket, q, prefix, delimiter, maxKeys, enc } = listingParams(call);
  const token = q.get('continuation-token');
  const after = q.get('start-after') ?? '';
  if (token === '') throw badToken();
  const p = await page(call, bucket, { prefix, delimiter, maxKeys, ...(token !== null ? { cursor: token } : after !== '' ? { startAfter: after } : {}) });
  const encoded = q.get('encoding-type') !== null;
  return xmlAnswer(call.c, 'ListBucketResult', {
    Name: bucket,
    Prefix: enc(prefix),
    ...(delimiter !== '' ? { Delimiter: enc(delimiter) } : {}),
    ...(after !== '' ? { StartAfter: enc(after) } : {}),
    ...(token !== null ? { ContinuationToken: token } : {}),
    MaxKeys: maxKeys,
    ...(encoded ? { EncodingType: 'url' } : {}),
    KeyCount: p.items.length + p.commonPrefixes.length,
    IsTruncated: p.nextCursor !== null,
    ...(p.nextCursor !== null ? { NextContinuationToken: p.nextCursor } : {}),
    Contents: contents(p.items, enc, q.get('fetch-owner') === 'true'),
    CommonPrefixes: p.commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
  });
}

export async function listObjectsV1(call: S3Call): Promise<Response> {
  const { bucket, q, prefix, delimiter, maxKeys, enc } = listingParams(call);
  const marker = q.get('marker') ?? '';
  const p = await page(call, bucket, { prefix, delimiter, maxKeys, ...(marker !== '' ? { startAfter: marker } : {}) });
  const truncated = p.nextCursor !== null;
  // S3 gives NextMarker only with a delimiter; without one clients continue from the last key. The last
  // entry is whichever of the last key and the last common prefix sorts later — in UTF-8 byte order, the
  // listing's: JavaScript's < compares UTF-16 units, which put U+E000–U+FFFF after an emoji.
  const lastKey = p.items.at(-1)?.key;
  const lastPrefix = p.commonPrefixes.at(-1);
  const later = (a: string, b: string) => (Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')) > 0 ? a : b);
  const last = lastKey === undefined ? lastPrefix : lastPrefix === undefined ? lastKey : later(lastKey, lastPrefix);
  return xmlAnswer(call.c, 'ListBucketResult', {
    Name: bucket,
    Prefix: enc(prefix),
    Marker: enc(marker),
    ...(truncated && delimiter !== '' && last !== undefined ? { NextMarker: enc(last) } : {}),
    MaxKeys: maxKeys,
    ...(delimiter !== '' ? { Delimiter: enc(delimiter) } : {}),
    ...(q.get('encoding-type') !== null ? { EncodingType: 'url' } : {}),
    IsTruncated: truncated,
    Contents: contents(p.items, enc, true),
    CommonPrefixes: p.commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
  });
}
