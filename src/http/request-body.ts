// The request body as a Node stream. Under @hono/node-server this is the socket's IncomingMessage itself:
// converting it to a Web stream and back would add a copy and an event-loop turn per chunk on the hot path
// (STYLE §5). Elsewhere (app.request in tests) the Web body is adapted.
import type { Context, MiddlewareHandler } from 'hono';
import { BlobdError } from '../core/errors.ts';
import { Readable } from 'node:stream';
import type { AppEnv } from './env.ts';

export function requestBody(c: Context<AppEnv>): Readable {
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
