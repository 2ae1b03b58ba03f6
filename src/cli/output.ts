// How every client command talks back: results on stdout (JSON with --json, else a short human form),
// notes on stderr unless --quiet, errors as one line on stderr (`blobd: …`, or `{"error": {…}}` with
// --json), and the global options every command shares.
import type { Command } from 'commander';
import { BlobdClient } from './client.ts';

export interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
  quiet?: boolean;
}

/** The global options as a subcommand sees them (given before or after its name). */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** Runs `work` with a client of the daemon and closes it afterwards (idle sockets would keep node alive). */
export async function withClient<T>(cmd: Command, work: (client: BlobdClient, g: GlobalOptions) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const client = await BlobdClient.connect(g);
  try {
    return await work(client, g);
  } catch (err) {
    throw client.explain(err);
  } finally {
    client.close();
  }
}

/** One result: the JSON document with --json, else the human text (nothing when it is empty). */
export function emit(g: GlobalOptions, json: unknown, human: () => string): void {
  if (g.json) process.stdout.write(`${JSON.stringify(json)}\n`);
  else {
    const text = human();
    if (text !== '') process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

export interface CliFailure {
  /** The daemon's error code, or one of the CLI's own (`usage`, `local_file`, `unreachable`, …). */
  code: string;
  message: string;
  /** The rest of the daemon's error object (`bucket`, `key`, `expected`, …). */
  details?: Record<string, unknown>;
}

/**
 * The one line an error gets on stderr: `blobd: CODE: message` (usage errors: `blobd: message`), or with
 * --json `{"error": {code, message, …details}}` — the daemon's error object, in the CLI's words.
 */
export function errorLine(json: boolean, f: CliFailure, showCode = true): string {
  const message = f.message.replace(/\s*\n\s*/g, ' ');
  if (json) return `${JSON.stringify({ error: { code: f.code, message, ...f.details } })}\n`;
  return `blobd: ${showCode ? `${f.code}: ` : ''}${message}\n`;
}

/**
 * Ctrl-C during a transfer: by default a resumable one (what was sent or written stays, and the same command
 * resumes); `message` says otherwise for one that cannot resume.
 */
export function exitInterrupted(g: GlobalOptions, message = 'interrupted; rerun the same command to resume'): never {
  if (process.stderr.isTTY) {
    // Over a progress bar that may still be drawn.
    process.stderr.clearLine(0);
    process.stderr.cursorTo(0);
  }
  process.stderr.write(errorLine(g.json ?? false, { code: 'interrupted', message }, false));
  process.exit(130);
}

/**
 * True for the error of writing to standard output once its reader has gone (`blobd ls | head -1`: EPIPE).
 * Node ignores SIGPIPE, so without this the write error would end the CLI with a stack trace.
 */
export function readerGone(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

/**
 * The one handler of standard output's errors. A reader that stopped reading wanted no more: exit 0 quietly,
 * as `cat` would (it dies of SIGPIPE instead, which `set -o pipefail` counts as a failure: 141).
 */
export function watchStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (readerGone(err)) process.exit(0);
    process.stderr.write(errorLine(false, { code: 'local_file', message: `cannot write to standard output: ${err.code ?? err.message}` }));
    process.exit(1);
  });
}

/** A remark for the person at the terminal (stderr), silenced by --quiet and --json. */
export function note(g: GlobalOptions, text: string): void {
  if (!g.quiet && !g.json) process.stderr.write(`${text}\n`);
}

/** Rows as aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB". */
export function humanSize(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}
