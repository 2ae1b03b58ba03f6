// `blobd backup DIR`: a consistent copy of a data directory on this host (safe while its daemon runs);
// DIR then works as --data of its own daemon.
import type { Command } from 'commander';
import path from 'node:path';
import { loadClientConfig } from '../../config.ts';
import { emit, globals, humanSize } from '../output.ts';

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('a consistent copy of a data directory into DIR (safe while the daemon runs; DIR then works as --data)')
    .argument('<dir>', 'a new or empty directory')
    .option('--data <dir>', 'the data directory to copy [env BLOBD_DATA, default ./data]')
    .action(async (dir: string, opts: { data?: string }, cmd: Command) => {
      const data = loadClientConfig({ data: opts.data }).dataDir;
      const { backupDataDir } = await import('../offline-maintenance.ts');
      const result = await backupDataDir(data, path.resolve(dir));
      emit(globals(cmd), result, () =>
        result.bytes_in === undefined
          ? `backed up ${result.blobs} blobs (${humanSize(result.bytes)}) to ${result.dir}`
          : `backed up the metadata of ${result.blobs} blobs (${humanSize(result.bytes)}) to ${result.dir}; their bytes stay in ${result.bytes_in}: back that up with the store's own tools`);
    });
}
