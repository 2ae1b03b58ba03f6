// createApp(services) → the Hono app: request ids and logs, authentication for /api, the routers, and the
// one error renderer for everything that is not a 2xx — including unknown routes and validation failures.
import type { Logger } from 'pino';
import type { Authenticator } from '../core/auth.ts';
import type { BlobService } from '../core/blobs.ts';
import type { CatalogService } from '../core/catalog.ts';
import { BlobdError } from '../core/errors.ts';
import type { Readiness } from '../core/readiness.ts';
import type { UploadService } from '../core/uploads.ts';
import type { AppEnv } from './env.ts';
import { renderError } from './errors.ts';
import { authenticate } from './middleware/authenticate.ts';
import { requestLog } from './middleware/request-log.ts';
import { createRouter } from './router.ts';
import { blobRoutes } from './routes/blobs.ts';
import { bucketRoutes } from './routes/buckets.ts';
import { objectRoutes } from './routes/objects.ts';
import { healthRoutes } from './routes/health.ts';
import { uploadRoutes } from './routes/uploads.ts';

export interface Services {
  readonly logger: Logger;
  readonly auth: Authenticator;
  readonly blobs: BlobService;
  readonly uploads: UploadService;
  readonly catalog: CatalogService;
  readonly checkReadiness: () => Promise<Readiness>;
  readonly version: string;
}

export function createApp(services: Services) {
  const app = createRouter();
  app.use('*', requestLog(services.logger));
  app.use('/api/*', authenticate(services.auth, (bucket) => services.catalog.isPublic(bucket)));

  app.route('/', healthRoutes(services.checkReadiness));
  // Before the blob routes: /api/blobs/uploads must not be taken for a digest.
  app.route('/', uploadRoutes(services.uploads));
  app.route('/', blobRoutes(services.blobs));
  app.route('/', bucketRoutes(services.catalog));
  app.route('/', objectRoutes(services.catalog));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  const document = {
    openapi: '3.1.0',
    info: { title: 'blobd', version: services.version, description: 'Content-addressed blob store daemon' },
    security: [{ bearer: [] }],
  };
  app.get('/openapi.json', (c) => {
    const doc = app.getOpenAPI31Document(document);
    // Hono's "rest of the path" parameters (`{key{.+}}`) are plain `{key}` to OpenAPI.
    doc.paths = Object.fromEntries(Object.entries(doc.paths ?? {}).map(([p, v]) => [p.replace(/\{(\w+)\{[^}]*\}\}/g, '{$1}'), v]));
    return c.json(doc);
  });

  app.notFound((c) => renderError(c, new BlobdError('not_found', `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => renderError(c, err));
  return app;
}
