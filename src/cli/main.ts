// The blobd command line: commander program, one file per command under commands/. Errors are one line
// on stderr; exit codes are 0 ok, 1 error, 2 usage.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.ts';
import { VERSION } from '../server.ts';
import { registerMaintenance } from './commands/maintenance.ts';
import { registerServe } from './commands/serve.ts';

const program = new Command('blobd')
  .description('content-addressed blob store daemon')
  .version(VERSION)
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) });

registerServe(program);
registerMaintenance(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`blobd: ${message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
