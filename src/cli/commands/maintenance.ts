// `blobd fsck` and `blobd backup`: maintenance of a data directory. fsck asks a running daemon
// (POST /api/admin/fsck) unless --data names a directory to check offline; backup works on the files of
// a data directory on this host and is safe while its daemon runs. Reports are JSON on stdout.
import type { Command } from 'commander';
import path from 'node:path';
import { backupDataDir, fsckOffline } from '../../maintenance.ts';
import { loadClientConfig } from '../../config.ts';
import { callApi } from '../client.ts';

interface FsckJson {
  corrupt: string[];
  missing: string[];
  orphans: string[];
}

export function registerMaintenance(program: Command): void {
  program
    .command('fsck')
    .description('re-hash every blob; report corrupt, missing and orphaned files (exit 1 if any)')
    .option('--data <dir>', 'check this data directory offline (no daemon may be using it)')
    .option('--repair', 'move corrupt files to data/quarantine/ and mark their rows (never deletes)')
    .option('--url <url>', 'the daemon to ask when --data is not given [env BLOBD_URL, default http://127.0.0.1:8887]')
    .option('--token <token>', 'admin token [env BLOBD_TOKEN, else data/admin-token]')
    .action(async (opts: { data?: string; repair?: boolean; url?: string; token?: string }) => {
      const report = opts.data !== undefined ? await fsckOffline(path.resolve(opts.data), opts.repair ?? false) : await callApi<FsckJson>(opts, 'POST', `/api/admin/fsck${opts.repair ? '?repair=true' : ''}`);
      process.stdout.write(`${JSON.stringify(report)}\n`);
      if (report.corrupt.length + report.missing.length + report.orphans.length > 0) process.exitCode = 1;
    });

  program
    .command('backup')
    .description('a consistent copy of a data directory into DIR (safe while the daemon runs; DIR then works as --data)')
    .argument('<dir>', 'a new or empty directory')
    .option('--data <dir>', 'the data directory to copy [env BLOBD_DATA, default ./data]')
    .action(async (dir: string, opts: { data?: string }) => {
      const data = loadClientConfig({ data: opts.data }).dataDir;
      const result = await backupDataDir(data, path.resolve(dir));
      process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}
