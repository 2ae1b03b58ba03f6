// Object operations: PutObject, GetObject, HeadObject, DeleteObject. Each is one core call with S3's headers
// translated in and out: the content streams into catalog.putObject (never buffered), downloads go through
// the shared streaming path, and blobd revisions are S3 version ids.
import { BlobdError } from '../../core/errors.ts';
import type { ObjectRecord } from '../../storage/metadata-store.ts';
import { parseRange, streamContent } from '../send-blob.ts';
import { evaluateRead } from './conditions.ts';
import type { S3Call } from './context.ts';
import { S3Error } from './errors.ts';
import { metaFromHeaders, metaHeaders, s3ETag, type WrittenMeta } from './metadata.ts';
import { signedHashMismatch } from './payload.ts';

export function targetOf(call: S3Call): { bucket: string; key: string } {
  if (call.bucket === null || call.key === null) throw new S3Error('InvalidRequest', 400, 'this operation names a bucket and a key');
  return { bucket: call.bucket, key: call.key };
}

/** `versionId` → a blobd revision number; `null` (S3's id of an unversioned object) is the current one. */
export function revisionOf(versionId: string | null): number | undefined {
  if (versionId === null || versionId === 'null') return undefined;
  if (!/^[1-9]\d{0,9}$/.test(versionId)) throw new S3Error('InvalidArgument', 400, 'Invalid version id specified', { ArgumentName: 'versionId', ArgumentValue: versionId.slice(0, 100) });
  return Number(versionId);
}

/** core's "no such revision" is S3's NoSuchVersion; "no such object" stays NoSuchKey. */
export async function findObject(call: S3Call, bucket: string, key: string, revision: number | undefined): Promise<ObjectRecord> {
  try {
    return await call.deps.catalog.getObject(bucket, key, revision);
  } catch (err) {
    if (revision !== undefined && err instanceof BlobdError && err.code === 'object_not_found') {
      throw new S3Error('NoSuchVersion', 404, 'The specified version does not exist.', { Key: key, VersionId: String(revision) });
    }
    throw err;
  }
}

/** The metadata write that goes with new content: S3 replaces type, filename and properties on every write. */
export function writeMeta(meta: WrittenMeta) {
  return {
    contentType: meta.contentType,
    filename: meta.filename,
    meta: { content_type: meta.contentType ?? null, filename: meta.filename ?? null },
    replaceProperties: meta.properties,
  };
}

/** Every header of the request, for x-amz-meta-*: node's own (no Web Headers built on the hot path). */
export function headerEntries(call: S3Call): Iterable<[string, string]> {
  const incoming = call.c.env?.incoming?.headers;
  if (!incoming) return call.c.req.raw.headers.entries();
  return Object.entries(incoming).flatMap(([k, v]) => (v === undefined ? [] : [[k, Array.isArray(v) ? v.join(', ') : v] as [string, string]]));
}

/**
 * S3's If-Match on a write names an ETag; core's names a digest. The current object's ETag is compared
 * here, and its digest is handed to core, whose transaction checks it again against concurrent writes.
 */
export async function writeConditions(call: S3Call, bucket: string, key: string): Promise<{ ifMatch?: string; ifNoneMatch?: boolean }> {
  const ifNoneMatch = call.header('if-none-match');
  const ifMatch = call.header('if-match');
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== '*') {
    throw new S3Error('NotImplemented', 501, 'A header you provided implies functionality that is not implemented', { Header: 'If-None-Match' });
  }
  if (ifMatch === undefined) return ifNoneMatch === undefined ? {} : { ifNoneMatch: true };
  const current = await call.deps.catalog.getObject(bucket, key);
  const wanted = ifMatch.split(',').map((t) => t.trim());
  if (!wanted.includes('*') && !wanted.includes(s3ETag(current)) && !wanted.map((t) => `"${t}"`).includes(s3ETag(current))) {
    throw new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Match' });
  }
  return { ifMatch: current.digest, ...(ifNoneMatch !== undefined ? { ifNoneMatch: true } : {}) };
}

/**
 * The same for a write whose content is stored already (CopyObject, CompleteMultipartUpload): If-None-Match
 * is looked at now too, so a doomed write is refused before any byte is copied. Core checks both again
 * when the revision is recorded.
 */
export async function writeConditionsNow(call: S3Call, bucket: string, key: string): Promise<{ ifMatch?: string; ifNoneMatch?: boolean }> {
  const conditions = await writeConditions(call, bucket, key);
  if (conditions.ifNoneMatch) {
    const exists = await call.deps.catalog.getObject(bucket, key).then(
      () => true,
      (err: unknown) => (err instanceof BlobdError && err.code === 'object_not_found' ? false : Promise.reject(err)),
    );
    if (exists) throw new S3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-None-Match' });
  }
  return conditions;
}

export async function putObject(call: S3Call): Promise<Response> {
  const { bucket, key } = targetOf(call);
  await call.authorize({ action: 'bucket:write', bucket });
  const meta = metaFromHeaders((n) => call.header(n), headerEntries(call));
  const conditions = await writeConditions(call, bucket, key);
  const opts = {
    principal: call.principal!,
    declaredSize: call.declaredSize,
    ...writeMeta(meta),
    ...conditions,
    // The MD5 is known only once the body ended: core asks when it records the revision.
    etag: () => call.bodyMd5(),
    // A signed payload hash is checked by the store's own SHA-256 of the content, not a second one here.
    ...(call.signedSha256 !== undefined ? { expected: call.signedSha256 } : {}),
  };
  const { object } = await call.deps.catalog.putObject(bucket, key, () => call.contentBody(), opts).catch((err: unknown) => Promise.reject(signedHashMismatch(err)));
  const headers: Record<string, string> = { ETag: s3ETag(object), 'x-amz-version-id': String(object.revision) };
  const checksum = call.bodyChecksum();
  if (checksum) headers[checksum.header] = checksum.value;
  return call.c.body(null, 200, headers);
}

/** `response-*` query parameters: the headers a signed GetObject may override. */
const OVERRIDES: Record<string, string> = {
  'response-content-type': 'Content-Type',
  'response-content-language': 'Content-Language',
  'response-expires': 'Expires',
  'response-cache-control': 'Cache-Control',
  'response-content-disposition': 'Content-Disposition',
  'response-content-encoding': 'Content-Encoding',
};

/** GetObject and HeadObject (Hono runs the GET handler for HEAD; nothing is opened for it). */
export async function getObject(call: S3Call): Promise<Response> {
  const { bucket, key } = targetOf(call);
  const revision = revisionOf(call.query.get('versionId'));
  await call.authorize({ action: 'object:read', bucket });
  const { full } = await call.deps.catalog.readAccess(bucket, call.principal, revision !== undefined);
  const obj = await findObject(call, bucket, key, revision);
  const etag = s3ETag(obj);
  const lastModified = new Date(obj.revisionCreatedAt);
  const validators = {
    ETag: etag,
    'Last-Modified': lastModified.toUTCString(),
    'x-amz-version-id': String(obj.revision),
  };
  if (evaluateRead((n) => call.header(n), { etag, lastModified }) === 'not-modified') return call.c.body(null, 304, validators);

  const headers: Record<string, string> = { ...validators, 'Accept-Ranges': 'bytes', ...metaHeaders(obj, full) };
  const overrides = [...call.query.keys()].filter((k) => k in OVERRIDES);
  if (overrides.length > 0 && call.principal === undefined) {
    throw new S3Error('InvalidRequest', 400, 'Request specific response headers cannot be used for anonymous GET requests.');
  }
  for (const k of overrides) {
    const value = call.query.get(k)!;
    if (/[\u0000-\u001f\u007f]/.test(value)) throw new S3Error('InvalidArgument', 400, `${k} holds a control character`);
    headers[OVERRIDES[k]!] = Buffer.from(value, 'utf8').toString('latin1');
  }

  const want = parseRange(call.header('range'), obj.size);
  if (want.kind === 'unsatisfiable') {
    throw new S3Error('InvalidRange', 416, 'The requested range is not satisfiable', { RangeRequested: call.header('range') ?? '', ActualObjectSize: String(obj.size) }, {
      'Content-Range': `bytes */${obj.size}`,
    });
  }
  const range = want.kind === 'partial' ? want.range : undefined;
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${obj.size}`;
  headers['Content-Length'] = String(range ? range.end - range.start + 1 : obj.size);
  const status = range ? 206 : 200;
  // HEAD: say everything, open nothing (a stream nobody reads would hold its file).
  if (call.c.req.method === 'HEAD' || obj.size === 0) return call.c.body(null, status, headers);
  return streamContent(call.c, status, headers, () => call.deps.catalog.openContent(obj, range));
}

/** DeleteObject: 204 also for a key that does not exist, as S3 answers. */
export async function deleteObject(call: S3Call): Promise<Response> {
  const { bucket, key } = targetOf(call);
  const revision = revisionOf(call.query.get('versionId'));
  await call.authorize({ action: 'bucket:delete', bucket });
  await deleteQuietly(call, bucket, key, revision);
  return call.c.body(null, 204, revision === undefined ? {} : { 'x-amz-version-id': String(revision) });
}

/** Deletes an object (or one revision); a missing one is no error, a missing bucket is. */
export async function deleteQuietly(call: S3Call, bucket: string, key: string, revision: number | undefined): Promise<void> {
  try {
    await call.deps.catalog.deleteObject(bucket, key, revision);
  } catch (err) {
    if (!(err instanceof BlobdError && err.code === 'object_not_found')) throw err;
  }
}
