// The composition root: read config, open the stores, build the services and the app, listen, and wire
// graceful shutdown. Nothing else in blobd creates long-lived singletons.
import { getRequestListener } from '@hono/node-server';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Authenticator } from './core/auth.ts';
import { BlobService } from './core/blobs.ts';
import { checkReadiness } from './core/readiness.ts';
import { UploadService } from './core/uploads.ts';
import type { Config } from './config.ts';
import { createApp } from './http/app.ts';
import { loadOrCreateAdminToken } from './storage/fs/admin-token.ts';
import { FsByteStore, makeDirDurable } from './storage/fs/fs-byte-store.ts';
import { DataLayout } from './storage/fs/layout.ts';
import { SqliteMetadataStore } from './storage/sqlite/sqlite-metadata-store.ts';

export const VERSION = '0.1.0';

export interface RunningServer {
  readonly url: string;
  readonly logger: Logger;
  /** Stop accepting, let in-flight requests finish (bounded by the shutdown timeout), close the stores. */
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export async function startServer(config: Config): Promise<RunningServer> {
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  const layout = new DataLayout(config.dataDir);
  await makeDirDurable(layout.root);
  const bytes = await FsByteStore.open(layout);
  const meta = SqliteMetadataStore.open(layout.databaseFile);

  let adminToken = config.adminToken;
  if (adminToken === undefined) {
    const loaded = await loadOrCreateAdminToken(layout);
    adminToken = loaded.token;
    logger.info({ path: layout.adminTokenFile, created: loaded.created }, 'admin token is in this file');
  }

  const blobs = new BlobService(meta, bytes, {
    maxBlobSize: config.maxBlobSize,
    temporaryTtlMs: config.temporaryTtlMs,
  });
  const uploads = new UploadService(meta, bytes, blobs, {
    maxBlobSize: config.maxBlobSize,
    minFree: config.minFree,
    uploadTtlMs: config.uploadTtlMs,
  });
  const recovered = await uploads.recover();
  logger.info(recovered, 'upload sessions recovered');

  const app = createApp({
    logger,
    version: VERSION,
    auth: new Authenticator(adminToken),
    blobs,
    uploads,
    checkReadiness: () => checkReadiness(meta, bytes),
  });

  // Expired sessions free their bytes on a timer (GC proper comes later); often enough for short TTLs.
  const sweepEvery = Math.max(50, Math.min(60_000, config.uploadTtlMs / 4));
  let sweeping: Promise<unknown> | undefined;
  const sweeper = setInterval(() => {
    sweeping ??= uploads
      .expire()
      .then(
        (n) => n > 0 && logger.info({ expired: n }, 'upload sessions expired'),
        (err: unknown) => logger.error({ err }, 'upload expiry failed'),
      )
      .finally(() => (sweeping = undefined));
  }, sweepEvery);
  sweeper.unref();

  const listener = getRequestListener(app.fetch, {
    // A request node-server cannot even turn into a Request (a malformed target) still gets our JSON.
    errorHandler: () =>
      Response.json({ error: { code: 'invalid_request', message: 'malformed request' } }, { status: 400 }),
  });
  const server = createServer(listener);
  // Requests with `Expect: 100-continue` go to the app before the client sends its body, so a refusal
  // (401, 413, 507, 409) costs no upload; the handler sends 100 Continue when it starts reading.
  server.on('checkContinue', listener);
  const address = await listen(server, config.port, config.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, data: layout.root }, 'listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive connections would hold close() open; in-flight ones get until the timeout.
      const idle = setInterval(() => server.closeIdleConnections(), 50);
      const deadline = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
      server.closeIdleConnections();
      clearInterval(sweeper);
      await closed;
      await sweeping;
      clearInterval(idle);
      clearTimeout(deadline);
      await meta.close();
      logger.info('stopped');
    })());

  return { url, logger, close };
}
