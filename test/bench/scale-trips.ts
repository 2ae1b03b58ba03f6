// Metadata round trips per request: the statements a blobd node sent to PostgreSQL (its
// blobd_metadata_queries_total counter, summed over the nodes), around a batch of requests of one kind made one
// after another by a single client after a warm-up, minus what the /metrics reads themselves cost.
import { randomBytes } from 'node:crypto';
import { payload } from './generated-payload.ts';
import * as c from './scale-client.ts';

/** The counter summed over `nodeUrls`; undefined when a node does not expose it. */
export async function queriesOf(nodeUrls: readonly string[]): Promise<number | undefined> {
  let sum = 0;
  for (const u of nodeUrls) {
    const n = await c.metadataQueries(u);
    if (n === undefined) return undefined;
    sum += n;
  }
  return sum;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** What reading the counters costs in statements (/metrics reads the store's stats): the median of `n` reads. */
export async function scrapeCost(nodeUrls: readonly string[], n = 5): Promise<number> {
  const deltas: number[] = [];
  let last = (await queriesOf(nodeUrls))!;
  for (let i = 0; i < n; i++) {
    const now = (await queriesOf(nodeUrls))!;
    deltas.push(now - last);
    last = now;
  }
  return median(deltas);
}

export interface Trips {
  /** Statements per request, by kind of request. */
  readonly perRequest: Record<string, number>;
  /** Statements a /metrics read of every node costs (subtracted above). */
  readonly scrape: number;
  /** Statements per second with no requests (leases, timers), summed over the nodes. */
  readonly idlePerSecond: number;
  readonly count: number;
}

/**
 * `count` requests of each kind through `e`, one at a time, after `warmup` of each: one-shot 4 KiB uploads, a
 * session's initiate / one append of `appendSize` / complete, downloads by digest, object PUTs and GETs.
 */
export async function measureTrips(e: c.Endpoint, nodeUrls: readonly string[], count: number, appendSize: number, warmup = 3): Promise<Trips | undefined> {
  if ((await queriesOf(nodeUrls)) === undefined) return undefined;
  const scrape = await scrapeCost(nodeUrls);
  const perRequest: Record<string, number> = {};
  /** Runs `fn(i)` for i < n one after another and records statements per call under `what` (unless warming up). */
  const batch = async (what: string | null, n: number, fn: (i: number) => Promise<void>) => {
    const before = (await queriesOf(nodeUrls))!;
    for (let i = 0; i < n; i++) await fn(i);
    const after = (await queriesOf(nodeUrls))!;
    if (what) perRequest[what] = (after - before - scrape) / n;
  };

  const idleMs = 2000;
  const i0 = (await queriesOf(nodeUrls))!;
  await new Promise((r) => setTimeout(r, idleMs));
  const idlePerSecond = ((await queriesOf(nodeUrls))! - i0 - scrape) / (idleMs / 1000);

  const bucket = `trips-${randomBytes(4).toString('hex')}`;
  await c.putBucket(e, bucket);
  const body = () => randomBytes(4096);
  const digests: string[] = [];
  const sessionPayloads = Array.from({ length: count + warmup }, (_, i) => payload(`trips-${bucket}-${i}`, appendSize));
  const sessions: c.Session[] = [];

  for (const [what, n] of [[null, warmup], ['POST /api/blobs (one-shot 4 KiB upload)', count]] as const) {
    await batch(what, n, async () => void digests.push(await c.postBlob(e, body())));
  }
  for (const [what, n] of [[null, warmup], ['GET /api/blobs/<digest> (4 KiB download)', count]] as const) {
    await batch(what, n, async (i) => c.getBlob(e, digests[i]!, 4096));
  }
  // Sessions: every initiate, then every append, then every complete, so each kind is counted alone.
  await batch(null, warmup, async (i) => {
    const s = await c.initiate(e, appendSize);
    await c.appendRange(e, s, sessionPayloads[i]!, 0, appendSize, appendSize);
    await c.complete(e, s);
  });
  await batch('session initiate (POST /api/blobs/uploads)', count, async () => void sessions.push(await c.initiate(e, appendSize)));
  await batch(`session append of ${appendSize >= 1 << 20 ? `${appendSize / (1 << 20)} MiB` : `${appendSize} B`}`, count, (i) =>
    c.appendRange(e, sessions[i]!, sessionPayloads[warmup + i]!, 0, appendSize, appendSize),
  );
  await batch('session complete', count, async (i) => void (await c.complete(e, sessions[i]!, await sessionPayloads[warmup + i]!.digest())));
  for (const [what, n] of [[null, warmup], ['PUT object (4 KiB, a new key)', count]] as const) {
    await batch(what, n, (i) => c.putObject(e, bucket, `${what ? 'k' : 'w'}-${i}`, body()));
  }
  for (const [what, n] of [[null, warmup], ['GET object (4 KiB)', count]] as const) {
    await batch(what, n, (i) => c.getObject(e, bucket, `k-${i}`, 4096));
  }
  return { perRequest, scrape, idlePerSecond, count };
}
