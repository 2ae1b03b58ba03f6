// createApp(services) → the Hono app: CORS, request ids and logs, authentication, the routers, and the
// one error renderer for everything that is not a 2xx — including unknown routes and validation failures.
// Every /api route must declare what it needs (`requires`); the app refuses to start otherwise.
import { createRoute, z } from '@hono/zod-openapi';
import type { Logger } from 'pino';
import type { AccessControl } from '../core/auth.ts';
import type { BlobService } from '../core/blobs.ts';
import type { CatalogService } from '../core/catalog.ts';
import type { FsckService } from '../core/fsck.ts';
import type { GcService } from '../core/gc.ts';
import type { Stats } from '../core/stats.ts';
import { BlobdError } from '../core/errors.ts';
import type { IdempotencyService } from '../core/idempotency.ts';
import type { S3Keys } from '../core/s3-keys.ts';
import type { Readiness } from '../core/readiness.ts';
import type { CheckTarget, SignedUrls } from '../core/signed-urls.ts';
import type { UploadService } from '../core/uploads.ts';
import { renderError } from './errors.ts';
import { authenticate, DECLARES_ACCESS, DRY_RUN_ALLOWED } from './middleware/authenticate.ts';
import { cors } from './middleware/cors.ts';
import { requestLog } from './middleware/request-log.ts';
import { createRouter } from './router.ts';
import { adminRoutes } from './routes/admin.ts';
import { blobRoutes } from './routes/blobs.ts';
import { bucketRoutes } from './routes/buckets.ts';
import { objectListRoutes } from './routes/object-list.ts';
import { objectRoutes } from './routes/objects.ts';
import { healthRoutes } from './routes/health.ts';
import { s3KeyRoutes } from './routes/s3-keys.ts';
import { signedUrlRoutes } from './routes/signed-urls.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { tusRoutes } from './tus.ts';
import type { Metrics } from './metrics.ts';

export interface Services {
  readonly logger: Logger;
  readonly access: AccessControl;
  /** S3 credentials (the S3 API front verifies with them; the admin routes manage them). */
  readonly s3Keys: S3Keys;
  readonly signedUrls: SignedUrls;
  readonly idempotency: IdempotencyService;
  readonly blobs: BlobService;
  readonly uploads: UploadService;
  readonly catalog: CatalogService;
  readonly gc: GcService;
  readonly fsck: FsckService;
  readonly stats: () => Promise<Stats>;
  readonly checkReadiness: () => Promise<Readiness>;
  readonly version: string;
  /** Origins allowed to call the API from a browser (none: no CORS headers at all). */
  readonly corsOrigins: readonly string[];
  /** The largest blob accepted (tus announces it as Tus-Max-Size). */
  readonly maxBlobSize: number;
  /** GET /metrics and its counters; absent with --metrics=false. */
  readonly metrics?: Metrics;
  /** A download whose client takes no bytes this long is cut; 0: never. */
  readonly sendTimeoutMs: number;
}

/** Each registered route once, as `METHOD path` (Hono syntax), for start-up checks and tests. */
export function listRoutes(app: ReturnType<typeof createRouter>): { method: string; path: string }[] {
  const seen = new Map<string, { method: string; path: string }>();
  for (const r of app.routes) if (r.method !== 'ALL') seen.set(`${r.method} ${r.path}`, { method: r.method, path: r.path });
  return [...seen.values()];
}

function assertAccessDeclared(app: ReturnType<typeof createRouter>): void {
  const declared = new Set(app.routes.filter((r) => (r.handler as { [DECLARES_ACCESS]?: true })[DECLARES_ACCESS]).map((r) => `${r.method} ${r.path}`));
  const missing = listRoutes(app).filter((r) => r.path.startsWith('/api/') && !declared.has(`${r.method} ${r.path}`));
  if (missing.length > 0) throw new Error(`routes that declare no access need: ${missing.map((r) => `${r.method} ${r.path}`).join(', ')}`);
}

export function createApp(services: Services) {
  const app = createRouter();
  if (services.corsOrigins.length > 0) {
    // Before authentication: a preflight carries no credential and is answered there, unless a route answers
    // OPTIONS on its path (tus discovery) — known once every route is registered, hence looked up lazily.
    let ownOptions: Set<string> | undefined;
    const answersOptions = (path: string) =>
      (ownOptions ??= new Set(app.routes.filter((r) => r.method === 'OPTIONS').map((r) => r.path))).has(path);
    app.use('*', cors(services.corsOrigins, answersOptions));
  }
  const metrics = services.metrics;
  app.use('*', requestLog(services.logger, metrics && ((...a) => metrics.answered(...a))));
  // Hono answers HEAD by running GET and dropping the body: a JSON answer keeps the Content-Length GET's
  // would have (downloads set theirs themselves; streamed exports have none either way).
  app.use('*', async (c, next) => {
    await next();
    if (c.req.method !== 'HEAD' || c.res.headers.has('content-length') || !c.res.body) return;
    if (!c.res.headers.get('content-type')?.startsWith('application/json')) return;
    c.res.headers.set('content-length', String((await c.res.clone().arrayBuffer()).byteLength));
  });
  if (metrics) {
    app.use('*', async (c, next) => {
      c.set('metrics', metrics);
      await next();
    });
  }
  const sendTimeoutMs = services.sendTimeoutMs;
  if (sendTimeoutMs > 0) {
    app.use('*', async (c, next) => {
      c.set('sendTimeoutMs', sendTimeoutMs);
      await next();
    });
  }
  app.use('*', authenticate(services.access, services.signedUrls, services.idempotency));

  /** May `principal` make this request? Asked of the routes' own declarations, without running them. */
  const checkTarget: CheckTarget = async (principal, method, pathWithQuery) => {
    const res = await app.fetch(new Request(`http://blobd.internal${pathWithQuery}`, { method }), { dryRun: { principal } } as never);
    if (res.headers.has(DRY_RUN_ALLOWED)) return;
    const error = ((await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 403) throw new BlobdError('forbidden', `this token may not ${method} ${pathWithQuery.split('?')[0]} itself, so it cannot sign it`);
    throw new BlobdError('invalid_request', `cannot sign ${method} ${pathWithQuery.split('?')[0]}: ${error?.code === 'not_found' ? 'no such route' : (error?.message ?? `status ${res.status}`)}`);
  };

  app.route('/', healthRoutes(services.checkReadiness));
  if (metrics) {
    const route = createRoute({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics (text exposition format); off with --metrics=false',
      responses: { 200: { description: 'the metrics', content: { 'text/plain': { schema: z.string() } } } },
    });
    app.openapi(route, (c) => metrics.render(c) as never);
  }
  // Before the blob routes: /api/blobs/uploads must not be taken for a digest.
  app.route('/', uploadRoutes(services.uploads));
  app.route('/', tusRoutes(services.uploads, { maxBlobSize: services.maxBlobSize }));
  app.route('/', blobRoutes(services.blobs));
  app.route('/', bucketRoutes(services.catalog));
  app.route('/', objectListRoutes(services.catalog));
  app.route('/', objectRoutes(services.catalog));
  app.route('/', tokenRoutes(services.access));
  app.route('/', s3KeyRoutes(services.s3Keys));
  app.route('/', signedUrlRoutes(services.signedUrls, checkTarget));
  app.route('/', adminRoutes(services));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  const document = {
    openapi: '3.1.0',
    info: { title: 'blobd', version: services.version, description: 'Content-addressed blob store daemon' },
    security: [{ bearer: [] }],
  };
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document: OpenAPI 3.1 of every route',
    security: [],
    responses: { 200: { description: 'the OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } } },
  });
  app.get('/openapi.json', (c) => {
    const doc = app.getOpenAPI31Document(document);
    // Hono's "rest of the path" parameters (`{key{.+}}`) are plain `{key}` to OpenAPI.
    doc.paths = Object.fromEntries(Object.entries(doc.paths ?? {}).map(([p, v]) => [p.replace(/\{(\w+)\{[^}]*\}\}/g, '{$1}'), v]));
    return c.json(doc);
  });

  app.notFound((c) => renderError(c, new BlobdError('not_found', `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => renderError(c, err));
  assertAccessDeclared(app);
  return app;
}
