// `blobd keys rotate`: a new signing key for signed URLs (admin). New URLs are signed with it at once;
// URLs signed with older keys keep working until their key file is removed.
import type { Command } from 'commander';
import { emit, withClient } from '../output.ts';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('signing keys of signed URLs (admin)');
  keys
    .command('rotate')
    .description('add a new signing key; new signed URLs use it, older URLs still verify with theirs')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const k = await client.json<{ key_id: string; created_at: string }>('POST', '/api/admin/keys/rotate');
        emit(g, k, () => `new signing key ${k.key_id}`);
      });
    });
}
