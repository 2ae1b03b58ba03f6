// `blobd serve`: run the daemon in the foreground until SIGTERM or SIGINT, then stop gracefully (exit 0);
// exit 1 when the node stopped by itself (RunningServer.stoppedBySelf).
import type { Command } from 'commander';
import { loadConfig, SERVE_OPTIONS, type ServeFlags } from '../../config.ts';

export function registerServe(program: Command): void {
  const cmd = program.command('serve').description('run the blobd daemon');
  for (const opt of SERVE_OPTIONS) {
    const help = `${opt.description} [env ${opt.env}${opt.defaultValue ? `, default ${opt.defaultValue}` : ''}]`;
    if (opt.kind === 'list') cmd.option(opt.flag, help, (v: string, prev: string[] = []) => [...prev, v]);
    else cmd.option(opt.flag, help);
  }
  cmd.addHelpText('after', '\nEnvironment: BLOBD_ADMIN_TOKEN sets the admin token (else data/admin-token is used).');
  cmd.action(async (flags: ServeFlags) => {
    const config = loadConfig(flags);
    // Loaded here, not at the top: the client commands start faster without the whole daemon.
    const { startServer } = await import('../../server.ts');
    const running = await startServer(config);
    // The lines scripts and tests wait for (the S3 API's first: a reader waiting for the last one has both);
    // the JSON log says the same.
    if (running.s3Url) process.stdout.write(`blobd s3 api listening on ${running.s3Url}\n`);
    process.stdout.write(`blobd listening on ${running.url}\n`);
    // Set once the node decided to stop by itself: every way out exits 1 then, a signal's too.
    let stoppedBySelf: string | undefined;
    const stop = (signal: string) => {
      running.logger.info({ signal }, 'shutting down');
      running.close().then(
        () => process.exit(stoppedBySelf === undefined ? 0 : 1),
        (err: unknown) => {
          running.logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    // Stopping by itself (a lapsed node beside one it may not run with): exit 1 once closed.
    void running.stoppedBySelf.then((reason) => {
      stoppedBySelf = reason;
      process.stderr.write(`blobd: ${reason}\n`);
      running.close().then(
        () => process.exit(1),
        () => process.exit(1),
      );
    });
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
