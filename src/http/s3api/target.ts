// Where an S3 request points: bucket and key from the raw path (path style) or from Host (virtual-host
// style), and the query as S3 reads it. Decoded here, once, from the bytes the client sent: a key may hold
// '//', end in '/', or contain anything percent-encoded, which URL normalization would change.
import { S3Error } from './errors.ts';

export interface Target {
  readonly bucket: string | null;
  readonly key: string | null;
  /** `/bucket/key` decoded, as error bodies name the resource. */
  readonly resource: string;
}

const invalidUri = () => new S3Error('InvalidURI', 400, "Couldn't parse the specified URI.");

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalidUri();
  }
}

/** The raw path and query of a request target (`/b/k?x=1`), without normalizing either. */
export function splitTarget(url: string): { rawPath: string; rawQuery: string } {
  // An absolute-form target (`http://host/b/k`), which proxies may send: its path only.
  const target = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '') || '/' : url;
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const rawQuery = q < 0 ? '' : target.slice(q + 1);
  return { rawPath: rawPath.startsWith('/') ? rawPath : `/${rawPath}`, rawQuery: rawQuery.replace(/#.*$/, '') };
}

/** Bucket and key of a request: virtual-host style when `domain` is set and Host is `<bucket>.<domain>`. */
export function parseTarget(rawPath: string, host: string | undefined, domain: string | undefined): Target {
  const hostname = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  const suffix = domain ? `.${domain.toLowerCase().replace(/^\.+|\.+$/g, '')}` : undefined;
  let bucket: string | null;
  let rawKey: string;
  if (suffix && hostname.endsWith(suffix) && hostname.length > suffix.length) {
    bucket = hostname.slice(0, -suffix.length);
    rawKey = rawPath.slice(1);
  } else {
    const rest = rawPath.slice(1);
    const slash = rest.indexOf('/');
    const rawBucket = slash < 0 ? rest : rest.slice(0, slash);
    bucket = rawBucket === '' ? null : decode(rawBucket);
    rawKey = slash < 0 ? '' : rest.slice(slash + 1);
  }
  const key = rawKey === '' ? null : decode(rawKey);
  if (bucket === null) return { bucket: null, key: null, resource: '/' };
  return { bucket, key, resource: key === null ? `/${bucket}` : `/${bucket}/${key}` };
}

/**
 * The query's parameters, percent-decoded; '+' stays '+' (SigV4 clients encode a space as %20, and S3
 * reads a literal '+' as '+'). A parameter without '=' is present with the value ''.
 */
export function parseQuery(rawQuery: string): URLSearchParams {
  const params = new URLSearchParams();
  if (rawQuery === '') return params;
  const parts = rawQuery.split('&');
  if (parts.length > 1000) throw new S3Error('InvalidArgument', 400, 'too many query parameters');
  for (const part of parts) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    params.append(decode(eq < 0 ? part : part.slice(0, eq)), eq < 0 ? '' : decode(part.slice(eq + 1)));
  }
  return params;
}
