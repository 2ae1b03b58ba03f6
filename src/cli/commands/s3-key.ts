// `blobd s3-key create|ls|rm`: credentials for the S3 API front (admin only). The secret access key is
// printed once, at create.
import type { Command } from 'commander';
import { UsageError } from '../client.ts';
import { emit, table, withClient } from '../output.ts';

interface S3KeyJson {
  access_key_id: string;
  name: string;
  scopes: string[];
  created_at: string;
  created_by: string;
  secret_access_key?: string;
}

export function registerS3Key(program: Command): void {
  const s3Key = program.command('s3-key').description('create, list and delete S3 access keys for the S3 API (admin)');

  s3Key
    .command('create')
    .description('create an S3 access key and print its id and secret (the secret is shown this once)')
    .option('--scope <scope...>', 'admin, blobs:read|write|delete, bucket:NAME:read|write|delete (NAME * for all); repeatable')
    .option('--name <name>', 'a name to tell it by')
    .addHelpText('after', '\nExample:\n  blobd s3-key create --name backups --scope bucket:restic:read --scope bucket:restic:write --scope bucket:restic:delete')
    .action(async (opts: { scope?: string[]; name?: string }, cmd: Command) => {
      if (!opts.scope || opts.scope.length === 0) throw new UsageError('s3-key create needs at least one --scope');
      await withClient(cmd, async (client, g) => {
        const body = { scopes: opts.scope, ...(opts.name !== undefined ? { name: opts.name } : {}) };
        const created = await client.json<S3KeyJson>('POST', '/api/s3-keys', body);
        emit(g, created, () => `access key id:     ${created.access_key_id}\nsecret access key: ${created.secret_access_key!}`);
      });
    });

  s3Key
    .command('ls')
    .description('list S3 access keys, never their secrets (with --json: one JSON object per line)')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const rows: string[][] = [];
        for await (const k of client.list<S3KeyJson>('/api/s3-keys')) {
          if (g.json) process.stdout.write(`${JSON.stringify(k)}\n`);
          else rows.push([k.access_key_id, k.name === '' ? '-' : k.name, k.scopes.join(','), `created ${k.created_at}`]);
        }
        if (!g.json && rows.length > 0) process.stdout.write(`${table(rows)}\n`);
      });
    });

  s3Key
    .command('rm')
    .description('delete an S3 access key (other nodes of a shared store stop accepting it within 10 s)')
    .argument('<id>', 'the access key id (blobd s3-key ls)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        await client.call('DELETE', `/api/s3-keys/${encodeURIComponent(id)}`);
        emit(g, { deleted: id }, () => '');
      });
    });
}
