// One key, one URL: the raw request target is checked before routing and query parsing decode it, since
// both keep what they cannot decode literally — a second spelling of some key.
import type { MiddlewareHandler } from 'hono';
import { BlobdError } from '../core/errors.ts';
import type { AppEnv } from './env.ts';

/** The request target as the client sent it (before any decoding). */
function rawTarget(c: Parameters<MiddlewareHandler<AppEnv>>[0]): string {
  if (c.env?.incoming?.url) return c.env.incoming.url;
  const url = new URL(c.req.url);
  return url.pathname + url.search;
}

/**
 * One key, one URL. The raw request target is checked before routing decodes it: URL parsing resolves
 * percent-encoded dot segments (`a/%2e%2e/x` → `x`), which would aim the request at another key, and a
 * percent-encoding that is not UTF-8 (`%FF`, overlong forms, surrogates) would be kept literally — a
 * second spelling of some key. Both are `400 invalid_key`.
 */
export const checkKeyTarget: MiddlewareHandler<AppEnv> = async (c, next) => {
  const raw = rawTarget(c).split(/[?#]/)[0]!;
  if (/\/(?:\.|%2e){1,2}(?=\/|$)/i.test(raw)) throw new BlobdError('invalid_key', 'a key has no . or .. segment');
  try {
    decodeURIComponent(raw);
  } catch {
    throw new BlobdError('invalid_key', 'the percent-encoding of the key is not valid UTF-8');
  }
  await next();
};

/** Query parameters that name keys (`key=`, `prefix=`) must decode as UTF-8 too: `400 invalid_key`. */
export function checkKeyQuery(...names: string[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const raw = rawTarget(c);
    const query = raw.includes('?') ? raw.slice(raw.indexOf('?') + 1).split('#')[0]! : '';
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      if (!names.includes(eq < 0 ? pair : pair.slice(0, eq))) continue;
      try {
        decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '));
      } catch {
        throw new BlobdError('invalid_key', `the percent-encoding of ${pair.slice(0, eq)}= is not valid UTF-8`);
      }
    }
    await next();
  };
}
