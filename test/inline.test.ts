// The inline tier against the real daemon: blobs up to --inline-max live in the metadata database (SQLite's
// inline_blobs table; on PostgreSQL, test/pg/inline.test.ts, their blob row), larger ones in blobs/; every
// route reads both the same way, one digest is stored once whichever routes bring it, fsck finds a flipped
// byte in the table, a data directory from before keeps its files readable, and a kill -9 under concurrent
// small uploads loses no acknowledged blob.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { BLOBD, makeTempDir, onFsOnly, onSqliteOnly, removeDir, startDaemon, testStore, type Daemon } from './helpers/daemon.ts';
import { inlineName, probeStore } from './helpers/store-probe.ts';
import { append, complete, initiate } from './helpers/sessions.ts';

const KiB = 1024;

/** Digest → stored length of every blob stored inline, straight from the daemon's database. */
async function inlineRows(d: Daemon): Promise<Map<string, number>> {
  const store = probeStore(d);
  try {
    const digests = (await store.list()).filter((n) => n.startsWith('inline/')).map((n) => n.slice('inline/'.length));
    return new Map(await Promise.all(digests.map(async (dg) => [dg, (await store.read(dg))!.length] as const)));
  } finally {
    store.close();
  }
}

async function upload(d: Daemon, data: Buffer<ArrayBuffer>): Promise<{ digest: string; deduplicated: boolean }> {
  const res = await d.api('/api/blobs', { method: 'POST', body: data });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { digest: string; deduplicated: boolean };
}

async function download(d: Daemon, digest: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; res: Response }> {
  const res = await d.api(`/api/blobs/${digest}`, { headers });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), res };
}

describe('the inline tier', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await removeDir(dir);
  });
  const start = async (args: string[] = [], dataDir?: string) => {
    const d = await startDaemon({ args: ['--gc-interval', '0s', ...args], dataDir });
    if (!dataDir) dirs.push(path.dirname(d.dataDir));
    return d;
  };

  test('small blobs go into the database and large ones into files; downloads, ranges, 304 and objects read both', async () => {
    const d = await start(['--inline-max', '16KiB']);
    const store = probeStore(d);
    try {
      const small = randomData(16 * KiB); // exactly the threshold: inline
      const large = randomData(16 * KiB + 1); // one byte more: a file
      const [s, l] = [await upload(d, small), await upload(d, large)];
      assert.deepEqual([...(await inlineRows(d))], [[s.digest, small.length]]);
      const files = await store.list();
      assert.ok(files.includes(inlineName(s.digest)));
      assert.equal(files.filter((f) => f.startsWith('blobs/')).length, testStore() === 'fs' ? 1 : 0, 'one file: the large blob');
      for (const [digest, data] of [[s.digest, small], [l.digest, large]] as const) {
        const whole = await download(d, digest);
        assert.equal(whole.status, 200);
        assert.ok(whole.body.equals(data));
        assert.equal(whole.res.headers.get('etag'), `"${digest}"`);
        const part = await download(d, digest, { range: 'bytes=100-299' });
        assert.equal(part.status, 206);
        assert.ok(part.body.equals(data.subarray(100, 300)));
        assert.equal(part.res.headers.get('content-range'), `bytes 100-299/${data.length}`);
        const tail = await download(d, digest, { range: `bytes=-10` });
        assert.ok(tail.body.equals(data.subarray(data.length - 10)));
        assert.equal((await download(d, digest, { range: `bytes=${data.length}-` })).status, 416);
        assert.equal((await download(d, digest, { 'if-none-match': `"${digest}"` })).status, 304);
      }
      // An object's content and an empty blob, inline too.
      assert.equal((await d.api('/api/buckets/b', { method: 'PUT' })).status, 201);
      const doc = Buffer.from('<p>inline</p>');
      const put = await d.api('/api/buckets/b/objects/doc.html', { method: 'PUT', body: doc, headers: { 'content-type': 'text/html' } });
      assert.equal(put.status, 201, await put.clone().text());
      const got = await d.api('/api/buckets/b/objects/doc.html');
      assert.equal(got.headers.get('content-type'), 'text/html');
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(doc));
      const empty = await upload(d, Buffer.alloc(0));
      assert.equal((await download(d, empty.digest)).body.length, 0);
      assert.deepEqual([...(await inlineRows(d)).keys()].sort(), [s.digest, sha256(doc), empty.digest].sort());
      // Stats count them among the blobs, and apart.
      const stats = (await (await d.api('/api/admin/stats')).json()) as Record<string, number>;
      assert.equal(stats.inline_blobs, 3);
      assert.equal(stats.inline_bytes, small.length + doc.length);
      assert.equal(stats.blobs, 4);
      const metrics = await (await d.api('/metrics')).text();
      assert.match(metrics, /^blobd_inline_blobs 3$/m);
      assert.match(metrics, new RegExp(`^blobd_inline_bytes ${small.length + doc.length}$`, 'm'));
      // A restart reads them from the database as before.
      await d.stop();
      const again = await start(['--inline-max', '16KiB'], d.dataDir);
      try {
        assert.ok((await download(again, s.digest)).body.equals(small));
        assert.ok((await download(again, l.digest)).body.equals(large));
        const fsck = (await (await again.api('/api/admin/fsck', { method: 'POST' })).json()) as { checked: number; corrupt: string[]; missing: string[]; orphans: string[] };
        assert.deepEqual([fsck.checked, fsck.corrupt, fsck.missing, fsck.orphans], [4, [], [], []]);
      } finally {
        await again.stop();
      }
    } finally {
      store.close();
      await d.stop();
    }
  });

  test('one small digest brought at once by a one-shot, a session, a PUT by digest and an object write is stored once', async () => {
    const d = await start();
    const store = probeStore(d);
    try {
      assert.equal((await d.api('/api/buckets/b', { method: 'PUT' })).status, 201);
      // A small session alone completes into the database, not into a file.
      const alone = randomData(7000);
      const lone = await initiate(d);
      assert.equal((await append(d, lone, alone)).status, 203);
      const dedupHits = async () => Number(/^blobd_dedup_hits_total (\d+)$/m.exec(await (await d.api('/metrics')).text())?.[1]);
      const hitsBefore = await dedupHits();
      const done = await complete(d, lone, `digest=${sha256(alone)}`);
      assert.equal(done.status, 201, await done.clone().text());
      assert.equal(((await done.json()) as { deduplicated: boolean }).deduplicated, false);
      assert.equal(await dedupHits(), hitsBefore, 'a new blob is no dedup hit');
      assert.equal((await inlineRows(d)).get(sha256(alone)), alone.length);
      assert.equal(await store.copies(sha256(alone)), 1, 'no file beside it');
      assert.deepEqual(await store.sessionIds(), []);
      assert.ok((await download(d, sha256(alone))).body.equals(alone));
      for (let round = 0; round < 5; round++) {
        const data = randomData(3000 + round);
        const digest = sha256(data);
        const s = await initiate(d);
        assert.equal((await append(d, s, data)).status, 203);
        const answers = await Promise.all([
          d.api('/api/blobs', { method: 'POST', body: data }),
          complete(d, s, `digest=${digest}`),
          d.api(`/api/blobs/${digest}`, { method: 'PUT', body: data }),
          d.api(`/api/buckets/b/objects/k${round}`, { method: 'PUT', body: data }),
        ]);
        assert.deepEqual(answers.map((r) => r.status), [201, 201, 201, 201]);
        const bodies = (await Promise.all(answers.map((r) => r.json()))) as { deduplicated?: boolean; digest: string }[];
        for (const b of bodies) assert.equal(b.digest, digest);
        assert.equal(await store.copies(digest), 1, `round ${round}: one stored copy`);
        // The session completes into the database too (SQLite's table, PostgreSQL's blob row), whichever wins.
        assert.equal((await inlineRows(d)).get(digest), data.length);
        assert.deepEqual(await store.sessionIds(), [], 'the session file went with its complete');
        assert.ok((await download(d, digest)).body.equals(data));
      }
    } finally {
      store.close();
      await d.stop();
    }
  });

  test('a data directory of files keeps working: small blobs stored as files stay readable and are not stored again', async () => {
    const d = await start(['--inline-max', '0']);
    const store = probeStore(d);
    const data = randomData(5000);
    const { digest } = await upload(d, data);
    assert.equal((await inlineRows(d)).size, 0, '--inline-max 0: no blob inline');
    await d.stop();
    const again = await start([], d.dataDir);
    try {
      assert.ok((await download(again, digest)).body.equals(data));
      // The same bytes once more, by a one-shot and by a session: the file stays the one copy.
      assert.equal((await upload(again, data)).deduplicated, true);
      const s = await initiate(again);
      await append(again, s, data);
      assert.equal((await complete(again, s, `digest=${digest}`)).status, 201);
      assert.equal(await store.copies(digest), 1);
      assert.equal((await inlineRows(again)).size, 0);
      // New small blobs go inline beside it; fsck sees both tiers clean.
      const other = await upload(again, randomData(6000));
      assert.deepEqual([...(await inlineRows(again)).keys()], [other.digest]);
      const fsck = (await (await again.api('/api/admin/fsck', { method: 'POST' })).json()) as { checked: number; corrupt: string[]; orphans: string[] };
      assert.deepEqual([fsck.checked, fsck.corrupt, fsck.orphans], [2, [], []]);
    } finally {
      store.close();
      await again.stop();
    }
  });

  test('fsck --data --repack moves small blobs stored as files into the database; corrupt and large ones stay files', onSqliteOnly('an offline repack works on the SQLite database of a data directory'), async () => {
    const d = await start(['--inline-max', '0']);
    const small = [randomData(4096), randomData(10), randomData(60 * KiB)];
    const large = randomData(100 * KiB);
    const bad = randomData(3000);
    for (const b of [...small, large, bad]) await upload(d, b);
    await d.stop();
    const store = probeStore(d);
    const repack = (...more: string[]) => spawnSync(BLOBD, ['fsck', '--data', d.dataDir, '--repack', '--json', ...more], { encoding: 'utf8', timeout: 60_000 });
    try {
      await store.corrupt(sha256(bad), 100);
      const run = repack();
      assert.equal(run.status, 1, `a corrupt file was left for fsck: exit 1 (${run.stderr})`);
      const report = JSON.parse(run.stdout) as { moved: number; bytes: number; corrupt: string[]; missing: string[] };
      assert.deepEqual(report, { moved: 3, bytes: 4096 + 10 + 60 * KiB, duplicates: 0, corrupt: [sha256(bad)], missing: [], failed: [] });
      for (const b of [...small, large]) assert.equal(await store.copies(sha256(b)), 1, 'one copy each: the files of the moved ones are gone');
      const again = await start([], d.dataDir);
      try {
        assert.deepEqual([...(await inlineRows(again)).keys()].sort(), small.map(sha256).sort());
        for (const b of [...small, large]) assert.ok((await download(again, sha256(b))).body.equals(b));
      } finally {
        await again.stop();
      }
      // A run cut short between its two steps leaves a file beside the row's bytes: the next run removes it.
      const layout = new DataLayout(d.dataDir);
      await writeFile(layout.blobFile(sha256(small[0]!)), small[0]!);
      assert.equal(await store.copies(sha256(small[0]!)), 2);
      const second = repack('--inline-max', '1MiB');
      assert.deepEqual(
        JSON.parse(second.stdout),
        { moved: 1, bytes: 100 * KiB, duplicates: 1, corrupt: [sha256(bad)], missing: [], failed: [] },
        'a larger --inline-max takes the 100 KiB one too, and the left-over copy goes',
      );
      assert.equal(await store.copies(sha256(small[0]!)), 1);
      // Without --inline-max, the daemon's own setting decides.
      const third = spawnSync(BLOBD, ['fsck', '--data', d.dataDir, '--repack', '--json'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, BLOBD_INLINE_MAX: '2MiB' } });
      assert.equal(third.status, 2);
      assert.match(third.stderr, /--inline-max must be at most 1MiB/);
      const wrong = spawnSync(BLOBD, ['fsck', '--repack'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(wrong.status, 2);
      assert.match(wrong.stderr, /--repack works on a data directory no daemon is using/);
    } finally {
      store.close();
    }
  });

  test('fsck finds a byte flipped in the table, repair quarantines it, and the next upload heals it', async () => {
    const d = await start();
    try {
      const data = randomData(3000);
      const good = randomData(2000);
      const { digest } = await upload(d, data);
      await upload(d, good);
      // A bit flipped in the stored row (an UPDATE of the table), as a failing disk or a stray write leaves it.
      const store = probeStore(d);
      await store.corrupt(digest, 1234);
      assert.notEqual(sha256((await store.read(digest))!), digest);
      type Report = { checked: number; corrupt: string[]; missing: string[]; quarantined: string[] };
      const check = async (repair: boolean) => (await (await d.api(`/api/admin/fsck${repair ? '?repair=true' : ''}`, { method: 'POST' })).json()) as Report;
      const plain = await check(false);
      assert.deepEqual([plain.checked, plain.corrupt, plain.quarantined], [2, [digest], []]);
      assert.equal((await download(d, digest)).status, 200, 'a plain check changes nothing');
      const repaired = await check(true);
      assert.deepEqual([repaired.corrupt, repaired.quarantined], [[digest], [digest]]);
      assert.equal((await download(d, digest)).status, 404, 'corrupt bytes are never served');
      assert.equal((await inlineRows(d)).has(digest), false);
      const kept = await store.quarantined();
      store.close();
      assert.equal(kept.length, 1, 'the damaged bytes are kept aside');
      assert.equal(kept[0]!.length, data.length);
      assert.notEqual(sha256(kept[0]!), digest);
      // The same bytes once more heal the blob in place.
      await upload(d, data);
      assert.ok((await download(d, digest)).body.equals(data));
      const after = await check(false);
      assert.deepEqual([after.checked, after.corrupt, after.quarantined], [2, [], []]);
      assert.ok((await download(d, sha256(good))).body.equals(good), 'the other blob untouched');
    } finally {
      await d.stop();
    }
  });

  test('under a smaller --inline-max, an upload of a blob stored inline writes no second copy; a damaged inline copy gives way to the file', onFsOnly('files of the data directory'), async () => {
    let d = await start();
    const data = randomData(6000);
    const { digest } = await upload(d, data);
    const file = new DataLayout(d.dataDir).blobFile(digest);
    await d.stop();
    d = await start(['--inline-max', '1KiB'], d.dataDir);
    const store = probeStore(d);
    try {
      assert.equal((await upload(d, data)).deduplicated, true);
      assert.equal(await stat(file).catch(() => null), null, 'intact inline bytes stay the one copy');
      assert.deepEqual([...(await inlineRows(d))], [[digest, data.length]]);
      // Damaged in the table: the next upload's verified bytes go to a file, which serves the blob from then on.
      await store.corrupt(digest, 100);
      await upload(d, data);
      assert.ok((await download(d, digest)).body.equals(data), 'the verified bytes are served');
      assert.ok((await stat(file)).isFile());
      assert.equal((await inlineRows(d)).has(digest), false);
      assert.equal((await store.quarantined()).length, 1, 'the damaged bytes are kept aside');
      const report = (await (await d.api('/api/admin/fsck', { method: 'POST' })).json()) as { checked: number; corrupt: string[]; orphans: string[] };
      assert.deepEqual([report.checked, report.corrupt, report.orphans], [1, [], []]);
    } finally {
      store.close();
      await d.stop();
    }
  });

  test('fsck --repair of a damaged inline copy beside an intact file moves the inline copy aside and leaves the blob served; backup links the file too', onFsOnly('files of the data directory'), async () => {
    const d = await start();
    const store = probeStore(d);
    try {
      const data = randomData(5000);
      const { digest } = await upload(d, data);
      // The file an interrupted repack, or a smaller --inline-max, left beside the inline bytes.
      const file = new DataLayout(d.dataDir).blobFile(digest);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, data, { mode: 0o400 });
      if (d.metadata !== 'postgres') {
        const copy = path.join(path.dirname(d.dataDir), 'backup');
        const run = spawnSync(process.execPath, [BLOBD, 'backup', copy, '--data', d.dataDir], { encoding: 'utf8' });
        assert.equal(run.status, 0, run.stderr);
        assert.ok((await readFile(new DataLayout(copy).blobFile(digest))).equals(data), 'the backup has the file too');
      }
      await store.corrupt(digest, 10);
      type Report = { corrupt: string[]; quarantined: string[] };
      const fsck = async (q = '') => (await (await d.api(`/api/admin/fsck${q}`, { method: 'POST' })).json()) as Report;
      const plain = await fsck();
      assert.deepEqual([plain.corrupt, plain.quarantined], [[digest], []]);
      const repaired = await fsck('?repair=true');
      assert.deepEqual([repaired.corrupt, repaired.quarantined], [[digest], []], 'found damaged, and healed from the file: not quarantined');
      assert.ok((await download(d, digest)).body.equals(data));
      assert.deepEqual([(await fsck()).corrupt, (await fsck()).quarantined], [[], []]);
      assert.equal((await store.quarantined()).length, 1, 'the damaged inline bytes are kept aside');
    } finally {
      store.close();
      await d.stop();
    }
  });

  test('kill -9 under concurrent small uploads: every acknowledged blob reads back with its digest', async () => {
    const d = await start();
    const acknowledged = new Map<string, Buffer>();
    let stop = false;
    const worker = async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        const data = randomData(1 + ((i * 977) % (48 * KiB)));
        try {
          const res = await d.api('/api/blobs', { method: 'POST', body: data });
          if (res.status === 201) acknowledged.set(((await res.json()) as { digest: string }).digest, data);
        } catch {
          return; // the daemon is gone
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    while (acknowledged.size < 200) await new Promise((r) => setTimeout(r, 10));
    await d.kill9();
    stop = true;
    await Promise.all(workers);
    const again = await start([], d.dataDir);
    try {
      for (const [digest, data] of acknowledged) {
        const got = await download(again, digest);
        assert.equal(got.status, 200, `${digest} acknowledged before the kill`);
        assert.equal(sha256(got.body), digest);
        assert.ok(got.body.equals(data));
      }
      // Nothing half-written is visible: every row's bytes hash to its digest.
      const fsck = (await (await again.api('/api/admin/fsck', { method: 'POST' })).json()) as { corrupt: string[]; missing: string[] };
      assert.deepEqual([fsck.corrupt, fsck.missing], [[], []]);
    } finally {
      await again.stop();
    }
  });

  test('--inline-max above 1MiB is refused with one line', async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const run = spawnSync(BLOBD, ['serve', '--port', '0', '--data', path.join(dir, 'data'), '--inline-max', '2MiB'], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /--inline-max must be at most 1MiB/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });
});
