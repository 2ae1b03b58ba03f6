// CORS for the configured origins (--cors-origin). A preflight carries no credential and is answered here,
// except on a path whose route answers OPTIONS itself (tus discovery): there the route runs and the CORS
// headers are added to its answer, so a browser and a plain client discover the same thing.
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env.ts';

const ALLOW_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
/** The marker of @hono/node-server's RESPONSE_ALREADY_SENT: the route wrote the response itself. */
const ALREADY_SENT = 'x-hono-already-sent';

/**
 * Request headers a browser client of blobd sends: session, tus and idempotency headers among them.
 * tus-js-client and Uppy also send Upload-Concat (parallelUploads: blobd refuses it with a 400 the page
 * must be able to read, not a failed preflight) and X-HTTP-Method-Override (overridePatchMethod).
 */
export const CORS_ALLOW_HEADERS = [
  'Authorization', 'Content-Type', 'X-API-Key', 'X-Request-Id', 'X-Requested-With', 'Idempotency-Key', 'Range', 'If-Match', 'If-None-Match',
  'Upload-Token', 'PortSIP-Upload-Token', 'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Defer-Length',
  'Upload-Checksum', 'Upload-Concat', 'Tus-Resumable', 'X-HTTP-Method-Override',
];

/** Response headers a browser client must be able to read (every header of a tus answer among them). */
export const CORS_EXPOSE_HEADERS = [
  'Location', 'ETag', 'Upload-Offset', 'Upload-Length', 'Upload-Expires', 'Upload-Token', 'Upload-State',
  'Upload-Defer-Length', 'Upload-Metadata', 'Blobd-Digest',
  'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm',
  'Content-Range', 'Content-Disposition', 'Content-Length', 'X-Request-Id', 'Idempotent-Replayed', 'WWW-Authenticate',
];

/**
 * `answersOptions(path)`: a route answers OPTIONS on this path itself. Mounted before authentication, which
 * does not judge a preflight's credentials (it has none; a signed URL's signature is for the method it was
 * signed for).
 */
export function cors(origins: readonly string[], answersOptions: (path: string) => boolean): MiddlewareHandler<AppEnv> {
  const allowed = new Set(origins);
  return async (c, next) => {
    const origin = c.req.header('origin');
    const preflight = c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined;
    const cors: [string, string][] = [];
    if (origin !== undefined && allowed.has(origin)) {
      cors.push(['Access-Control-Allow-Origin', origin], ['Access-Control-Expose-Headers', CORS_EXPOSE_HEADERS.join(',')]);
    }
    if (preflight) {
      cors.push(
        ['Access-Control-Allow-Methods', ALLOW_METHODS.join(',')],
        ['Access-Control-Allow-Headers', CORS_ALLOW_HEADERS.join(',')],
        ['Access-Control-Max-Age', '600'],
      );
    }
    if (c.req.method === 'OPTIONS' && !answersOptions(c.req.path)) {
      return new Response(null, { status: 204, headers: [...cors, ['Vary', 'Origin']] });
    }
    cors.push(['Vary', 'Origin']);
    // Before the route, as prepared headers: a download that writes its head straight to the socket
    // (send-blob.ts) takes them from there. c.header, not c.res.headers: touching c.res now would make Hono
    // merge it into that download's already-sent marker, which its node adapter then answers a second time.
    for (const [name, value] of cors) c.header(name, value);
    await next();
    // Again on what was answered (a Response built whole, such as an idempotent replay, has none of them),
    // unless its head is on the wire already.
    if (c.res.headers.has(ALREADY_SENT)) return;
    for (const [name, value] of cors) {
      if (name !== 'Vary') c.header(name, value);
      else if (!/\borigin\b/i.test(c.res.headers.get('Vary') ?? '')) c.header('Vary', value, { append: true });
    }
  };
}
