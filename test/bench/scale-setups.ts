// The configurations the scale bench races: blobd on SQLite + its data directory, on SQLite + RGW, and on
// PostgreSQL + RGW as one node, the same node behind nginx, and three nodes behind nginx (one database, one
// bucket). Each is an Endpoint plus the pids that do its work, for the CPU meter.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startDaemon, type Daemon } from '../helpers/daemon.ts';
import { startNginx } from '../helpers/nginx.ts';
import { startPostgres, type Pg } from '../helpers/postgres.ts';
import type { Rgw } from '../helpers/rgw.ts';
import { withChildren } from './proc-groups.ts';
import { startS3Daemon } from './s3-contenders.ts';
import type { Endpoint } from './scale-client.ts';

export interface Setup extends Endpoint {
  /** Short name (JSON keys). */
  readonly name: string;
  /** What it is, for the tables. */
  readonly title: string;
  /** Each blobd node's own URL (its /metrics), whatever the client talks to. */
  readonly nodeUrls: readonly string[];
  /** Whether its metadata is PostgreSQL (round trips are counted there). */
  readonly postgres: boolean;
  /** Pids of its own processes by group (blobd nodes, nginx). */
  groups(): Record<string, number[]>;
  /** Stops what only this setup uses (its daemon, or its nginx: PostgreSQL nodes are the caller's to stop). */
  stop(): Promise<void>;
}

const daemonSetup = (name: string, title: string, d: Daemon, postgres: boolean): Setup => ({
  name,
  title,
  url: d.url,
  token: d.token,
  nodeUrls: [d.url],
  postgres,
  groups: () => ({ blobd: [d.proc.pid!] }),
  stop: async () => {
    if (!postgres) await d.stop();
  },
});

export async function sqliteFs(dataDir: string): Promise<Setup> {
  const d = await startDaemon({ dataDir, store: 'fs' });
  return daemonSetup('sqlite-fs', 'SQLite + fs', d, false);
}

export async function sqliteRgw(rgw: Rgw, dataDir: string): Promise<Setup> {
  const d = await startS3Daemon(rgw, await rgw.newBucket(), dataDir);
  return daemonSetup('sqlite-rgw', 'SQLite + RGW', d, false);
}

/** `blobd serve` on PostgreSQL `databaseUrl` and RGW `bucket` (blobd's default part size). */
export function startPgNode(rgw: Rgw, bucket: string, databaseUrl: string, dataDir: string): Promise<Daemon> {
  return startDaemon({
    dataDir,
    store: 'fs', // the flags below say where bytes go; BLOBD_TEST_STORE must not add its own
    args: ['--store', 's3', '--s3-endpoint', rgw.endpoint, '--s3-bucket', bucket, '--s3-region', rgw.region, '--s3-force-path-style', '--metadata', databaseUrl],
    env: { BLOBD_S3_ACCESS_KEY_ID: rgw.accessKeyId, BLOBD_S3_SECRET_ACCESS_KEY: rgw.secretAccessKey },
  });
}

export const pgNode = (d: Daemon): Setup => daemonSetup('pg-rgw-1', 'PostgreSQL + RGW, 1 node', d, true);

/**
 * nginx (test/helpers/nginx.ts: keep-alive upstreams, bodies streamed, an access log) in front of `nodes`:
 * round robin, or with `affinity` every request of one session to one node (a hash of its id).
 */
export async function behindNginx(name: string, title: string, nodes: readonly Daemon[], affinity: boolean): Promise<Setup> {
  const proxy = await startNginx({ backends: nodes.map((d) => d.url), affinity });
  const pid = Number(readFileSync(path.join(proxy.dir, 'nginx.pid'), 'utf8').trim());
  return {
    name,
    title,
    url: proxy.url,
    token: nodes[0]!.token,
    nodeUrls: nodes.map((d) => d.url),
    postgres: true,
    groups: () => ({ blobd: nodes.map((d) => d.proc.pid!), nginx: withChildren(pid) }),
    stop: () => proxy.stop(),
  };
}

/** The bench's own PostgreSQL server (durable: PostgreSQL's defaults, not the tests' fsync=off); `pids()` is the postmaster and its backends. */
export async function benchPostgres(durable: boolean): Promise<Pg & { pids(): number[] }> {
  const pg = await startPostgres({ durable });
  const postmaster = () => Number(readFileSync(path.join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
  return Object.assign(pg, { pids: () => withChildren(postmaster()) });
}
