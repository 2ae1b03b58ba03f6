// Object metadata in S3's words, both ways: `x-amz-meta-*` ↔ properties, Content-Disposition ↔ filename,
// the representation headers S3 stores (Cache-Control, Content-Encoding, Content-Language, Expires) ↔
// `s3:`-prefixed properties, and the ETag clients compare. Translation only.
import type { ObjectRecord } from '../../storage/metadata-store.ts';
import { contentDisposition } from '../send-blob.ts';

/** Header names S3 stores with an object and answers back; kept as properties `s3:<name>`. */
const STORED_HEADERS = ['cache-control', 'content-encoding', 'content-language', 'expires'] as const;
/** The raw Content-Disposition when it is not the one blobd would write from the filename. */
const DISPOSITION_PROPERTY = 's3:content-disposition';
const META_PREFIX = 'x-amz-meta-';
/** An HTTP header name (RFC 9110 token): what x-amz-meta-NAME can carry back. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The ETag S3 clients see: the stored one (an MD5 of a single PUT, `md5-of-md5s-N` of a multipart upload),
 * or for content written through the native API (which stores none) the hex SHA-256 of the content.
 */
export function s3ETag(obj: { readonly etag: string | null; readonly digest: string }): string {
  return `"${obj.etag ?? obj.digest.slice(obj.digest.indexOf(':') + 1)}"`;
}

/**
 * A header value as Node hands it (latin1, one char per byte) as text: RFC 2047 `=?UTF-8?B?…?=` (what S3
 * answers non-ASCII metadata with) decoded, bytes that are valid UTF-8 read as UTF-8, anything else kept.
 */
function fromWire(value: string): string {
  const encoded = /^=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=$/i.exec(value.trim());
  if (encoded) value = Buffer.from(encoded[1]!, 'base64').toString('latin1');
  if (!/[\u0080-\u00ff]/.test(value)) return value;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

/** Text as a header value: ASCII as it is, anything else as S3 sends it, RFC 2047 `=?UTF-8?B?…?=`. */
function toWire(value: string): string {
  return /[^\u0020-\u007e]/.test(value) ? `=?UTF-8?B?${Buffer.from(value, 'utf8').toString('base64')}?=` : value;
}

/** `filename="…"` or `filename*=UTF-8''…` of a Content-Disposition, if it names one. */
export function dispositionFilename(header: string): string | undefined {
  const star = /filename\*\s*=\s*([^;]+)/i.exec(header)?.[1]?.trim();
  if (star) {
    const m = /^([\w!#$%&+^`{}~-]*)'[^']*'(.*)$/.exec(star);
    if (m) {
      try {
        return /^utf-8$/i.test(m[1]!) ? decodeURIComponent(m[2]!) : unescape(m[2]!);
      } catch {
        // fall back to filename=
      }
    }
  }
  const plain = /(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/i.exec(header)?.[1]?.trim();
  if (!plain) return undefined;
  const name = plain.startsWith('"') ? plain.slice(1, -1).replace(/\\(.)/g, '$1') : plain;
  return name === '' ? undefined : fromWire(name);
}

export interface WrittenMeta {
  readonly contentType: string | undefined;
  readonly filename: string | undefined;
  /** The whole property set of the new revision (S3 replaces an object's metadata on every write). */
  readonly properties: Record<string, string>;
}

/** What a PutObject / CopyObject (REPLACE) / CreateMultipartUpload says about the object, from its headers. */
export function metaFromHeaders(header: (name: string) => string | undefined, all: Iterable<[string, string]>): WrittenMeta {
  const properties: Record<string, string> = {};
  for (const [name, value] of all) {
    const lower = name.toLowerCase();
    if (lower.startsWith(META_PREFIX) && lower.length > META_PREFIX.length) properties[lower.slice(META_PREFIX.length)] = fromWire(value);
  }
  for (const h of STORED_HEADERS) {
    let v = header(h);
    // aws-chunked names how this request's body was framed, not the content: S3 drops it, keeps the rest.
    if (v !== undefined && h === 'content-encoding') {
      v = v
        .split(',')
        .map((c) => c.trim())
        .filter((c) => c !== '' && c.toLowerCase() !== 'aws-chunked')
        .join(', ');
      if (v === '') v = undefined;
    }
    if (v !== undefined) properties[`s3:${h}`] = fromWire(v);
  }
  const disposition = header('content-disposition');
  const filename = disposition === undefined ? undefined : dispositionFilename(disposition);
  if (disposition !== undefined && (filename === undefined || contentDisposition(filename) !== disposition)) {
    properties[DISPOSITION_PROPERTY] = fromWire(disposition);
  }
  return { contentType: header('content-type'), filename, properties };
}

/**
 * The headers S3 answers an object's GetObject / HeadObject with, besides content and conditions. A
 * reader who may not see private metadata (a public reader) gets no properties: neither `x-amz-meta-*`
 * nor what is stored among them.
 */
export function metaHeaders(obj: ObjectRecord, full: boolean): Record<string, string> {
  const headers: Record<string, string> = { 'Content-Type': headerSafeType(obj.contentType) ?? 'binary/octet-stream' };
  const props = full ? obj.properties : {};
  const raw = props[DISPOSITION_PROPERTY];
  if (typeof raw === 'string') headers['Content-Disposition'] = toWire(raw);
  else if (obj.filename) headers['Content-Disposition'] = contentDisposition(obj.filename);
  let missing = 0;
  for (const [name, value] of Object.entries(props)) {
    if (name === DISPOSITION_PROPERTY) continue;
    if (name.startsWith('s3:')) {
      const h = name.slice(3);
      if ((STORED_HEADERS as readonly string[]).includes(h) && typeof value === 'string' && !/[\u0000-\u001f\u007f]/.test(value)) {
        headers[h.replace(/(^|-)([a-z])/g, (_, d: string, ch: string) => d + ch.toUpperCase())] = toWire(value);
      }
      continue;
    }
    // Properties written natively may be any JSON: numbers and booleans read as text, anything else (or a
    // name or value no header can carry) is counted in x-amz-missing-meta, as S3 does for what it cannot send.
    const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
    if (text === undefined || !TOKEN.test(name) || /[\u0000-\u001f\u007f]/.test(text)) {
      missing++;
      continue;
    }
    headers[`${META_PREFIX}${name.toLowerCase()}`] = toWire(text);
  }
  if (missing > 0) headers['x-amz-missing-meta'] = String(missing);
  return headers;
}

/**
 * A stored content type as a header value, or undefined when it cannot be one (a native write may store any
 * text): the answer then says binary/octet-stream instead of failing.
 */
export function headerSafeType(type: string | null | undefined): string | undefined {
  return type && /^[\t\x20-\x7e]*$/.test(type) ? type : undefined;
}

/** An object's properties as S3 metadata strings, for CopyObject's COPY directive (kept as they are). */
export function propertiesOf(obj: ObjectRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj.properties)) out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}
