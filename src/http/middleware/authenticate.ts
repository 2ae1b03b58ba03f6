// Authentication and authorization at the HTTP edge. `authenticate` (mounted once, for every path) finds
// the credential a request carries — a signed URL, Bearer, X-API-Key, or Basic with the token as user name —
// and resolves the principal without deciding anything; only a broken signature is refused at once. Each
// route then declares what it needs with `requires(...)`, and core's `AccessControl.authorize` decides.
import type { Context, MiddlewareHandler } from 'hono';
import type { AccessControl, Need, Principal } from '../../core/auth.ts';
import { tooLarge } from '../../core/byte-limit.ts';
import { BlobdError } from '../../core/errors.ts';
import type { IdempotencyService } from '../../core/idempotency.ts';
import { SignedUrls, type Grant } from '../../core/signed-urls.ts';
import type { AppEnv } from '../env.ts';
import { declaredLength, hasBody } from '../request-body.ts';

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

/** A signed request's body must fit what the signer allowed: checked before anything reads it. */
function enforceGrant(c: Context<AppEnv>, grant: Grant): void {
  const type = c.req.header('content-type');
  // A tus body is always application/offset+octet-stream: there the grant's content_type binds the type of
  // the session the URL creates (src/http/tus.ts), not the body's envelope.
  const tusBody = c.req.path.startsWith('/api/tus') && /^application\/offset\+octet-stream\b/i.test(type ?? '');
  if (grant.contentType !== undefined && !tusBody && (hasBody(c) || type !== undefined)) {
    // The whole header, parameters included: what is stored is what the signer allowed.
    if ((type ?? '').trim().toLowerCase() !== grant.contentType.toLowerCase()) {
      throw new BlobdError('signature_invalid', `this signed URL allows only Content-Type ${grant.contentType}`);
    }
  }
  const length = declaredLength(c);
  if (grant.maxSize !== undefined && length !== undefined && length > grant.maxSize) throw tooLarge(grant.maxSize, "signed URL's max_size");
}

export function authenticate(access: AccessControl, signedUrls: SignedUrls, idempotency: IdempotencyService): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set('access', access);
    c.set('idempotency', idempotency);
    const dryRun = c.env?.dryRun;
    if (dryRun) {
      c.set('principal', dryRun.principal);
      return next();
    }
    // A browser's CORS preflight carries no credential, and the query of the signed URL it is sent to was
    // signed for the method it asks about, not for OPTIONS: it is not judged (it only reaches tus discovery).
    if (c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined) return next();
    const url = new URL(c.req.url);
    if (SignedUrls.isSigned(url.searchParams)) {
      // A signed request is judged by its signature alone, on every path: a broken one is refused here.
      const { principal, grant } = await signedUrls.verify(c.req.method, url.pathname, url.searchParams);
      enforceGrant(c, grant);
      c.set('principal', principal);
      c.set('grant', grant);
      return next();
    }
    const token = presentedToken(c.req.header('authorization'), c.req.header('x-api-key'));
    if (token === UNSUPPORTED_SCHEME) {
      c.set('credentialError', new BlobdError('unauthorized', 'unsupported Authorization scheme: use Bearer or Basic, or X-API-Key'));
    } else if (token !== null) {
      try {
        c.set('principal', await access.authenticate(token));
      } catch (err) {
        if (!(err instanceof BlobdError)) throw err;
        c.set('credentialError', err);
      }
    }
    await next();
  };
}

/** The session token of an upload-session route (`PortSIP-Upload-Token` is an alias). */
export function uploadToken(header: (name: string) => string | undefined): string | null {
  return header('upload-token') ?? header('portsip-upload-token') ?? null;
}

/** Marks the middleware `requires` makes, so the app can check that every route declares its need. */
export const DECLARES_ACCESS = Symbol('declares access');

/**
 * `public`: anyone, no credential (tus discovery); `upload-token`: the session's token opens it;
 * `upload-token-or-principal`: the session's token if one is sent, else any authenticated principal, of
 * whom core accepts only the session's creator and admins (cancelling a session whose token was lost).
 */
export type NeedOf = Need | ((c: Context<AppEnv>) => Need) | 'upload-token' | 'upload-token-or-principal' | 'public';

/** A route needs `action` on the bucket named by its `bucket` path parameter. */
export function onBucket(action: 'bucket:read' | 'bucket:write' | 'bucket:delete' | 'object:read'): (c: Context<AppEnv>) => Need {
  return (c) => ({ action, bucket: c.req.param('bucket') ?? '' });
}

/**
 * Declares what a route needs; the declaration is the check. Before a URL is signed, the same
 * declaration answers "may the signer do this?" (a dry run that stops here).
 */
export function requires(need: NeedOf, opts: { signable?: boolean } = {}): MiddlewareHandler<AppEnv> {
  const middleware: MiddlewareHandler<AppEnv> = async (c, next) => {
    const dryRun = c.env?.dryRun !== undefined;
    if (need === 'public') {
      if (dryRun) throw new BlobdError('invalid_request', 'this route needs no credential; there is nothing to sign');
      return next();
    }
    if (need === 'upload-token') {
      // The session token is a capability on its own: core verifies it against the session.
      if (dryRun) throw new BlobdError('invalid_request', 'upload session routes are opened by their upload token; there is nothing to sign');
      return next();
    }
    if (need === 'upload-token-or-principal') {
      if (dryRun) throw new BlobdError('invalid_request', "an upload session is cancelled with its upload token or its creator's own token; there is nothing to sign");
      if (uploadToken((name) => c.req.header(name)) !== null) return next();
      if (c.get('grant')) throw new BlobdError('forbidden', 'this route cannot be used through a signed URL');
      await c.get('access').authorize(c.get('principal'), c.get('credentialError'), { action: 'authenticated' });
      return next();
    }
    // Routes that mint credentials: through a signature, one request would become lasting access.
    // Decided here, on the routed path, so no spelling of the path can get around it.
    if (opts.signable === false) {
      if (dryRun) throw new BlobdError('invalid_request', 'tokens and signed URLs cannot be created through a signed URL');
      if (c.get('grant')) throw new BlobdError('forbidden', 'this route cannot be used through a signed URL');
    }
    await c.get('access').authorize(c.get('principal'), c.get('credentialError'), typeof need === 'function' ? need(c) : need);
    if (dryRun) return c.body(null, 204, { [DRY_RUN_ALLOWED]: '1' });
    await next();
  };
  return Object.assign(middleware, { [DECLARES_ACCESS]: true });
}

/** The header a dry run answers with when the principal may make the request. */
export const DRY_RUN_ALLOWED = 'x-blobd-dry-run-allowed';

/** The authenticated principal of a route that declared `requires(action)`. */
export function principalOf(c: { get(key: 'principal'): Principal | undefined }): Principal {
  const principal = c.get('principal');
  if (!principal) throw new BlobdError('unauthorized', 'this route needs a token');
  return principal;
}
