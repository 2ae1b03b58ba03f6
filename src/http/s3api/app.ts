// createS3App(deps) → the Hono app of the S3-compatible API, served on a listener of its own. Per request:
// a request id (x-amz-request-id, x-amz-id-2 on every answer), the target decoded from the raw path (or
// Host), SigV4 verified on the raw request, the operation chosen (dispatch.ts) and run; every failure is an
// S3 XML error. Translation only: core decides every rule, including who may do what.
import type { Context } from 'hono';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Need } from '../../core/auth.ts';
import { BlobdError } from '../../core/errors.ts';
import type { AppEnv } from '../env.ts';
import { settleUnreadBody } from '../errors.ts';
import { requestLog } from '../middleware/request-log.ts';
import { requestBody } from '../request-body.ts';
import type { S3Call, S3Deps } from './context.ts';
import { operationFor, type MultipartOperations } from './dispatch.ts';
import { errorXml, S3Error, toS3Error } from './errors.ts';
import { signedSha256, verifiedBody, type VerifiedBody } from './payload.ts';
import { verifyRequest } from './sigv4.ts';
import { parseQuery, parseTarget, splitTarget, type Target } from './target.ts';

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/** The headers as node parsed them; for a Request not from node:http (tests), rebuilt from the Web headers. */
function headersOf(c: Context<AppEnv>): Headers {
  return c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers);
}

/**
 * The headers for the signature: a header sent more than once is the list of its values, which SigV4 joins
 * with ',' (node joins most repeats with ', ', and keeps only the first of some). Built only when some name
 * repeats: one comparison per request otherwise.
 */
function signingHeadersOf(c: Context<AppEnv>, headers: Headers): Headers {
  const incoming = c.env?.incoming;
  if (!incoming || incoming.rawHeaders.length / 2 === Object.keys(headers).length) return headers;
  const out: Record<string, string | string[]> = {};
  for (const [name, values] of Object.entries(incoming.headersDistinct)) {
    if (!values) continue;
    // Node keeps only the first of these: what the request did would not be what its signature covers.
    if (values.length > 1 && SINGLE_VALUED.has(name)) throw new S3Error('InvalidArgument', 400, `the ${name} header was sent more than once`);
    out[name] = values.length === 1 ? values[0]! : values;
  }
  return out;
}

/** Headers node:http keeps the first of when they repeat (IncomingMessage.headers). */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

/** What the client says the content's length is: x-amz-decoded-content-length for aws-chunked bodies. */
function declaredSizeOf(c: Context<AppEnv>): number | undefined {
  const sha = c.req.header('x-amz-content-sha256') ?? '';
  const chunked = sha.startsWith('STREAMING-') || /(^|,)\s*aws-chunked\s*(,|$)/i.test(c.req.header('content-encoding') ?? '');
  const value = chunked ? c.req.header('x-amz-decoded-content-length') : c.req.header('content-length');
  return value !== undefined && /^\d{1,16}$/.test(value.trim()) ? Number(value) : undefined;
}

/** The S3 error answer for anything a request met; the unexpected is logged and answered InternalError. */
export function renderS3Error(c: Context<AppEnv>, err: unknown, target: Target | undefined): Response {
  let e = err instanceof HTTPException && err.status < 500 ? new S3Error('InvalidRequest', err.status, err.message || 'bad request') : toS3Error(err);
  if (e.status >= 500 && !(err instanceof S3Error)) {
    if (e.code === 'InternalError') c.get('log')?.error({ err }, 'unhandled error');
    else c.get('log')?.warn({ err: { message: (err as Error).message, code: (err as { code?: unknown }).code } }, 'store unavailable');
  }
  // The name S3 puts beside NoSuchBucket / NoSuchKey, when the error itself has none.
  if (Object.keys(e.extra).length === 0 && target) {
    if (e.code === 'NoSuchBucket' && target.bucket !== null) e = new S3Error(e.code, e.status, e.message, { BucketName: target.bucket }, e.headers);
    else if (e.code === 'NoSuchKey' && target.key !== null) e = new S3Error(e.code, e.status, e.message, { Key: target.key }, e.headers);
  }
  const headers: Record<string, string> = { 'Content-Type': 'application/xml', ...e.headers, ...settleUnreadBody(c, e.status >= 500 && e.status !== 503) };
  return c.body(errorXml(e, target?.resource ?? c.req.path, c.get('requestId') ?? ''), e.status as ContentfulStatusCode, headers);
}

/** core's refusal in an S3 user's words: they hold a key (or nothing), not a token. */
function accessDenied(err: unknown): unknown {
  if (!(err instanceof BlobdError)) return err;
  if (err.code === 'forbidden') return new S3Error('AccessDenied', 403, `Access Denied: ${err.message.replace(/^this token may not/, 'this access key may not')}`);
  if (err.code === 'unauthorized') {
    return new S3Error('AccessDenied', 403, 'Access Denied: the request is not signed (AWS Signature Version 4); only objects of public_read buckets can be read anonymously');
  }
  return err;
}

export interface S3AppOptions {
  /** Multipart operations (src/http/s3api/multipart.ts); absent: NotImplemented. */
  readonly multipart?: MultipartOperations;
}

/**
 * Headers that ask blobd to keep a promise it does not keep — encrypt with a customer's or a KMS key, lock
 * or hold an object — are refused (501) instead of silently storing a plain, unlocked object.
 */
const UNKEPT = /^x-amz-(?:server-side-encryption|object-lock-|copy-source-server-side-encryption-customer-)/;

function refuseUnkeptPromises(headers: Record<string, string | string[] | undefined>, query: URLSearchParams): void {
  // A presigner hoists such headers into the query string (the SDK's getSignedUrl does): refused there too.
  const asked = [...Object.keys(headers), ...[...query.keys()].map((name) => name.toLowerCase())].find((name) => UNKEPT.test(name));
  if (asked !== undefined) {
    throw new S3Error('NotImplemented', 501, `blobd does not encrypt objects with a given key, nor lock them: ${asked} is not supported`, { Header: asked });
  }
}

export function createS3App(deps: S3Deps, options: S3AppOptions = {}) {
  const app = new Hono<AppEnv>();
  const multipart = options.multipart ?? {};
  app.use('*', requestLog(deps.logger));
  app.use('*', async (c, next) => {
    // Set before the operation runs: a download that writes to the socket itself sends these too.
    c.header('x-amz-request-id', c.get('requestId'));
    c.header('x-amz-id-2', Buffer.from(c.get('requestId')).toString('base64'));
    c.header('Server', 'blobd');
    c.set('access', deps.access);
    if (deps.metrics) c.set('metrics', deps.metrics);
    if (deps.sendTimeoutMs) c.set('sendTimeoutMs', deps.sendTimeoutMs);
    await next();
  });

  app.all('*', async (c) => {
    let target: Target | undefined;
    try {
      const incoming = c.env?.incoming;
      const url = new URL(c.req.url);
      const { rawPath, rawQuery } = splitTarget(incoming?.url ?? `${url.pathname}${url.search}`);
      target = parseTarget(rawPath, c.req.header('host'), deps.domain);
      const query = parseQuery(rawQuery);
      const headers = headersOf(c);
      const verified = await verifyRequest({ method: c.req.method, rawPath, rawQuery, headers: signingHeadersOf(c, headers) }, deps.s3Keys);
      refuseUnkeptPromises(headers, query);
      const principal = verified?.principal;
      let body: VerifiedBody | undefined;
      const opened = () => {
        if (!body) throw new Error('the body was not read yet');
        return body;
      };
      const call: S3Call = {
        c,
        deps,
        requestId: c.get('requestId'),
        bucket: target.bucket,
        key: target.key,
        query,
        principal,
        resource: target.resource,
        declaredSize: declaredSizeOf(c),
        header: (name) => c.req.header(name),
        authorize: (need: Need) => deps.access.authorize(principal, undefined, need).catch((err: unknown) => Promise.reject(accessDenied(err))),
        body: () => {
          if (body) throw new Error('the body is read once');
          body = verifiedBody(requestBody(c), verified, headers);
          return body.body;
        },
        contentBody: () => {
          if (body) throw new Error('the body is read once');
          body = verifiedBody(requestBody(c), verified, headers, { signedSha256ByReader: true });
          return body.body;
        },
        signedSha256: signedSha256(verified),
        bodyMd5: () => opened().md5Hex(),
        bodyChecksum: () => opened().checksum(),
      };
      return await operationFor(call, multipart)(call);
    } catch (err) {
      return renderS3Error(c, err, target);
    }
  });

  app.notFound((c) => renderS3Error(c, new S3Error('NotImplemented', 501, 'not implemented'), undefined));
  app.onError((err, c) => renderS3Error(c, err, undefined));
  return app;
}
