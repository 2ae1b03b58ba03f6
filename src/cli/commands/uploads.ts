// `blobd uploads [ls]` and `blobd uploads rm ID`: your open upload sessions — what an interrupted put left
// on the daemon, holding its bytes until --upload-ttl — and cancelling one, which frees its bytes now and
// forgets the put's local resume state (the next put of that file starts afresh).
import type { Command } from 'commander';
import { ApiError, UsageError } from '../client.ts';
import { LocalState } from '../local-state.ts';
import { emit, humanSize, note, table, withClient } from '../output.ts';

/** One item of GET /api/blobs/uploads. */
interface OpenSession {
  id: string;
  offset: number;
  size: number | null;
  filename: string | null;
  content_type: string | null;
  temporary: boolean;
  bucket: string | null;
  key: string | null;
  created_at: string;
  expires_at: string;
}

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function target(s: OpenSession): string {
  if (s.bucket !== null) return `${s.bucket}/${s.key}`;
  const pin = s.temporary ? 'temporary pin' : 'pin';
  return s.filename ? `${pin} ${s.filename}` : pin;
}

function received(s: OpenSession): string {
  return s.size === null ? humanSize(s.offset) : `${humanSize(s.offset)} of ${humanSize(s.size)}`;
}

export function registerUploads(program: Command): void {
  const uploads = program
    .command('uploads')
    .description('list your open upload sessions (an interrupted put holds its bytes until the session expires), or cancel one');

  uploads
    .command('ls', { isDefault: true })
    .description('(the default) list your open upload sessions: id, bytes received so far, target, expiry, and the local file of a put on this machine')
    .addHelpText('after', `
With --json: one object per line, {id, offset, size, filename, content_type, temporary, bucket, key,
created_at, expires_at, file}; offset is the bytes received so far, size the declared size (or null),
file the local file whose put started the session (null if no put on this machine remembers it).

Examples:
  blobd uploads
  blobd uploads --json`)
    // As the default, ls receives whatever word followed `uploads`: one that names no command is refused as such.
    .allowExcessArguments(true)
    .action(async (_opts: unknown, cmd: Command) => {
      if (cmd.args.length > 0) throw new UsageError(`unknown command or argument '${cmd.args[0]}' (blobd uploads [ls], blobd uploads rm ID)`);
      await withClient(cmd, async (client, g) => {
        const local = new LocalState(client.stateDir);
        const rows: string[][] = [];
        for await (const s of client.list<OpenSession>('/api/blobs/uploads')) {
          const file = (await local.uploadOfSession(client.url, s.id))?.path ?? null;
          if (g.json) emit(g, { ...s, file }, () => '');
          else rows.push([s.id, received(s), target(s), s.expires_at, file ?? '-']);
        }
        if (g.json) return;
        if (rows.length === 0) return note(g, 'no open upload sessions');
        emit(g, null, () => table([['ID', 'RECEIVED', 'TARGET', 'EXPIRES', 'FILE'], ...rows]));
      });
    });

  uploads
    .command('rm')
    .alias('cancel')
    .description('cancel an open upload session: the daemon frees its bytes now, and the put that started it starts afresh next time')
    .argument('<id>', 'the session id (from blobd uploads)')
    .addHelpText('after', `
The session's creator (with its own token) and an admin may cancel it; a put on this machine that
remembers the session cancels it with the session's upload token.

Example:
  blobd uploads rm 0193a5c2-7d1e-7b3c-9f00-2a4b6c8d0e1f`)
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      if (!SESSION_ID.test(id)) throw new UsageError(`not an upload session id: ${JSON.stringify(id)} (blobd uploads lists them)`);
      await withClient(cmd, async (client, g) => {
        const local = new LocalState(client.stateDir);
        const remembered = await local.uploadOfSession(client.url, id);
        const part = remembered?.parts.find((p) => p.id === id);
        try {
          // The remembered upload token opens the session whoever started it; else the caller's own credential.
          const init = part ? { headers: { 'upload-token': part.token }, auth: false } : {};
          await client.call('DELETE', `/api/blobs/uploads/${id}`, init);
        } catch (err) {
          // A session the daemon no longer has leaves nothing to resume: its local state goes too.
          if (remembered && err instanceof ApiError && err.code === 'upload_not_found') await local.removeUpload(remembered);
          throw err;
        }
        if (remembered) await local.removeUpload(remembered);
        emit(g, { id, cancelled: true, file: remembered?.path ?? null }, () => '');
        note(g, `cancelled upload session ${id}${remembered ? `; the next put of ${remembered.path} starts afresh` : ''}`);
      });
    });
}
