// `blobd stat DIGEST|BUCKET/KEY`: what the daemon knows of a blob (digest, size) or an object (its metadata).
import type { Command } from 'commander';
import { ApiError, errorOf, objectPath, parseTarget, readText } from '../client.ts';
import { emit, humanSize, table, withClient } from '../output.ts';

export function registerStat(program: Command): void {
  program
    .command('stat')
    .description("show a blob's digest and size, or an object's metadata")
    .argument('<target>', 'sha256:<hex> (or the bare hex), or BUCKET/KEY')
    .action(async (text: string, _opts: unknown, cmd: Command) => {
      const target = parseTarget(text);
      await withClient(cmd, async (client, g) => {
        if (target.kind === 'blob') {
          // One byte rather than HEAD: an error answer then carries its JSON body (code and message).
          const res = await client.open({ method: 'GET', path: `/api/blobs/${target.digest}`, headers: { range: 'bytes=0-0' } });
          const body = await readText(res);
          if (res.statusCode !== 206 && res.statusCode !== 416 && res.statusCode !== 200) throw errorOf(res, body);
          // 206: bytes 0-0/SIZE; 416 (an empty blob): bytes */0; 200: a server that ignored the range.
          const size = res.statusCode === 200 ? Number(res.headers['content-length']) : Number(/\/(\d+)$/.exec(String(res.headers['content-range']))?.[1]);
          if (!Number.isFinite(size)) throw new ApiError(res.statusCode!, 'bad_answer', 'the daemon did not say the size');
          emit(g, { digest: target.digest, size }, () => table([['digest', target.digest], ['size', `${size} (${humanSize(size)})`]]));
          return;
        }
        const meta = await client.json<Record<string, unknown>>('GET', `${objectPath(target.bucket, target.key)}?metadata`);
        // Fields without a value are left out of the table (--json keeps them, as null).
        const shown = Object.entries(meta).filter(([, v]) => v !== null);
        emit(g, meta, () => table(shown.map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])));
      });
    });
}
