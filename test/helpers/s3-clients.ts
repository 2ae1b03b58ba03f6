// The real S3 command-line clients (Debian's awscli, rclone, s3cmd, restic) run against an S3 endpoint, each
// with a private temp home and config: the user's ~/.aws, ~/.config/rclone, ~/.s3cfg and restic cache are
// never read or written, and no AWS_* / RCLONE_* / RESTIC_* variable of the test process leaks in.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requiredServerOptions } from './servers.ts';

export type S3ClientName = 'aws' | 'rclone' | 's3cmd' | 'restic';

/**
 * Debian's binaries, by absolute path: a pyenv or pip `aws` earlier on PATH is another awscli with other
 * defaults (checksums, signing), and the suite means the one .ci/run installs.
 */
export const S3_CLIENT_BINARIES: Record<S3ClientName, { bin: string; pkg: string }> = {
  aws: { bin: '/usr/bin/aws', pkg: 'awscli' },
  rclone: { bin: '/usr/bin/rclone', pkg: 'rclone' },
  s3cmd: { bin: '/usr/bin/s3cmd', pkg: 's3cmd' },
  restic: { bin: '/usr/bin/restic', pkg: 'restic' },
};

/** Why `name` cannot run here (not installed), or null. */
export function s3ClientUnavailable(name: S3ClientName): string | null {
  const { bin, pkg } = S3_CLIENT_BINARIES[name];
  try {
    accessSync(bin, constants.X_OK);
    return null;
  } catch {
    return `${name} not installed (no ${bin}; apt install ${pkg}, as .ci/run does)`;
  }
}

/** node:test options for a test that runs `name`: skipped with the reason when absent, but under CI=true it throws. */
export function s3ClientOptions(name: S3ClientName): { skip?: string } {
  return requiredServerOptions(s3ClientUnavailable(name));
}

export interface S3Endpoint {
  /** http://127.0.0.1:PORT (path style). */
  url: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Default us-east-1. */
  region?: string;
}

export interface ClientRun {
  /** Exit code; null when killed (timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time of the run in ms (for reports, never asserted). */
  ms: number;
}

export interface RunOptions {
  /** Kill the client (SIGKILL) after this many ms; default 120 s. */
  timeoutMs?: number;
  cwd?: string;
  /** Extra environment, on top of the private one. */
  env?: Record<string, string>;
}

export const RESTIC_PASSWORD = 'blobd-test-restic-password';
const DEFAULT_TIMEOUT_MS = 120_000;
const MAX_OUTPUT = 16 * 1024 * 1024; // the tail is kept beyond this: a runaway --debug must not eat the test's memory

/** Runs `bin args` with exactly `env`, collecting its output, killed after the timeout. */
export function runClient(bin: string, args: string[], env: Record<string, string>, opts: RunOptions = {}): Promise<ClientRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    const proc = spawn(bin, args, { env: { ...env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const keep = (s: string) => (s.length > MAX_OUTPUT ? s.slice(-MAX_OUTPUT) : s);
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = keep(stdout + d)));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = keep(stderr + d)));
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    const finish = (code: number | null, extra = '') => {
      clearTimeout(timer);
      if (timedOut) extra += `\n[killed after ${timeoutMs} ms]`;
      resolve({ code, stdout, stderr: stderr + extra, ms: Date.now() - started });
    };
    proc.once('error', (err) => finish(null, `\n[spawn failed: ${err.message}]`));
    proc.once('close', (code) => finish(code));
  });
}

/** Throws with the client's output unless it exited 0; returns the run. */
export function succeeded(what: string, run: ClientRun): ClientRun {
  if (run.code !== 0) {
    throw new Error(`${what} exited ${run.code} after ${run.ms} ms\n--- stdout\n${run.stdout.slice(-4000)}\n--- stderr\n${run.stderr.slice(-8000)}`);
  }
  return run;
}

export interface S3Clients {
  readonly endpoint: S3Endpoint;
  /** The private home (HOME, config files, caches). */
  readonly home: string;
  /** `aws --endpoint-url URL ARGS` with a config and credentials file of its own. */
  aws(args: string[], opts?: RunOptions): Promise<ClientRun>;
  /** `rclone ARGS` with the remote `:s3:` configured by RCLONE_S3_* (use `:s3:bucket/path` in args). */
  rclone(args: string[], opts?: RunOptions): Promise<ClientRun>;
  /** `s3cmd -c CONFIG ARGS` (path style, SigV4, plain http). */
  s3cmd(args: string[], opts?: RunOptions): Promise<ClientRun>;
  /** `restic -r s3:URL/REPO ARGS` with RESTIC_PASSWORD; `repo` is `bucket/path`. */
  restic(repo: string, args: string[], opts?: RunOptions): Promise<ClientRun>;
  /** Removes the private home. */
  dispose(): Promise<void>;
}

/** The environment every client starts from: nothing of the test process's but PATH, under a private HOME. */
function baseEnv(home: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TMPDIR: path.join(home, 'tmp'),
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    // UTF-8 file names (awscli and s3cmd print and read them through Python's locale)
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
  };
}

/** Clients for `endpoint`, sharing one private temp home; dispose() removes it. */
export async function s3Clients(endpoint: S3Endpoint): Promise<S3Clients> {
  const home = await mkdtemp(path.join(tmpdir(), 'blobd-s3-clients-'));
  const region = endpoint.region ?? 'us-east-1';
  const url = new URL(endpoint.url);
  const base = baseEnv(home);
  await mkdir(base.TMPDIR!);
  await mkdir(base.XDG_CACHE_HOME!); // restic check makes its temporary cache inside, and only warns when it cannot

  const awsConfig = path.join(home, 'aws-config');
  const awsCredentials = path.join(home, 'aws-credentials');
  await writeFile(awsConfig, `[default]\nregion = ${region}\noutput = json\ns3 =\n  addressing_style = path\n`);
  await writeFile(awsCredentials, `[default]\naws_access_key_id = ${endpoint.accessKeyId}\naws_secret_access_key = ${endpoint.secretAccessKey}\n`, { mode: 0o600 });
  const awsEnv = {
    ...base,
    AWS_CONFIG_FILE: awsConfig,
    AWS_SHARED_CREDENTIALS_FILE: awsCredentials,
    AWS_EC2_METADATA_DISABLED: 'true', // no instance-metadata probe on a credentials miss
    AWS_PAGER: '',
  };

  const rcloneEnv = {
    ...base,
    RCLONE_CONFIG: path.join(home, 'rclone.conf'), // never created: the remote is `:s3:` from the variables below
    RCLONE_S3_PROVIDER: 'Other',
    RCLONE_S3_ENV_AUTH: 'false',
    RCLONE_S3_ACCESS_KEY_ID: endpoint.accessKeyId,
    RCLONE_S3_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
    RCLONE_S3_ENDPOINT: endpoint.url,
    RCLONE_S3_REGION: region,
    RCLONE_S3_FORCE_PATH_STYLE: 'true',
  };

  const s3cfg = path.join(home, 's3cfg');
  await writeFile(
    s3cfg,
    [
      '[default]',
      `access_key = ${endpoint.accessKeyId}`,
      `secret_key = ${endpoint.secretAccessKey}`,
      `host_base = ${url.host}`,
      `host_bucket = ${url.host}`, // no %(bucket)s: path style
      `bucket_location = ${region}`,
      'use_https = False',
      'signature_v2 = False',
      'check_ssl_certificate = False',
      'progress_meter = False',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );

  const resticEnv = {
    ...base,
    AWS_ACCESS_KEY_ID: endpoint.accessKeyId,
    AWS_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
    AWS_DEFAULT_REGION: region,
    RESTIC_PASSWORD,
    RESTIC_CACHE_DIR: path.join(home, '.cache', 'restic'),
  };

  const bins = Object.fromEntries(Object.entries(S3_CLIENT_BINARIES).map(([k, v]) => [k, v.bin])) as Record<S3ClientName, string>;
  return {
    endpoint,
    home,
    aws: (args, opts) => runClient(bins.aws, ['--endpoint-url', endpoint.url, '--no-cli-pager', ...args], awsEnv, opts),
    rclone: (args, opts) => runClient(bins.rclone, args, rcloneEnv, opts),
    s3cmd: (args, opts) => runClient(bins.s3cmd, ['-c', s3cfg, ...args], base, opts),
    restic: (repo, args, opts) =>
      runClient(bins.restic, ['-r', `s3:${endpoint.url}/${repo}`, '-o', `s3.region=${region}`, ...args], resticEnv, opts),
    dispose: () => rm(home, { recursive: true, force: true, maxRetries: 3 }),
  };
}

/**
 * The S3 endpoint a daemon announced: `blobd s3 api listening on URL` on stdout (whatever the log level), or
 * the log line `{"msg":"s3 api listening","url":…}`; waited for (bounded), as it may follow the main listener's.
 */
export async function s3ApiUrl(output: () => string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of output().split('\n')) {
      const plain = /^blobd s3 api listening on (http:\/\/\S+)/.exec(line);
      if (plain) return plain[1]!;
      if (!line.includes('"s3 api listening"')) continue;
      try {
        const rec = JSON.parse(line) as { msg?: string; url?: string };
        if (rec.msg === 's3 api listening' && rec.url) return rec.url;
      } catch {
        // not a JSON log line
      }
    }
    if (Date.now() > deadline) throw new Error(`no "s3 api listening" line within ${timeoutMs} ms:\n${output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
