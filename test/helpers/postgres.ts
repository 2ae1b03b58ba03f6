// A real PostgreSQL 15 (Debian's binaries) for the tests: initdb in a temp dir, run as an unprivileged user
// when the tests run as root (the server refuses root), 127.0.0.1 only, durability off (fsync=off: a test
// server's data is thrown away). One shared server per test process, a fresh database per caller. The
// postmaster is this process's child with a parent-death signal: a test process killed outright takes it along.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chownSync, closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { freePort, requiredServerOptions } from './servers.ts';

const run = promisify(execFile);

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const TOOLS = ['initdb', 'pg_ctl', 'postgres'] as const;
/** The system user the server runs as when the tests run as root. */
const SERVER_USER = 'blobdtest';
const START_TIMEOUT_S = 60; // generous: two cores shared by several test processes

export interface Pg {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust authentication). */
  url: string;
  port: number;
  /** The server's directory (data/, its log at server.log). */
  dir: string;
  /** CREATE DATABASE blobd_<random>: a fresh, empty database for the caller; returns its URL. */
  newDatabase(): Promise<string>;
  /** The shared server only releases (it goes at process exit); an own server is stopped and its dir removed. */
  stop(): Promise<void>;
}

/** Why PostgreSQL cannot run here (binaries missing), or null. */
export function pgUnavailable(): string | null {
  const missing = TOOLS.filter((t) => {
    try {
      accessSync(path.join(PG_BIN, t), constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  return missing.length ? `PostgreSQL 15 not installed (missing ${missing.join(', ')} in ${PG_BIN}; apt install postgresql-15)` : null;
}

/** node:test options: skip with the reason when PostgreSQL is unavailable, but under CI=true throw so the file fails. */
export function pgTestOptions(): { skip?: string } {
  return requiredServerOptions(pgUnavailable());
}

const isRoot = process.getuid?.() === 0;

/** Creates the unprivileged server user once (idempotent: an existing user is kept). */
function ensureServerUser(): { uid: number; gid: number } | null {
  if (!isRoot) return null;
  const id = (flag: string) => Number(execFileSync('id', [flag, SERVER_USER], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    try {
      execFileSync('useradd', ['-r', '-M', '-s', '/usr/sbin/nologin', SERVER_USER], { stdio: 'ignore' });
    } catch {
      // another test process created it at the same moment
    }
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Runs a server binary, as the server user when we are root. */
function asServer(bin: string, args: string[]) {
  const file = path.join(PG_BIN, bin);
  return isRoot ? run('runuser', ['-u', SERVER_USER, '--', file, ...args]) : run(file, args);
}

interface Server {
  dir: string;
  data: string;
  stopped: boolean;
  proc?: ChildProcess;
}

// Every running server of this process: stopped (immediate) and removed at exit, synchronously.
const live = new Set<Server>();
process.once('exit', () => {
  for (const s of live) stopSync(s);
});

/** Stops the postmaster (immediate shutdown, then SIGKILL if it is still there); the dir stays. */
function haltSync(s: Server): void {
  if (s.stopped) return;
  s.stopped = true;
  try {
    const args = ['-D', s.data, '-m', 'immediate', '-w', 'stop'];
    if (isRoot) execFileSync('runuser', ['-u', SERVER_USER, '--', path.join(PG_BIN, 'pg_ctl'), ...args], { stdio: 'ignore' });
    else execFileSync(path.join(PG_BIN, 'pg_ctl'), args, { stdio: 'ignore' });
  } catch {
    // not running
  }
  try {
    if (s.proc?.pid && s.proc.exitCode === null && s.proc.signalCode === null) process.kill(s.proc.pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

function stopSync(s: Server): void {
  live.delete(s);
  haltSync(s);
  try {
    rmSync(s.dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // a dying backend still writing: the dir stays, which must not turn an exit into a crash
  }
}

const SETPRIV = '/usr/bin/setpriv';

/**
 * Starts the postmaster as a child of this process (as the server user when we are root), dying with it
 * (setpriv --pdeathsig), logging to dir/server.log.
 */
function spawnPostmaster(s: Server, owner: { uid: number; gid: number } | null, args: string[]): ChildProcess {
  const fd = openSync(path.join(s.dir, 'server.log'), 'a');
  const ids = owner ? ['--reuid', String(owner.uid), '--regid', String(owner.gid), '--clear-groups'] : [];
  const proc = spawn(SETPRIV, [...ids, '--pdeathsig', 'KILL', '--', path.join(PG_BIN, 'postgres'), '-D', s.data, ...args], {
    cwd: s.dir,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  proc.on('error', () => {}); // reported through the log when start-up fails
  proc.unref(); // the shared server must not keep a finished test process alive
  return proc;
}

function logTail(s: Server, lines = 15): string {
  try {
    return readFileSync(path.join(s.dir, 'server.log'), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls until the server answers a query, failing early when it exited (a taken port, a bad setting). */
async function untilReady(s: Server, port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_S * 1000;
  for (;;) {
    const p = s.proc!;
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`PostgreSQL exited (${p.exitCode ?? p.signalCode}):\n${logTail(s)}`);
    const sql = postgres({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`PostgreSQL did not answer within ${START_TIMEOUT_S} s:\n${logTail(s)}`);
    } finally {
      await sql.end({ timeout: 1 });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * pg_hba.conf: trust on the socket and 127.0.0.1, except the role `blobd_pw`, which must give its password
 * (tests of what happens to a password in a URL).
 */
const HBA = `local all all trust
host all blobd_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
`;

export interface PgStartOptions {
  /**
   * PostgreSQL's own durability defaults (fsync, synchronous_commit, full_page_writes on) instead of the
   * tests' fast settings: for benchmarks that compare commit costs with SQLite's synchronous=FULL.
   */
  durable?: boolean;
}

async function startServer(shared: boolean, opts: PgStartOptions = {}): Promise<Pg> {
  const why = pgUnavailable();
  if (why) throw new Error(why);
  const owner = ensureServerUser();
  // Short: the socket path (dir + /.s.PGSQL.PORT) must stay under 107 bytes.
  const dir = mkdtempSync(path.join(tmpdir(), 'bpg-'));
  const data = path.join(dir, 'data');
  const s: Server = { dir, data, stopped: true };
  live.add(s);
  try {
    if (owner) chownSync(dir, owner.uid, owner.gid);
    await asServer('initdb', ['-D', data, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C']);
    writeFileSync(path.join(data, 'pg_hba.conf'), HBA);
    if (owner) chownSync(path.join(data, 'pg_hba.conf'), owner.uid, owner.gid);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const fast = opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
      const args = ['-k', dir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', ...fast, '-c', 'max_connections=300'];
      s.stopped = false;
      s.proc = spawnPostmaster(s, owner, args);
      try {
        await untilReady(s, port);
        break;
      } catch (err) {
        haltSync(s); // this attempt's postmaster; the dir is used again
        // The port was free when picked; another process may have taken it since. Retry that only.
        if (attempt >= 3 || !/could not bind|Address already in use/.test(logTail(s, 30))) throw err;
      }
    }
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    return {
      url,
      port,
      dir,
      async newDatabase() {
        const name = `blobd_${randomBytes(6).toString('hex')}`;
        const admin = postgres(url, { max: 1, onnotice: () => {} });
        try {
          await admin.unsafe(`CREATE DATABASE ${name}`);
        } finally {
          await admin.end({ timeout: 5 });
        }
        return `postgres://postgres@127.0.0.1:${port}/${name}`;
      },
      async stop() {
        if (shared) return;
        stopSync(s);
      },
    };
  } catch (err) {
    stopSync(s);
    throw err;
  }
}

/** A server of the caller's own: stop() stops it and removes its dir. */
export function startPostgres(opts: PgStartOptions = {}): Promise<Pg> {
  return startServer(false, opts);
}

let shared: Promise<Pg> | undefined;

/** The process's shared server: started on first use, stopped (immediate) and removed at process exit. */
export function sharedPostgres(): Promise<Pg> {
  shared ??= startServer(true).catch((err) => {
    shared = undefined; // let a later caller try again
    throw err;
  });
  return shared;
}
