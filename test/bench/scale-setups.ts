// The configurations the scale bench races: blobd on SQLite + its data directory, on SQLite + RGW, and on
// PostgreSQL + RGW as one node, the same node behind nginx, and three nodes behind nginx (one database, one
// bucket). Each is an Endpoint plus the pids that do its work, for the CPU meter.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, type Daemon } from '../helpers/daemon.ts';
import { startNginx } from '../helpers/nginx.ts';
import { PG_BIN, startPostgres, type Pg } from '../helpers/postgres.ts';
import type { Rgw } from '../helpers/rgw.ts';
import { withChildren } from './proc-groups.ts';
import { startS3Daemon } from './s3-contenders.ts';
import type { Endpoint } from './scale-client.ts';

const run = promisify(execFile);

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

/** nginx (test/helpers/nginx.ts: round robin, no affinity, keep-alive upstreams, bodies streamed) in front of `nodes`. */
export async function behindNginx(name: string, title: string, nodes: readonly Daemon[]): Promise<Setup> {
  const proxy = await startNginx({ backends: nodes.map((d) => d.url) });
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

/**
 * The bench's own PostgreSQL (test/helpers/postgres.ts), durable unless `durable` is false: the helper starts
 * it with fsync, synchronous_commit and full_page_writes off (a test server's data is thrown away), which
 * would race SQLite's synchronous=FULL against commits that never reach the disk. So it is restarted on the
 * same port with PostgreSQL's defaults. `pids()` is the postmaster and its backends.
 */
export async function benchPostgres(durable: boolean): Promise<Pg & { pids(): number[] }> {
  const pg = await startPostgres();
  const data = path.join(pg.dir, 'data');
  if (durable) {
    const opts = `-k ${pg.dir} -p ${pg.port} -c listen_addresses=127.0.0.1 -c max_connections=300`;
    const args = ['-D', data, '-l', path.join(pg.dir, 'server.log'), '-o', opts, '-w', '-t', '60', 'restart'];
    const ctl = path.join(PG_BIN, 'pg_ctl');
    await run(...((process.getuid?.() === 0 ? ['runuser', ['-u', 'blobdtest', '--', ctl, ...args]] : [ctl, args]) as [string, string[]]));
  }
  const postmaster = () => Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
  return Object.assign(pg, { pids: () => withChildren(postmaster()) });
}
