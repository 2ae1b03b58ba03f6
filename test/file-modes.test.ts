// Who can read blobd's files (SPEC §2): under the common umask 022 every directory blobd makes under data/
// is 0700, every file 0600 and every blob file 0400; a data directory other users can enter is refused at
// start (or, with --insecure-data-dir, only reported); an empty one is adopted; `blobd backup` writes alike.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createToken } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { cliEnv, runCli } from './helpers/cli.ts';
import { BLOBD, makeTempDir, removeDir, startDaemon, TEST_TOKEN, type Daemon } from './helpers/daemon.ts';
import { append, complete, initiate } from './helpers/sessions.ts';

// The umask most systems give users and services; the daemons and CLIs these tests start inherit it.
process.umask(0o022);

const run = promisify(execFile);

interface Entry {
  rel: string;
  mode: number;
  kind: 'dir' | 'file' | 'other';
}

/** Every entry under `root` (root itself as '.'), as lstat sees it. */
async function walk(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    out.push({ rel: path.relative(root, p) || '.', mode: st.mode & 0o777, kind });
    if (kind === 'dir') for (const name of await readdir(p)) await visit(path.join(p, name));
  };
  await visit(root);
  return out;
}

/** What SPEC §2 says each entry's mode must be: directories 0700, blob files (also quarantined) 0400, files 0600. */
function expectedMode(e: Entry): number {
  if (e.kind === 'dir') return 0o700;
  return /^(blobs|quarantine)\//.test(e.rel) ? 0o400 : 0o600;
}

/** The entries whose mode is not what SPEC §2 says, as `rel mode (want mode)` lines. */
function wrongModes(entries: Entry[]): string[] {
  return entries
    .filter((e) => e.kind === 'other' || e.mode !== expectedMode(e))
    .map((e) => `${e.rel} ${e.kind} ${e.mode.toString(8)} (want ${expectedMode(e).toString(8)})`);
}

function blobPath(dataDir: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return path.join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
}

/** Runs `blobd serve` on `dataDir` expecting it to exit (a refusal): its exit code and stderr. */
async function serveRefused(dataDir: string, extra: string[] = [], env: Record<string, string> = {}) {
  return run(process.execPath, [BLOBD, 'serve', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, ...extra], {
    env: { ...process.env, BLOBD_ADMIN_TOKEN: TEST_TOKEN, ...env },
    // A daemon that starts instead of refusing is stopped here, so the test fails rather than hangs.
    timeout: 60_000,
    killSignal: 'SIGKILL',
  }).then(
    (ok) => ({ code: 0 as number | null, stderr: ok.stderr }),
    (err: { code: number | null; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );
}

/** Writes something of every kind blobd keeps: blobs (one-shot and by session), an open session, objects, tokens, keys. */
async function exercise(d: Daemon): Promise<{ oneShot: string }> {
  // Larger than --inline-max: blobs with a file each (small ones live in the database).
  const oneShot = randomData(70_000);
  assert.equal((await d.api('/api/blobs', { method: 'POST', body: oneShot, headers: { 'idempotency-key': 'k1' } })).status, 201);

  const bySession = randomData(80_000);
  const s = await initiate(d);
  assert.equal((await append(d, s, bySession)).status, 203);
  const done = await complete(d, s, `digest=${sha256(bySession)}`);
  assert.equal(done.status, 201, await done.clone().text());

  const open = await initiate(d);
  assert.equal((await append(d, open, randomData(700))).status, 203);

  assert.equal((await d.api('/api/buckets/private', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } })).status, 201);
  const object = await d.api('/api/buckets/private/objects/a/b.txt', { method: 'PUT', body: 'secret', headers: { 'content-type': 'text/plain' } });
  assert.equal(object.status, 201, await object.clone().text());
  await createToken(d, ['bucket:private:read']);
  assert.equal((await d.api('/api/admin/keys/rotate', { method: 'POST' })).status, 201);
  const signed = await d.api('/api/signed-urls', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ method: 'GET', path: `/api/blobs/${sha256(oneShot)}`, expires_in: 60 }),
  });
  assert.equal(signed.status, 201, await signed.clone().text());
  return { oneShot: sha256(oneShot) };
}

test('with umask 022, every directory blobd makes is 0700, every file 0600, every blob file 0400', async () => {
  const d = await startDaemon({ adminToken: null });
  try {
    const { oneShot } = await exercise(d);
    // A corrupt blob moved aside by fsck --repair: quarantine/ too.
    await writeFile(blobPath(d.dataDir, oneShot), 'damaged');
    const fsck = await d.api('/api/admin/fsck?repair=true', { method: 'POST' });
    assert.equal(fsck.status, 200);
    assert.deepEqual(((await fsck.json()) as { corrupt: string[] }).corrupt, [oneShot]);

    const running = await walk(d.dataDir);
    const names = running.map((e) => e.rel);
    for (const must of ['blobd.db', 'blobd.db-wal', 'blobd.db-shm', 'blobd.lock', 'admin-token', 'keys', 'uploads', 'tmp', 'quarantine']) {
      assert.ok(names.includes(must), `${must} is there while the daemon runs: ${names.join(' ')}`);
    }
    assert.ok(running.some((e) => e.rel.startsWith('blobs/sha256/') && e.kind === 'file'), 'blob files');
    assert.ok(running.some((e) => e.rel.startsWith('uploads/') && e.kind === 'file'), 'an open session file');
    assert.deepEqual(wrongModes(running), [], 'modes while the daemon runs');
  } finally {
    await d.stop();
  }
  try {
    assert.deepEqual(wrongModes(await walk(d.dataDir)), [], 'modes after a graceful stop');
    // Its own directory does not trip the start-up check.
    const again = await startDaemon({ dataDir: d.dataDir });
    await again.stop();
  } finally {
    await removeDir(path.dirname(d.dataDir));
  }
});

test('secret files an older blobd or an operator left readable to others (admin-token, keys/*.key) are made 0600 at start', async () => {
  const first = await startDaemon({ adminToken: null });
  try {
    await exercise(first); // writes keys/records.key and a signing key (rotate)
  } finally {
    await first.stop();
  }
  try {
    const keys = (await readdir(path.join(first.dataDir, 'keys'))).map((f) => path.join('keys', f));
    assert.ok(keys.some((f) => /^keys\/signing-.*\.key$/.test(f)), `a signing key: ${keys.join(' ')}`);
    assert.ok(keys.includes(path.join('keys', 'records.key')), `the records key: ${keys.join(' ')}`);
    const secrets = ['admin-token', 'blobd.db', ...keys];
    for (const rel of secrets) await chmod(path.join(first.dataDir, rel), 0o644);
    const token = (await readFile(path.join(first.dataDir, 'admin-token'), 'utf8')).trim();

    const d = await startDaemon({ dataDir: first.dataDir, adminToken: null });
    try {
      // Tightened at start, before any request needs one of them.
      for (const rel of secrets) assert.equal((await stat(path.join(d.dataDir, rel))).mode & 0o777, 0o600, rel);
      assert.equal(d.token, token, 'the same admin token is read');
      assert.equal((await d.api('/api/tokens')).status, 200, 'and it works');
    } finally {
      await d.stop();
    }
    // With BLOBD_ADMIN_TOKEN set the file is not read, and is made private all the same.
    await chmod(path.join(first.dataDir, 'admin-token'), 0o644);
    const withEnv = await startDaemon({ dataDir: first.dataDir });
    try {
      assert.equal((await stat(path.join(withEnv.dataDir, 'admin-token'))).mode & 0o777, 0o600);
    } finally {
      await withEnv.stop();
    }
  } finally {
    await removeDir(path.dirname(first.dataDir));
  }
});

test('a data directory other users can enter is refused with one line saying what to run', async () => {
  const d = await startDaemon();
  await d.stop();
  try {
    for (const mode of [0o755, 0o750, 0o701]) {
      await chmod(d.dataDir, mode);
      const refused = await serveRefused(d.dataDir);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /^blobd: [^\n]+\n$/, `one line: ${JSON.stringify(refused.stderr)}`);
      assert.ok(refused.stderr.includes(`data directory ${d.dataDir} is accessible by other users (mode 0${mode.toString(8)})`), refused.stderr);
      assert.ok(refused.stderr.includes(`chmod 700 ${d.dataDir}`), refused.stderr);
      assert.ok(refused.stderr.includes('--insecure-data-dir'), refused.stderr);
      assert.equal((await stat(d.dataDir)).mode & 0o777, mode, 'the mode is left as the operator set it');
    }
  } finally {
    await removeDir(path.dirname(d.dataDir));
  }
});

test('--insecure-data-dir (or BLOBD_INSECURE_DATA_DIR) starts anyway and logs a warning; new files stay private', async () => {
  const first = await startDaemon();
  await first.stop();
  try {
    await chmod(first.dataDir, 0o750);
    for (const how of [{ args: ['--insecure-data-dir'] }, { env: { BLOBD_INSECURE_DATA_DIR: 'true' } }]) {
      const d = await startDaemon({ dataDir: first.dataDir, ...how });
      try {
        const warning = d.output().split('\n').find((l) => l.includes('accessible by other users'));
        assert.ok(warning, `a warning in the log: ${d.output()}`);
        assert.equal((JSON.parse(warning) as { level: number }).level, 40);
        const data = randomData(71_234);
        assert.equal((await d.api('/api/blobs', { method: 'POST', body: data })).status, 201);
        assert.equal((await stat(blobPath(d.dataDir, sha256(data)))).mode & 0o777, 0o400);
      } finally {
        await d.stop();
      }
      assert.equal((await stat(first.dataDir)).mode & 0o777, 0o750, 'blobd does not override the operator');
    }
    const entries = (await walk(first.dataDir)).filter((e) => e.rel !== '.');
    assert.deepEqual(wrongModes(entries), []);
  } finally {
    await removeDir(path.dirname(first.dataDir));
  }
});

test('a new or empty data directory (a fresh clone\'s data/ with only .gitkeep) is made 0700 and used', async () => {
  const work = await makeTempDir();
  try {
    // What git checks out under umask 022: data/ 0755 holding .gitkeep 0644.
    const clone = path.join(work, 'clone-data');
    await mkdir(clone);
    await writeFile(path.join(clone, '.gitkeep'), '');
    const empty = path.join(work, 'empty-data');
    await mkdir(empty);
    const nested = path.join(work, 'new', 'parent', 'data');
    for (const dir of [clone, empty, nested]) {
      if (dir !== nested) assert.equal((await stat(dir)).mode & 0o777, 0o755);
      const d = await startDaemon({ dataDir: dir });
      await d.stop();
      assert.equal((await stat(dir)).mode & 0o777, 0o700, dir);
    }
    assert.equal((await stat(path.join(work, 'new'))).mode & 0o777, 0o755, 'parents blobd creates are left to the umask');
    assert.equal(await readFile(path.join(clone, '.gitkeep'), 'utf8'), '', '.gitkeep stays');

    // Anything else in it: not blobd's to take over.
    const shared = path.join(work, 'shared');
    await mkdir(shared);
    await writeFile(path.join(shared, 'notes.txt'), 'someone else\'s');
    const refused = await serveRefused(shared);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^blobd: data directory .* is accessible by other users \(mode 0755\)/);
    assert.deepEqual(await readdir(shared), ['notes.txt'], 'nothing was created in it');
  } finally {
    await removeDir(work);
  }
});

test('blobd backup writes its copy 0700/0600/0400, also into an existing 0755 directory and from an older 0444 blob', async () => {
  const d = await startDaemon({ adminToken: null });
  const work = path.dirname(d.dataDir);
  try {
    const { oneShot } = await exercise(d);
    // A blob file as older versions of blobd wrote it: the copy must still be 0400.
    await chmod(blobPath(d.dataDir, oneShot), 0o444);
    const env = cliEnv(d, path.join(work, 'state'));

    const fresh = path.join(work, 'backup-new');
    const made = await runCli(['backup', fresh, '--data', d.dataDir], env);
    assert.equal(made.code, 0, made.stderr);
    const existing = path.join(work, 'backup-existing');
    await mkdir(existing);
    assert.equal((await stat(existing)).mode & 0o777, 0o755);
    const into = await runCli(['backup', existing, '--data', d.dataDir], env);
    assert.equal(into.code, 0, into.stderr);

    for (const dir of [fresh, existing]) {
      const entries = await walk(dir);
      assert.ok(entries.some((e) => e.rel === 'blobd.db') && entries.some((e) => e.rel === 'admin-token'), dir);
      assert.ok(entries.some((e) => e.rel.startsWith('keys/') && e.kind === 'file'), dir);
      assert.ok(entries.some((e) => e.rel === path.relative(d.dataDir, blobPath(d.dataDir, oneShot))), dir);
      assert.deepEqual(wrongModes(entries), [], dir);
    }
    await d.stop();
    // The copy is a data directory a daemon starts on.
    const restored = await startDaemon({ dataDir: existing, adminToken: null });
    await restored.stop();
  } finally {
    await d.kill9();
    await removeDir(work);
  }
});
