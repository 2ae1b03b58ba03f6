// `Idempotency-Key` on the routes that create something: the first successful answer is kept and a retry
// of the same request by the same principal gets it again, without the work being done twice. The request
// is fingerprinted by method, path, query, Content-Type, Content-Length, tus's Upload-* creation headers and
// a SHA-256 of its body.
import { createHash } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { fingerprint, parseIdempotencyKey, type StoredResponse } from '../../core/idempotency.ts';
import type { AppEnv } from '../env.ts';
import { requestBody } from '../request-body.ts';

/**
 * How a route reads its body: parsed JSON (small, bounded by `limitJsonBody`, so read here and cached for
 * the route), streamed (hashed on the way through), or not at all.
 */
export type BodyKind = 'json' | 'stream' | 'none';

/** A route whose body is JSON (bounded by `limitJsonBody`) or nothing it reads. */
export const jsonBody = (c: Context<AppEnv>): BodyKind => (/json/i.test(c.req.header('content-type') ?? '') ? 'json' : 'none');

/** Headers of a creating answer that a replay must repeat (tus's too: a replay is a tus answer). */
const REPLAYED_HEADERS = [
  'content-type',
  'location',
  'etag',
  'upload-token',
  'upload-offset',
  'upload-expires',
  'cache-control',
  'tus-resumable',
  'upload-length',
  'upload-defer-length',
  'blobd-digest',
];

/**
 * Request headers that say what a tus creation creates (its length, metadata, checksum): part of the
 * fingerprint, so that a key reused for another upload is 422, never a replay of the first one.
 */
const DEFINING_HEADERS = /^upload-(?:length|defer-length|metadata|checksum|concat)$/;

async function hashBodyNow(c: Context<AppEnv>, kind: BodyKind): Promise<string> {
  const hash = createHash('sha256');
  if (kind === 'json') hash.update(Buffer.from(await c.req.arrayBuffer()));
  if (kind === 'stream') for await (const chunk of requestBody(c)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function idempotent(bodyKind: (c: Context<AppEnv>) => BodyKind): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header('idempotency-key');
    const principal = c.get('principal');
    // Anonymous requests have nobody to keep a record for; a dry run does nothing to repeat.
    if (header === undefined || !principal || c.env?.dryRun) return next();
    const key = parseIdempotencyKey(header);
    const url = new URL(c.req.url);
    const requestFingerprint = fingerprint({
      method: c.req.method,
      path: url.pathname,
      query: [...url.searchParams],
      contentType: c.req.header('content-type') ?? '',
      contentLength: c.req.header('content-length') ?? (c.req.header('transfer-encoding') ? 'chunked' : ''),
      headers: Object.entries(c.req.header()).filter(([name]) => DEFINING_HEADERS.test(name)),
    });
    const idem = c.get('idempotency');
    const kind = bodyKind(c);
    // Every holder of one signed URL acts as its signer; records are kept per URL, so holders of
    // different URLs never meet (holders of one URL share it, as they share the URL itself).
    const signature = c.get('grant') ? url.searchParams.get('blobd-signature') : null;
    const owner = signature ? `${principal.id} url:${createHash('sha256').update(signature).digest('hex').slice(0, 32)}` : principal.id;
    const begun = await idem.begin(owner, key, requestFingerprint);
    if (begun.kind === 'replay') {
      const stored = idem.replay(begun.record, await hashBodyNow(c, kind));
      return new Response(stored.body || null, {
        status: stored.status,
        headers: [...stored.headers.map(([k, v]) => [k, v] as [string, string]), ['Idempotent-Replayed', 'true'], ['X-Request-Id', c.get('requestId')]],
      });
    }

    let kept = false;
    try {
      let bodyHash: string | undefined;
      // Inside the try: a body cut short must release the claim, or the key would stay "in use".
      if (kind === 'stream') c.set('bodyTap', createHash('sha256'));
      else bodyHash = await hashBodyNow(c, kind);
      await next();
      const res = c.res;
      if (res.status >= 200 && res.status < 300) {
        const stored: StoredResponse = {
          status: res.status,
          headers: REPLAYED_HEADERS.flatMap((h) => (res.headers.has(h) ? [[h, res.headers.get(h)!] as const] : [])),
          body: await res.clone().text(),
        };
        await idem.finish(owner, key, bodyHash ?? c.get('bodyTap')!.digest('hex'), stored);
        kept = true;
      }
    } finally {
      if (!kept) await idem.abandon(owner, key);
    }
  };
}
