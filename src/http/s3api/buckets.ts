// Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, and the
// configuration reads clients probe (versioning, ACL, policy, …) answered as S3 answers a bucket that has
// none configured. Who may do what is core's decision (call.authorize), as on the native routes: buckets
// are created and deleted by admins, read by whoever may read them.
import type { BucketRecord } from '../../storage/metadata-store.ts';
import { BlobdError } from '../../core/errors.ts';
import type { S3Call } from './context.ts';
import { S3Error, xmlEscape } from './errors.ts';
import { child, parseXml, readXmlBody, S3_NS, xmlAnswer } from './xml.ts';

/** The bucket an operation names (the dispatcher only routes bucket operations here with one). */
export function bucketOf(call: S3Call): string {
  if (call.bucket === null) throw new S3Error('InvalidRequest', 400, 'this operation names a bucket');
  return call.bucket;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Every principal is its own "owner" to S3 clients: they only display it. */
export function ownerXml(id: string) {
  return { ID: id, DisplayName: id };
}

export async function listBuckets(call: S3Call): Promise<Response> {
  await call.authorize({ action: 'authenticated' });
  const principal = call.principal!;
  const buckets: BucketRecord[] = [];
  let cursor: string | undefined;
  // S3's ListBuckets is one answer (up to 10000 buckets here); core pages by 1000.
  for (let page = 0; page < 10; page++) {
    const p = await call.deps.catalog.listBuckets(principal, { limit: 1000, ...(cursor ? { cursor } : {}) });
    buckets.push(...p.items);
    if (p.nextCursor === null) break;
    cursor = p.nextCursor;
  }
  return xmlAnswer(call.c, 'ListAllMyBucketsResult', {
    Owner: ownerXml(principal.id),
    Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: iso(b.createdAt) })) },
  });
}

/**
 * CreateBucket. An existing bucket is not touched (its settings stay): S3 in us-east-1 answers 200 for a
 * bucket its caller owns, other regions 409 BucketAlreadyOwnedByYou; rclone and restic accept both.
 * An admin's CreateBucketConfiguration body is read and checked whether or not the bucket exists.
 */
export async function createBucket(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  const region = call.deps.region;
  try {
    await call.authorize({ action: 'admin' });
  } catch (refused) {
    // Creating needs admin, as natively. But clients (rclone) "create" a bucket they are about to write
    // to: one that exists and that the caller may read is answered as for its owner, creating nothing.
    // Existence is told only to whom HeadBucket would tell it.
    const readable = await call.authorize({ action: 'bucket:read', bucket }).then(
      () => true,
      () => false,
    );
    if (!readable || !(await bucketExists(call, bucket))) throw refused;
    return alreadyOwned(call, bucket);
  }
  if (call.declaredSize !== 0 && (call.declaredSize !== undefined || call.header('transfer-encoding') !== undefined)) {
    const config = parseXml(await readXmlBody(call.body(), 64 * 1024));
    if (config.name !== 'CreateBucketConfiguration') throw new S3Error('MalformedXML', 400, 'The XML you provided was not well-formed or did not validate against our published schema.');
    const wanted = child(config, 'LocationConstraint')?.text.trim() ?? '';
    // S3 refuses a constraint other than the endpoint's region; us-east-1 is also the empty constraint.
    if (wanted !== '' && wanted !== region && !(region === 'us-east-1' && wanted === 'US')) {
      throw new S3Error('IllegalLocationConstraintException', 400, `The ${wanted} location constraint is incompatible for the region specific endpoint this request was sent to.`);
    }
  }
  if (await bucketExists(call, bucket)) return alreadyOwned(call, bucket);
  await call.deps.catalog.putBucket(bucket, { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false });
  return call.c.body(null, 200, { Location: `/${bucket}` });
}

async function bucketExists(call: S3Call, bucket: string): Promise<boolean> {
  return call.deps.catalog.getBucket(bucket).then(
    () => true,
    (err: unknown) => {
      if (err instanceof BlobdError && err.code === 'bucket_not_found') return false;
      throw err;
    },
  );
}

/** CreateBucket of a bucket that exists (its settings untouched): 200 in us-east-1, else 409, as S3. */
function alreadyOwned(call: S3Call, bucket: string): Response {
  if (call.deps.region !== 'us-east-1') {
    throw new S3Error('BucketAlreadyOwnedByYou', 409, 'Your previous request to create the named bucket succeeded and you already own it.', { BucketName: bucket });
  }
  return call.c.body(null, 200, { Location: `/${bucket}` });
}

export async function headBucket(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'bucket:read', bucket });
  await call.deps.catalog.getBucket(bucket);
  return call.c.body(null, 200, { 'x-amz-bucket-region': call.deps.region });
}

export async function deleteBucket(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'admin' });
  try {
    await call.deps.catalog.deleteBucket(bucket, false);
  } catch (err) {
    // core's message names the native API's force=true, which no S3 client can send.
    if (err instanceof BlobdError && err.code === 'bucket_not_empty') {
      throw new S3Error('BucketNotEmpty', 409, 'The bucket you tried to delete is not empty', { BucketName: bucket });
    }
    throw err;
  }
  return call.c.body(null, 204);
}

export async function getBucketLocation(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'bucket:read', bucket });
  await call.deps.catalog.getBucket(bucket);
  // us-east-1 is answered as an empty constraint, as S3 does.
  const region = call.deps.region === 'us-east-1' ? '' : call.deps.region;
  return call.c.body(
    `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}">${xmlEscape(region)}</LocationConstraint>`,
    200,
    { 'Content-Type': 'application/xml' },
  );
}

/** A bucket configuration blobd has none of, as S3 answers it when none is set. */
type Unconfigured = { kind: 'xml'; root: string; body: Record<string, unknown> } | { kind: 'error'; code: string; message: string };

const UNCONFIGURED: Record<string, Unconfigured> = {
  versioning: { kind: 'xml', root: 'VersioningConfiguration', body: {} },
  acl: { kind: 'xml', root: 'AccessControlPolicy', body: {} },
  policy: { kind: 'error', code: 'NoSuchBucketPolicy', message: 'The bucket policy does not exist' },
  lifecycle: { kind: 'error', code: 'NoSuchLifecycleConfiguration', message: 'The lifecycle configuration does not exist' },
  cors: { kind: 'error', code: 'NoSuchCORSConfiguration', message: 'The CORS configuration does not exist' },
  tagging: { kind: 'error', code: 'NoSuchTagSet', message: 'The TagSet does not exist' },
  website: { kind: 'error', code: 'NoSuchWebsiteConfiguration', message: 'The specified bucket does not have a website configuration' },
  encryption: {
    kind: 'error',
    code: 'ServerSideEncryptionConfigurationNotFoundError',
    message: 'The server side encryption configuration was not found',
  },
  'object-lock': { kind: 'error', code: 'ObjectLockConfigurationNotFoundError', message: 'Object Lock configuration does not exist for this bucket' },
  replication: { kind: 'error', code: 'ReplicationConfigurationNotFoundError', message: 'The replication configuration was not found' },
  ownershipControls: { kind: 'error', code: 'OwnershipControlsNotFoundError', message: 'The bucket ownership controls were not found' },
  publicAccessBlock: { kind: 'error', code: 'NoSuchPublicAccessBlockConfiguration', message: 'The public access block configuration was not found' },
  logging: { kind: 'xml', root: 'BucketLoggingStatus', body: {} },
  notification: { kind: 'xml', root: 'NotificationConfiguration', body: {} },
  accelerate: { kind: 'xml', root: 'AccelerateConfiguration', body: {} },
  requestPayment: { kind: 'xml', root: 'RequestPaymentConfiguration', body: { Payer: 'BucketOwner' } },
};

/** The GET subresources answered as "not configured". */
export const BUCKET_CONFIG_READS = Object.keys(UNCONFIGURED);

export async function getBucketConfig(call: S3Call, subresource: string): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'bucket:read', bucket });
  await call.deps.catalog.getBucket(bucket);
  const answer = UNCONFIGURED[subresource]!;
  if (answer.kind === 'error') throw new S3Error(answer.code, 404, answer.message, { BucketName: bucket });
  if (subresource === 'acl') {
    // The one ACL blobd has: the bucket is its readers' and writers' (scopes decide), shown as owner-only.
    return aclAnswer(call);
  }
  return xmlAnswer(call.c, answer.root, answer.body as never);
}

/** The one ACL blobd has, for buckets and objects: owner-only (scopes decide who reads and writes), FULL_CONTROL. */
export function aclAnswer(call: S3Call): Response {
  const id = xmlEscape(call.principal?.id ?? 'anonymous');
  const owner = `<ID>${id}</ID><DisplayName>${id}</DisplayName>`;
  return call.c.body(
    `<?xml version="1.0" encoding="UTF-8"?>\n<AccessControlPolicy xmlns="${S3_NS}"><Owner>${owner}</Owner><AccessControlList>` +
      `<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">${owner}</Grantee>` +
      '<Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>',
    200,
    { 'Content-Type': 'application/xml' },
  );
}
