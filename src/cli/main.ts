// The blobd command line: commander program, one file per command under commands/. `serve` runs the
// daemon; every other command is a client of a running daemon over HTTP (client.ts), except the offline
// paths of fsck and backup (offline-maintenance.ts). Errors are one line on stderr; exit codes are 0 ok,
// 1 error, 2 usage.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.ts';
import { ApiError, UsageError } from './client.ts';
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

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('blobd')
  .description('content-addressed blob store: `blobd serve` runs the daemon, the other commands talk to it over HTTP')
  .version(version)
  .option('--url <url>', 'the daemon [env BLOBD_URL, default http://127.0.0.1:8887]')
  .option('--token <token>', 'API or admin token [env BLOBD_TOKEN, else the file data/admin-token]')
  .option('--json', 'print results as JSON (listings: one object per line)')
  .option('-q, --quiet', 'no progress bar and no notes on stderr')
  .configureHelp({ showGlobalOptions: true })
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) })
  .addHelpText('after', `
Exit codes: 0 ok, 1 error (one line on stderr), 2 usage.
Run blobd COMMAND --help for a command's options and examples.`);

registerServe(program);
registerPut(program);
registerGet(program);
registerStat(program);
registerLs(program);
registerRm(program);
registerBucket(program);
registerToken(program);
registerSign(program);
registerGc(program);
registerFsck(program);
registerBackup(program);
registerKeys(program);
registerStats(program);

// Subcommands (and theirs) exit through the same path as the program.
const overrideAll = (cmd: Command): void => {
  for (const sub of cmd.commands) {
    sub.exitOverride().configureOutput({ outputError: (text, write) => write(text) });
    overrideAll(sub);
  }
};
overrideAll(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  const message = err instanceof ApiError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`blobd: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(err instanceof ConfigError || err instanceof UsageError ? 2 : 1);
}
