// Authentication and authorization at the HTTP edge. `authenticate` (mounted once, for /api) finds the
// credential a request carries — Bearer, X-API-Key, or Basic with the token as user name — and resolves
// the principal without deciding anything. Each route then declares what it needs with `requires(...)`;
// routes driven by an upload session's token declare `requires('upload-token')` and core checks it.
import type { MiddlewareHandler } from 'hono';
import { can, type Action, type Authenticator, type Principal } from '../../core/auth.ts';
import { BlobdError } from '../../core/errors.ts';
import type { AppEnv } from '../env.ts';

export function presentedToken(authorization: string | undefined, apiKey: string | undefined): string | null {
  if (apiKey) return apiKey.trim();
  if (!authorization) return null;
  const m = /^\s*(\S+)\s*(.*)$/s.exec(authorization);
  const scheme = m?.[1]?.toLowerCase();
  const value = m?.[2]?.trim() ?? '';
  if (scheme === 'bearer') return value;
  if (scheme === 'basic') {
    // The token is the user name; a token cannot contain ':' here (use Bearer or X-API-Key for those).
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? decoded : decoded.slice(0, colon);
  }
  return UNSUPPORTED_SCHEME;
}

/** Marks an Authorization header whose scheme is neither Bearer nor Basic. */
const UNSUPPORTED_SCHEME = '\u0000unsupported';

export function authenticate(auth: Authenticator, isPublicBucket: (bucket: string) => Promise<boolean>): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set('isPublicBucket', isPublicBucket);
    const token = presentedToken(c.req.header('authorization'), c.req.header('x-api-key'));
    if (token === UNSUPPORTED_SCHEME) {
      c.set('credentialError', new BlobdError('unauthorized', 'unsupported Authorization scheme: use Bearer or Basic, or X-API-Key'));
    } else if (token !== null) {
      try {
        c.set('principal', auth.authenticate(token));
      } catch (err) {
        c.set('credentialError', err as BlobdError);
      }
    }
    await next();
  };
}

/** The session token of an upload-session route (`PortSIP-Upload-Token` is an alias). */
export function uploadToken(header: (name: string) => string | undefined): string | null {
  return header('upload-token') ?? header('portsip-upload-token') ?? null;
}

/** Declares what a route needs; the declaration is the check. */
export function requires(need: Action | 'upload-token'): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (need === 'upload-token') {
      // The session token is a capability on its own: core verifies it against the session.
      return next();
    }
    const principal = c.var.principal;
    if (!principal) {
      // Anonymous reads of a public_read bucket's objects (a bad token is still a 401, not anonymous).
      const bucket = c.req.param('bucket');
      if (need === 'objects:read' && !c.var.credentialError && bucket && (await c.var.isPublicBucket(bucket))) return next();
      throw c.var.credentialError ?? new BlobdError('unauthorized', 'this route needs a token (Authorization: Bearer, X-API-Key or Basic)');
    }
    if (!can(principal, need)) throw new BlobdError('forbidden', `this token may not ${need}`);
    await next();
  };
}

/** The authenticated principal of a route that declared `requires(action)`. */
export function principalOf(c: { var: { principal?: Principal } }): Principal {
  if (!c.var.principal) throw new BlobdError('unauthorized', 'this route needs a token');
  return c.var.principal;
}
