// Liveness and readiness probes; unauthenticated, cheap, and honest about what they checked.
import { createRoute, z } from '@hono/zod-openapi';
import { BlobdError } from '../../core/errors.ts';
import type { Readiness } from '../../core/readiness.ts';
import { createRouter } from '../router.ts';
import { ErrorBody } from './schemas.ts';

const Health = z.object({ status: z.literal('ok') }).openapi('Health');
const Ready = z
  .object({
    status: z.literal('ready'),
    checks: z.object({ database: z.enum(['ok', 'failing']), data_dir: z.enum(['ok', 'failing']).optional(), store: z.enum(['ok', 'failing']).optional(), disk: z.enum(['ok', 'failing']) }),
  })
  .openapi('Ready');

const healthz = createRoute({
  method: 'get',
  path: '/healthz',
  summary: 'The process is up',
  responses: { 200: { description: 'up', content: { 'application/json': { schema: Health } } } },
});

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  summary: 'The database and the data directory are writable, and the disk is not full',
  responses: {
    200: { description: 'ready', content: { 'application/json': { schema: Ready } } },
    503: { description: 'not ready: `unavailable` error with `checks`', content: { 'application/json': { schema: ErrorBody } } },
  },
});

export function healthRoutes(checkReadiness: () => Promise<Readiness>) {
  const app = createRouter();
  app.openapi(healthz, (c) => c.json({ status: 'ok' as const }, 200));
  app.openapi(readyz, async (c) => {
    const r = await checkReadiness();
    if (!r.ready) throw new BlobdError('unavailable', 'not ready', { checks: r.checks });
    return c.json({ status: 'ready' as const, checks: r.checks }, 200);
  });
  return app;
}
