// Starts the bench's rivals as child processes on 127.0.0.1 — the bare node:http baseline, the G1 floor, @tus/server,
// and nginx when it is installed — and stops them (SIGTERM, then SIGKILL after a deadline). Never leaves a
// child behind: a start that fails kills what it spawned.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { send } from './bench-http.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const START_MS = 30_000;

export interface Rival {
  readonly url: string;
  readonly proc: ChildProcess;
  stop(): Promise<void>;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** SIGTERM; SIGKILL if it is still there after 5 s. */
export async function stopChild(proc: ChildProcess): Promise<void> {
  const done = exited(proc);
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(timer);
}

/** Runs a bench server script under tsx and waits for its "listening on URL" line. */
export async function startNodeRival(script: 'baseline-server.ts' | 'floor-server.ts' | 'tus-server.ts', dir: string): Promise<Rival> {
  await mkdir(dir, { recursive: true });
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(here, script), dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script} did not start within ${START_MS} ms:\n${out}`)), START_MS);
      proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) clearTimeout(timer), resolve(m[1]!);
      });
      proc.once('exit', (code) => (clearTimeout(timer), reject(new Error(`${script} exited (${code}):\n${out}`))));
    });
    return { url, proc, stop: () => stopChild(proc) };
  } catch (err) {
    await stopChild(proc);
    throw err;
  }
}

/** A port that was free a moment ago (nginx cannot listen on port 0 and tell us); the caller checks it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p)) ?? null;

/**
 * nginx serving `root` statically with sendfile, one process (master_process off), in the foreground, its
 * prefix, logs and temp paths under `dir`. Retries with another port if the one picked was taken meanwhile.
 */
export async function startNginx(root: string, dir: string): Promise<Rival> {
  if (!NGINX) throw new Error('nginx is not installed');
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    await writeFile(
      conf,
      `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
    );
    const proc = spawn(NGINX, ['-p', dir, '-e', path.join(dir, 'logs', 'error.log'), '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const url = `http://127.0.0.1:${port}`;
    // Poll until nginx answers (any status: the root may still be empty) or exits; bounded by a deadline.
    const deadline = Date.now() + START_MS;
    let up = false;
    while (!up && proc.exitCode === null && proc.signalCode === null && Date.now() < deadline) {
      up = await send(`${url}/`, { method: 'GET' }).then(
        (r) => String(r.headers.server ?? '').startsWith('nginx'),
        () => false,
      );
      if (!up) await new Promise((r) => setTimeout(r, 20));
    }
    if (up) return { url, proc, stop: () => stopChild(proc) };
    await stopChild(proc);
    if (attempt >= 3) throw new Error(`nginx did not start on 127.0.0.1:${port}: ${err}`);
  }
}
