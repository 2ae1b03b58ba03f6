// DeleteObjects (POST /bucket?delete): up to 1000 keys in one XML body, each deleted as DeleteObject would
// (a missing key counts as deleted), answered per key with Deleted or Error; Quiet leaves out the Deleted.
import { bucketOf } from './buckets.ts';
import type { S3Call } from './context.ts';
import { S3Error, toS3Error } from './errors.ts';
import { deleteQuietly, revisionOf } from './objects.ts';
import { child, parseXml, readXmlBody, xmlAnswer, type XmlNode } from './xml.ts';

const MAX_KEYS = 1000;

const malformed = () => new S3Error('MalformedXML', 400, 'The XML you provided was not well-formed or did not validate against our published schema.');

export async function deleteObjects(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'bucket:delete', bucket });
  // Content-MD5 or x-amz-checksum-* (S3 asks for one) is verified by the body itself when sent.
  const doc = parseXml(await readXmlBody(call.body()));
  if (doc.name !== 'Delete') throw malformed();
  const quiet = child(doc, 'Quiet')?.text.trim().toLowerCase() === 'true';
  const entries = doc.children.filter((c) => c.name === 'Object');
  if (entries.length === 0 || entries.length > MAX_KEYS) throw malformed();
  // The bucket must exist: S3 answers NoSuchBucket for the whole request, not per key.
  await call.deps.catalog.getBucket(bucket);
  const deleted: XmlNode[] = [];
  const errors: XmlNode[] = [];
  for (const entry of entries) {
    const keyEl = child(entry, 'Key');
    if (!keyEl) throw malformed();
    const key = keyEl.text;
    const versionId = child(entry, 'VersionId')?.text;
    try {
      await deleteQuietly(call, bucket, key, revisionOf(versionId ?? null));
      if (!quiet) deleted.push({ Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) });
    } catch (err) {
      const e = toS3Error(err);
      if (e.status >= 500) throw err; // the store failing is the request's answer, not one key's
      errors.push({ Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}), Code: e.code, Message: e.message });
    }
  }
  return xmlAnswer(call.c, 'DeleteResult', { Deleted: deleted, Error: errors });
}
