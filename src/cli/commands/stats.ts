// `blobd stats`: the daemon's disk accounting (admin).
import type { Command } from 'commander';
import { emit, humanSize, table, withClient } from '../output.ts';

interface Stats {
  blobs: number;
  stored_bytes: number;
  logical_bytes: number;
  dedup_ratio: number;
  pins: number;
  objects: number;
  open_sessions: number;
  open_session_bytes: number;
  inline_blobs: number;
  inline_bytes: number;
}

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('blobs, stored and logical bytes, dedup ratio, pins, objects, open upload sessions (admin)')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const s = await client.json<Stats>('GET', '/api/admin/stats');
        emit(g, s, () =>
          table([
            ['blobs', String(s.blobs)],
            ['inline', `${s.inline_blobs} (${humanSize(s.inline_bytes)})`],
            ['stored', `${s.stored_bytes} (${humanSize(s.stored_bytes)})`],
            ['logical', `${s.logical_bytes} (${humanSize(s.logical_bytes)})`],
            ['dedup ratio', String(s.dedup_ratio)],
            ['pins', String(s.pins)],
            ['objects', String(s.objects)],
            ['open sessions', `${s.open_sessions} (${humanSize(s.open_session_bytes)})`],
          ]),
        );
      });
    });
}
