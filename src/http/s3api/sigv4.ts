// AWS Signature Version 4 verification for the S3 front: the Authorization header and presigned query
// strings, checked against the secret of the access key the request names. Written against AWS's spec (no
// SDK code); never logs, echoes or returns the secret or the signature it expected.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../../core/auth.ts';
import type { S3Deps } from './context.ts';
import { S3Error } from './errors.ts';

export interface SigV4Request {
  readonly method: string;
  /** The path exactly as on the wire, still %-encoded. */
  readonly rawPath: string;
  /** The query after '?', as on the wire ('' when none). */
  readonly rawQuery: string;
  /** Lower-case names, as node gives them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** What the x-amz-content-sha256 of a request says about its body. */
export type PayloadMode =
  | { readonly kind: 'unsigned' }
  | { readonly kind: 'sha256'; readonly hex: string }
  | { readonly kind: 'chunked-signed'; readonly trailer: boolean }
  | { readonly kind: 'chunked-unsigned-trailer' };

export interface VerifiedRequest {
  readonly accessKeyId: string;
  readonly principal: Principal;
  readonly payload: PayloadMode;
  /** The derived key (kDate→kRegion→kService→kSigning): signs aws-chunked chunk signatures. */
  readonly signingKey: Buffer;
  /** The request's signature: the first link of the aws-chunked chunk signature chain. */
  readonly seedSignature: string;
  /** ISO 8601 basic (20130524T000000Z), as signed. */
  readonly amzDate: string;
  /** date/region/s3/aws4_request. */
  readonly scope: string;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
/** How far a header-signed request's date may be from our clock, each way (S3's value). */
export const MAX_SKEW_MS = 15 * 60_000;
/** The longest presigned URL lifetime S3 accepts (7 days). */
export const MAX_PRESIGNED_EXPIRES_S = 604_800;
const UNSIGNED = 'UNSIGNED-PAYLOAD';
const STREAMING_MODES: Readonly<Record<string, PayloadMode>> = {
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': { kind: 'chunked-signed', trailer: false },
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': { kind: 'chunked-signed', trailer: true },
  'STREAMING-UNSIGNED-PAYLOAD-TRAILER': { kind: 'chunked-unsigned-trailer' },
};
const ONLY_V4 = 'The authorization mechanism you have provided is not supported: only AWS4-HMAC-SHA256 is supported.';

/**
 * Verifies a request's SigV4 signature. Returns null when the request carries no credentials at all
 * (anonymous); throws S3Error for every other request that is not correctly signed by a known key.
 */
export async function verifyRequest(req: SigV4Request, keys: S3Deps['s3Keys'], now: Date = new Date()): Promise<VerifiedRequest | null> {
  const authorization = header(req.headers, 'authorization');
  const query = parseQuery(req.rawQuery);
  const presigned = query.some(([name]) => name === 'X-Amz-Algorithm' || name === 'X-Amz-Signature' || name === 'X-Amz-Credential');
  if (authorization !== undefined && presigned) throw new S3Error('InvalidArgument', 400, 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified');
  if (authorization !== undefined) return verifyHeaderAuth(req, authorization, query, keys, now);
  if (presigned) return verifyPresigned(req, query, keys, now);
  if (query.some(([name]) => name === 'AWSAccessKeyId' || name === 'Signature')) throw new S3Error('InvalidRequest', 400, ONLY_V4);
  return null;
}

interface Parsed {
  readonly accessKeyId: string;
  readonly date: string;
  readonly region: string;
  readonly amzDate: string;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
  readonly payloadHash: string;
}

async function verifyHeaderAuth(req: SigV4Request, authorization: string, query: Query, keys: S3Deps['s3Keys'], now: Date): Promise<VerifiedRequest> {
  const malformed = headerMalformed;
  const space = authorization.indexOf(' ');
  const algorithm = space < 0 ? authorization : authorization.slice(0, space);
  if (algorithm !== ALGORITHM) {
    if (algorithm === 'AWS' || algorithm.startsWith('AWS4-')) throw new S3Error('InvalidRequest', 400, ONLY_V4);
    throw malformed('it must start with AWS4-HMAC-SHA256');
  }
  const fields = new Map<string, string>();
  for (const part of authorization.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw malformed(`"${part.trim().slice(0, 64)}" is not name=value`);
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined) throw malformed('it needs Credential, SignedHeaders and Signature');
  const amzDate = requestDate(req.headers, malformed);
  const scope = parseCredential(credential, amzDate, malformed);
  const payloadHash = header(req.headers, 'x-amz-content-sha256');
  if (payloadHash === undefined) throw new S3Error('InvalidRequest', 400, 'Missing required header for this request: x-amz-content-sha256');
  const payload = payloadMode(payloadHash);
  const signed = parseSignedHeaders(signedHeaders, malformed);
  // The date must be signed, or a captured request could be replayed with a fresh one.
  if (header(req.headers, 'x-amz-date') === undefined && !signed.includes('date')) throw malformed('SignedHeaders must include date (or x-amz-date)');
  const unsigned = Object.keys(req.headers).filter((name) => name.startsWith('x-amz-') && !signed.includes(name));
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 403, 'There were headers present in the request which were not signed', { HeadersNotSigned: unsigned.join(', ') });
  }
  const skew = parseAmzDate(amzDate).getTime() - now.getTime();
  if (Math.abs(skew) > MAX_SKEW_MS) {
    throw new S3Error('RequestTimeTooSkewed', 403, 'The difference between the request time and the current time is too large.', {
      RequestTime: amzDate,
      ServerTime: now.toISOString(),
      MaxAllowedSkewMilliseconds: String(MAX_SKEW_MS),
    });
  }
  const parsed: Parsed = { ...scope, amzDate, signedHeaders: signed, signature: signature.toLowerCase(), payloadHash };
  return finish(req, query, parsed, payload, keys);
}

/** x-amz-* headers a presigned request may carry unsigned: checks of the body it sends, and nothing more. */
const PRESIGNED_UNSIGNED_OK = /^x-amz-(?:content-sha256|checksum-[a-z0-9]+|sdk-checksum-algorithm|date|user-agent)$/;

async function verifyPresigned(req: SigV4Request, query: Query, keys: S3Deps['s3Keys'], now: Date): Promise<VerifiedRequest> {
  const malformed = queryMalformed;
  const param = (name: string): string => {
    const found = query.filter(([n]) => n === name);
    if (found.length !== 1) throw malformed(`Query-string authentication version 4 requires exactly one ${name} parameter.`);
    return found[0]![1];
  };
  const algorithm = param('X-Amz-Algorithm');
  if (algorithm !== ALGORITHM) throw new S3Error('InvalidRequest', 400, ONLY_V4);
  const credential = param('X-Amz-Credential');
  const amzDate = param('X-Amz-Date');
  if (!AMZ_DATE_RE.test(amzDate) || Number.isNaN(parseAmzDate(amzDate).getTime())) throw malformed('X-Amz-Date must be in the ISO8601 basic format (YYYYMMDDTHHMMSSZ).');
  const expiresText = param('X-Amz-Expires');
  const signedHeaders = param('X-Amz-SignedHeaders');
  const signature = param('X-Amz-Signature');
  const scope = parseCredential(credential, amzDate, malformed);
  if (!/^\d{1,7}$/.test(expiresText)) throw malformed('X-Amz-Expires must be a non-negative integer.');
  const expires = Number(expiresText);
  if (expires < 1) throw malformed('X-Amz-Expires must be at least 1 second.');
  if (expires > MAX_PRESIGNED_EXPIRES_S) throw malformed('X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds.');
  const signedAt = parseAmzDate(amzDate).getTime();
  if (signedAt - now.getTime() > MAX_SKEW_MS) throw new S3Error('AccessDenied', 403, 'Request is not valid yet');
  if (now.getTime() > signedAt + expires * 1000) {
    throw new S3Error('AccessDenied', 403, 'Request has expired', {
      'X-Amz-Expires': expiresText,
      Expires: new Date(signedAt + expires * 1000).toISOString(),
      ServerTime: now.toISOString(),
    });
  }
  // A presigner may sign the payload hash as a query parameter; without it the payload is unsigned.
  const hashes = query.filter(([n]) => n === 'X-Amz-Content-Sha256');
  const payloadHash = hashes.length === 1 ? hashes[0]![1] : UNSIGNED;
  const payload = payloadMode(payloadHash);
  if (payload.kind !== 'unsigned' && payload.kind !== 'sha256') throw malformed('A presigned request cannot carry an aws-chunked body.');
  const signed = parseSignedHeaders(signedHeaders, malformed);
  // Whoever holds a presigned URL may add headers; an x-amz-* header the signer did not sign would widen
  // what the URL does (x-amz-copy-source turns a PUT into a copy of anything the signer may read,
  // x-amz-meta-* and x-amz-metadata-directive rewrite metadata). Only headers that can merely make the
  // request fail (integrity checks) or say nothing (date, user agent) may go unsigned.
  const unsigned = Object.keys(req.headers).filter((name) => name.startsWith('x-amz-') && !signed.includes(name) && !PRESIGNED_UNSIGNED_OK.test(name));
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 403, 'There were headers present in the request which were not signed', { HeadersNotSigned: unsigned.join(', ') });
  }
  const parsed: Parsed = { ...scope, amzDate, signedHeaders: signed, signature: signature.toLowerCase(), payloadHash };
  return finish(req, query.filter(([n]) => n !== 'X-Amz-Signature'), parsed, payload, keys);
}

async function finish(req: SigV4Request, query: Query, p: Parsed, payload: PayloadMode, keys: S3Deps['s3Keys']): Promise<VerifiedRequest> {
  const key = await keys.lookup(p.accessKeyId);
  if (key === null) throw new S3Error('InvalidAccessKeyId', 403, 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: p.accessKeyId });
  const scope = `${p.date}/${p.region}/s3/aws4_request`;
  const signingKey = deriveSigningKey(key.secret, p.date, p.region);
  const presented = /^[0-9a-f]{64}$/.test(p.signature) ? Buffer.from(p.signature, 'hex') : undefined;
  const canonicalQuery = canonicalQueryString(query);
  const canonicalHeaders = p.signedHeaders.map((name) => `${name}:${canonicalHeaderValue(req.headers[name])}\n`).join('');
  const tail = `${canonicalQuery}\n${canonicalHeaders}\n${p.signedHeaders.join(';')}\n${p.payloadHash}`;
  // Clients disagree on how a path is encoded (the SDKs encode each segment, others leave some characters
  // as typed): S3 signs the path as sent, so try that first, then AWS's canonical encoding of the same bytes.
  let matched = false;
  for (const uri of canonicalUris(req.rawPath)) {
    const canonicalRequest = `${req.method}\n${uri}\n${tail}`;
    const stringToSign = `${ALGORITHM}\n${p.amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
    const expected = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest();
    if (presented !== undefined && timingSafeEqual(expected, presented)) {
      matched = true;
      break;
    }
  }
  if (!matched) {
    throw new S3Error('SignatureDoesNotMatch', 403, 'The request signature we calculated does not match the signature you provided. Check your key and signing method.', { AWSAccessKeyId: p.accessKeyId });
  }
  return { accessKeyId: p.accessKeyId, principal: key.principal, payload, signingKey, seedSignature: p.signature, amzDate: p.amzDate, scope };
}

function headerMalformed(why: string): S3Error {
  return new S3Error('AuthorizationHeaderMalformed', 400, `The authorization header is malformed; ${why}`);
}

function queryMalformed(why: string): S3Error {
  return new S3Error('AuthorizationQueryParametersError', 400, why);
}

/** The x-amz-content-sha256 value as a payload mode. */
function payloadMode(value: string): PayloadMode {
  if (value === UNSIGNED) return { kind: 'unsigned' };
  if (/^[0-9a-fA-F]{64}$/.test(value)) return { kind: 'sha256', hex: value.toLowerCase() };
  const streaming = STREAMING_MODES[value];
  if (streaming !== undefined) return streaming;
  throw new S3Error('InvalidArgument', 400, 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a SHA-256 in hex, STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] or STREAMING-UNSIGNED-PAYLOAD-TRAILER', {
    ArgumentName: 'x-amz-content-sha256',
  });
}

/** The payload mode of a request nobody signed (anonymous): what its x-amz-content-sha256 says, if anything. */
export function anonymousPayloadMode(headers: SigV4Request['headers']): PayloadMode {
  const value = header(headers, 'x-amz-content-sha256');
  if (value === undefined) return { kind: 'unsigned' };
  const mode = payloadMode(value);
  if (mode.kind === 'chunked-signed') throw new S3Error('InvalidRequest', 400, 'A signed aws-chunked body needs a signed request.');
  return mode;
}

const AMZ_DATE_RE = /^\d{8}T\d{6}Z$/;

function parseAmzDate(amzDate: string): Date {
  const iso = `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`;
  return new Date(iso);
}

/** x-amz-date, or the Date header (SigV4 allows either); in ISO 8601 basic as the string to sign wants it. */
function requestDate(headers: SigV4Request['headers'], malformed: (why: string) => S3Error): string {
  const amz = header(headers, 'x-amz-date');
  if (amz !== undefined) {
    if (!AMZ_DATE_RE.test(amz) || Number.isNaN(parseAmzDate(amz).getTime())) throw malformed('X-Amz-Date must be in the ISO8601 basic format (YYYYMMDDTHHMMSSZ)');
    return amz;
  }
  const date = header(headers, 'date');
  const ms = date === undefined ? Number.NaN : Date.parse(date);
  if (Number.isNaN(ms)) throw new S3Error('AccessDenied', 403, 'AWS authentication requires a valid Date or x-amz-date header');
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** Credential=AKID/YYYYMMDD/region/s3/aws4_request; any region is accepted, the service must be s3. */
function parseCredential(credential: string, amzDate: string, malformed: (why: string) => S3Error): { accessKeyId: string; date: string; region: string } {
  const parts = credential.split('/');
  if (parts.length !== 5 || parts.some((part) => part === '')) throw malformed('the Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/s3/aws4_request');
  const [accessKeyId, date, region, service, terminal] = parts as [string, string, string, string, string];
  if (!/^\d{8}$/.test(date)) throw malformed(`incorrect credential date "${date.slice(0, 16)}"`);
  if (date !== amzDate.slice(0, 8)) throw malformed(`invalid credential date "${date}": it is not the same as X-Amz-Date`);
  if (service !== 's3') throw malformed(`incorrect service "${service.slice(0, 32)}": this endpoint is s3`);
  if (terminal !== 'aws4_request') throw malformed('incorrect terminal: the Credential must end with aws4_request');
  if (region.length > 64) throw malformed('the region is too long');
  return { accessKeyId, date, region };
}

function parseSignedHeaders(list: string, malformed: (why: string) => S3Error): string[] {
  const names = list.split(';').map((name) => name.trim().toLowerCase());
  if (names.some((name) => !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name))) throw malformed('SignedHeaders must be header names separated by ";"');
  if (!names.includes('host')) throw malformed('SignedHeaders must include host');
  return names;
}

/** One header's value; repeated headers joined with ',' as the canonical request wants. */
function header(headers: SigV4Request['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** Trimmed, inner whitespace runs collapsed to one space; repeated headers joined with ','. */
function canonicalHeaderValue(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.map(collapseWhitespace).join(',') : collapseWhitespace(value);
}

/** Most values have nothing to collapse: one test instead of a trim and a replace (per header, per request). */
function collapseWhitespace(value: string): string {
  return /^\s|\s$|\s\s|[\t\n\r\f\v]/.test(value) ? value.trim().replace(/\s+/g, ' ') : value;
}

type Query = ReadonlyArray<readonly [string, string]>;

/** The query's parameters, %-decoded (a bad escape stays as typed), in wire order. */
function parseQuery(rawQuery: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (rawQuery === '') return out;
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    out.push([percentDecode(name).toString('utf8'), percentDecode(value).toString('utf8')]);
  }
  return out;
}

function canonicalQueryString(query: Query): string {
  return query
    .map(([name, value]) => [uriEncode(Buffer.from(name, 'utf8'), true), uriEncode(Buffer.from(value, 'utf8'), true)] as const)
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** The path as sent, then (when different) AWS's canonical encoding of its decoded bytes; the second only if asked. */
function* canonicalUris(rawPath: string): Generator<string> {
  const path = rawPath === '' ? '/' : rawPath;
  yield path;
  const canonical = uriEncode(percentDecode(path), false);
  if (canonical !== path) yield canonical;
}

/** %XX escapes to bytes; anything else (a bad escape too) as its UTF-8 bytes. Works on bytes so keys that are not UTF-8 still round-trip. */
function percentDecode(text: string): Buffer {
  if (!text.includes('%')) return Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  let from = 0;
  // Bounded: each match moves past its escape; the text between escapes is copied as UTF-8.
  for (const match of text.matchAll(/%([0-9A-Fa-f]{2})/g)) {
    if (match.index > from) parts.push(Buffer.from(text.slice(from, match.index), 'utf8'));
    parts.push(Buffer.of(parseInt(match[1]!, 16)));
    from = match.index + 3;
  }
  if (from < text.length) parts.push(Buffer.from(text.slice(from), 'utf8'));
  return Buffer.concat(parts);
}

const HEX = '0123456789ABCDEF';

/** AWS's UriEncode: A-Z a-z 0-9 - . _ ~ as they are, every other byte %XX upper-case; '/' kept in paths. */
function uriEncode(bytes: Buffer, encodeSlash: boolean): string {
  let out = '';
  for (const b of bytes) {
    const unreserved =
      (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
    if (unreserved || (b === 0x2f && !encodeSlash)) out += String.fromCharCode(b);
    else out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
  }
  return out;
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Derived keys by (secret, date, region): the HMAC chain is four HMACs per request otherwise. Bounded. */
const signingKeys = new Map<string, Buffer>();
const MAX_SIGNING_KEYS = 256;

function deriveSigningKey(secret: string, date: string, region: string): Buffer {
  const cacheKey = `${date}\n${region}\n${secret}`;
  const cached = signingKeys.get(cacheKey);
  if (cached !== undefined) return cached;
  const kDate = createHmac('sha256', `AWS4${secret}`).update(date).digest();
  const kRegion = createHmac('sha256', kDate).update(region).digest();
  const kService = createHmac('sha256', kRegion).update('s3').digest();
  const kSigning = createHmac('sha256', kService).update('aws4_request').digest();
  if (signingKeys.size >= MAX_SIGNING_KEYS) signingKeys.delete(signingKeys.keys().next().value!);
  signingKeys.set(cacheKey, kSigning);
  return kSigning;
}
