// N blobd daemons scaled out as operators run them: one PostgreSQL database (--metadata), one bucket of a real
// Ceph RGW (--store s3), each daemon with its own data directory and a fixed port (a restart keeps its address),
// the same admin token, and nginx in front (round robin). For the cluster tests; never part of a single-node test.
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import path from 'node:path';
import postgres from 'postgres';
import { makeTempDir, removeDir, s3ServeArgs, startDaemon, TEST_S3_PREFIX, TEST_TOKEN, type Daemon, type S3Target } from './daemon.ts';
import { nginxTestOptions, startNginx, type Nginx } from './nginx.ts';
import { pgTestOptions, sharedPostgres } from './postgres.ts';
import { rgwTestOptions, startRgw } from './rgw.ts';
import { freePort } from './servers.ts';

export interface ClusterOptions {
  /** Daemons; default 3. */
  nodes?: number;
  /** More `blobd serve` flags for every node. */
  args?: string[];
  /** More environment for every node. */
  env?: Record<string, string>;
  /**
   * How long a node's claim on an upload session outlives the node (BLOBD_LEASE_TTL); default 2s, so that a
   * test does not wait the production 30 s after a kill -9.
   */
  leaseTtl?: string;
  /** nginx sends every request of one upload session to the same node (NginxOptions.affinity); default off. */
  affinity?: boolean;
}

export interface ClusterNode {
  /** 1-based, as tests name them. */
  readonly n: number;
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** The running daemon (a new one after each restart); undefined while the node is down. */
  readonly daemon: Daemon | undefined;
  /** fetch against this node with the admin token (as Daemon.api). Throws while the node is down. */
  api(pathname: string, init?: RequestInit & { auth?: boolean }): Promise<Response>;
  /** SIGKILL; the node stays down until restart(). */
  kill9(): Promise<void>;
  /** SIGTERM (in-flight requests finish); the node stays down until restart(). */
  stop(): Promise<void>;
  /** Starts the node again on its port and data directory; stops it gracefully first if it runs. */
  restart(): Promise<void>;
  /** What the daemon printed since its last start. */
  output(): string;
}

export interface ClusterDb {
  readonly url: string;
  /** A query on the cluster's database (a pool of 2 of the test's own), for assertions about rows. */
  readonly sql: postgres.Sql;
}

export interface Cluster {
  /** nginx in front of every node. */
  readonly url: string;
  readonly token: string;
  readonly nodes: ClusterNode[];
  readonly nginx: Nginx;
  readonly pg: ClusterDb;
  readonly s3: S3Target;
  /** An S3 client for the cluster's bucket; the cluster destroys it. */
  readonly s3Client: S3Client;
  /** fetch through nginx with the admin token unless headers say otherwise. */
  api(pathname: string, init?: RequestInit & { auth?: boolean }): Promise<Response>;
  /** The keys under the cluster's prefix starting with `under` (e.g. 'blobs/'), without the prefix. */
  listKeys(under?: string): Promise<string[]>;
  /** Which node a URL of the form http://127.0.0.1:PORT is, or undefined. */
  nodeAt(url: string | null): ClusterNode | undefined;
  stop(): Promise<void>;
}

/**
 * node:test options for a cluster test: it needs PostgreSQL, Ceph RGW and nginx. Skipped with the reasons
 * when one is missing; under CI=true each check throws instead, so the file fails.
 */
export function clusterTestOptions(): { skip?: string } {
  const why = [pgTestOptions(), rgwTestOptions(), nginxTestOptions()].map((o) => o.skip).filter(Boolean);
  return why.length ? { skip: why.join('; ') } : {};
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const count = opts.nodes ?? 3;
  const [pgServer, rgw] = await Promise.all([sharedPostgres(), startRgw()]);
  const databaseUrl = await pgServer.newDatabase();
  const bucket = await rgw.newBucket();
  const s3: S3Target = {
    endpoint: rgw.endpoint,
    region: rgw.region,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
    bucket,
    prefix: TEST_S3_PREFIX,
  };
  const storeFlags = s3ServeArgs(s3);
  const root = await makeTempDir('blobd-cluster-');
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const s3Client = rgw.client();
  const nodes: ClusterNode[] = [];
  let nginx: Nginx | undefined;

  const makeNode = async (n: number): Promise<ClusterNode> => {
    const dataDir = path.join(root, `node${n}`, 'data');
    let daemon: Daemon | undefined;
    let port = 0;
    const start = async () => {
      // A fixed port: nginx's upstream list names it, and a restarted node must be found there again.
      // The first start takes a free one; a taken port at a restart is a real failure, reported as such.
      for (let attempt = 1; ; attempt++) {
        const tryPort = port || (await freePort());
        try {
          daemon = await startDaemon({
            dataDir,
            store: 'fs', // the S3 flags are the cluster's own bucket, below (not a bucket per data dir)
            metadata: 'sqlite', // likewise: --metadata is the cluster's one database
            args: [...storeFlags.args, '--metadata', databaseUrl, '--port', String(tryPort), ...(opts.args ?? [])],
            env: { ...storeFlags.env, BLOBD_LEASE_TTL: opts.leaseTtl ?? '2s', ...opts.env },
            adminToken: TEST_TOKEN,
          });
          port = tryPort;
          return;
        } catch (err) {
          if (port || attempt >= 3 || !/EADDRINUSE|address already in use/i.test((err as Error).message)) throw err;
        }
      }
    };
    await start();
    const alive = () => daemon !== undefined && daemon.proc.exitCode === null && daemon.proc.signalCode === null;
    const node: ClusterNode = {
      n,
      get url() {
        return `http://127.0.0.1:${port}`;
      },
      get port() {
        return port;
      },
      dataDir,
      get daemon() {
        return alive() ? daemon : undefined;
      },
      api(pathname, init) {
        if (!alive()) throw new Error(`node ${n} is down`);
        return daemon!.api(pathname, init);
      },
      async kill9() {
        if (daemon) await daemon.kill9();
      },
      async stop() {
        if (alive()) await daemon!.stop();
      },
      async restart() {
        if (alive()) await daemon!.stop();
        await start();
      },
      output: () => daemon?.output() ?? '',
    };
    return node;
  };

  try {
    // One after another: each node's first start applies (or finds) the schema, and 2 cores start them no faster.
    for (let n = 1; n <= count; n++) nodes.push(await makeNode(n));
    nginx = await startNginx({ backends: nodes.map((node) => node.url), affinity: opts.affinity });
  } catch (err) {
    await Promise.all(nodes.map((node) => node.kill9()));
    await sql.end({ timeout: 5 });
    s3Client.destroy();
    await removeDir(root);
    throw err;
  }

  const front = nginx;
  return {
    url: front.url,
    token: TEST_TOKEN,
    nodes,
    nginx: front,
    pg: { url: databaseUrl, sql },
    s3,
    s3Client,
    api(pathname, init = {}) {
      const { auth = true, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (auth && !headers.has('authorization')) headers.set('authorization', `Bearer ${TEST_TOKEN}`);
      return fetch(front.url + pathname, { ...rest, headers });
    },
    async listKeys(under = '') {
      const keys: string[] = [];
      let token: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const res = await s3Client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: s3.prefix + under, ContinuationToken: token }));
        for (const o of res.Contents ?? []) keys.push(o.Key!.slice(s3.prefix.length));
        token = res.NextContinuationToken;
        if (!token) return keys;
      }
      throw new Error('more than 1000 pages of keys');
    },
    nodeAt: (url) => nodes.find((node) => node.url === url),
    async stop() {
      await front.stop();
      await Promise.all(nodes.map((node) => node.stop()));
      await sql.end({ timeout: 5 });
      s3Client.destroy();
      await removeDir(root);
    },
  };
}

/**
 * fetch against `base` (nginx or one node): with the bearer `token` unless the headers carry a credential
 * (Authorization or Upload-Token); a ReadableStream body is sent streamed.
 */
export function request(base: string, token: string, pathname: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('authorization') && !headers.has('upload-token')) headers.set('authorization', `Bearer ${token}`);
  const streamed = init.body instanceof ReadableStream ? { duplex: 'half' } : {};
  return fetch(base + pathname, { ...init, ...streamed, headers } as RequestInit);
}

/** The sha256 of a GET's body (hashed as it arrives), or null when the answer was not a 200. */
export async function digestOf(res: Response): Promise<string | null> {
  if (res.status !== 200) {
    await res.arrayBuffer().catch(() => undefined);
    return null;
  }
  const hash = createHash('sha256');
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(piece);
  return `sha256:${hash.digest('hex')}`;
}
