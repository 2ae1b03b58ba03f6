// `blobd gc [--dry-run]`: one garbage-collection pass now (admin), or what it would remove.
import type { Command } from 'commander';
import { emit, humanSize, withClient } from '../output.ts';

interface GcReport {
  blobs_removed: number;
  bytes_freed: number;
  sessions_expired: number;
  pins_expired: number;
  objects_expired: number;
  stray_files_removed: number;
  digests: string[];
  dry_run: boolean;
}

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description('run one garbage-collection pass now (admin): blobs nothing references, older than --gc-grace')
    .option('--dry-run', 'report what a pass would remove, and the digests, removing nothing')
    .action(async (opts: { dryRun?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const r = await client.json<GcReport>('POST', `/api/admin/gc${opts.dryRun ? '?dry_run=true' : ''}`);
        emit(g, r, () => {
          const verb = r.dry_run ? 'would remove' : 'removed';
          const lines = [
            `${verb} ${r.blobs_removed} blobs (${humanSize(r.bytes_freed)}); expired ${r.sessions_expired} upload sessions, ${r.pins_expired} pins, ${r.objects_expired} objects; ${r.stray_files_removed} stray files`,
          ];
          if (r.dry_run) lines.push(...r.digests);
          return lines.join('\n');
        });
      });
    });
}
