// `blobd backup DIR --data D` (issue 8, SPEC §4): the real CLI, run while a write load goes on against the
// daemon on D. The copy must be a data directory a daemon starts on, fsck finds clean, and that serves every
// blob and object acknowledged before the backup began — with D's admin token. A non-empty DIR is refused.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { performance } from 'node:perf_hooks';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { waitFor } from './helpers/wait.ts';
import {
  adminPost,
  createBucket,
  deleteObject,
  type Fsck,
  KiB,
  MiB,
  putObject,
  randomBody,
  readBlob,
  readObject,
  runCli,
  uploadBlob,
} from './helpers/workload.ts';

const BUCKET = 'load';
const pick = (r: Fsck) => ({ checked: r.checked, corrupt: r.corrupt, missing: r.missing, orphans: r.orphans });
const WORKERS = 3;
const OPS_PER_WORKER = 300; // a bound; the load is stopped once the backup has finished

interface Acknowledged {
  digest: string;
  size: number;
  /** Set for object writes. */
  key?: string;
  /** performance.now() when the 2xx arrived. */
  at: number;
  /** For objects: when a delete was sent, and when its 204 arrived. */
  deleteSentAt?: number;
  deleteAckedAt?: number;
}

test('a backup taken during a write load (and GC passes) starts as a data dir, passes fsck and serves what was acknowledged before it', async (t) => {
  // The daemon writes its own data/admin-token, so the restored daemon can only know it from the copy.
  // Grace 0 and GC passes in a loop while the backup runs: blobs of deleted objects go at once, so a
  // backup that copied files of its snapshot without holding GC off would miss some (fsck: missing).
  const d = await startDaemon({ adminToken: null, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
  const work = path.dirname(d.dataDir);
  const dir = path.join(work, 'backup');
  let restored: Daemon | undefined;
  const acknowledged: Acknowledged[] = [];
  const problems: string[] = [];
  const load = { stop: false, gcPasses: 0, gcRemoved: 0 };
  let keySeq = 0;

  async function deleteOne() {
    const candidates = acknowledged.filter((a) => a.key !== undefined && a.deleteSentAt === undefined);
    if (candidates.length === 0) return;
    const o = candidates[Math.floor(Math.random() * candidates.length)]!;
    o.deleteSentAt = performance.now();
    await deleteObject(d, BUCKET, o.key!);
    o.deleteAckedAt = performance.now();
  }

  async function loadWorker() {
    for (let i = 0; i < OPS_PER_WORKER && !load.stop; i++) {
      const { data, digest } = randomBody(KiB, MiB);
      const r = Math.random();
      try {
        if (r < 0.3) {
          await uploadBlob(d, data, digest, 'post');
          acknowledged.push({ digest, size: data.length, at: performance.now() });
        } else if (r < 0.45) {
          await uploadBlob(d, data, digest, 'put');
          acknowledged.push({ digest, size: data.length, at: performance.now() });
        } else if (r < 0.8) {
          const key = `w${++keySeq}.bin`;
          await putObject(d, BUCKET, key, data, digest);
          acknowledged.push({ digest, size: data.length, key, at: performance.now() });
        } else {
          await deleteOne();
        }
      } catch (err) {
        problems.push((err as Error).message);
        return;
      }
    }
  }

  async function gcWorker() {
    for (let i = 0; i < OPS_PER_WORKER && !load.stop; i++) {
      try {
        const gc = await adminPost<{ blobs_removed: number }>(d, '/api/admin/gc');
        load.gcPasses++;
        load.gcRemoved += gc.blobs_removed;
      } catch (err) {
        problems.push((err as Error).message);
        return;
      }
    }
  }

  try {
    await createBucket(d, BUCKET);
    const workers = Array.from({ length: WORKERS }, () => loadWorker());
    await waitFor(() => acknowledged.length >= 20 || problems.length > 0, 'the load to get going', 30_000);
    workers.push(gcWorker());

    const startedAt = performance.now();
    const backup = await runCli(['backup', dir, '--data', d.dataDir, '--json']);
    const finishedAt = performance.now();
    const duringBackup = acknowledged.filter((a) => a.at > startedAt).length;
    load.stop = true;
    await Promise.all(workers);
    assert.deepEqual(problems, [], 'the load ran without errors');
    t.diagnostic(
      `${acknowledged.length} writes acknowledged, ${duringBackup} of them while the backup ran; ` +
        `${acknowledged.filter((a) => a.deleteAckedAt !== undefined).length} objects deleted; ` +
        `${load.gcPasses} GC passes removed ${load.gcRemoved} blobs`,
    );

    assert.equal(backup.code, 0, `backup exited ${backup.code}: ${backup.stderr}`);
    const report = JSON.parse(backup.stdout) as { dir: string; blobs: number; bytes: number };
    assert.deepEqual(Object.keys(report).sort(), ['blobs', 'bytes', 'dir']);
    assert.equal(path.resolve(report.dir), path.resolve(dir));
    const before = acknowledged.filter((a) => a.at < startedAt);
    // What the snapshot must hold: pins, and objects no delete was sent for until the backup had finished
    // (the snapshot is taken at some moment in between).
    const kept = before.filter((a) => a.deleteSentAt === undefined || a.deleteSentAt > finishedAt);
    const distinct = new Map(kept.map((a) => [a.digest, a.size]));
    assert.ok(report.blobs >= distinct.size, `backup reports ${report.blobs} blobs, ${distinct.size} were acknowledged before it`);
    const bytes = [...distinct.values()].reduce((a, b) => a + b, 0);
    assert.ok(report.bytes >= bytes, `backup reports ${report.bytes} bytes, ${bytes} were acknowledged before it`);

    /**
     * For a failure that came once in many runs (files in the copy that no row of the copy named): where each
     * orphan came from, as the load, the source daemon and the copy's file see it.
     */
    const whence = async (orphans: string[]) => {
      const lines: string[] = [];
      for (const name of orphans) {
        const digest = `sha256:${path.basename(name)}`;
        const ack = acknowledged.find((a) => a.digest === digest);
        const rel = (t: number | undefined) => (t === undefined ? '-' : `${Math.round(t - startedAt)} ms`);
        const st = await stat(path.join(dir, name)).catch(() => null);
        const source = (await d.api(`/api/blobs/${digest}`, { method: 'HEAD' })).status;
        lines.push(
          `${name}: ${ack ? `${ack.key ?? 'blob'} of ${ack.size} acknowledged at ${rel(ack.at)}, delete sent ${rel(ack.deleteSentAt)}, acked ${rel(ack.deleteAckedAt)}` : 'not acknowledged'}` +
            ` (backup ran 0 to ${rel(finishedAt)}); source HEAD ${source}; copy's file ${st ? `size ${st.size}, links ${st.nlink}` : 'gone'}`,
        );
      }
      return lines.join('; ');
    };
    restored = await startDaemon({ dataDir: dir, adminToken: null });
    assert.equal(restored.token, d.token, 'the backup carries the admin token');
    const fsck = await adminPost<Fsck>(restored, '/api/admin/fsck');
    assert.deepEqual(
      { corrupt: fsck.corrupt, missing: fsck.missing, orphans: fsck.orphans },
      { corrupt: [], missing: [], orphans: [] },
      `fsck of the backup: ${JSON.stringify(fsck)}; backup reported ${report.blobs} blobs; ${await whence(fsck.orphans)}`,
    );
    assert.equal(fsck.checked, report.blobs, 'fsck checks the blobs the backup reported');

    const lost: string[] = [];
    for (const a of before) {
      const got = a.key === undefined ? await readBlob(restored, a.digest) : await readObject(restored, BUCKET, a.key);
      const what = `${a.key ?? 'blob'} ${a.digest}`;
      if (a.deleteAckedAt !== undefined && a.deleteAckedAt < startedAt) {
        if (got.status !== 404) lost.push(`${what}, deleted before the backup → ${got.status}`);
      } else if (a.deleteSentAt !== undefined && a.deleteSentAt < finishedAt) {
        // Deleted around the snapshot: either way, but never other bytes.
        if (got.status !== 404 && got.digest !== a.digest) lost.push(`${what}, delete in flight → ${got.status} ${got.digest ?? ''}`);
      } else if (got.digest !== a.digest) {
        lost.push(`${what} → ${got.status} ${got.digest ?? ''}`);
      }
    }
    assert.deepEqual(lost, [], 'everything acknowledged before the backup began reads back from it');

    assert.equal(await restored.stop(), 0);
    const offline = await runCli(['fsck', '--data', dir, '--json']);
    assert.equal(offline.code, 0, `blobd fsck --data exited ${offline.code}: ${offline.stderr}`);
    const offlineReport = JSON.parse(offline.stdout) as Fsck;
    assert.deepEqual(
      { checked: offlineReport.checked, corrupt: offlineReport.corrupt, missing: offlineReport.missing, orphans: offlineReport.orphans },
      { checked: report.blobs, corrupt: [], missing: [], orphans: [] },
    );
  } finally {
    load.stop = true;
    await restored?.kill9();
    await d.kill9();
    await removeDir(work);
  }
});

test('bytes whose row GC deleted, still queued for deletion (a crash or a snapshot in between), are no orphans to fsck or in a copy unless stuck for long; the next GC pass deletes them', async () => {
  // GC deletes a row and queues its bytes in one transaction, and deletes the bytes after. A snapshot taken
  // in between (a backup's) carries inline bytes without their row; a crash in between leaves both tiers so.
  const d = await startDaemon({ args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
  const work = path.dirname(d.dataDir);
  let restored: Daemon | undefined;
  let again: Daemon | undefined;
  try {
    const small = randomData(KiB); // inline
    const large = randomData(100 * KiB); // a file
    const digests = [sha256(small), sha256(large)];
    await uploadBlob(d, small, digests[0]!, 'post');
    await uploadBlob(d, large, digests[1]!, 'post');
    assert.equal(await d.stop(), 0);
    const hex = digests[1]!.slice('sha256:'.length);
    const file = path.join(d.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
    // What GC's row deletions leave until their bytes are deleted: no pin, no row, the location queued.
    const db = new Database(path.join(d.dataDir, 'blobd.db'));
    db.transaction(() => {
      for (const digest of digests) {
        db.prepare('DELETE FROM pins WHERE digest = ?').run(digest);
        db.prepare('DELETE FROM blobs WHERE digest = ?').run(digest);
        db.prepare('INSERT INTO byte_deletions (location, digest, queued_at) VALUES (?, ?, ?)').run(digest, digest, Date.now());
      }
    })();
    db.close();
    assert.equal((await stat(file)).size, large.length, 'the file is still there');

    const offline = await runCli(['fsck', '--data', d.dataDir, '--json']);
    assert.deepEqual(
      { code: offline.code, ...pick(JSON.parse(offline.stdout) as Fsck) },
      { code: 0, checked: 0, corrupt: [], missing: [], orphans: [] },
      offline.stdout,
    );

    const copy = path.join(work, 'copy');
    const backup = await runCli(['backup', copy, '--data', d.dataDir, '--json']);
    assert.equal(backup.code, 0, backup.stderr);
    assert.equal((JSON.parse(backup.stdout) as { blobs: number }).blobs, 0);
    restored = await startDaemon({ dataDir: copy, adminToken: null, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
    assert.deepEqual(pick(await adminPost<Fsck>(restored, '/api/admin/fsck')), { checked: 0, corrupt: [], missing: [], orphans: [] });
    await adminPost(restored, '/api/admin/gc');
    assert.equal(await restored.stop(), 0);
    const inCopy = new Database(path.join(copy, 'blobd.db'), { readonly: true });
    const left = inCopy.prepare('SELECT (SELECT count(*) FROM inline_blobs) + (SELECT count(*) FROM byte_deletions)').pluck().get();
    inCopy.close();
    assert.equal(left, 0, "the copy's GC pass deleted the inline bytes and emptied the queue");

    // Queued for two hours and still there: a deletion that keeps failing (or no GC pass ran). fsck says so.
    const aged = new Database(path.join(d.dataDir, 'blobd.db'));
    aged.prepare('UPDATE byte_deletions SET queued_at = ?').run(Date.now() - 2 * 3600_000);
    aged.close();
    const stuck = await runCli(['fsck', '--data', d.dataDir, '--json']);
    assert.equal(stuck.code, 1);
    assert.equal((JSON.parse(stuck.stdout) as Fsck).orphans.length, 2, stuck.stdout);

    again = await startDaemon({ dataDir: d.dataDir, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
    await adminPost(again, '/api/admin/gc');
    assert.equal(await stat(file).catch(() => null), null, "GC's pass deleted the file");
    assert.deepEqual(pick(await adminPost<Fsck>(again, '/api/admin/fsck')), { checked: 0, corrupt: [], missing: [], orphans: [] });
    for (const digest of digests) assert.equal((await again.api(`/api/blobs/${digest}`, { method: 'HEAD' })).status, 404);
  } finally {
    await restored?.kill9();
    await again?.kill9();
    await d.kill9();
    await removeDir(work);
  }
});

test('backup into a non-empty directory is refused with one line on stderr; into an empty one it works', async () => {
  const d = await startDaemon();
  const work = path.dirname(d.dataDir);
  try {
    const data = randomData(10 * KiB);
    await uploadBlob(d, data, sha256(data), 'post');

    const full = path.join(work, 'full');
    await mkdir(full);
    await writeFile(path.join(full, 'keep.txt'), 'mine');
    const refused = await runCli(['backup', full, '--data', d.dataDir]);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /^blobd: [^\n]+\n?$/, `one line on stderr: ${JSON.stringify(refused.stderr)}`);
    assert.deepEqual(await readdir(full), ['keep.txt'], 'nothing was written into the refused directory');

    const empty = path.join(work, 'empty');
    await mkdir(empty);
    const ok = await runCli(['backup', empty, '--data', d.dataDir, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { blobs: number }).blobs, 1);

    await d.stop();
    const restored = await startDaemon({ dataDir: empty });
    try {
      assert.equal((await readBlob(restored, sha256(data))).digest, sha256(data));
    } finally {
      await restored.stop();
    }
  } finally {
    await d.kill9();
    await removeDir(work);
  }
});

test('a blob row without its file fails the backup with one line; a directory the user made stays, empty', async () => {
  const d = await startDaemon();
  const work = path.dirname(d.dataDir);
  try {
    const data = randomData(100 * KiB); // over --inline-max: a blob with a file
    const digest = sha256(data);
    await uploadBlob(d, data, digest, 'post');
    const hex = digest.slice('sha256:'.length);
    await rm(path.join(d.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex));

    const mine = path.join(work, 'mine');
    await mkdir(mine);
    const failed = await runCli(['backup', mine, '--data', d.dataDir]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, new RegExp(`^blobd: blob ${digest} has no file .*fsck[^\\n]*\\n?$`));
    assert.deepEqual(await readdir(mine), [], 'the half-made copy is gone, the directory stays');

    const fresh = path.join(work, 'fresh');
    assert.equal((await runCli(['backup', fresh, '--data', d.dataDir])).code, 1);
    assert.equal(await stat(fresh).catch(() => null), null, 'a directory the backup made goes');
  } finally {
    await d.stop();
    await removeDir(work);
  }
});

test('the copy does not inherit the GC hold of the backup that made it; targets inside the data dir or on a file are refused', async () => {
  const d = await startDaemon();
  const work = path.dirname(d.dataDir);
  try {
    const data = randomData(KiB);
    await uploadBlob(d, data, sha256(data), 'post');
    for (const [target, why] of [
      [path.join(d.dataDir, 'tmp', 'bk'), /inside the data directory/],
      [path.join(d.dataDir, 'inner'), /inside the data directory/],
      [path.join(d.dataDir, 'blobd.db'), /inside the data directory|not a directory/],
    ] as const) {
      const refused = await runCli(['backup', target, '--data', d.dataDir]);
      assert.equal(refused.code, 1, target);
      assert.match(refused.stderr, /^blobd: [^\n]+\n?$/);
      assert.match(refused.stderr, why);
    }
    const aFile = path.join(work, 'a-file');
    await writeFile(aFile, 'x');
    const onFile = await runCli(['backup', aFile, '--data', d.dataDir]);
    assert.equal(onFile.code, 1);
    assert.match(onFile.stderr, /^blobd: .*not a directory\n?$/);

    const copy = path.join(work, 'copy');
    assert.equal((await runCli(['backup', copy, '--data', d.dataDir])).code, 0);
    await d.stop();
    const restored = await startDaemon({ dataDir: copy, args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
    try {
      const extra = randomData(KiB + 1);
      const res = await restored.api('/api/blobs', { method: 'POST', body: extra });
      assert.equal(res.status, 201);
      await res.arrayBuffer();
      assert.equal((await restored.api(`/api/blobs/${sha256(extra)}`, { method: 'DELETE' })).status, 204);
      const pass = (await (await restored.api('/api/admin/gc', { method: 'POST' })).json()) as { digests: string[] };
      assert.deepEqual(pass.digests, [sha256(extra)], 'GC is not paused in the copy');
    } finally {
      await restored.stop();
    }
  } finally {
    await d.stop();
    await removeDir(work);
  }
});
