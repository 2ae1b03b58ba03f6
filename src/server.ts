// The composition root: read config, open the stores, build the services and the app, listen, and wire
// graceful shutdown. Nothing else in blobd creates long-lived singletons.
import { getRequestListener } from '@hono/node-server';
import { createServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { AccessControl } from './core/auth.ts';
import { BlobService } from './core/blobs.ts';
import { CatalogService } from './core/catalog.ts';
import { DiskBudget } from './core/disk-budget.ts';
import { guardRowGrowth } from './core/metadata-guard.ts';
import { FsckService } from './core/fsck.ts';
import { GcService } from './core/gc.ts';
import { NO_EVENTS } from './core/metrics.ts';
import { storeStats } from './core/stats.ts';
import { IdempotencyService } from './core/idempotency.ts';
import { checkReadiness } from './core/readiness.ts';
import { SignedUrls } from './core/signed-urls.ts';
import { UploadService } from './core/uploads.ts';
import { redactUrl, type Config } from './config.ts';
import { BlobdError } from './core/errors.ts';
import { isDatabaseUnavailable } from './storage/store-unavailable.ts';
import { createApp, listRoutes } from './http/app.ts';
import { Metrics } from './http/metrics.ts';
import { paceYoungGc } from './gc-pacer.ts';
import { loadOrCreateAdminToken, saveAdminToken, secureAdminTokenFile } from './storage/fs/admin-token.ts';
import { DiskReserve } from './storage/fs/disk-reserve.ts';
import { KeyFiles } from './storage/fs/key-files.ts';
import { DataLayout } from './storage/fs/layout.ts';
import { checkSharedStore, openByteStore } from './storage/open-byte-store.ts';
import { TieredByteStore } from './storage/tiered-byte-store.ts';
import { octal, securePrivateDataDir } from './storage/fs/private-data-dir.ts';
import { lockDataDir } from './storage/sqlite/data-dir-lock.ts';
import { openMetadataStore } from './storage/open-metadata-store.ts';
import { loadOrCreateNodeId } from './storage/fs/node-id.ts';
import { NodeCoordination } from './core/coordination.ts';
import { SharedKeys } from './core/shared-keys.ts';
import { S3Keys } from './core/s3-keys.ts';
import { MultipartUploads } from './core/multipart-uploads.ts';
import { createS3App } from './http/s3api/app.ts';
import { errorXml, S3Error } from './http/s3api/errors.ts';
import * as multipartOperations from './http/s3api/multipart.ts';

/** How long a shutdown waits for handlers whose connections it closed (see close()). */
const HANDLERS_GRACE_MS = 10_000;

export const VERSION = '0.1.0';

/**
 * Requests Node's HTTP parser rejects (oversized headers, bad framing, header timeouts) never reach the
 * app; they still get our JSON error shape and a log line, then the connection closes.
 */
function rejectMalformed(err: NodeJS.ErrnoException, socket: Duplex, logger: Logger, shape: 'json' | 'xml'): void {
  const [status, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'the request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request headers did not arrive in time']
        : [400, 'invalid_request', 'malformed HTTP request'];
  logger.info({ code: err.code, status }, 'rejected malformed request');
  if (!socket.writable || (err as { code?: string }).code === 'ECONNRESET') return void socket.destroy();
  // The S3 front answers in S3's shape and codes.
  const body =
    shape === 'json'
      ? JSON.stringify({ error: { code, message } })
      : errorXml(new S3Error({ 400: 'BadRequest', 408: 'RequestTimeout', 431: 'RequestHeaderSectionTooLarge' }[status]!, status, message), '/', '');
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status]!;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/${shape}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export interface RunningServer {
  readonly url: string;
  /** The S3-compatible API's URL, when it listens. */
  readonly s3Url?: string;
  readonly logger: Logger;
  /** Every registered route, once (the access table test checks it covers them all). */
  readonly routes: readonly { method: string; path: string }[];
  /** Stop accepting, let in-flight requests finish (bounded by the shutdown timeout), close the stores. */
  close(): Promise<void>;
  /**
   * Settles with the reason once the node decided to stop by itself (its liveness lease lapsed and meanwhile
   * a node started beside which it may not run: see refusalBesideOthers); it is closing then, and close()
   * returns that same closing. Pending for as long as the node serves.
   */
  readonly stoppedBySelf: Promise<string>;
}

/** What to change when the S3 API's port cannot be had: another port, or none. */
const S3_PORT_FLAG = '--s3-api-port, or 0 to turn the S3 API off';

export class ListenError extends Error {
  override name = 'ListenError';
}

/** Why `host:port` cannot be listened on, in the operator's words (it becomes one line on stderr). */
function listenError(err: NodeJS.ErrnoException, port: number, host: string, flag: string): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why =
    err.code === 'EADDRINUSE'
      ? `the address is already in use (by another blobd or another program; choose another ${flag})`
      : err.code === 'EACCES'
        ? `permission denied (ports below 1024 need privileges; choose another ${flag})`
        : err.code === 'EADDRNOTAVAIL'
          ? 'this host has no such address (check --host)'
          : err.message;
  return new ListenError(`cannot listen on ${where}: ${why}`);
}

/** `flag` names the setting that chose the port: what to change when it cannot be had. */
function listen(server: NetServer, port: number, host: string, flag = '--port'): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException) => reject(listenError(err, port, host, flag));
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Fails as the real listen would, before the data directory is touched, so that a daemon which cannot
 * listen leaves nothing behind. The port is free again at once: a listening socket that took no connection
 * leaves no TIME_WAIT. (Taken by someone else between this and the real listen, the start still fails.)
 */
async function checkCanListen(port: number, host: string, flag: string): Promise<void> {
  const probe = createNetServer();
  await listen(probe, port, host, flag);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/**
 * Why this node may not start beside the others on a shared database, or null. Bytes in a data directory are
 * seen by its node only: a second node on the same database would take the first one's blobs and sessions
 * for lost ones, whichever of the two started first.
 */
async function refusalBesideOthers(nodes: NodeCoordination, localBytes: boolean): Promise<string | null> {
  if (localBytes && (await nodes.otherLiveNodes()).length > 0) {
    return 'another blobd node is running on this metadata database: several nodes need their bytes in one S3 bucket (--store s3); the data directory (--store fs) serves one node only';
  }
  if (!localBytes && (await nodes.otherLocalNodes()).length > 0) {
    return 'a blobd node with its bytes in its data directory (--store fs) is running on this metadata database, and that node serves alone: stop it, or move it to the S3 bucket of the others';
  }
  return null;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/**
 * `--log-format pretty`: each JSON log line as `HH:MM:SS.mmm LEVEL message key=value …` for a person at a
 * terminal (pino's own JSON is what log shippers get). A few lines of ours instead of pino-pretty's tree.
 */
function prettyLines(out: NodeJS.WritableStream): { write(line: string): void } {
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { time, level, msg, pid: _pid, hostname: _host, ...rest } = rec;
      const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      const at = new Date(typeof time === 'number' ? time : Date.now()).toISOString().slice(11, 23);
      out.write(`${at} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${fields.length ? ` ${fields.join(' ')}` : ''}\n`);
    },
  };
}

export async function startServer(config: Config): Promise<RunningServer> {
  const logger = config.logFormat === 'pretty'
    ? pino({ level: config.logLevel, base: { pid: process.pid } }, prettyLines(process.stdout))
    : pino({ level: config.logLevel, base: { pid: process.pid } });
  const layout = new DataLayout(config.dataDir);
  if (config.port !== 0) await checkCanListen(config.port, config.host, '--port');
  if (config.s3Api && config.s3Api.port !== 0) await checkCanListen(config.s3Api.port, config.host, S3_PORT_FLAG);
  const dataDir = await securePrivateDataDir(layout.root, config.insecureDataDir);
  if (dataDir.adoptedFrom !== undefined) {
    logger.info({ data: layout.root, mode: octal(dataDir.adoptedFrom) }, 'the empty data directory was open to other users; made it 0700');
  }
  if (dataDir.insecureMode !== undefined) {
    const mode = octal(dataDir.insecureMode);
    logger.warn({ data: layout.root, mode }, `data directory is accessible by other users (mode ${mode}); starting anyway (--insecure-data-dir)`);
  }
  // Before anything touches tmp/ or uploads/: they may belong to a daemon that is still running.
  const dirLock = lockDataDir(layout.lockFile);
  // The reserve first: opening the database after a crash on a full disk may already need its room.
  const reserve = await DiskReserve.open(layout, config.diskReserve);
  // Reachable and writable (pinged) before anything is recovered or served.
  const opened = await openByteStore(config.store, layout, reserve);
  const store = await openMetadataStore(config.metadata, layout, reserve);
  if (store.shared) {
    try {
      await checkSharedStore(store, config.store, (message) => logger.warn(message));
    } catch (err) {
      await store.close();
      dirLock.release();
      throw err;
    }
  }
  const { rowsFree } = opened;
  // Small blobs in the metadata store's inline tier, where it has one; blobs stored inline before stay
  // readable whatever --inline-max says now.
  const bytes = store.inline ? new TieredByteStore(opened.bytes, store.inline, config.inlineMax) : opened.bytes;
  if (config.metadata.kind === 'postgres') {
    logger.info({ metadata: redactUrl(config.metadata.url) }, 'metadata in PostgreSQL');
    const { url } = config.metadata;
    if (new URL(url).password && process.argv.some((a) => a.includes(url))) {
      logger.warn('the --metadata URL carries a password, which every local user can read in the process list: give it in BLOBD_DATABASE_URL or PGPASSWORD instead');
    }
  }
  const disk = new DiskBudget(store, bytes, config.minFree, rowsFree);
  const lowFree = await disk.atMinFree();
  if (lowFree !== null) {
    logger.warn(
      { free: lowFree, min_free: config.minFree },
      `free disk (${lowFree} bytes) is at or below --min-free (${config.minFree} bytes): uploads and other writes answer 507 until there is more room (or start with a lower --min-free)`,
    );
  }
  const meta = guardRowGrowth(store, disk);
  const nodes = new NodeCoordination(meta, await loadOrCreateNodeId(layout), config.leaseTtlMs);
  const localBytes = bytes.local === true;
  // After each liveness renewal; a lapse is noted now and looked at once the server can be closed (see
  // lookAfterLapse at the end).
  let lapsePending = false;
  let afterRenewal = (lapsed: boolean) => void (lapsePending ||= lapsed);
  // Alive (for other nodes) before anything is recovered: they keep what belongs to a live node.
  await nodes.start({ localBytes, onRenewed: (lapsed) => afterRenewal(lapsed) });
  const refusal = meta.shared ? await refusalBesideOthers(nodes, localBytes) : null;
  if (refusal) {
    await nodes.stop();
    await meta.close();
    dirLock.release();
    throw new Error(refusal);
  }
  // Signing keys, the records key and the admin token: the data directory's own, or those every node shares.
  const shared = meta.shared ? new SharedKeys(meta) : undefined;

  let adminToken = config.adminToken;
  if (adminToken === undefined) {
    if (shared) {
      // Every node accepts the same token; each keeps a copy in its data directory for its local CLI.
      adminToken = await shared.adminToken();
      await saveAdminToken(layout, adminToken);
      logger.info({ path: layout.adminTokenFile }, 'admin token (shared by every node) is in this file');
    } else {
      const loaded = await loadOrCreateAdminToken(layout);
      adminToken = loaded.token;
      logger.info({ path: layout.adminTokenFile, created: loaded.created }, 'admin token is in this file');
    }
  } else {
    await secureAdminTokenFile(layout);
  }

  const counted = store as { readonly queries?: number };
  const metrics = config.metrics
    ? new Metrics(() => storeStats(meta), typeof counted.queries === 'number' ? () => counted.queries! : undefined)
    : undefined;
  const events = metrics ?? NO_EVENTS;
  const blobs = new BlobService(meta, bytes, disk, {
    maxBlobSize: config.maxBlobSize,
    temporaryTtlMs: config.temporaryTtlMs,
  }, events);
  const catalog = new CatalogService(meta, blobs);
  const uploads = new UploadService(meta, bytes, blobs, catalog, disk, {
    maxBlobSize: config.maxBlobSize,
    uploadTtlMs: config.uploadTtlMs,
  }, events, nodes);
  const recovered = await uploads.recover();
  logger.info(recovered, 'upload sessions recovered');

  const keys = shared ?? new KeyFiles(layout);
  const access = new AccessControl(meta, adminToken, {
    publicBlobs: config.publicBlobs,
    isPublicBucket: (bucket) => catalog.isPublic(bucket),
  });
  const signedUrls = new SignedUrls(keys, access, config.keyRefreshMs);
  await signedUrls.ready();
  const idempotency = new IdempotencyService(meta, await keys.recordsKey(), nodes.holder);
  // No request of an earlier run of this node is still running: its unanswered claims would block their
  // keys. Other live nodes' claims stay (their requests may be running).
  await meta.dropPendingIdempotencyKeys(meta.shared ? await nodes.otherLiveNodes() : undefined);

  // S3 credentials: one instance per process (its cache is what makes a local delete immediate).
  const s3Keys = new S3Keys(meta, () => keys.s3KeysKey());

  const gc = new GcService(meta, bytes, blobs, uploads, idempotency, config.gcGraceMs, events, nodes);
  const fsck = new FsckService(meta, bytes, blobs, nodes);

  const app = createApp({
    logger,
    version: VERSION,
    gc,
    fsck,
    stats: () => storeStats(meta),
    access,
    signedUrls,
    idempotency,
    blobs,
    uploads,
    catalog,
    checkReadiness: () => checkReadiness(meta, bytes, disk),
    corsOrigins: config.corsOrigins,
    maxBlobSize: config.maxBlobSize,
    metrics,
    sendTimeoutMs: config.sendTimeoutMs,
    s3Keys,
  });

  // Expired sessions free their bytes on a timer of their own, often enough for short TTLs (an expired
  // session answers 404 at once anyway); everything else waits for a GC pass.
  const sweepEvery = Math.max(50, Math.min(60_000, config.uploadTtlMs / 4));
  let sweeping: Promise<unknown> | undefined;
  const sweeper = setInterval(() => {
    // One node at a time sweeps (a lease); the others skip the turn.
    sweeping ??= nodes
      .exclusive('expiry', () => uploads.expire())
      .then(
        (n) => n && n.value > 0 && logger.info({ expired: n.value }, 'upload sessions expired'),
        (err: unknown) => logger.error({ err }, 'upload expiry failed'),
      )
      .finally(() => (sweeping = undefined));
  }, sweepEvery);
  sweeper.unref();
  let collecting: Promise<unknown> | undefined;
  const collector =
    config.gcIntervalMs > 0
      ? setInterval(() => {
          collecting ??= gc
            .run()
            .then(
              (r) => logger.info({ blobs_removed: r.blobsRemoved, bytes_freed: r.bytesFreed, pins_expired: r.pinsExpired, sessions_expired: r.sessionsExpired }, 'gc pass'),
              (err: unknown) =>
                err instanceof BlobdError && err.code === 'maintenance_running'
                  ? logger.debug('gc pass skipped: another node is collecting')
                  : logger.error({ err }, 'gc pass failed'),
            )
            .finally(() => (collecting = undefined));
        }, config.gcIntervalMs)
      : undefined;
  collector?.unref();

  // A database connection that fails outside any request (a timer's lease renewal, a pooled connection
  // closing) must not take the daemon down with it: requests meanwhile answer 503 database_unavailable, and
  // the client reconnects by itself. Anything else still ends the process, as an unhandled rejection should.
  const onRejection = (err: unknown) => {
    if (!isDatabaseUnavailable(err)) throw err;
    logger.warn({ err: { message: (err as Error).message, code: (err as { code?: unknown }).code } }, 'metadata database unavailable (outside a request)');
  };
  process.on('unhandledRejection', onRejection);

  let closing: Promise<void> | undefined;
  let s3Server: ReturnType<typeof createServer> | undefined;
  let s3Url: string | undefined;
  const gcPacer = paceYoungGc();
  const paced = (res: { once(event: 'close', fn: () => void): unknown }) => res.once('close', gcPacer.request());
  /** A node:http server for one front (the native API, the S3 API): the same timeouts and refusals for both. */
  // Handlers still running: a shutdown waits for them after the connections closed, so that an append cut by
  // the deadline still records what it received (and synced) before the database closes.
  let handlersRunning = 0;
  let handlersIdle: (() => void) | undefined;
  const tracked =
    (fetch: (req: Request, env: never) => Response | Promise<Response>) =>
    async (req: Request, env: never): Promise<Response> => {
      handlersRunning++;
      try {
        return await fetch(req, env);
      } finally {
        if (--handlersRunning === 0) handlersIdle?.();
      }
    };
  const handlersDone = (ms: number) =>
    handlersRunning === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms).unref();
          handlersIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
  const httpServer = (fetch: (req: Request, env: never) => Response | Promise<Response>, malformed: () => Response, shape: 'json' | 'xml') => {
    const listener = getRequestListener(tracked(fetch) as Parameters<typeof getRequestListener>[0], {
      // Used for a request without a Host header (legal in HTTP/1.0).
      hostname: config.host,
      // A request node-server cannot even turn into a Request (a malformed target) still gets an answer in the front's shape.
      errorHandler: (err: unknown) => {
        logger.info({ err: String(err) }, 'malformed request');
        return malformed();
      },
    });
    const server = createServer(
      {
        // No cap on how long a whole request may take: a 10 GiB upload over a slow link is legitimate.
        // Stalled clients are cut by the idle timeout below instead, which also frees a session's lock.
        requestTimeout: 0,
        headersTimeout: 60_000,
      },
      listener,
    );
    server.timeout = config.idleTimeoutMs;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => rejectMalformed(err, socket, logger, shape));
    // While shutting down, answers say the connection will not be reused.
    server.prependListener('request', (_req, res) => {
      paced(res);
      if (closing) res.setHeader('Connection', 'close');
    });
    server.prependListener('checkContinue', (_req, res) => paced(res));
    // Requests with `Expect: 100-continue` go to the app before the client sends its body, so a refusal
    // (401, 413, 507, 409) costs no upload; the handler sends 100 Continue when it starts reading.
    server.on('checkContinue', listener);
    return server;
  };
  const server = httpServer(app.fetch, () =>
    Response.json({ error: { code: 'invalid_request', message: 'malformed request' } }, { status: 400 }),
    'json',
  );
  const address = await listen(server, config.port, config.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, data: layout.root }, 'listening');


  const close = () =>
    (closing ??= (async () => {
      const servers = s3Server ? [server, s3Server] : [server];
      const closed = Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
      // Idle keep-alive connections would hold close() open; in-flight ones get until the timeout.
      const idle = setInterval(() => servers.forEach((srv) => srv.closeIdleConnections()), 50);
      const deadline = setTimeout(() => servers.forEach((srv) => srv.closeAllConnections()), config.shutdownTimeoutMs);
      servers.forEach((srv) => srv.closeIdleConnections());
      clearInterval(sweeper);
      clearInterval(collector);
      gcPacer.stop();
      process.off('unhandledRejection', onRejection);
      await closed;
      // The connections are gone; what their handlers still do (an append recording the bytes it kept) ends
      // before the database closes: a few seconds at most.
      await handlersDone(HANDLERS_GRACE_MS);
      await sweeping;
      await collecting;
      clearInterval(idle);
      clearTimeout(deadline);
      await nodes.stop();
      await meta.close();
      dirLock.release();
      logger.info('stopped');
    })());

  // The S3-compatible API: a second front over the same services, on a listener of its own.
  if (config.s3Api) {
    const s3App = createS3App(
      {
        logger,
        access,
        catalog,
        blobs,
        s3Keys,
        // Parts expire with their upload, set once at its start: never sooner than S3 clients expect of a slow big upload.
        multipart: new MultipartUploads(meta, catalog, blobs, { ttlMs: Math.max(config.uploadTtlMs, 7 * 86_400_000), maxBlobSize: config.maxBlobSize }),
        region: config.s3Api.region,
        domain: config.s3Api.domain,
        maxBlobSize: config.maxBlobSize,
        sendTimeoutMs: config.sendTimeoutMs,
        metrics,
      },
      { multipart: multipartOperations },
    );
    s3Server = httpServer(s3App.fetch, () =>
      new Response(errorXml(new S3Error('InvalidRequest', 400, 'malformed request'), '/', ''), { status: 400, headers: { 'Content-Type': 'application/xml' } }),
      'xml',
    );
    try {
      const s3Address = await listen(s3Server, config.s3Api.port, config.host, S3_PORT_FLAG);
      s3Url = `http://${s3Address.family === 'IPv6' ? `[${s3Address.address}]` : s3Address.address}:${s3Address.port}`;
    } catch (err) {
      s3Server = undefined;
      await close();
      throw err;
    }
    logger.info({ url: s3Url }, 's3 api listening');
  }

  // A node whose lease lapsed (it stalled, or lost the database, for longer than --lease-ttl) was taken for
  // gone: a node may have started meanwhile that must not run beside it. Then this one stops, as it would
  // have been refused at its start, and lets its leases go first: the newer node goes on. A look that fails
  // is taken again after the next renewal.
  let stopSelf: (reason: string) => void = () => {};
  const stoppedBySelf = new Promise<string>((resolve) => (stopSelf = resolve));
  let looking = false;
  const lookAfterLapse = () => {
    if (!lapsePending || looking || closing) return;
    looking = true;
    logger.warn("this node's liveness lease lapsed (stalled or cut off from the database for longer than --lease-ttl): looking for nodes started meanwhile");
    refusalBesideOthers(nodes, localBytes)
      .then(
        async (refusal) => {
          lapsePending = false;
          if (closing) return;
          if (!refusal) return logger.warn('no node started meanwhile beside which this one may not run: serving on');
          const reason = `this node's liveness lease lapsed (stalled or cut off from the database for longer than --lease-ttl) and meanwhile ${refusal}`;
          logger.error({ reason }, 'stopping this node');
          await nodes.stop();
          stopSelf(reason);
          await close().catch((err: unknown) => logger.error({ err }, 'shutdown failed'));
        },
        (err: unknown) => logger.warn({ err }, 'could not look for other nodes: looking again after the next renewal'),
      )
      .finally(() => (looking = false));
  };
  afterRenewal = (lapsed) => {
    lapsePending ||= lapsed;
    lookAfterLapse();
  };
  lookAfterLapse(); // a lapse while the server started

  return { url, s3Url, logger, routes: listRoutes(app), close, stoppedBySelf };
}
