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
          const res = await client.open({ method: 'HEAD', path: `/api/blobs/${target.digest}` });
          const body = await readText(res);
          // A HEAD answer has no body: name the usual reason.
          if (res.statusCode === 404) throw new ApiError(404, 'blob_not_found', `no blob ${target.digest}`);
          if (res.statusCode !== 200) throw errorOf(res, body);
          const size = Number(res.headers['content-length']);
          emit(g, { digest: target.digest, size }, () => table([['digest', target.digest], ['size', `${size} (${humanSize(size)})`]]));
          return;
        }
        const meta = await client.json<Record<string, unknown>>('GET', `${objectPath(target.bucket, target.key)}?metadata`);
        emit(g, meta, () => table(Object.entries(meta).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])));
      });
    });
}
