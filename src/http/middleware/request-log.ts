// Gives every request an id (echoed as X-Request-Id) and writes one JSON log line when the response has
// been fully sent or the connection dropped. Logs the path only: query strings may carry signatures.
import type { MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import { randomFillSync } from 'node:crypto';
import { matchedRoutes } from 'hono/route';
import { v7 as uuidv7 } from 'uuid';
import type { AppEnv } from '../env.ts';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * 16 random bytes for a request id, cut from a pool refilled 256 ids at a time: uuid's own source asks
 * the system for 16 bytes per id, which was ~1% of a 4 KiB upload's CPU (node --cpu-prof).
 */
const pool = Buffer.alloc(16 * 256);
let poolAt = pool.length;
function randomBytes16(): Uint8Array {
  if (poolAt === pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += 16;
  return pool.subarray(poolAt - 16, poolAt);
}

/**
 * A tus upload URL carries its upload token (`/api/tus/<id>.<token>`): the log keeps the id only — also
 * where the URL did not route (a proxy's prefix left on, `//api/tus/…`, `/api/tus//…`), whose token is as real.
 */
function loggedPath(path: string): string {
  return path.replace(/(\/tus\/+[^/.]*)\..*$/, '$1.…');
}

/** The route template that answered (`/api/blobs/:digest`), or `unmatched`: never the path itself. */
function routeTemplate(c: Parameters<MiddlewareHandler<AppEnv>>[0]): string {
  const routes = matchedRoutes(c).filter((r) => r.method !== 'ALL');
  return routes.at(-1)?.path ?? 'unmatched';
}

export function requestLog(
  logger: Logger,
  onAnswered?: (method: string, route: string, status: number, seconds: number) => void,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const offered = c.req.header('x-request-id');
    const requestId = offered && CLIENT_ID.test(offered) ? offered : uuidv7({ random: randomBytes16() });
    const log = logger.child({ req_id: requestId });
    c.set('requestId', requestId);
    c.set('log', log);
    const started = performance.now();
    const outgoing = c.env?.outgoing;
    outgoing?.once('close', () => {
      const status = outgoing.headersSent ? outgoing.statusCode : 499;
      onAnswered?.(c.req.method, routeTemplate(c), status, (performance.now() - started) / 1000);
      log.info(
        {
          method: c.req.method,
          path: loggedPath(c.req.path),
          // 499: the client went away before any answer was sent.
          status: outgoing.headersSent ? outgoing.statusCode : 499,
          ms: Math.round((performance.now() - started) * 10) / 10,
          complete: outgoing.writableFinished,
        },
        'request',
      );
    });
    // Set before the handler runs: a download that writes to the socket itself sends these headers too.
    c.header('X-Request-Id', requestId);
    await next();
  };
}
