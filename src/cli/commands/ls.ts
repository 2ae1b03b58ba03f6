// `blobd ls [BUCKET]`: the objects of a bucket (every page), or without BUCKET the blobs pinned for your
// token. --json prints one JSON object per line (JSON Lines), so a long listing streams.
import type { Command } from 'commander';
import { UsageError } from '../client.ts';
import { humanSize, withClient } from '../output.ts';

interface LsOptions {
  prefix?: string;
  long?: boolean;
}

interface ObjectItem {
  key: string;
  size: number;
  digest: string;
  revision: number;
  updated_at: string;
}

interface PinItem {
  digest: string;
  size: number;
  temporary: boolean;
  expires_at: string | null;
  created_at: string;
}

export function registerLs(program: Command): void {
  program
    .command('ls')
    .description('list the objects of BUCKET (keys, one per line), or without BUCKET the blobs pinned for your token')
    .argument('[bucket]', 'a bucket name')
    .option('--prefix <prefix>', 'only keys that start with PREFIX')
    .option('-l, --long', 'size, last change, revision and digest too')
    .addHelpText('after', '\nWith --json: one JSON object per line, as the API lists them.')
    .action(async (bucket: string | undefined, opts: LsOptions, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const out = (line: string) => process.stdout.write(`${line}\n`);
        if (bucket === undefined) {
          if (opts.prefix !== undefined) throw new UsageError('--prefix needs a BUCKET');
          for await (const pin of client.list<PinItem>('/api/blobs?limit=1000')) {
            if (g.json) out(JSON.stringify(pin));
            else if (opts.long) out(`${humanSize(pin.size).padStart(10)}  ${pin.created_at}  ${pin.temporary ? `temporary until ${pin.expires_at}` : 'pinned'}  ${pin.digest}`);
            else out(pin.digest);
          }
          return;
        }
        const query = new URLSearchParams({ limit: '1000' });
        if (opts.prefix !== undefined) query.set('prefix', opts.prefix);
        const listing = `/api/buckets/${encodeURIComponent(bucket)}/objects?${query}`;
        for await (const o of client.list<ObjectItem>(listing)) {
          if (g.json) out(JSON.stringify(o));
          else if (opts.long) out(`${humanSize(o.size).padStart(10)}  ${o.updated_at}  r${String(o.revision).padEnd(4)}  ${o.digest}  ${o.key}`);
          else out(o.key);
        }
      });
    });
}
