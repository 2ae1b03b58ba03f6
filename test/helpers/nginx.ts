// A real nginx in front of several daemons, as operators run blobd scaled out: round robin without affinity,
// bodies streamed both ways, and the upstream that answered in an X-Upstream response header. Everything
// nginx writes (config, pid, logs, temp dirs) stays in its own temp dir; it dies with the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, requiredServerOptions } from './servers.ts';

export const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';

export interface NginxOptions {
  /** The daemons, as http://127.0.0.1:PORT; at least one. */
  backends: string[];
  /** Seconds a backend that failed a connection is left out (nginx's fail_timeout). Default 2. */
  failTimeoutS?: number;
  /**
   * Send every request of one upload session (native or tus) to the same node (consistent hash of the session
   * id), everything else round robin as before. Off by default: the tests show that no affinity is needed.
   */
  affinity?: boolean;
}

export interface Nginx {
  /** http://127.0.0.1:PORT of nginx. */
  readonly url: string;
  readonly dir: string;
  /** Rewrites the upstream list and reloads (SIGHUP); resolves once the new configuration answers. */
  setBackends(backends: string[]): Promise<void>;
  /** The error log's last lines, for failure messages. */
  logTail(lines?: number): string;
  /** The access log: one line per request, `METHOD URI STATUS UPSTREAMS`. */
  accessLog(): string;
  stop(): Promise<void>;
}

/** The backend that answered a request that went through nginx (the last one it tried), or null. */
export function upstreamOf(res: Response): string | null {
  const tried = res.headers.get('x-upstream');
  if (!tried) return null;
  // "a:1, b:2" when nginx tried a first; "blobd" when no node was available.
  const last = tried.split(/\s*,\s*|\s+:\s+/).pop()!.trim();
  return /^[\d.]+:\d+$/.test(last) ? `http://${last}` : null;
}

/** Why nginx cannot run here, or null. */
export function nginxUnavailable(): string | null {
  try {
    accessSync(NGINX, constants.X_OK);
    return null;
  } catch {
    return `nginx not installed (no ${NGINX}; apt install nginx-light)`;
  }
}

/** node:test options: skip with the reason when nginx is missing, but under CI=true throw so the file fails. */
export function nginxTestOptions(): { skip?: string } {
  return requiredServerOptions(nginxUnavailable());
}

function hostPort(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`not an http backend: ${url}`);
  return u.host;
}

/**
 * The configuration: what a blob store behind a proxy needs, each line for a reason (/tmp/doc-notes/cluster.md
 * and docs/operations.md say the same to operators).
 */
export function nginxConf(dir: string, port: number, backends: string[], failTimeoutS = 2, affinity = false): string {
  if (backends.length === 0) throw new Error('nginx needs at least one backend');
  const servers = backends.map((b) => `        server ${hostPort(b)} max_fails=1 fail_timeout=${failTimeoutS}s;`).join('\n');
  // The session id from the native routes and from tus's upload URL (id.token); other requests get a key of
  // their own ($request_id), which spreads them like round robin.
  const sessionMap = affinity
    ? `    map $uri $blobd_session {
        "~^/api/blobs/uploads/(?<sid>[0-9a-f-]{36})"  $sid;
        "~^/api/tus/(?<tid>[0-9a-f-]{36})"            $tid;
        default                                       $request_id;
    }
`
    : '';
  const balance = affinity ? '        hash $blobd_session consistent;\n' : '';
  return `# written by test/helpers/nginx.ts
daemon off;
# One process: it dies with the test (no orphaned workers) and still reloads on SIGHUP.
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 4096; }
http {
    log_format upstream '$request_method $request_uri $status $upstream_addr';
    access_log ${dir}/access.log upstream;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;

${sessionMap}    upstream blobd {
        # Round robin (or a hash of the session id): any node may serve any request, as sessions and leases
        # live in PostgreSQL.
${balance}${servers}
        keepalive 32;
        # Below Node's keep-alive timeout (5 s): nginx must not reuse a connection the daemon is closing,
        # or a POST sent on it fails with 502 (non-idempotent requests are never retried on another node).
        keepalive_timeout 4s;
    }

    server {
        listen 127.0.0.1:${port};

        client_max_body_size 0;          # blobd enforces --max-blob-size itself (413 before reading)
        proxy_request_buffering off;     # stream upload bodies, never spool them to disk first
        proxy_buffering off;             # stream downloads
        proxy_http_version 1.1;          # keep-alive to the daemons, chunked bodies
        proxy_set_header Connection "";  # ... which needs the client's Connection header dropped
        proxy_set_header Host $http_host;                 # signed URLs are built from Host
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_connect_timeout 2s;        # a dead node is skipped quickly
        proxy_read_timeout 1h;           # one append of a slow client may take long
        proxy_send_timeout 1h;
        # The default, spelled out: a request is passed to the next node only when it could not be sent
        # (connection refused or timed out). POST and PATCH are never retried once sent (no non_idempotent):
        # an append that reached a node may have been acknowledged; the client asks for the offset instead.
        proxy_next_upstream error timeout;
        add_header X-Upstream $upstream_addr always;

        location / {
            proxy_pass http://blobd;
        }
    }
}
`;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once('exit', () => r()));
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Resolves when nginx answers HTTP on `url` (any status: the backends may be down). */
async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

async function startOnce(opts: NginxOptions): Promise<Nginx> {
  const dir = await mkdtemp(path.join(tmpdir(), 'blobd-nginx-'));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  let backends = opts.backends;
  await writeFile(conf, nginxConf(dir, port, backends, opts.failTimeoutS, opts.affinity));
  const errorLog = path.join(dir, 'error.log');
  // -e: the error log from the first moment (before the config is read), instead of /var/log/nginx.
  const proc = spawn(NGINX, ['-p', dir, '-c', conf, '-e', errorLog], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async () => {
    const done = exited(proc);
    proc.kill('SIGKILL');
    await done;
    live.delete(proc);
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw Object.assign(new Error(`nginx exited (${proc.exitCode ?? proc.signalCode}):\n${stderr}${readText(errorLog)}`), {
          inUse: /Address already in use|\(98:/.test(stderr + readText(errorLog)),
        });
      }
      if (await answers(url)) break;
      if (Date.now() > deadline) throw new Error(`nginx did not answer within 15 s:\n${stderr}${readText(errorLog)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  } catch (err) {
    await cleanup();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    url,
    dir,
    async setBackends(next) {
      backends = next;
      await writeFile(conf, nginxConf(dir, port, backends, opts.failTimeoutS, opts.affinity));
      const before = (readText(errorLog).match(/reconfiguring/g) ?? []).length;
      proc.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      // Single-process nginx logs "reconfiguring" when it has read the new configuration.
      while ((readText(errorLog).match(/reconfiguring/g) ?? []).length <= before) {
        if (proc.exitCode !== null) throw new Error(`nginx exited on reload:\n${readText(errorLog)}`);
        if (Date.now() > deadline) throw new Error(`nginx did not reload within 10 s:\n${readText(errorLog)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      if (/\[emerg\]/.test(readText(errorLog).split('reconfiguring').pop()!)) throw new Error(`nginx refused the new configuration:\n${readText(errorLog)}`);
    },
    logTail: (lines = 20) => readText(errorLog).trimEnd().split('\n').slice(-lines).join('\n'),
    accessLog: () => readText(path.join(dir, 'access.log')),
    stop: () =>
      (stopping ??= (async () => {
        const done = exited(proc);
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await done;
        clearTimeout(timer);
        live.delete(proc);
        await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      })()),
  };
}

/** Starts nginx on a free port of 127.0.0.1 in front of `backends`. */
export async function startNginx(opts: NginxOptions): Promise<Nginx> {
  const why = nginxUnavailable();
  if (why) throw new Error(why);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      // The free port was taken between the probe and nginx's bind: try another, a few times only.
      if (attempt >= 3 || !(err as { inUse?: boolean }).inUse) throw err;
    }
  }
}
