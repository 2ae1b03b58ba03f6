// `blobd fsck`: re-hash every blob and report corrupt, missing and orphaned files; exit 1 when there are
// any. It asks the running daemon (POST /api/admin/fsck) unless --data names a directory to check offline.
// `--data DIR --repack` instead moves small blobs stored as files into the database (offline only).
import type { Command } from 'commander';
import path from 'node:path';
import { repackInlineMax } from '../../config.ts';
import { UsageError } from '../client.ts';
import { emit, globals, withClient } from '../output.ts';

interface FsckReport {
  checked: number;
  corrupt: string[];
  missing: string[];
  orphans: string[];
  quarantined: string[];
  /** Absent from an older daemon's report. */
  unreadable?: string[];
}

export function registerFsck(program: Command): void {
  program
    .command('fsck')
    .description('re-hash every blob; report corrupt, missing and orphaned files (exit 1 if any)')
    .option('--data <dir>', 'check this data directory offline (no daemon may be using it)')
    .option('--repair', 'move corrupt files to data/quarantine/ and mark their rows (never deletes)')
    .option('--repack', 'with --data: move blobs up to --inline-max stored as files into the database, then remove the files')
    .option('--inline-max <size>', "with --repack: the largest blob to move (at most 1MiB; default: BLOBD_INLINE_MAX, else 64KiB, as the daemon's)")
    .action(async (opts: { data?: string; repair?: boolean; repack?: boolean; inlineMax?: string }, cmd: Command) => {
      if (opts.repack) return repack(opts, cmd);
      if (opts.inlineMax !== undefined) throw new UsageError('--inline-max goes with --repack (a check re-hashes every blob whatever its size)');
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
          ...(report.unreadable ?? []).map((d) => `unreadable ${d} (its bytes cannot be read: check their owner and mode)`),
        ].join('\n'),
      );
      // Quarantined blobs were dealt with by a repair (listed until their bytes are uploaded again); bytes that
      // cannot be read were not.
      const bad = report.corrupt.length + report.missing.length + report.orphans.length + (report.unreadable ?? []).length;
      if (bad > 0) process.exitCode = 1;
    });
}

/** `--repack`: offline, like `--data` alone; exit 1 when blobs were left as files (corrupt, missing, failed). */
async function repack(opts: { data?: string; repair?: boolean; inlineMax?: string }, cmd: Command): Promise<void> {
  if (opts.data === undefined) throw new UsageError('--repack works on a data directory no daemon is using: stop the daemon and give --data DIR');
  if (opts.repair) throw new UsageError('--repack and --repair are separate runs: repair first, then repack');
  const max = repackInlineMax(opts.inlineMax);
  const { repackOffline } = await import('../offline-maintenance.ts');
  const report = await repackOffline(path.resolve(opts.data), max);
  emit(globals(cmd), report, () =>
    [
      `moved ${report.moved} blobs (${report.bytes} bytes) from files into the database` +
        (report.duplicates > 0 ? `, removed ${report.duplicates} files the database holds already` : '') +
        `; ${report.corrupt.length} corrupt, ${report.missing.length} missing and ${report.failed.length} failed left as they were (see blobd fsck)`,
      ...report.corrupt.map((d) => `corrupt ${d}`),
      ...report.missing.map((d) => `missing ${d}`),
      ...report.failed.map((d) => `failed ${d}`),
    ].join('\n'),
  );
  if (report.corrupt.length + report.missing.length + report.failed.length > 0) process.exitCode = 1;
}
