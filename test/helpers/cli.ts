// Runs the real bin/blobd as a child process against a daemon: its URL and token in BLOBD_URL /
// BLOBD_TOKEN, its upload state under a temp XDG_STATE_HOME. Output is collected as bytes.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { BLOBD, type Daemon } from './daemon.ts';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliOptions {
  /** Bytes for standard input (else none). */
  input?: Uint8Array;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** The working directory (default: the test's). */
  cwd?: string;
}

/** The environment a user of `d` would have: no other BLOBD_* variable leaks in from the test's. */
export function cliEnv(d: Pick<Daemon, 'url' | 'token'>, stateHome: string, extra: Record<string, string> = {}): Record<string, string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BLOBD_'))) as Record<string, string>;
  return { ...env, BLOBD_URL: d.url, BLOBD_TOKEN: d.token, XDG_STATE_HOME: stateHome, ...extra };
}

/** Starts `blobd ARGS`; `done` resolves when it exits. */
export function startCli(args: string[], env: Record<string, string>, opts: CliOptions = {}): { proc: ChildProcess; done: Promise<CliRun> } {
  const proc = spawn(process.execPath, [BLOBD, ...args], { env: { ...env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let stderr = '';
  proc.stdout!.on('data', (c: Buffer) => out.push(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  proc.stdin!.on('error', () => undefined); // a command that exits before reading its input
  proc.stdin!.end(opts.input);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const done = new Promise<CliRun>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`blobd ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr });
    });
  });
  return { proc, done };
}

export function runCli(args: string[], env: Record<string, string>, opts: CliOptions = {}): Promise<CliRun> {
  return startCli(args, env, opts).done;
}

/** The upload sessions `blobd put` remembers under XDG_STATE_HOME (one per unfinished upload). */
export async function rememberedUploads(stateHome: string): Promise<{ path: string; parts: { id: string; token: string }[] }[]> {
  const dir = path.join(stateHome, 'blobd', 'uploads');
  const names = await readdir(dir).catch(() => [] as string[]);
  const states = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    states.push(JSON.parse(await readFile(path.join(dir, name), 'utf8')) as { path: string; parts: { id: string; token: string }[] });
  }
  return states;
}

/** The daemon's byte counters (/proc/PID/io): everything it read (sockets and files) and wrote. */
export async function processIo(pid: number): Promise<{ rchar: number; wchar: number }> {
  const text = await readFile(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)![1]);
  return { rchar: field('rchar'), wchar: field('wchar') };
}
