// `blobd fsck`: re-hash every blob and report corrupt, missing and orphaned files; exit 1 when there are
// any. It asks the running daemon (POST /api/admin/fsck) unless --data names a directory to check offline.
import type { Command } from 'commander';
import path from 'node:path';
import { emit, globals, withClient } from '../output.ts';

interface FsckReport {
  checked: number;
  corrupt: string[];
  missing: string[];
  orphans: string[];
  quarantined: string[];
}

export function registerFsck(program: Command): void {
  program
    .command('fsck')
    .description('re-hash every blob; report corrupt, missing and orphaned files (exit 1 if any)')
    .option('--data <dir>', 'check this data directory offline (no daemon may be using it)')
    .option('--repair', 'move corrupt files to data/quarantine/ and mark their rows (never deletes)')
    .action(async (opts: { data?: string; repair?: boolean }, cmd: Command) => {
      let report: FsckReport;
      if (opts.data !== undefined) {
        // Loaded only here: the offline path builds core and storage, which a client command never needs.
        const { fsckOffline } = await import('../offline-maintenance.ts');
        report = await fsckOffline(path.resolve(opts.data), opts.repair ?? false);
      } else {
        report = await withClient(cmd, (client) => client.json<FsckReport>('POST', `/api/admin/fsck${opts.repair ? '?repair=true' : ''}`));
      }
      emit(globals(cmd), report, () =>
        [
          `checked ${report.checked} blobs: ${report.corrupt.length} corrupt, ${report.missing.length} missing, ${report.orphans.length} orphaned files`,
          ...report.corrupt.map((d) => `corrupt ${d}`),
          ...report.missing.map((d) => `missing ${d}`),
          ...report.orphans.map((f) => `orphan ${f}`),
          ...report.quarantined.map((d) => `quarantined ${d}`),
        ].join('\n'),
      );
      if (report.corrupt.length + report.missing.length + report.orphans.length > 0) process.exitCode = 1;
    });
}
