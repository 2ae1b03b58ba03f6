// Starts the real daemon as a child process (bin/blobd serve --port 0) on its own temp data dir, reads the
// address it prints, and offers fetch with the admin token. Every test file owns its daemons. With
// BLOBD_TEST_STORE=s3 (or store: 's3') the daemon keeps its bytes in a bucket of a real Ceph RGW instead; with
// BLOBD_TEST_METADATA=postgres (or metadata: 'postgres') its rows in a database of a real PostgreSQL.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rgwUnavailable, startRgw } from './rgw.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BLOBD = path.join(ROOT, 'bin', 'blobd');
/** The V8 flags on bin/blobd's #! line: daemons run with them, under the Node that runs the tests. */
export const BLOBD_NODE_FLAGS = readFileSync(BLOBD, 'utf8').split('\n', 1)[0]!.split(/\s+/).filter((a) => a.startsWith('--'));

export interface StartOptions {
  /** Reuse a data directory (for restarts); otherwise a fresh temp dir is made. */
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Set BLOBD_ADMIN_TOKEN (default) or let the daemon generate data/admin-token. */
  adminToken?: string | null;
  /** Where the bytes go; default testStore(). A restart with the same dataDir keeps the same bucket. */
  store?: StoreKind;
  /** Where the rows go; default testMetadata(). A restart with the same dataDir keeps the same database. */
  metadata?: MetadataKind;
}

export type StoreKind = 'fs' | 's3';
export type MetadataKind = 'sqlite' | 'postgres';

/** Where a daemon of the S3 store keeps its bytes, for tests that look at them (test/helpers/store-probe.ts). */
export interface S3Target {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly bucket: string;
  /** '' or ending in '/'. */
  readonly prefix: string;
}

export interface Daemon {
  readonly url: string;
  /** The S3-compatible API's URL (every test daemon has one, on a free port). */
  readonly s3Url: string | undefined;
  readonly dataDir: string;
  readonly token: string;
  readonly proc: ChildProcess;
  readonly store: StoreKind;
  /** Set when store is 's3'. */
  readonly s3?: S3Target;
  readonly metadata: MetadataKind;
  /** The daemon's database (--metadata), set when metadata is 'postgres'. */
  readonly databaseUrl?: string;
  /** Everything the daemon printed so far (stdout and stderr). */
  output(): string;
  /** fetch against the daemon with the admin token unless headers say otherwise. */
  api(pathname: string, init?: RequestInit & { auth?: boolean }): Promise<Response>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill9(): Promise<void>;
}

export const TEST_TOKEN = 'test-admin-token-0123456789';

export async function makeTempDir(prefix = 'blobd-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

/** The store tests run against: BLOBD_TEST_STORE=s3 (read at each call: test/s3/*.test.ts set it first). */
export function testStore(): StoreKind {
  return process.env.BLOBD_TEST_STORE === 's3' ? 's3' : 'fs';
}

/**
 * node:test options for a test that only means something where bytes are files in the data directory
 * (file modes, a small filesystem filling up, the layout on disk): skipped, with `why`, on the S3 store.
 */
export function onFsOnly(why: string): { skip?: string } {
  return testStore() === 's3' ? { skip: `fs only: ${why}` } : {};
}

/** The metadata store tests run against: BLOBD_TEST_METADATA=postgres (read at each call: test/pg/*.test.ts set it first). */
export function testMetadata(): MetadataKind {
  return process.env.BLOBD_TEST_METADATA === 'postgres' ? 'postgres' : 'sqlite';
}

/**
 * node:test options for a test that only means something where the rows are the SQLite file in the data
 * directory (its locks, its file): skipped, with `why`, on PostgreSQL.
 */
export function onSqliteOnly(why: string): { skip?: string } {
  return testMetadata() === 'postgres' ? { skip: `SQLite only: ${why}` } : {};
}

// A data directory's rows live in one database: a restart on the same dataDir must name the same one.
const databases = new Map<string, string>();

/** The database of the daemon on `dataDir` (a fresh one on the process's shared PostgreSQL at first use). */
export async function databaseFor(dataDir: string): Promise<string> {
  const key = path.resolve(dataDir);
  let url = databases.get(key);
  if (!url) {
    // Imported at first use: a run on SQLite never loads the PostgreSQL helper.
    const { sharedPostgres } = await import('./postgres.ts');
    url = await (await sharedPostgres()).newDatabase();
    databases.set(key, url);
  }
  return url;
}

/**
 * The flags that give `blobd serve` (or an offline command such as `fsck --data`) on `dataDir` the metadata
 * store of `kind` (default testMetadata()): none for SQLite, `--metadata URL` of the data dir's database.
 */
export async function metadataArgs(dataDir: string, kind: MetadataKind = testMetadata()): Promise<string[]> {
  return kind === 'postgres' ? ['--metadata', await databaseFor(dataDir)] : [];
}

/** The same as metadataArgs, as the environment (BLOBD_DATABASE_URL): for a config loaded in-process. */
export async function metadataEnv(dataDir: string, kind: MetadataKind = testMetadata()): Promise<Record<string, string>> {
  return kind === 'postgres' ? { BLOBD_DATABASE_URL: await databaseFor(dataDir) } : {};
}

/**
 * The S3 part size of test daemons: RGW's default minimum (5 MiB), as `blobd serve` cannot be told a lower
 * minimum. The process's shared gateway (helpers/rgw.ts) keeps RGW's defaults.
 */
export const TEST_PART_SIZE = 5 * 1024 * 1024;
export const TEST_S3_PREFIX = 'blobd-test/';
// A data directory remembers its store (data/byte-store.json): a restart must name the same bucket.
const buckets = new Map<string, string>();

async function s3TargetFor(dataDir: string): Promise<S3Target> {
  const why = rgwUnavailable();
  if (why) throw new Error(`BLOBD_TEST_STORE=s3 but ${why}`);
  const rgw = await startRgw();
  let bucket = buckets.get(dataDir);
  if (!bucket) {
    bucket = await rgw.newBucket();
    buckets.set(dataDir, bucket);
  }
  const { endpoint, region, accessKeyId, secretAccessKey } = rgw;
  return { endpoint, region, accessKeyId, secretAccessKey, bucket, prefix: TEST_S3_PREFIX };
}

/** The serve flags and environment that put a daemon's bytes at `s3`. */
export function s3ServeArgs(s3: S3Target): { args: string[]; env: Record<string, string> } {
  return {
    args: ['--store', 's3', '--s3-endpoint', s3.endpoint, '--s3-bucket', s3.bucket, '--s3-region', s3.region,
      '--s3-prefix', s3.prefix, '--s3-force-path-style', '--s3-part-size', String(TEST_PART_SIZE)],
    env: { BLOBD_S3_ACCESS_KEY_ID: s3.accessKeyId, BLOBD_S3_SECRET_ACCESS_KEY: s3.secretAccessKey },
  };
}

export async function startDaemon(opts: StartOptions = {}): Promise<Daemon> {
  const dataDir = opts.dataDir ?? path.join(await makeTempDir(), 'data');
  const store = opts.store ?? testStore();
  const s3 = store === 's3' ? await s3TargetFor(path.resolve(dataDir)) : undefined;
  const storeFlags = s3 ? s3ServeArgs(s3) : { args: [], env: {} };
  const metadata = opts.metadata ?? testMetadata();
  const databaseUrl = metadata === 'postgres' ? await databaseFor(dataDir) : undefined;
  const metadataFlags = databaseUrl ? ['--metadata', databaseUrl] : [];
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...storeFlags.env, ...opts.env };
  delete env.BLOBD_ADMIN_TOKEN;
  if (opts.adminToken !== null) env.BLOBD_ADMIN_TOKEN = opts.adminToken ?? TEST_TOKEN;
  // A daemon given a port of its own would put its S3 API on the default 8889, which another test's daemon
  // (or a developer's) may hold: off unless the test names one. With --port 0 it takes a free port.
  const s3ApiOff = opts.args?.includes('--port') && !opts.args.includes('--s3-api-port') ? ['--s3-api-port', 'false'] : [];
  const proc = spawn(
    process.execPath,
    [...BLOBD_NODE_FLAGS, BLOBD, 'serve', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, '--log-level', 'warn', ...storeFlags.args, ...metadataFlags, ...(opts.args ?? []), ...s3ApiOff],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`daemon did not start within 30s:\n${out}`)), 30_000);
    const onData = () => {
      const m = /blobd listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        cleanup();
        resolve(m[1]!);
      }
    };
    const onExit = (code: number | null) => fail(new Error(`daemon exited (${code}) before listening:\n${out}`));
    function cleanup() {
      clearTimeout(timer);
      proc.stdout!.off('data', onData);
      proc.off('exit', onExit);
    }
    function fail(err: Error) {
      cleanup();
      proc.kill('SIGKILL');
      reject(err);
    }
    proc.stdout!.on('data', onData);
    proc.once('exit', onExit);
  });

  const token =
    opts.adminToken === null
      ? (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim()
      : (opts.adminToken ?? TEST_TOKEN);

  return {
    url,
    s3Url: /blobd s3 api listening on (http:\/\/\S+)/.exec(out)?.[1],
    dataDir,
    token,
    proc,
    store,
    s3,
    metadata,
    databaseUrl,
    output: () => out,
    api(pathname, init = {}) {
      const { auth = true, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (auth && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
      return fetch(url + pathname, { ...rest, headers });
    },
    async stop() {
      const done = exited(proc);
      proc.kill('SIGTERM');
      return done;
    },
    async kill9() {
      const done = exited(proc);
      proc.kill('SIGKILL');
      await done;
    },
  };
}
