// The request body as a Node stream. Under @hono/node-server this is the socket's IncomingMessage itself:
// converting it to a Web stream and back would add a copy and an event-loop turn per chunk on the hot path
// (STYLE §5). Elsewhere (app.request in tests) the Web body is adapted.
import type { Context, MiddlewareHandler } from 'hono';
import { limitBytes, tooLarge } from '../core/byte-limit.ts';
import { BlobdError } from '../core/errors.ts';
import { Readable } from 'node:stream';
import type { AppEnv } from './env.ts';

export function requestBody(c: Context<AppEnv>): Readable {
  const body = rawBody(c);
  // Only for requests with an Idempotency-Key: a listener beside the consumer's pipe, not a stream hop.
  const tap = c.get('bodyTap');
  if (tap) body.on('data', (chunk: Buffer) => tap.update(chunk));
  // A signed URL's max_size bounds every body read under it, whatever the route does with it.
  const max = c.get('grant')?.maxSize;
  return max === undefined ? body : limitBytes(body, max, () => tooLarge(max, "signed URL's max_size"));
}

function rawBody(c: Context<AppEnv>): Readable {
  const incoming = c.env?.incoming;
  if (incoming) {
    // A client that sent `Expect: 100-continue` is waiting for our go-ahead: everything that could refuse
    // the request (auth, validation, limits, offsets) has run by the time a handler asks for the body.
    if (/100-continue/i.test(incoming.headers.expect ?? '') && !c.env.outgoing.headersSent) c.env.outgoing.writeContinue();
    return incoming;
  }
  const body = c.req.raw.body;
  return body ? Readable.fromWeb(body as import('node:stream/web').ReadableStream) : Readable.from([]);
}

/** True when the request carries a body (announced length > 0, or chunked). */
export function hasBody(c: Context<AppEnv>): boolean {
  const length = declaredLength(c);
  return length !== undefined ? length > 0 : c.req.header('transfer-encoding') !== undefined;
}

/** A JSON body, as the routes that accept JSON or bytes tell them apart. */
export function isJson(c: Context<AppEnv>): boolean {
  return /^application\/json\b/i.test(c.req.header('content-type') ?? '');
}

/**
 * JSON bodies are parsed whole (by the route's validator), so they must be small and announced: a JSON body
 * without a Content-Length, or over `max`, is refused before anything reads it.
 */
export function limitJsonBody(max: number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (/json/i.test(c.req.header('content-type') ?? '')) {
      const length = declaredLength(c);
      if (length === undefined || length > max) {
        throw new BlobdError('too_large', `a JSON body needs a Content-Length of at most ${max} bytes`, { limit: max });
      }
    }
    await next();
  };
}

/** The Content-Length the client announced (Node's parser has already refused malformed ones). */
export function declaredLength(c: Context<AppEnv>): number | undefined {
  const value = c.req.header('content-length');
  // Beyond 2^53 precision goes, but the number stays larger than any limit, which is all that matters.
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}
