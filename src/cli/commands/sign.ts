// `blobd sign METHOD PATH --expires 1h`: a signed URL for one request your token may make itself.
import type { Command } from 'commander';
import { parseDuration, parseSize } from '../../config.ts';
import { UsageError } from '../client.ts';
import { emit, withClient } from '../output.ts';

interface SignOptions {
  expires: string;
  maxSize?: string;
  contentType?: string;
}

/**
 * The path as a URL carries it: what cannot stand raw in a path or query (a space, a non-ASCII letter, a
 * `#`, a `%` that starts no escape) percent-encoded as UTF-8, everything else as given — so a key typed as
 * it is (`a b.txt`) and one already encoded (`a%20b.txt`) sign the same URL.
 */
export function urlPath(pathname: string): string {
  return pathname.replace(/%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return c; // a lone surrogate: the daemon says what is wrong with it
    }
  });
}

export function registerSign(program: Command): void {
  program
    .command('sign')
    .description('print a signed URL: METHOD on PATH without a token, until it expires (at most 7 days)')
    .argument('<method>', 'GET, HEAD, POST, PUT, PATCH or DELETE')
    .argument('<path>', 'an /api/… path, optionally with a query (signed too); BUCKET/KEY and digests are not expanded; spaces and other characters a URL cannot carry are percent-encoded, %XX escapes kept')
    .option('--expires <duration>', 'lifetime: 90s, 1h, 7d', '1h')
    .option('--max-size <size>', 'the largest body the URL may carry (a session: its total size)')
    .option('--content-type <type>', 'the only Content-Type a body may have')
    .addHelpText('after', `
Examples:
  blobd sign GET /api/buckets/photos/objects/cat.jpg --expires 1d
  blobd sign POST '/api/blobs/uploads?bucket=photos&key=new.jpg' --expires 10m --max-size 20MiB`)
    .action(async (method: string, pathname: string, opts: SignOptions, cmd: Command) => {
      if (!pathname.startsWith('/api/')) throw new UsageError('PATH is an /api/… path');
      const seconds = Math.round(parseDuration(opts.expires) / 1000);
      const body = {
        method: method.toUpperCase(),
        path: urlPath(pathname),
        expires_in: seconds,
        ...(opts.maxSize !== undefined ? { max_size: parseSize(opts.maxSize) } : {}),
        ...(opts.contentType !== undefined ? { content_type: opts.contentType } : {}),
      };
      await withClient(cmd, async (client, g) => {
        const signed = await client.json<{ url: string; path: string; method: string; expires_at: string }>('POST', '/api/signed-urls', body);
        emit(g, signed, () => signed.url);
      });
    });
}
