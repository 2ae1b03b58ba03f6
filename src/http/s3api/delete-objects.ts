// DeleteObjects (POST /bucket?delete): up to 1000 keys in one XML body, each deleted as DeleteObject would
// (a missing key counts as deleted), answered per key with Deleted or Error; Quiet leaves out the Deleted.
import { bucketOf } from './buckets.ts';
import type { S3Call } from './context.ts';
import { S3Error, toS3Error } from './errors.ts';
import { deleteQuietly, revisionOf } from './objects.ts';
import { child, parseXml, readXmlBody, xmlAnswer, type XmlNode } from './xml.ts';

const MAX_KEYS = 1000;
const CONCURRENCY = 8;

const malformed = () => new S3Error('MalformedXML', 400, 'The XML you provided was not well-formed or did not validate against our published schema.');

export async function deleteObjects(call: S3Call): Promise<Response> {
  const bucket = bucketOf(call);
  await call.authorize({ action: 'bucket:delete', bucket });
  // Content-MD5 or x-amz-checksum-* (S3 asks for one) is verified by the body itself when sent.
  const doc = parseXml(await readXmlBody(call.body()));
  if (doc.name !== 'Delete') throw malformed();
  // An xsd:boolean: anything else is not the schema's (S3: MalformedXML), and no guess at what was meant.
  const quietText = child(doc, 'Quiet')?.text.trim().toLowerCase();
  if (quietText !== undefined && !['true', 'false', '1', '0'].includes(quietText)) throw malformed();
  const quiet = quietText === 'true' || quietText === '1';
  const entries = doc.children.filter((c) => c.name === 'Object');
  if (entries.length === 0 || entries.length > MAX_KEYS) throw malformed();
  // The bucket must exist: S3 answers NoSuchBucket for the whole request, not per key.
  await call.deps.catalog.getBucket(bucket);
  const targets = entries.map((entry) => {
    const keyEl = child(entry, 'Key');
    if (!keyEl) throw malformed();
    return { key: keyEl.text, versionId: child(entry, 'VersionId')?.text };
  });
  // A few at a time: each delete is its own transaction, and concurrent ones can share a commit.
  const outcomes: (S3Error | null)[] = [];
  for (let i = 0; i < targets.length; i += CONCURRENCY) {
    const batch = targets.slice(i, i + CONCURRENCY).map(async ({ key, versionId }) => {
      try {
        await deleteQuietly(call, bucket, key, revisionOf(versionId ?? null));
        return null;
      } catch (err) {
        const e = toS3Error(err);
        if (e.status >= 500) throw err; // the store failing is the request's answer, not one key's
        return e;
      }
    });
    outcomes.push(...(await Promise.all(batch)));
  }
  const version = (v: string | undefined) => (v !== undefined ? { VersionId: v } : {});
  const deleted: XmlNode[] = quiet ? [] : targets.flatMap((t, i) => (outcomes[i] === null ? [{ Key: t.key, ...version(t.versionId) }] : []));
  const errors: XmlNode[] = targets.flatMap((t, i) => {
    const e = outcomes[i];
    return e ? [{ Key: t.key, ...version(t.versionId), Code: e.code, Message: e.message }] : [];
  });
  return xmlAnswer(call.c, 'DeleteResult', { Deleted: deleted, Error: errors });
}
