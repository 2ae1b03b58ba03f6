// npm run bench (second part): listing latency in a bucket of BENCH_OBJECTS (default 100,000) objects —
// the first page and pages deep in the cursor chain, through the real daemon. The bucket is seeded
// by seed-objects.ts (through the MetadataStore API, without fsync: seeding speed is not what is measured).
import path from 'node:path';
import { makeTempDir, removeDir, startDaemon } from '../helpers/daemon.ts';
import { envCount } from './bench-env.ts';
import { seedObjects } from './seed-objects.ts';

const N = envCount('BENCH_OBJECTS', 100_000);
const REPEAT = 20;

const scratch = await makeTempDir('blobd-bench-list-');
try {
  const dataDir = path.join(scratch, 'data');
  console.log(`seeded ${N} objects in ${(await seedObjects(dataDir, N)).toFixed(1)} s`);

  const d = await startDaemon({ dataDir });
  const time = async (url: string) => {
    const samples: number[] = [];
    let body: { items: unknown[]; next_cursor: string | null } | undefined;
    for (let i = 0; i < REPEAT; i++) {
      const s = performance.now();
      const res = await d.api(url);
      body = (await res.json()) as typeof body;
      samples.push(performance.now() - s);
    }
    samples.sort((a, b) => a - b);
    return { median: samples[REPEAT >> 1]!, p90: samples[Math.floor(REPEAT * 0.9)]!, body: body! };
  };
  const report = (name: string, r: { median: number; p90: number; body: { items: unknown[] } }) =>
    console.log(`${name.padEnd(44)} median ${r.median.toFixed(1).padStart(6)} ms   p90 ${r.p90.toFixed(1).padStart(6)} ms   (${r.body.items.length} items)`);

  report('first page, limit=100', await time('/api/buckets/bench/objects?limit=100'));
  report('first page, limit=1000', await time('/api/buckets/bench/objects?limit=1000'));
  // Walk the cursor chain half way with the same API a client uses, then time the page found there.
  let cursor: string | null = null;
  for (let i = 0; i < N / 2 / 1000; i++) {
    const res = await d.api(`/api/buckets/bench/objects?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    cursor = ((await res.json()) as { next_cursor: string | null }).next_cursor;
  }
  report(`page after ${N / 2} keys, limit=100`, await time(`/api/buckets/bench/objects?limit=100&cursor=${cursor}`));
  report('prefix dir42/, limit=100', await time('/api/buckets/bench/objects?limit=100&prefix=dir42/'));
  report('delimiter / (100 common prefixes)', await time('/api/buckets/bench/objects?limit=1000&delimiter=/'));
  // Filters are evaluated row by row in key order: a rare match scans the bucket, a common one stops early.
  report('property.size_gt (rare: 10 matches), limit=100', await time(`/api/buckets/bench/objects?limit=100&property.size_gt=${N - 100}`));
  report('property.size_lt (common), limit=100', await time(`/api/buckets/bench/objects?limit=100&property.size_lt=${N}`));
  report('property.size_exists=true, limit=100', await time('/api/buckets/bench/objects?limit=100&property.size_exists=true'));
  await d.stop();
} finally {
  await removeDir(scratch);
}
