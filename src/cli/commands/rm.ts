// `blobd rm DIGEST|BUCKET/KEY`: drop your pin of a blob (GC removes it once nothing references it), or
// delete an object (every revision, or one with --revision). --force purges a blob for everyone (admin).
import type { Command } from 'commander';
import { objectPath, parseTarget, UsageError } from '../client.ts';
import { emit, withClient } from '../output.ts';

export function registerRm(program: Command): void {
  program
    .command('rm')
    .description('drop your pin of a blob, or delete an object (all its revisions, or one)')
    .argument('<target>', 'sha256:<hex> (or the bare hex), or BUCKET/KEY')
    .option('--revision <n>', 'delete only this revision of the object')
    .option('--force', 'purge the blob now, with every object revision that uses it (admin)')
    .action(async (text: string, opts: { revision?: string; force?: boolean }, cmd: Command) => {
      const target = parseTarget(text);
      let pathname: string;
      if (target.kind === 'blob') {
        if (opts.revision !== undefined) throw new UsageError('--revision is for BUCKET/KEY');
        pathname = `/api/blobs/${target.digest}${opts.force ? '?force=true' : ''}`;
      } else {
        if (opts.force) throw new UsageError('--force is for blobs');
        if (opts.revision !== undefined && !/^[1-9]\d{0,9}$/.test(opts.revision)) throw new UsageError('--revision is a revision number');
        pathname = `${objectPath(target.bucket, target.key)}${opts.revision !== undefined ? `?revision=${opts.revision}` : ''}`;
      }
      await withClient(cmd, async (client, g) => {
        await client.call('DELETE', pathname);
        emit(g, { deleted: text, ...(opts.revision !== undefined ? { revision: Number(opts.revision) } : {}) }, () => '');
      });
    });
}
