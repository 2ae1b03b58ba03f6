// fsck against the real daemon and the real CLI: a healthy store checks clean; a flipped byte, a blob of the
// wrong size, a deleted file and stray files are each reported; --repair quarantines without deleting, and
// uploading the same bytes again heals; `blobd fsck --data` works offline and refuses a directory in use.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { BLOBD, onFsOnly, onSqliteOnly, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { probeStore, type StoreProbe } from './helpers/store-probe.ts';
import type { Fsck } from './helpers/workload.ts';

type FsckReport = Fsck;

const sorted = (list: string[]) => [...list].sort();

/** Runs bin/blobd with `args` and no BLOBD_* variables from the test's environment. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BLOBD_')));
  // --json: the report as JSON on stdout (without it, fsck prints a human summary).
  const child = spawn(process.execPath, [BLOBD, ...args, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`blobd ${args.join(' ')} did not exit within 30s:\n${stdout}\n${stderr}`));
    }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function parseReport(stdout: string): FsckReport {
  try {
    return JSON.parse(stdout) as FsckReport;
  } catch {
    throw new Error(`not a JSON report on stdout: ${JSON.stringify(stdout)}`);
  }
}

describe('fsck', () => {
  let d: Daemon;
  let dataDir: string;
  const args = ['--gc-interval', '0s'];
  const blobs = {
    a: randomData(5000), // gets a flipped byte
    b: randomData(5001), // its file is deleted
    c: randomData(5002), // stays healthy (until the offline repair)
    e: randomData(5003), // gets one byte too many
  };
  const digest = (data: Uint8Array) => sha256(data);
  let store: StoreProbe;
  // What the damage test plants where blobs go: not a blob at all, and a blob's bytes with no row.
  let strayText = '';
  let strayBlobName = '';
  const strayBlob = randomData(321); // a file with a valid blob name and no row

  const fsck = async (query = ''): Promise<FsckReport> => {
    const res = await d.api(`/api/admin/fsck${query ? `?${query}` : ''}`, { method: 'POST' });
    assert.equal(res.status, 200, `POST /api/admin/fsck?${query} → ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as FsckReport;
  };
  const upload = async (data: Uint8Array<ArrayBuffer>) => {
    const res = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(res.status, 201, `upload → ${res.status} ${await res.clone().text()}`);
    assert.equal(((await res.json()) as { digest: string }).digest, digest(data));
  };
  const quarantineFiles = () => store.quarantined();

  const running = () => d.proc.exitCode === null && d.proc.signalCode === null;

  before(async () => {
    d = await startDaemon({ args });
    dataDir = d.dataDir;
    store = probeStore(d);
    for (const data of Object.values(blobs)) await upload(data);
  });
  after(async () => {
    store.close();
    if (running()) await d.stop();
    await removeDir(path.dirname(dataDir));
  });

  const damaged = Buffer.from(blobs.a);
  damaged[1234] = damaged[1234]! ^ 0xff;

  test('a healthy store: every blob checked, nothing reported', async () => {
    const report = await fsck();
    assert.equal(report.checked, 4);
    assert.deepEqual(
      { corrupt: report.corrupt, missing: report.missing, orphans: report.orphans, quarantined: report.quarantined },
      { corrupt: [], missing: [], orphans: [], quarantined: [] },
    );
  });

  test('a flipped byte, a wrong size, a deleted file and stray files are each reported', async () => {
    await store.overwrite(digest(blobs.a), damaged);
    await store.overwrite(digest(blobs.e), Buffer.concat([blobs.e, Buffer.from('x')]));
    await store.remove(digest(blobs.b));
    strayText = await store.plantStray();
    strayBlobName = await store.plantOrphan(strayBlob);

    const report = await fsck();
    assert.deepEqual(sorted(report.corrupt), sorted([digest(blobs.a), digest(blobs.e)]), 'corrupt');
    assert.deepEqual(report.missing, [digest(blobs.b)], 'missing');
    assert.deepEqual(sorted(report.orphans), sorted([strayText, strayBlobName]), 'orphans');
    assert.deepEqual(report.quarantined, [], 'a check without repair moves nothing');
    assert.ok((await store.read(digest(blobs.a)))?.equals(damaged), 'a plain check changes nothing');
    assert.equal(await store.hasPlanted(strayText), true);
  });

  test('?repair=true moves corrupt files to quarantine/, deletes nothing; the blob then reads as 404', async () => {
    const report = await fsck('repair=true');
    assert.deepEqual(sorted(report.corrupt), sorted([digest(blobs.a), digest(blobs.e)]));
    // B's file is missing: its row is marked too, so it reads as absent until its bytes come again.
    assert.deepEqual(sorted(report.quarantined), sorted([digest(blobs.a), digest(blobs.b), digest(blobs.e)]));
    assert.equal(await store.exists(digest(blobs.a)), false, 'moved away from blobs/');
    assert.equal(await store.exists(digest(blobs.e)), false);
    const kept = await quarantineFiles();
    assert.ok(kept.some((b) => b.equals(damaged)), 'the damaged bytes of A are in quarantine/');
    assert.ok(kept.some((b) => b.length === blobs.e.length + 1 && b.subarray(0, blobs.e.length).equals(blobs.e)), 'and those of E');
    assert.equal(await store.hasPlanted(strayText), true, 'stray files are untouched');
    assert.ok((await store.readPlanted(strayBlobName))?.equals(strayBlob));

    for (const data of [blobs.a, blobs.e]) {
      const res = await d.api(`/api/blobs/${digest(data)}`);
      assert.equal(res.status, 404);
      assert.equal(await errorCode(res), 'blob_not_found');
    }
    const healthy = await d.api(`/api/blobs/${digest(blobs.c)}`);
    assert.ok(Buffer.from(await healthy.arrayBuffer()).equals(blobs.c), 'others still read');

    const after = await fsck();
    assert.ok(!after.corrupt.includes(digest(blobs.a)), 'quarantined: no longer corrupt');
    assert.ok(!after.missing.includes(digest(blobs.a)), 'quarantined: a marked row is not "missing"');
    assert.deepEqual(after.missing, [], 'the missing file\'s row is marked, no longer reported missing');
    assert.ok(after.quarantined.includes(digest(blobs.b)));
  });

  test('uploading the original bytes again heals a quarantined blob', async () => {
    await upload(blobs.a);
    await upload(blobs.e);
    for (const data of [blobs.a, blobs.e]) {
      const res = await d.api(`/api/blobs/${digest(data)}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('etag'), `"${digest(data)}"`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));
      const stored = await store.read(digest(data));
      assert.equal(stored && sha256(stored), digest(data), 'the file on disk is whole again');
    }
    const report = await fsck();
    for (const list of [report.corrupt, report.missing, report.quarantined]) {
      assert.ok(!list.includes(digest(blobs.a)) && !list.includes(digest(blobs.e)), JSON.stringify(report));
    }
    assert.ok((await quarantineFiles()).some((b) => b.equals(damaged)), 'healing does not delete the quarantined copy');
  });

  // Offline fsck reads blob files and the SQLite file itself; a data directory whose blobs are in S3, or whose
  // rows are in a PostgreSQL database other nodes may be using, sends it to a running daemon.
  const offline = { ...onFsOnly('offline fsck reads the blob files'), ...onSqliteOnly('offline fsck opens the SQLite file; PostgreSQL rows are checked by a running node') };
  test('blobd fsck --data: offline report, exit 1 while problems remain, 0 when clean; --repair offline', offline, async () => {
    assert.equal(await d.stop(), 0);

    const dirty = await cli(['fsck', '--data', dataDir]);
    assert.equal(dirty.code, 1, `exit code; stderr: ${dirty.stderr}`);
    const report = parseReport(dirty.stdout);
    assert.deepEqual(report.corrupt, []);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.quarantined, [digest(blobs.b)]);
    assert.deepEqual(sorted(report.orphans), sorted([strayText, strayBlobName]));

    // Take the strays away: clean (B stays marked, unchecked, until its bytes are uploaded again).
    await store.removePlanted(strayText);
    await store.removePlanted(strayBlobName);
    const clean = await cli(['fsck', '--data', dataDir]);
    assert.equal(clean.code, 0, `exit code; stdout: ${clean.stdout} stderr: ${clean.stderr}`);
    const cleanReport = parseReport(clean.stdout);
    assert.equal(cleanReport.checked, 3);
    assert.deepEqual([cleanReport.corrupt, cleanReport.missing, cleanReport.orphans], [[], [], []]);

    // Offline repair quarantines too.
    const damagedC = Buffer.from(blobs.c);
    damagedC[0] = damagedC[0]! ^ 0x01;
    await store.overwrite(digest(blobs.c), damagedC);
    const repair = await cli(['fsck', '--data', dataDir, '--repair']);
    const repaired = parseReport(repair.stdout);
    assert.deepEqual(repaired.corrupt, [digest(blobs.c)], repair.stderr);
    assert.deepEqual(sorted(repaired.quarantined), sorted([digest(blobs.b), digest(blobs.c)]));
    assert.equal(await store.exists(digest(blobs.c)), false);
    assert.ok((await quarantineFiles()).some((b) => b.equals(damagedC)));
    const afterRepair = await cli(['fsck', '--data', dataDir]);
    assert.equal(afterRepair.code, 0, `after repair nothing is corrupt, missing or orphaned: ${afterRepair.stdout}`);

    d = await startDaemon({ dataDir, args });
    const res = await d.api(`/api/blobs/${digest(blobs.c)}`);
    assert.equal(res.status, 404, 'the offline repair\'s quarantine holds for the daemon');
    await res.arrayBuffer();
  });

  test('blobd fsck --data on a directory a daemon is using: exit 1, one line on stderr', offline, async () => {
    if (!running()) d = await startDaemon({ dataDir, args });
    const busy = await cli(['fsck', '--data', dataDir]);
    assert.equal(busy.code, 1);
    const lines = busy.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(busy.stderr)}`);
    assert.match(lines[0]!, /in use/i);
    assert.equal(busy.stdout, '', 'no report');
  });

  test('blobd fsck without --data asks the running daemon', async () => {
    if (!running()) d = await startDaemon({ dataDir, args });
    // The offline test takes the strays away; where it does not run (S3), they go here.
    for (const name of [strayText, strayBlobName]) if (await store.hasPlanted(name)) await store.removePlanted(name);
    const online = await cli(['fsck', '--url', d.url, '--token', d.token]);
    assert.equal(online.code, 0, `stdout: ${online.stdout} stderr: ${online.stderr}`);
    const report = parseReport(online.stdout);
    assert.equal(report.checked + report.quarantined.length >= 4, true, JSON.stringify(report));
    assert.deepEqual([report.corrupt, report.missing, report.orphans], [[], [], []]);
  });
});

describe('damage that must neither stick nor lead outside the data directory (G6)', () => {
  let d: Daemon;
  let store: StoreProbe;
  let outside: string;
  const fileOf = (digest: string) => {
    const hex = digest.slice('sha256:'.length);
    return path.join(d.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
  };
  const upload = async (data: Buffer<ArrayBuffer>) => {
    const res = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as { digest: string }).digest;
  };
  const readsBack = async (digest: string) => {
    const res = await d.api(`/api/blobs/${digest}`);
    return res.status === 200 ? sha256(Buffer.from(await res.arrayBuffer())) === digest : (await res.arrayBuffer(), false);
  };
  const fsck = async (query = '') => (await (await d.api(`/api/admin/fsck${query}`, { method: 'POST' })).json()) as FsckReport;
  const gc = async () => {
    const res = await d.api('/api/admin/gc', { method: 'POST' });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as { stray_files_removed: number };
  };

  before(async () => {
    d = await startDaemon({ args: ['--gc-grace', '0s', '--gc-interval', '0s'] });
    store = probeStore(d);
    outside = path.join(path.dirname(d.dataDir), 'outside');
    await mkdir(outside);
  });
  after(async () => {
    store.close();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('a blob whose file went missing or bad is healed by the next upload of its bytes, whichever way they come', async () => {
    await d.api('/api/buckets/heal', { method: 'PUT' });
    const cases = [randomData(3000), randomData(3001), randomData(3002), randomData(3003)];
    const digests = await Promise.all(cases.map(upload));
    await store.remove(digests[0]!);
    await store.remove(digests[1]!);
    await store.overwrite(digests[2]!, Buffer.from('short'));
    await store.remove(digests[3]!);
    // One-shot POST, an object PUT, PUT by digest, and an upload session's complete.
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: cases[0] })).status, 201);
    assert.equal((await d.api('/api/buckets/heal/objects/k', { method: 'PUT', body: cases[1] })).status, 201);
    assert.equal((await d.api(`/api/blobs/${digests[2]}`, { method: 'PUT', body: cases[2] })).status, 201);
    const session = (await (await d.api('/api/blobs/uploads', { method: 'POST' })).json()) as { id: string; token: string };
    const done = await fetch(`${d.url}/api/blobs/uploads/${session.id}/complete`, { method: 'POST', headers: { 'upload-token': session.token }, body: cases[3] });
    assert.equal(done.status, 201, await done.clone().text());
    for (const digest of digests) assert.ok(await readsBack(digest), `${digest} reads back with its bytes`);
    const report = await fsck();
    assert.deepEqual([report.corrupt, report.missing], [[], []]);
  });

  test('repair marks a row whose file is missing; the next upload heals it', async () => {
    const data = randomData(4000);
    const digest = await upload(data);
    await store.remove(digest);
    const repaired = await fsck('?repair=true');
    assert.deepEqual(repaired.missing, [digest]);
    assert.ok(repaired.quarantined.includes(digest));
    const probe = await d.api('/api/blobs/uploads?digest=' + digest, { method: 'POST' });
    assert.equal(probe.status, 202, 'a marked blob is not offered for dedup: the bytes must come');
    await probe.arrayBuffer();
    await upload(data);
    assert.ok(await readsBack(digest));
    assert.ok(!(await fsck()).quarantined.includes(digest), 'healed');
  });

  test('symlinks and directories under blobs/ are reported, never followed: GC deletes nothing outside', onFsOnly('symlinks in the data directory'), async () => {
    // A shard directory that is a symlink to a directory outside, holding a blob-named old file.
    const hex = `abcd${'0'.repeat(60)}`;
    await mkdir(path.join(outside, 'shard', 'cd'), { recursive: true });
    const precious = path.join(outside, 'shard', 'cd', hex);
    await writeFile(precious, 'precious');
    const { utimes, symlink } = await import('node:fs/promises');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(precious, old, old);
    const shardLink = path.join(d.dataDir, 'blobs', 'sha256', 'ab');
    await rm(shardLink, { recursive: true, force: true });
    await symlink(path.join(outside, 'shard'), shardLink);
    // A live blob whose file is replaced by a symlink to a file outside.
    const data = randomData(70_000);
    const digest = await upload(data);
    const outsideCopy = path.join(outside, 'copy');
    await writeFile(outsideCopy, data);
    await rm(fileOf(digest));
    await symlink(outsideCopy, fileOf(digest));
    // A directory where a blob file would be.
    const dirHex = `ef01${'0'.repeat(60)}`;
    await mkdir(path.join(d.dataDir, 'blobs', 'sha256', 'ef', '01', dirHex), { recursive: true });
    // Files and directories beside blobs/sha256/.
    await writeFile(path.join(d.dataDir, 'blobs', 'evil'), 'planted');
    await mkdir(path.join(d.dataDir, 'blobs', 'md5'));
    // A filesystem mounted at blobs/ (or blobs/sha256/) brings its lost+found: not an orphan.
    await mkdir(path.join(d.dataDir, 'blobs', 'lost+found'));
    await mkdir(path.join(d.dataDir, 'blobs', 'sha256', 'lost+found'));

    await gc();
    assert.equal(await readFile(precious, 'utf8'), 'precious', 'nothing outside was deleted');
    const res = await d.api(`/api/blobs/${digest}`);
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'blob_not_found');
    const report = await fsck();
    assert.ok(report.corrupt.includes(digest), 'a symlink in place of a blob file is corrupt, not healthy');
    assert.ok(report.orphans.includes('blobs/sha256/ab'), `the symlinked shard is an orphan: ${JSON.stringify(report.orphans)}`);
    assert.ok(report.orphans.includes(`blobs/sha256/ef/01/${dirHex}`), 'so is the directory');
    assert.ok(report.orphans.includes('blobs/evil') && report.orphans.includes('blobs/md5'), 'and what lies beside blobs/sha256');
    assert.equal(await readFile(path.join(d.dataDir, 'blobs', 'evil'), 'utf8'), 'planted', 'reported, not deleted');
    assert.deepEqual(report.orphans.filter((o) => o.includes('lost+found')), []);
    const repaired = await fsck('?repair=true');
    assert.ok(repaired.quarantined.includes(digest));
    assert.ok((await readFile(outsideCopy)).equals(data), 'repair moved the link, not what it points at');
    await upload(data);
    assert.ok(await readsBack(digest));
    await rm(shardLink);
    await rm(path.join(d.dataDir, 'blobs', 'evil'));
    await rm(path.join(d.dataDir, 'blobs', 'md5'), { recursive: true });
    await rm(path.join(d.dataDir, 'blobs', 'lost+found'), { recursive: true });
    await rm(path.join(d.dataDir, 'blobs', 'sha256', 'lost+found'), { recursive: true });
  });
});
