// Which S3 operation a request is: chosen from the method, whether it names a bucket and a key, its
// subresource query parameters (`?uploads`, `?delete`, `?location`, …) and x-amz-copy-source. Anything
// S3 has and blobd does not is NotImplemented (501), never a guess.
import { aclAnswer, BUCKET_CONFIG_READS, createBucket, deleteBucket, getBucketConfig, getBucketLocation, headBucket, listBuckets } from './buckets.ts';
import type { S3Call } from './context.ts';
import { copyObject } from './copy.ts';
import { deleteObjects } from './delete-objects.ts';
import { S3Error } from './errors.ts';
import { listObjectsV1, listObjectsV2 } from './listing.ts';
import { deleteObject, findObject, getObject, putObject, revisionOf, targetOf } from './objects.ts';
import { xmlAnswer } from './xml.ts';

export type Operation = (call: S3Call) => Promise<Response>;

/** What S3 multipart uploads answer with (src/http/s3api/multipart.ts); absent ones are NotImplemented. */
export interface MultipartOperations {
  readonly createMultipartUpload?: Operation;
  readonly uploadPart?: Operation;
  readonly uploadPartCopy?: Operation;
  readonly completeMultipartUpload?: Operation;
  readonly abortMultipartUpload?: Operation;
  readonly listParts?: Operation;
  readonly listMultipartUploads?: Operation;
}

/** Query parameters that name a subresource (an operation other than the plain one on that resource). */
const SUBRESOURCES = new Set([
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'delete', 'encryption', 'intelligent-tiering', 'inventory',
  'legal-hold', 'lifecycle', 'location', 'logging', 'metadataConfiguration', 'metrics', 'notification', 'object-lock',
  'ownershipControls', 'partNumber', 'policy', 'policyStatus', 'publicAccessBlock', 'replication', 'requestPayment',
  'restore', 'retention', 'select', 'session', 'tagging', 'torrent', 'uploadId', 'uploads', 'versioning', 'versions', 'website',
]);

function notImplemented(what: string): Operation {
  return async () => {
    throw new S3Error('NotImplemented', 501, `${what} is not implemented by blobd's S3 API`);
  };
}

function multipart(ops: MultipartOperations, name: keyof MultipartOperations): Operation {
  return ops[name] ?? notImplemented(name);
}

/**
 * A public_read bucket answers anonymous GetObject and HeadObject, nothing else of an object: S3 asks for
 * READ_ACP to read an ACL, and a signed request to read tags.
 */
function requireSigned(call: S3Call): void {
  if (call.principal === undefined) {
    throw new S3Error('AccessDenied', 403, 'Access Denied: the request is not signed (AWS Signature Version 4); only GetObject and HeadObject of public_read buckets can be anonymous');
  }
}

/** GetObjectAcl: the object must exist and be readable; its ACL is the one blobd has for everything. */
const getObjectAcl: Operation = async (call) => {
  const { bucket, key } = targetOf(call);
  requireSigned(call);
  await call.authorize({ action: 'object:read', bucket });
  await findObject(call, bucket, key, revisionOf(call.query.get('versionId')));
  return aclAnswer(call);
};

/**
 * GetObject / HeadObject `?partNumber=N`: blobd keeps an object as one piece, so part 1 is the whole object
 * (as S3 answers for an object not uploaded in parts) and any other number is 416 InvalidPartNumber — never
 * the whole object under another part's name.
 */
const getObjectPart: Operation = async (call) => {
  const raw = call.query.get('partNumber') ?? '';
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10_000) {
    throw new S3Error('InvalidArgument', 400, 'Part number must be an integer between 1 and 10000, inclusive', { ArgumentName: 'partNumber', ArgumentValue: raw.slice(0, 100) });
  }
  if (Number(raw) !== 1) throw new S3Error('InvalidPartNumber', 416, 'The requested partnumber is not satisfiable', { PartNumberRequested: raw, ActualPartCount: '1' });
  return getObject(call);
};

/** GetObjectTagging: blobd has no S3 tags (its own tags are not key=value pairs), so every object has none. */
const getObjectTagging: Operation = async (call) => {
  const { bucket, key } = targetOf(call);
  requireSigned(call);
  await call.authorize({ action: 'object:read', bucket });
  const obj = await findObject(call, bucket, key, revisionOf(call.query.get('versionId')));
  return xmlAnswer(call.c, 'Tagging', { TagSet: {} }, 200, { 'x-amz-version-id': String(obj.revision) });
};

export function operationFor(call: S3Call, mp: MultipartOperations): Operation {
  const method = call.c.req.method;
  const subs = [...new Set(call.query.keys())].filter((k) => SUBRESOURCES.has(k));
  const sub = subs[0];
  const has = (name: string) => call.query.has(name);
  const describe = () => `${method} ${call.key !== null ? 'object' : call.bucket !== null ? 'bucket' : 'service'}${sub !== undefined ? `?${sub}` : ''}`;

  if (call.bucket === null) {
    return method === 'GET' && sub === undefined ? listBuckets : notImplemented(describe());
  }

  if (call.key === null) {
    switch (method) {
      case 'GET':
        if (sub === undefined) {
          const listType = call.query.get('list-type');
          if (listType === '2') return listObjectsV2;
          if (listType !== null && listType !== '1') throw new S3Error('InvalidArgument', 400, 'Invalid list type', { ArgumentName: 'list-type' });
          return listObjectsV1;
        }
        if (subs.length > 1) break;
        if (sub === 'uploads') return multipart(mp, 'listMultipartUploads');
        if (sub === 'location') return getBucketLocation;
        if (BUCKET_CONFIG_READS.includes(sub)) return (c) => getBucketConfig(c, sub);
        break;
      case 'HEAD':
        if (sub === undefined) return headBucket;
        break;
      case 'PUT':
        if (sub === undefined) return createBucket;
        break;
      case 'DELETE':
        if (sub === undefined) return deleteBucket;
        break;
      case 'POST':
        if (sub === 'delete' && subs.length === 1) return deleteObjects;
        break;
    }
    return notImplemented(describe());
  }

  switch (method) {
    case 'GET':
    case 'HEAD':
      if (sub === undefined) return getObject;
      if (sub === 'partNumber' && subs.length === 1) return getObjectPart;
      if (sub === 'uploadId' && subs.length === 1 && method === 'GET') return multipart(mp, 'listParts');
      if (sub === 'acl' && subs.length === 1 && method === 'GET') return getObjectAcl;
      if (sub === 'tagging' && subs.length === 1 && method === 'GET') return getObjectTagging;
      break;
    case 'PUT':
      if (has('partNumber') && has('uploadId') && subs.length === 2) {
        return multipart(mp, call.header('x-amz-copy-source') !== undefined ? 'uploadPartCopy' : 'uploadPart');
      }
      if (sub === undefined) return call.header('x-amz-copy-source') !== undefined ? copyObject : putObject;
      break;
    case 'POST':
      if (sub === 'uploads' && subs.length === 1) return multipart(mp, 'createMultipartUpload');
      if (sub === 'uploadId' && subs.length === 1) return multipart(mp, 'completeMultipartUpload');
      break;
    case 'DELETE':
      if (sub === undefined) return deleteObject;
      if (sub === 'uploadId' && subs.length === 1) return multipart(mp, 'abortMultipartUpload');
      break;
  }
  return notImplemented(describe());
}
