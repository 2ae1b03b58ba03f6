// Starts the real daemon as a child process (bin/blobd serve --port 0) on its own temp data dir, reads the
// address it prints, and offers fetch with the admin token. Every test file owns its daemons.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
}

export interface Daemon {
  readonly url: string;
  readonly dataDir: string;
  readonly token: string;
  readonly proc: ChildProcess;
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

export async function startDaemon(opts: StartOptions = {}): Promise<Daemon> {
  const dataDir = opts.dataDir ?? path.join(await makeTempDir(), 'data');
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...opts.env };
  delete env.BLOBD_ADMIN_TOKEN;
  if (opts.adminToken !== null) env.BLOBD_ADMIN_TOKEN = opts.adminToken ?? TEST_TOKEN;
  const proc = spawn(
    process.execPath,
    [...BLOBD_NODE_FLAGS, BLOBD, 'serve', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, '--log-level', 'warn', ...(opts.args ?? [])],
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
    dataDir,
    token,
    proc,
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
