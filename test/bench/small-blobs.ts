// Small blobs with and without the inline tier: N distinct 4 KiB one-shot uploads (N=20000 by default,
// concurrency 16) into a fresh daemon with the default --inline-max, and again with --inline-max 0 (a file
// each); then every blob downloaded by digest twice at concurrency 16 (the second pass is reported). After
// a clean stop (SQLite checkpoints its WAL) it prints uploads/s, downloads/s, the database's size, the blob
// files' allocated size, and what a million such blobs take. Bench-only; never part of npm test.
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, removeDir, startDaemon, TEST_TOKEN } from '../helpers/daemon.ts';
import { expect } from './bench-http.ts';

const N = Number(process.env.N ?? 20_000);
const SIZE = Number(process.env.SIZE ?? 4096);
const CONC = 16;

/** Bytes allocated on disk (st_blocks × 512) under `dir`, and how many files. */
async function allocated(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!e.isFile()) continue;
    bytes += (await stat(path.join(e.parentPath, e.name))).blocks * 512;
    files++;
  }
  return { bytes, files };
}

/** Every digest the admin pinned (GET /api/blobs, paged). */
async function listDigests(url: string): Promise<string[]> {
  const out: string[] = [];
  for (let cursor: string | null = null; ; ) {
    const res = await fetch(`${url}/api/blobs?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    const page = (await res.json()) as { items: { digest: string }[]; next_cursor: string | null };
    out.push(...page.items.map((p) => p.digest));
    if (!page.next_cursor) return out;
    cursor = page.next_cursor;
  }
}

const scratch = await makeTempDir('blobd-small-blobs-');
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
try {
  for (const args of [[], ['--inline-max', '0']]) {
    const dataDir = path.join(scratch, args.length ? 'files' : 'inline');
    const d = await startDaemon({ dataDir, args: ['--gc-interval', '0s', ...args] });
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONC }, async () => {
        while (next < N) {
          next++;
          await expect(201, `${d.url}/api/blobs`, { headers: { authorization: `Bearer ${TEST_TOKEN}` }, body: randomBytes(SIZE) });
        }
      }),
    );
    const rate = N / ((performance.now() - t0) / 1000);
    const digests = await listDigests(d.url);
    let downRate = 0;
    for (let pass = 0; pass < 2; pass++) {
      let i = 0;
      const t1 = performance.now();
      await Promise.all(
        Array.from({ length: CONC }, async () => {
          while (i < digests.length) {
            const res = await fetch(`${d.url}/api/blobs/${digests[i++]}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
            if ((await res.arrayBuffer()).byteLength !== SIZE) throw new Error(`download: ${res.status}`);
          }
        }),
      );
      downRate = digests.length / ((performance.now() - t1) / 1000);
    }
    await d.stop();
    let db = 0;
    for (const f of ['blobd.db', 'blobd.db-wal']) db += await stat(path.join(dataDir, f)).then((s) => s.blocks * 512, () => 0);
    const blobs = await allocated(path.join(dataDir, 'blobs'));
    const total = db + blobs.bytes;
    console.log(
      `${args.length ? '--inline-max 0 (a file each)' : 'inline (default --inline-max)'}: ${N} × ${SIZE} B uploaded at ${Math.round(rate)}/s, ` +
        `downloaded at ${Math.round(downRate)}/s; ` +
        `database ${mb(db)}, blob files ${blobs.files} using ${mb(blobs.bytes)}; ` +
        `per million blobs: ${mb((total / N) * 1e6)} on disk (${(total / N / SIZE).toFixed(2)}× the bytes), database ${mb((db / N) * 1e6)}`,
    );
  }
} finally {
  await removeDir(scratch);
}
