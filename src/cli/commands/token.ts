// `blobd token create|ls|revoke`: API tokens (admin only). The token value is printed once, at create.
import type { Command } from 'commander';
import { UsageError } from '../client.ts';
import { emit, table, withClient } from '../output.ts';

interface TokenJson {
  id: string;
  name: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  token?: string;
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('create, list and revoke API tokens (admin)');

  token
    .command('create')
    .description('create an API token and print it (it is shown this once)')
    .argument('<name>', 'a name to tell it by')
    .option('--scope <scope>', 'admin, blobs:read|write|delete, bucket:NAME:read|write|delete (NAME * for all); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--expires <duration>', 'lifetime: 90s, 24h, 30d (default: never)')
    .addHelpText('after', '\nExample:\n  blobd token create gallery --scope bucket:photos:read --scope bucket:photos:write --expires 30d')
    .action(async (name: string, opts: { scope?: string[]; expires?: string }, cmd: Command) => {
      if (!opts.scope || opts.scope.length === 0) throw new UsageError('token create needs at least one --scope');
      await withClient(cmd, async (client, g) => {
        const body = { name, scopes: opts.scope, ...(opts.expires !== undefined ? { expires_in: opts.expires } : {}) };
        const created = await client.json<TokenJson>('POST', '/api/tokens', body);
        emit(g, created, () => created.token!);
      });
    });

  token
    .command('ls')
    .description('list API tokens, never their values (with --json: one JSON object per line)')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const rows: string[][] = [];
        for await (const t of client.list<TokenJson>('/api/tokens?limit=1000', 'tokens')) {
          if (g.json) process.stdout.write(`${JSON.stringify(t)}\n`);
          else rows.push([t.id, t.name, t.scopes.join(','), `expires ${t.expires_at ?? 'never'}`, `last used ${t.last_used_at ?? 'never'}`]);
        }
        if (!g.json && rows.length > 0) process.stdout.write(`${table(rows)}\n`);
      });
    });

  token
    .command('revoke')
    .description('revoke an API token, and every URL it signed')
    .argument('<id>', 'the token id (blobd token ls)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        await client.call('DELETE', `/api/tokens/${encodeURIComponent(id)}`);
        emit(g, { revoked: id }, () => '');
      });
    });
}
