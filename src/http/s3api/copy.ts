// CopyObject: a metadata write. The destination's new revision points at the source's blob (content is
// shared by digest, no byte is copied), with the source's metadata (COPY) or the request's (REPLACE), and
// keeps the source's ETag.
import { evaluateCopySource } from './conditions.ts';
import type { S3Call } from './context.ts';
import { S3Error } from './errors.ts';
import { metaFromHeaders, propertiesOf, s3ETag, type WrittenMeta } from './metadata.ts';
import { findObject, headerEntries, revisionOf, targetOf, writeConditionsNow, writeMeta } from './objects.ts';
import { xmlAnswer } from './xml.ts';

export interface CopySource {
  readonly bucket: string;
  readonly key: string;
  readonly revision: number | undefined;
}

/** `x-amz-copy-source`: `[/]bucket/key[?versionId=N]`, the key percent-encoded. */
export function parseCopySource(header: string): CopySource {
  const invalid = () => new S3Error('InvalidArgument', 400, 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey', { ArgumentName: 'x-amz-copy-source' });
  const q = header.indexOf('?');
  let path = (q < 0 ? header : header.slice(0, q)).replace(/^\//, '');
  const query = q < 0 ? '' : header.slice(q + 1);
  // `bucket%2Fkey`: the whole source encoded at once (encodeURIComponent of "bucket/key", common in SDK
  // code), which S3 accepts too. A bucket name holds no `%`, so its first encoded slash ends the bucket.
  if (!path.includes('/')) path = path.replace(/^%2F/i, '').replace(/%2F/i, '/');
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) throw invalid();
  let bucket: string;
  let key: string;
  try {
    bucket = decodeURIComponent(path.slice(0, slash));
    key = decodeURIComponent(path.slice(slash + 1));
  } catch {
    throw invalid();
  }
  const version = /^versionId=([^&]*)$/.exec(query);
  if (query !== '' && !version) throw invalid();
  return { bucket, key, revision: revisionOf(version ? decodeURIComponent(version[1]!) : null) };
}

/**
 * Reads and checks the source of a copy (CopyObject, UploadPartCopy): the caller must be allowed to read
 * it (core decides, as for GetObject), and x-amz-copy-source-if-* must hold. A public reader of the source
 * gets its content and public metadata only.
 */
export async function copySource(call: S3Call, header: string) {
  const src = parseCopySource(header);
  await call.authorize({ action: 'object:read', bucket: src.bucket });
  const { full } = await call.deps.catalog.readAccess(src.bucket, call.principal, src.revision !== undefined);
  const object = await findObject(call, src.bucket, src.key, src.revision);
  evaluateCopySource((n) => call.header(n), { etag: s3ETag(object), lastModified: new Date(object.revisionCreatedAt) });
  return { src, object, full };
}

export async function copyObject(call: S3Call): Promise<Response> {
  const dst = targetOf(call);
  await call.authorize({ action: 'bucket:write', bucket: dst.bucket });
  const { src, object, full } = await copySource(call, call.header('x-amz-copy-source')!);
  // The destination's If-Match / If-None-Match: * (S3 has them on CopyObject as on PutObject).
  const conditions = await writeConditionsNow(call, dst.bucket, dst.key);
  const directive = (call.header('x-amz-metadata-directive') ?? 'COPY').toUpperCase();
  if (directive !== 'COPY' && directive !== 'REPLACE') {
    throw new S3Error('InvalidArgument', 400, 'Unknown metadata directive.', { ArgumentName: 'x-amz-metadata-directive' });
  }
  if (directive === 'COPY' && src.bucket === dst.bucket && src.key === dst.key && (src.revision === undefined || src.revision === object.latestRevision)) {
    throw new S3Error(
      'InvalidRequest',
      400,
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  const meta: WrittenMeta =
    directive === 'REPLACE'
      ? metaFromHeaders((n) => call.header(n), headerEntries(call))
      : { contentType: object.contentType ?? undefined, filename: object.filename ?? undefined, properties: full ? propertiesOf(object) : {} };
  const { object: written } = await call.deps.catalog.copyObject(object, dst.bucket, dst.key, {
    principal: call.principal!,
    ...conditions,
    ...writeMeta(meta),
    ...(object.etag !== null ? { etag: object.etag } : {}),
  });
  return xmlAnswer(
    call.c,
    'CopyObjectResult',
    { LastModified: new Date(written.revisionCreatedAt).toISOString(), ETag: s3ETag(written) },
    200,
    { 'x-amz-version-id': String(written.revision), 'x-amz-copy-source-version-id': String(object.revision) },
  );
}
