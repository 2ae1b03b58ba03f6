// S3 multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
// AbortMultipartUpload, ListParts, ListMultipartUploads. Each translates S3's request and answer around one
// call of core's MultipartUploads, which owns every rule (part sizes, ETags, order, limits, races).
import type { Context } from 'hono';
import type { ByteRange } from '../../core/blobs.ts';
import { BlobdError } from '../../core/errors.ts';
import type { MultipartUpload, PartProblem, StoredPart } from '../../core/multipart-uploads.ts';
import type { AppEnv } from '../env.ts';
import type { S3Call } from './context.ts';
import { copySource } from './copy.ts';
import { errorXml, S3Error, toS3Error } from './errors.ts';
import { encodingOf } from './listing.ts';
import { metaFromHeaders } from './metadata.ts';
import { headerEntries, targetOf, writeConditionsNow } from './objects.ts';
import { signedHashMismatch } from './payload.ts';
import { child, parseXml, readXmlBody, renderXml, xmlAnswer, type XmlNode } from './xml.ts';

/** How often a long CompleteMultipartUpload sends a space to keep its answer (and the client) alive. */
export const COMPLETE_KEEPALIVE_MS = 10_000;

const service = (call: S3Call) => call.deps.multipart;

/** core's reasons for refusing a complete, in S3's codes. */
const PART_CODES: Record<PartProblem, string> = {
  no_parts: 'MalformedXML',
  invalid_part: 'InvalidPart',
  invalid_part_order: 'InvalidPartOrder',
  part_too_small: 'EntityTooSmall',
  invalid_part_number: 'InvalidArgument',
};

function translated(err: unknown, uploadId: string): unknown {
  if (!(err instanceof BlobdError)) return err;
  const reason = err.details.reason as PartProblem | undefined;
  if (err.code === 'invalid_request' && reason !== undefined && reason in PART_CODES) {
    const extra: Record<string, string> = {};
    if (err.details.part_number !== undefined) extra.PartNumber = String(err.details.part_number);
    if (reason === 'part_too_small') {
      extra.ProposedSize = String(err.details.size);
      extra.MinSizeAllowed = String(err.details.min_size);
    }
    return new S3Error(PART_CODES[reason], 400, err.message, extra);
  }
  if (err.code === 'upload_not_found') return new S3Error('NoSuchUpload', 404, err.message, { UploadId: uploadId.slice(0, 100) });
  return err;
}

/** Runs an operation, with core's multipart refusals as S3 names them. */
async function run(call: S3Call, fn: () => Promise<Response>): Promise<Response> {
  try {
    return await fn();
  } catch (err) {
    throw translated(err, call.query.get('uploadId') ?? '');
  }
}

const uploadIdOf = (call: S3Call) => call.query.get('uploadId') ?? '';

function partNumberOf(call: S3Call): number {
  const raw = call.query.get('partNumber') ?? '';
  const n = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= 10_000)) {
    throw new S3Error('InvalidArgument', 400, 'Part number must be an integer between 1 and 10000, inclusive', { ArgumentName: 'partNumber', ArgumentValue: raw.slice(0, 100) });
  }
  return n;
}

/** A non-negative integer query parameter, or `fallback` when absent. */
function integerParam(call: S3Call, name: string, fallback: number): number {
  const raw = call.query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,10}$/.test(raw)) throw new S3Error('InvalidArgument', 400, `Provided ${name} not an integer or within integer range`, { ArgumentName: name, ArgumentValue: raw.slice(0, 100) });
  return Number(raw);
}

const person = (id: string) => ({ ID: id, DisplayName: id });
const quoted = (etag: string) => `"${etag}"`;
const iso = (ms: number) => new Date(ms).toISOString();

export function createMultipartUpload(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    await call.authorize({ action: 'bucket:write', bucket });
    const meta = metaFromHeaders((n) => call.header(n), headerEntries(call));
    const up = await service(call).create(bucket, key, call.principal!, {
      ...(meta.contentType !== undefined ? { contentType: meta.contentType } : {}),
      ...(meta.filename !== undefined ? { filename: meta.filename } : {}),
      properties: meta.properties,
    });
    const algorithm = call.header('x-amz-checksum-algorithm');
    return xmlAnswer(call.c, 'InitiateMultipartUploadResult', { Bucket: bucket, Key: key, UploadId: up.uploadId }, 200, {
      ...(algorithm !== undefined ? { 'x-amz-checksum-algorithm': algorithm } : {}),
    });
  });
}

export function uploadPart(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    const partNumber = partNumberOf(call);
    await call.authorize({ action: 'bucket:write', bucket });
    const part = await service(call)
      .uploadPart(bucket, key, uploadIdOf(call), partNumber, () => call.contentBody(), {
        principal: call.principal!,
        ...(call.declaredSize !== undefined ? { declaredSize: call.declaredSize } : {}),
        md5: () => call.bodyMd5(),
        ...(call.signedSha256 !== undefined ? { expected: call.signedSha256 } : {}),
      })
      .catch((err: unknown) => Promise.reject(signedHashMismatch(err)));
    const headers: Record<string, string> = { ETag: quoted(part.etag) };
    const checksum = call.bodyChecksum();
    if (checksum) headers[checksum.header] = checksum.value;
    return call.c.body(null, 200, headers);
  });
}

/** `x-amz-copy-source-range: bytes=first-last` (both given, inclusive). */
function copyRangeOf(header: string | undefined): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes=(\d{1,16})-(\d{1,16})\s*$/.exec(header);
  if (!m || Number(m[1]) > Number(m[2])) {
    throw new S3Error('InvalidArgument', 400, 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy', {
      ArgumentName: 'x-amz-copy-source-range',
      ArgumentValue: header.slice(0, 100),
    });
  }
  return { start: Number(m[1]), end: Number(m[2]) };
}

export function uploadPartCopy(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    const partNumber = partNumberOf(call);
    await call.authorize({ action: 'bucket:write', bucket });
    const range = copyRangeOf(call.header('x-amz-copy-source-range'));
    const { object, src } = await copySource(call, call.header('x-amz-copy-source')!);
    let part: StoredPart;
    try {
      part = await service(call).uploadPartCopy(bucket, key, uploadIdOf(call), partNumber, object, range, call.principal!);
    } catch (err) {
      if (err instanceof BlobdError && err.code === 'range_not_satisfiable') {
        throw new S3Error('InvalidArgument', 400, `Range specified is not valid for source object of size: ${object.size}`, { ArgumentName: 'x-amz-copy-source-range' });
      }
      throw err;
    }
    return xmlAnswer(call.c, 'CopyPartResult', { LastModified: iso(part.lastModified), ETag: quoted(part.etag) }, 200, {
      ...(src.revision !== undefined ? { 'x-amz-copy-source-version-id': String(object.revision) } : {}),
    });
  });
}

/** The parts a CompleteMultipartUpload body lists, in the order given (core checks the order). */
export function parseCompleteBody(text: string): { partNumber: number; etag: string }[] {
  const malformed = (why: string) =>
    new S3Error('MalformedXML', 400, `The XML you provided was not well-formed or did not validate against our published schema (${why}).`);
  const root = parseXml(text);
  if (root.name !== 'CompleteMultipartUpload') throw malformed('the root is not CompleteMultipartUpload');
  const parts = root.children
    .filter((el) => el.name === 'Part')
    .map((el) => {
      const n = child(el, 'PartNumber')?.text.trim() ?? '';
      const etag = child(el, 'ETag')?.text;
      if (!/^\d{1,5}$/.test(n) || etag === undefined) throw malformed('a Part needs a PartNumber and an ETag');
      return { partNumber: Number(n), etag };
    });
  if (parts.length === 0 || parts.length > 10_000) throw malformed('1 to 10000 parts');
  return parts;
}

export function completeMultipartUpload(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    const uploadId = uploadIdOf(call);
    await call.authorize({ action: 'bucket:write', bucket });
    const parts = parseCompleteBody(await readXmlBody(call.body()));
    // If-Match / If-None-Match: * on the target, as S3 takes them on CompleteMultipartUpload.
    const conditions = await writeConditionsNow(call, bucket, key);
    const location = `${new URL(call.c.req.url).origin}/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`;
    const work = service(call)
      .complete(bucket, key, uploadId, parts, call.principal!, conditions)
      .then(({ object, etag }) => ({
        version: String(object.revision),
        body: { Location: location, Bucket: bucket, Key: key, ETag: quoted(etag) } as XmlNode,
      }));
    return answerWhenDone(call.c, work, {
      root: 'CompleteMultipartUploadResult',
      resource: call.resource,
      requestId: call.requestId,
      keepAliveMs: COMPLETE_KEEPALIVE_MS,
      translate: (err) => toS3Error(translated(err, uploadId)),
    });
  });
}

/**
 * The answer of work that may take long (a complete writes the whole object): as any answer when it ends
 * within `keepAliveMs` — errors with their own status — else 200 at once, a space every `keepAliveMs`, and
 * then the result or an Error document in the 200 body, as S3 does (the SDKs read an Error there).
 */
export async function answerWhenDone(
  c: Context<AppEnv>,
  work: Promise<{ version?: string; body: XmlNode }>,
  o: { root: string; resource: string; requestId: string; keepAliveMs: number; translate: (err: unknown) => S3Error },
): Promise<Response> {
  const settled = work.then(
    (r) => ({ ok: true as const, r }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  let timer: NodeJS.Timeout | undefined;
  const early = await Promise.race([settled, new Promise<'slow'>((resolve) => (timer = setTimeout(resolve, o.keepAliveMs, 'slow')))]);
  clearTimeout(timer);
  if (early !== 'slow') {
    if (!early.ok) throw early.err;
    return xmlAnswer(c, o.root, early.r.body, 200, early.r.version !== undefined ? { 'x-amz-version-id': early.r.version } : {});
  }
  const encoder = new TextEncoder();
  const declaration = '<?xml version="1.0" encoding="UTF-8"?>\n';
  const withoutDeclaration = (doc: string) => (doc.startsWith(declaration) ? doc.slice(declaration.length) : doc);
  let tick: NodeJS.Timeout | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(declaration));
      tick = setInterval(() => controller.enqueue(encoder.encode(' ')), o.keepAliveMs);
      void settled.then((s) => {
        clearInterval(tick);
        let doc: string;
        if (s.ok) {
          doc = renderXml(o.root, s.r.body);
        } else {
          const e = o.translate(s.err);
          if (e.status >= 500) c.get('log')?.error({ err: s.err }, 'a long CompleteMultipartUpload failed after its answer started');
          doc = errorXml(e, o.resource, o.requestId);
        }
        try {
          controller.enqueue(encoder.encode(withoutDeclaration(doc)));
          controller.close();
        } catch {
          // the client went away; the work finished anyway
        }
      });
    },
    cancel() {
      clearInterval(tick);
    },
  });
  return c.body(stream, 200, { 'Content-Type': 'application/xml' });
}

export function abortMultipartUpload(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    await call.authorize({ action: 'bucket:write', bucket });
    await service(call).abort(bucket, key, uploadIdOf(call), call.principal!);
    return call.c.body(null, 204);
  });
}

export function listParts(call: S3Call): Promise<Response> {
  return run(call, async () => {
    const { bucket, key } = targetOf(call);
    await call.authorize({ action: 'bucket:read', bucket });
    const marker = integerParam(call, 'part-number-marker', 0);
    const maxParts = Math.min(integerParam(call, 'max-parts', 1000), 1000);
    const { upload, parts, truncated } = await service(call).listParts(bucket, key, uploadIdOf(call), { marker, maxParts });
    const enc = encodingOf(call);
    return xmlAnswer(call.c, 'ListPartsResult', {
      Bucket: bucket,
      Key: enc(key),
      UploadId: upload.uploadId,
      Initiator: person(upload.initiator),
      Owner: person(upload.initiator),
      StorageClass: 'STANDARD',
      PartNumberMarker: marker,
      NextPartNumberMarker: parts.at(-1)?.partNumber ?? marker,
      MaxParts: maxParts,
      IsTruncated: truncated,
      Part: parts.map((p) => ({ PartNumber: p.partNumber, LastModified: iso(p.lastModified), ETag: quoted(p.etag), Size: p.size })),
      ...(call.query.get('encoding-type') !== null ? { EncodingType: 'url' } : {}),
    });
  });
}

export function listMultipartUploads(call: S3Call): Promise<Response> {
  return run(call, async () => {
    if (call.bucket === null) throw new S3Error('InvalidRequest', 400, 'this operation names a bucket');
    const bucket = call.bucket;
    await call.authorize({ action: 'bucket:read', bucket });
    const q = call.query;
    const e = encodingOf(call);
    const encoded = q.get('encoding-type') !== null;
    const maxUploads = Math.min(integerParam(call, 'max-uploads', 1000), 1000);
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const keyMarker = q.get('key-marker') ?? '';
    const uploadIdMarker = q.get('upload-id-marker') ?? '';
    const page = await service(call).listUploads(bucket, {
      prefix,
      ...(delimiter !== '' ? { delimiter } : {}),
      ...(keyMarker !== '' ? { keyMarker } : {}),
      ...(uploadIdMarker !== '' ? { uploadIdMarker } : {}),
      maxUploads,
    });
    const upload = (u: MultipartUpload) => ({
      Key: e(u.key),
      UploadId: u.uploadId,
      Initiator: person(u.initiator),
      Owner: person(u.initiator),
      StorageClass: 'STANDARD',
      Initiated: iso(u.initiated),
    });
    return xmlAnswer(call.c, 'ListMultipartUploadsResult', {
      Bucket: bucket,
      KeyMarker: e(keyMarker),
      UploadIdMarker: uploadIdMarker,
      NextKeyMarker: e(page.nextKeyMarker ?? ''),
      NextUploadIdMarker: page.nextUploadIdMarker ?? '',
      ...(delimiter !== '' ? { Delimiter: e(delimiter) } : {}),
      ...(prefix !== '' ? { Prefix: e(prefix) } : {}),
      MaxUploads: maxUploads,
      IsTruncated: page.truncated,
      Upload: page.uploads.map(upload),
      CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: e(p) })),
      ...(encoded ? { EncodingType: 'url' } : {}),
    });
  });
}
