// The blobd command line: commander program, one file per command under commands/. `serve` runs the
// daemon; every other command is a client of a running daemon over HTTP (client.ts), except the offline
// paths of fsck and backup (offline-maintenance.ts). Errors are one line on stderr (`blobd: …`, or a JSON
// `{"error": …}` line with --json), commander's own usage errors included; exit codes are 0 ok, 1 error, 2 usage.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.ts';
import { ApiError, UsageError } from './client.ts';
import { errorLine, readerGone, watchStdout, type CliFailure } from './output.ts';
import { registerBackup } from './commands/backup.ts';
import { registerBucket } from './commands/bucket.ts';
import { registerFsck } from './commands/fsck.ts';
import { registerGc } from './commands/gc.ts';
import { registerGet } from './commands/get.ts';
import { registerKeys } from './commands/keys.ts';
import { registerLs } from './commands/ls.ts';
import { registerPut } from './commands/put.ts';
import { registerRm } from './commands/rm.ts';
import { registerServe } from './commands/serve.ts';
import { registerSign } from './commands/sign.ts';
import { registerStat } from './commands/stat.ts';
import { registerStats } from './commands/stats.ts';
import { registerToken } from './commands/token.ts';
import { registerS3Key } from './commands/s3-key.ts';
import { registerUploads } from './commands/uploads.ts';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('blobd')
  .description('content-addressed blob store: `blobd serve` runs the daemon, the other commands talk to it over HTTP')
  .version(version)
  .option('--url <url>', 'the daemon [env BLOBD_URL, default http://127.0.0.1:8887]')
  .option('--token <token>', 'API or admin token [env BLOBD_TOKEN, else the file data/admin-token]')
  .option('--json', 'print results as JSON (listings: one object per line), errors as one {"error": …} line on stderr')
  .option('-q, --quiet', 'no progress bar and no notes on stderr')
  .configureHelp({ showGlobalOptions: true })
  .exitOverride()
  // Commander's error text (`error: …`) is written below, in blobd's one-line form.
  .configureOutput({ outputError: () => undefined })
  .addHelpText('after', `
Exit codes: 0 ok, 1 error (one line on stderr: blobd: CODE: message), 2 usage, 130 interrupted
(put and get -o: rerun the same command to resume).
Run blobd COMMAND --help for a command's options and examples.`);

registerServe(program);
registerPut(program);
registerGet(program);
registerStat(program);
registerLs(program);
registerRm(program);
registerUploads(program);
registerBucket(program);
registerToken(program);
registerS3Key(program);
registerSign(program);
registerGc(program);
registerFsck(program);
registerBackup(program);
registerKeys(program);
registerStats(program);

// Subcommands (and theirs) exit through the same path as the program.
const overrideAll = (cmd: Command): void => {
  for (const sub of cmd.commands) {
    sub.exitOverride().configureOutput({ outputError: () => undefined });
    overrideAll(sub);
  }
};
overrideAll(program);

/** What went wrong, with its exit code: 2 for usage errors (commander's and ours), 1 for the rest. */
function failure(err: unknown): CliFailure & { exit: number; showCode: boolean } {
  if (err instanceof CommanderError) return { code: 'usage', message: err.message.replace(/^error: /, ''), exit: 2, showCode: false };
  if (err instanceof ConfigError || err instanceof UsageError) return { code: 'usage', message: err.message, exit: 2, showCode: false };
  if (err instanceof ApiError) return { code: err.code, message: err.message, details: err.details, exit: 1, showCode: true };
  return { code: 'error', message: err instanceof Error ? err.message : String(err), exit: 1, showCode: false };
}

watchStdout();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  // A write to standard output that failed because its reader went away (get's writes wait for their callback).
  if (readerGone(err)) process.exit(0);
  // Help and version (exit 0), and help shown for a bare `blobd bucket` (on stderr already): nothing to add.
  if (err instanceof CommanderError && ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code)) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  const f = failure(err);
  // --json counts wherever it was given, even when commander stopped before reading the options.
  const args = process.argv.slice(2);
  const json = program.opts<{ json?: boolean }>().json === true || args.slice(0, args.includes('--') ? args.indexOf('--') : undefined).includes('--json');
  process.stderr.write(errorLine(json, f, f.showCode));
  process.exit(f.exit);
}
