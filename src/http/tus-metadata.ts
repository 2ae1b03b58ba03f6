// tus `Upload-Metadata`: checks what a client sends (comma-separated `key base64value` pairs) and decodes the
// keys blobd interprets. Values are bytes: only those keys must be UTF-8; any other key is the client's own
// and is kept and returned as sent, never decoded.
import { BlobdError } from '../core/errors.ts';

/** The keys whose values mean something to blobd (SPEC §3.5). */
const INTERPRETED = new Set(['filename', 'filetype', 'bucket', 'key', 'temporary', 'digest']);
/** Padded base64 (RFC 4648 §4), as tus clients send it and tusd decodes it: "aGkhx" is not base64. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const KEY = /^[\x21-\x7e]+$/;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The interpreted keys of `Upload-Metadata`, decoded; throws 400 on a malformed header. */
export function parseMetadata(header: string | undefined): Record<string, string> {
  // No prototype: a key named toString or constructor is just a key.
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (!header?.trim()) return out;
  const seen = new Set<string>();
  for (const pair of header.split(',')) {
    const [key, value, extra] = pair.trim().split(' ');
    if (!key || extra !== undefined || !KEY.test(key)) {
      throw new BlobdError('invalid_request', 'Upload-Metadata is comma-separated "key base64value" pairs');
    }
    if (value !== undefined && !BASE64.test(value)) throw new BlobdError('invalid_request', `Upload-Metadata ${key} is not base64`);
    if (seen.has(key)) throw new BlobdError('invalid_request', `Upload-Metadata names ${key} twice`);
    seen.add(key);
    if (!INTERPRETED.has(key)) continue;
    try {
      // Strict UTF-8: a lenient decoder would turn bad bytes into U+FFFD, another name than the client meant.
      out[key] = value === undefined ? '' : STRICT_UTF8.decode(Buffer.from(value, 'base64'));
    } catch {
      throw new BlobdError('invalid_request', `Upload-Metadata ${key} is not UTF-8`);
    }
  }
  return out;
}

/** blobd's own view of a session as `Upload-Metadata`, for a session whose client attached none. */
export function encodeMetadata(pairs: Record<string, string | null>): string {
  return Object.entries(pairs)
    .filter((e): e is [string, string] => e[1] !== null)
    .map(([k, v]) => `${k} ${Buffer.from(v, 'utf8').toString('base64')}`)
    .join(',');
}
