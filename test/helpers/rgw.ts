// A real single-node Ceph RADOS Gateway for the S3 tests: one mon, one memstore OSD and radosgw (beast, 127.0.0.1)
// in a temp dir, with an S3 user. One shared gateway per test process, callers isolated by bucket; every daemon is
// SIGKILLed and the dir removed when the process exits, and the daemons die with the process (setpriv --pdeathsig).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { accessSync, constants, closeSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, ListBucketsCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { freePort, requiredServerOptions } from './servers.ts';

const run = promisify(execFile);

export interface Rgw {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** The cluster's temp dir (ceph.conf, log/ with every daemon's log). */
  dir: string;
  /** How long this gateway took from nothing to an answered ListBuckets, in ms. */
  startupMs: number;
  /** A fresh, empty bucket created for the caller (unique across processes). */
  newBucket(): Promise<string>;
  /** A new S3 client for this gateway (path style, checksums only when required); destroy() it when done. */
  client(overrides?: S3ClientConfig): S3Client;
  /** The shared gateway only releases (it goes at process exit); an own gateway is SIGKILLed and its dir removed. */
  stop(): Promise<void>;
  /**
   * Simulates the store failing; mon and OSD stay up. 'hang' (default) SIGSTOPs radosgw: connections are accepted
   * by the kernel but nothing answers. 'refuse' kills radosgw: connections are refused. Pausing the shared gateway
   * affects every test in the process: pause an own one (startRgw({ own: true })) unless tests run one at a time.
   */
  pause(mode?: 'hang' | 'refuse'): Promise<void>;
  /** Undoes pause(): SIGCONT, or restarts radosgw on the same port and waits until it answers. */
  resume(): Promise<void>;
  /** The last lines of every daemon's log, for failure messages. */
  logTail(lines?: number): string;
}

export interface RgwOptions {
  /** rgw_multipart_min_part_size in bytes; RGW's default is 5 MiB. */
  minPartSize?: number;
  /** memstore_device_bytes: the OSD keeps every byte in RAM and refuses writes when full. Default 6 GiB. */
  memstoreBytes?: number;
  /** A gateway of the caller's own even without other options (for pause()/resume()). */
  own?: boolean;
}

export const DEFAULT_MEMSTORE_BYTES = 6 * 1024 ** 3;
const REGION = 'us-east-1';
const TOOLS = ['monmaptool', 'ceph-mon', 'ceph', 'ceph-osd', 'radosgw', 'radosgw-admin'] as const;
const START_DEADLINE_MS = 90_000; // generous: two cores shared by several test processes
const TOOL_TIMEOUT_MS = 60_000;

function findTool(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** Why RGW cannot run here (binaries missing), or null. */
export function rgwUnavailable(): string | null {
  const missing = TOOLS.filter((t) => !findTool(t));
  return missing.length ? `Ceph RGW not installed (missing ${missing.join(', ')}; apt install ceph-mon ceph-osd radosgw ceph-common)` : null;
}

/** node:test options: skip with the reason when RGW is unavailable, but under CI=true throw so the file fails. */
export function rgwTestOptions(): { skip?: string } {
  return requiredServerOptions(rgwUnavailable());
}

interface Cluster {
  dir: string;
  procs: Map<string, ChildProcess>;
  rgwPort: number;
}

// Every live cluster of this process: the exit handler kills them synchronously (no async work runs at exit).
const live = new Set<Cluster>();
process.once('exit', () => {
  for (const c of live) killSync(c);
});

function killSync(c: Cluster): void {
  for (const p of c.procs.values()) {
    try {
      if (p.pid && p.exitCode === null && p.signalCode === null) process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.delete(c);
  try {
    rmSync(c.dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // a dying daemon still writing: the dir stays, which must not turn an exit into a crash
  }
}

function confText(dir: string, fsid: string, monPort: number, rgwPort: number, opts: RgwOptions): string {
  const rgwExtra = opts.minPartSize !== undefined ? `rgw_multipart_min_part_size = ${opts.minPartSize}\n` : '';
  return `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${monPort}
public_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_retry_count = 1
ms_bind_retry_delay = 1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_tcp_nodelay = true
run_dir = ${dir}/run
admin_socket = ${dir}/run/$name.asok
pid_file = ${dir}/run/$name.pid
log_file = ${dir}/log/$name.log
keyring = ${dir}/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
paxos_propose_interval = 0.05
mon_data_avail_warn = 2
mon_data_avail_crit = 1
[mon.a]
mon_data = ${dir}/mon
[osd.0]
osd_objectstore = memstore
osd_data = ${dir}/osd
memstore_device_bytes = ${opts.memstoreBytes ?? DEFAULT_MEMSTORE_BYTES}
[client.rgw]
# request_timeout_ms: beast's default (65 s) closes a GetObject whose reader paused that long, which the
# paused-download memory test does for longer than that under the full suite's load
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort} request_timeout_ms=600000
rgw_data = ${dir}/rgw
# deleted objects' tails go back to the (RAM) OSD after 30 s, not RGW's 2 h
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
${rgwExtra}`;
}

const SETPRIV = findTool('setpriv');

/** Starts a daemon in the foreground, logging to dir/log/<name>.out; it gets SIGKILL when this process dies. */
function daemon(c: Cluster, name: string, bin: string, args: string[]): ChildProcess {
  const fd = openSync(path.join(c.dir, 'log', `${name}.out`), 'a');
  const argv = SETPRIV ? ['--pdeathsig', 'KILL', '--', bin, ...args] : args;
  const proc = spawn(SETPRIV ?? bin, argv, { cwd: c.dir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  proc.on('error', () => {}); // reported through the log tail when start-up fails
  proc.unref(); // the shared gateway must not keep a finished test process alive
  c.procs.set(name, proc);
  return proc;
}

async function tool(c: Cluster, bin: string, args: string[]): Promise<string> {
  const { stdout } = await run(bin, ['-c', path.join(c.dir, 'ceph.conf'), ...args], { cwd: c.dir, timeout: TOOL_TIMEOUT_MS });
  return stdout;
}

function tail(dir: string, lines = 15): string {
  let out = '';
  let files: string[] = [];
  try {
    files = readdirSync(path.join(dir, 'log')).sort();
  } catch {
    return '(no logs)';
  }
  for (const f of files) {
    const text = readFileSync(path.join(dir, 'log', f), 'utf8').trimEnd();
    if (text) out += `--- ${f}\n${text.split('\n').slice(-lines).join('\n')}\n`;
  }
  return out;
}

/** Resolves when `p` has exited; ref() so an unref'd daemon's exit still holds the event loop open meanwhile. */
function exitOf(p: ChildProcess): Promise<unknown> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  p.ref();
  return new Promise((r) => p.once('exit', r));
}

function assertAlive(c: Cluster): void {
  for (const [name, p] of c.procs) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${name} exited (${p.exitCode ?? p.signalCode})`);
  }
}

/** Polls until `check` resolves truthy, failing early when a daemon died. */
async function until(c: Cluster, what: string, deadline: number, check: () => Promise<boolean>): Promise<void> {
  for (;;) {
    assertAlive(c);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startRadosgw(c: Cluster): void {
  daemon(c, 'rgw', findTool('radosgw')!, ['-c', path.join(c.dir, 'ceph.conf'), '-n', 'client.rgw', '-f']);
}

/** Answers once radosgw serves HTTP (anonymous ListBuckets is a 200). */
async function rgwAnswers(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status === 200;
}

function makeClient(endpoint: string, accessKeyId: string, secretAccessKey: string, overrides: S3ClientConfig = {}): S3Client {
  return new S3Client({
    endpoint,
    region: REGION,
    credentials: { accessKeyId, secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  });
}

async function startOnce(opts: RgwOptions): Promise<{ c: Cluster; accessKeyId: string; secretAccessKey: string }> {
  const started = Date.now();
  const deadline = started + START_DEADLINE_MS;
  const c: Cluster = { dir: await mkdtemp(path.join(tmpdir(), 'blobd-rgw-')), procs: new Map(), rgwPort: 0 };
  live.add(c);
  try {
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) await mkdir(path.join(c.dir, sub));
    const fsid = randomUUID();
    const monPort = await freePort();
    c.rgwPort = await freePort();
    const conf = path.join(c.dir, 'ceph.conf');
    await writeFile(conf, confText(c.dir, fsid, monPort, c.rgwPort, opts));

    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, path.join(c.dir, 'monmap')], {
      timeout: TOOL_TIMEOUT_MS,
    });
    await tool(c, 'ceph-mon', ['--mkfs', '-i', 'a', '--monmap', path.join(c.dir, 'monmap')]);
    daemon(c, 'mon', findTool('ceph-mon')!, ['-c', conf, '-i', 'a', '-f']);
    const osdUuid = randomUUID();
    await tool(c, 'ceph', ['--connect-timeout', '60', 'osd', 'new', osdUuid, '0']);
    await tool(c, 'ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    daemon(c, 'osd', findTool('ceph-osd')!, ['-c', conf, '-i', '0', '-f']);
    startRadosgw(c); // it waits for the OSD itself while creating its pools
    await until(c, 'radosgw to answer', deadline, () => rgwAnswers(c.rgwPort));

    const accessKeyId = `BLOBDTEST${randomBytes(6).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(20).toString('hex');
    await tool(c, 'radosgw-admin', ['user', 'create', '--uid', 'blobd-test', '--display-name', 'blobd test',
      '--access-key', accessKeyId, '--secret', secretAccessKey]);
    const s3 = makeClient(`http://127.0.0.1:${c.rgwPort}`, accessKeyId, secretAccessKey);
    try {
      await until(c, 'a signed ListBuckets', deadline, async () => {
        await s3.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(2000) });
        return true;
      });
    } finally {
      s3.destroy();
    }
    return { c, accessKeyId, secretAccessKey };
  } catch (err) {
    const logs = tail(c.dir);
    killSync(c);
    throw Object.assign(new Error(`Ceph RGW did not start: ${(err as Error).message}\n${logs}`), { logs });
  }
}

let bucketSeq = 0;

async function startCluster(opts: RgwOptions, shared: boolean): Promise<Rgw> {
  const why = rgwUnavailable();
  if (why) throw new Error(why);
  const t0 = Date.now();
  let started: Awaited<ReturnType<typeof startOnce>> | undefined;
  for (let attempt = 1; !started; attempt++) {
    try {
      started = await startOnce(opts);
    } catch (err) {
      // Ports are picked by binding port 0 and closing: another process may take one in between. Retry that only.
      const logs = (err as { logs?: string }).logs ?? '';
      if (attempt >= 3 || !/Address already in use|EADDRINUSE|\(98\)/.test(logs)) throw err;
    }
  }
  const { c, accessKeyId, secretAccessKey } = started;
  const endpoint = `http://127.0.0.1:${c.rgwPort}`;
  const admin = makeClient(endpoint, accessKeyId, secretAccessKey);
  let paused: 'hang' | 'refuse' | null = null;

  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    region: REGION,
    dir: c.dir,
    startupMs: Date.now() - t0,
    async newBucket() {
      const name = `t-${process.pid}-${++bucketSeq}-${randomBytes(4).toString('hex')}`;
      await admin.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    client: (overrides) => makeClient(endpoint, accessKeyId, secretAccessKey, overrides),
    async stop() {
      if (shared) return;
      admin.destroy();
      const exits = [...c.procs.values()].map(exitOf);
      for (const p of c.procs.values()) p.kill('SIGKILL');
      await Promise.all(exits);
      live.delete(c);
      await rm(c.dir, { recursive: true, force: true, maxRetries: 3 });
    },
    async pause(mode = 'hang') {
      if (paused) throw new Error(`already paused (${paused})`);
      const gw = c.procs.get('rgw')!;
      if (mode === 'hang') {
        gw.kill('SIGSTOP');
      } else {
        const gone = exitOf(gw);
        gw.kill('SIGKILL');
        await gone;
        c.procs.delete('rgw');
      }
      paused = mode;
    },
    async resume() {
      if (paused === 'hang') c.procs.get('rgw')!.kill('SIGCONT');
      if (paused === 'refuse') {
        startRadosgw(c);
        await until(c, 'radosgw to answer again', Date.now() + START_DEADLINE_MS, () => rgwAnswers(c.rgwPort));
      }
      paused = null;
    },
    logTail: (lines) => tail(c.dir, lines),
  };
}

let sharedRgw: Promise<Rgw> | undefined;

/**
 * The process's shared gateway (started on first use, stopped at process exit) when called without options;
 * with any option, a gateway of the caller's own that stop() tears down.
 */
export function startRgw(opts: RgwOptions = {}): Promise<Rgw> {
  const own = opts.own || opts.minPartSize !== undefined || opts.memstoreBytes !== undefined;
  if (own) return startCluster(opts, false);
  sharedRgw ??= startCluster({}, true).catch((err) => {
    sharedRgw = undefined; // let a later caller try again
    throw err;
  });
  return sharedRgw;
}
