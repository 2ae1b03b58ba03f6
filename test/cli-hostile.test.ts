// What a hostile tester found in the command line, each as the real bin/blobd meets it: `get -o` next to a
// planted FILE.blobd-part (a symlink, a hard link, someone else's file), two gets into one FILE, a full
// local disk, a `put` of a file rewritten with its old mtime put back, readers that stop reading
// (`| head`), and where the "no token found" message says it looked.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chown, link, lstat, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { randomData, sha256, sha256sum } from './helpers/bytes.ts';
import { cliEnv, runCli, startCli, type CliRun } from './helpers/cli.ts';
import { BLOBD, makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { privateDisk } from './helpers/disk.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;

/** The one line on stderr, with the exit code asserted. */
function oneLine(r: CliRun, code: number): string {
  assert.equal(r.code, code, `exit code ${code}; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  return lines[0]!;
}

/** Waits for `proc` to exit; one that hangs is killed after two minutes (and then fails its assertions). */
function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
  return new Promise<void>((resolve) => proc.once('close', () => (clearTimeout(timer), resolve())));
}

describe('blobd CLI: hostile input', () => {
  let d: Daemon;
  let work: string;
  let env: Record<string, string>;
  let big: ReturnType<typeof randomData>;
  let bigDigest: string;
  const blobd = (args: string[], opts: Parameters<typeof runCli>[2] = {}) => runCli(args, env, opts);

  before(async () => {
    work = await makeTempDir('blobd-cli-hostile-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    env = cliEnv(d, path.join(work, 'state'));
    big = randomData(64 * MiB);
    bigDigest = sha256(big);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: big })).status, 201);
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  /**
   * A `get -o out` stopped (SIGSTOP) while its partial file is being written: the partial file and its
   * remembered digest exist. Bounded retries in case a run finishes before it is caught.
   */
  async function stoppedGet(out: string): Promise<{ proc: ChildProcess; done: Promise<CliRun> }> {
    const partial = `${out}.blobd-part`;
    for (let attempt = 0; attempt < 8; attempt++) {
      const run = startCli(['get', bigDigest, '-o', out], env);
      await waitFor(async () => run.proc.exitCode !== null || ((await stat(partial).catch(() => null))?.size ?? 0) > 0, 'the partial file to grow', 60_000);
      run.proc.kill('SIGSTOP');
      const size = (await stat(partial).catch(() => null))?.size ?? 0;
      if (size > 0 && size < big.length && run.proc.exitCode === null) return run;
      run.proc.kill('SIGKILL');
      await run.done;
      await rm(out, { force: true });
      await rm(partial, { force: true });
    }
    throw new Error('could not catch a get -o mid-download');
  }

  /** A partial download left behind by a get that was killed mid-way (its remembered digest too). */
  async function leftBehind(out: string): Promise<void> {
    const run = await stoppedGet(out);
    run.proc.kill('SIGKILL');
    await run.done;
  }

  test('get -o never writes through a symlink planted at FILE.blobd-part', async () => {
    const victim = path.join(work, 'victim.txt');
    await writeFile(victim, 'precious\n');
    const out = path.join(work, 'o4');
    await symlink('victim.txt', `${out}.blobd-part`);
    const r = await blobd(['get', bigDigest, '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(victim, 'utf8'), 'precious\n', 'the symlink target is untouched');
    assert.ok((await lstat(out)).isFile(), 'FILE is a regular file, not the planted link');
    assert.equal(sha256sum(out), bigDigest);
    assert.equal(await lstat(`${out}.blobd-part`).catch(() => null), null);
  });

  test('a resumable partial that became a symlink or a hard link to another file is not written through', async () => {
    for (const plant of ['symlink', 'hardlink'] as const) {
      const victim = path.join(work, `victim-${plant}.txt`);
      await writeFile(victim, 'precious\n'.repeat(1000));
      const out = path.join(work, `resume-${plant}.bin`);
      const partial = `${out}.blobd-part`;
      await leftBehind(out);
      await rm(partial);
      if (plant === 'symlink') await symlink(victim, partial);
      else await link(victim, partial);
      const r = await blobd(['get', bigDigest, '-o', out]);
      assert.equal(r.code, 0, `${plant}: ${r.stderr}`);
      assert.equal(await readFile(victim, 'utf8'), 'precious\n'.repeat(1000), `${plant}: the victim is untouched`);
      assert.ok((await lstat(out)).isFile());
      assert.equal(sha256sum(out), bigDigest, plant);
      assert.notEqual((await stat(out)).ino, (await stat(victim)).ino, plant);
    }
  });

  test("a resumable partial owned by someone else is not reused: a fresh file of one's own", async (t: TestContext) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to plant a file of another user');
    const out = path.join(work, 'foreign.bin');
    const partial = `${out}.blobd-part`;
    await leftBehind(out);
    const size = (await stat(partial)).size;
    await rm(partial);
    await writeFile(partial, Buffer.alloc(size, 0x41));
    await chown(partial, 4242, 4242);
    const r = await blobd(['get', bigDigest, '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /resuming/);
    assert.equal(sha256sum(out), bigDigest);
    assert.equal((await stat(out)).uid, 0);
  });

  test('two gets into one FILE: both end well, FILE holds the blob', async () => {
    const out = path.join(work, 'twice.bin');
    const first = await stoppedGet(out);
    // The second resumes the first's partial file and renames it into place while the first is stopped.
    const second = await blobd(['get', bigDigest, '-o', out]);
    assert.equal(second.code, 0, second.stderr);
    first.proc.kill('SIGCONT');
    const r = await first.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(sha256sum(out), bigDigest);
    assert.equal(await lstat(`${out}.blobd-part`).catch(() => null), null);
  });

  test('two gets into one FILE, the partial replaced underneath: one clear line', async () => {
    const out = path.join(work, 'replaced.bin');
    const partial = `${out}.blobd-part`;
    const first = await stoppedGet(out);
    // Another writer puts a file of its own at the partial's name and finishes first.
    await rm(partial);
    await writeFile(partial, 'another writer');
    first.proc.kill('SIGCONT');
    const r = await first.done;
    assert.equal(oneLine(r, 1), `blobd: local_file: another blobd get is writing ${out}`);
    assert.equal(await readFile(partial, 'utf8'), 'another writer', "the other writer's file is left alone");
    assert.equal(await stat(out).catch(() => null), null);
    await rm(partial);
  });

  test('a full local disk during get -o: local_file, naming FILE', async (t: TestContext) => {
    const disk = await privateDisk(2);
    try {
      if (!disk.isolated) {
        if (process.env.CI === 'true') assert.fail('could not mount a private tmpfs (needs root)');
        return t.skip('needs root to mount a private tmpfs');
      }
      const out = path.join(path.dirname(disk.dataDir), 'out.bin');
      assert.equal(oneLine(await blobd(['get', bigDigest, '-o', out]), 1), `blobd: local_file: cannot write ${out}: no space left on device`);
      const json = JSON.parse(oneLine(await blobd(['get', bigDigest, '-o', out, '--json']), 1)) as unknown;
      assert.deepEqual(json, { error: { code: 'local_file', message: `cannot write ${out}: no space left on device` } });
      assert.equal(await stat(out).catch(() => null), null);
    } finally {
      await disk.dispose();
    }
  });

  test('put: a file rewritten and its mtime put back is hashed anew (ctime is part of its identity)', async () => {
    const f = path.join(work, 'f');
    await writeFile(f, 'version AAAA\n');
    const first = await blobd(['put', f]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.toString().trim(), sha256(Buffer.from('version AAAA\n')));
    // The tester's steps: `M=$(stat -c %y f); printf 'version BBBB\n' > f; touch -d "$M" f` (same size, inode, mtime).
    const m = execFileSync('stat', ['-c', '%y', f], { encoding: 'utf8' }).trim();
    await writeFile(f, 'version BBBB\n');
    execFileSync('touch', ['-d', m, f]);
    const second = await blobd(['put', f]);
    assert.equal(second.code, 0, second.stderr);
    const want = sha256(Buffer.from('version BBBB\n'));
    assert.equal(second.stdout.toString().trim(), want);
    assert.equal((await d.api(`/api/blobs/${want}`)).status, 200, 'the new bytes were uploaded');
  });

  test('a reader that stops reading (| head): a quiet exit 0, nothing on stderr', async () => {
    // Keys long enough that a listing outgrows the pipe's 64 KiB buffer.
    assert.ok((await d.api('/api/buckets/many', { method: 'PUT' })).ok);
    const keys = Array.from({ length: 400 }, (_, i) => `${String(i).padStart(4, '0')}-${'k'.repeat(300)}`);
    for (let i = 0; i < keys.length; i += 16) {
      const puts = keys.slice(i, i + 16).map((k) => d.api(`/api/buckets/many/objects/${k}`, { method: 'PUT', body: 'x' }));
      for (const res of await Promise.all(puts)) assert.equal(res.status, 201);
    }
    const pipelines = [
      [['ls', 'many'], 'head -1'],
      [['ls', 'many', '--json'], 'head -1'],
      [['get', bigDigest], 'head -c 10'],
    ] as const;
    for (const [args, head] of pipelines) {
      const cmd = `"$NODE" "$BLOBD" ${args.join(' ')} 2>"$ERR" | ${head} >/dev/null; echo "\${PIPESTATUS[0]}"`;
      const errFile = path.join(work, 'pipe-stderr');
      const proc = spawn('bash', ['-c', cmd], { env: { ...env, NODE: process.execPath, BLOBD, ERR: errFile }, stdio: ['ignore', 'pipe', 'inherit'] });
      let status = '';
      proc.stdout.setEncoding('utf8').on('data', (c: string) => (status += c));
      await exited(proc);
      assert.equal(await readFile(errFile, 'utf8'), '', `blobd ${args.join(' ')} | ${head}: nothing on stderr`);
      assert.equal(status.trim(), '0', `blobd ${args.join(' ')} | ${head}: exit status`);
    }
  });

  test('get to a terminal refuses binary bytes unless -o - asks for them; text goes through', async () => {
    const text = Buffer.from('hello, terminal\n');
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: text })).status, 201);
    const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01, 0x02, 0x03]);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: binary })).status, 201);
    /** `blobd -q ARGS` on a pseudo-terminal (util-linux script; -q: no progress bar): what it shows, and the exit code. */
    const onTerminal = async (args: string) => {
      const proc = spawn('script', ['-qec', `"$NODE" "$BLOBD" -q ${args}`, '/dev/null'], { env: { ...env, NODE: process.execPath, BLOBD }, stdio: ['ignore', 'pipe', 'pipe'] });
      let shown = '';
      proc.stdout.setEncoding('latin1').on('data', (c: string) => (shown += c));
      await exited(proc);
      return { code: proc.exitCode, shown: shown.replace(/\r\n/g, '\n') };
    };
    assert.deepEqual(await onTerminal(`get ${bigDigest}`), { code: 2, shown: 'blobd: binary output can mess up your terminal; use -o FILE to save it, or -o - to print it anyway\n' });
    assert.deepEqual(await onTerminal(`get ${sha256(binary)}`), { code: 2, shown: 'blobd: binary output can mess up your terminal; use -o FILE to save it, or -o - to print it anyway\n' });
    assert.deepEqual(await onTerminal(`get ${sha256(text)}`), { code: 0, shown: 'hello, terminal\n' });
    assert.deepEqual(await onTerminal(`get ${sha256(binary)} -o -`), { code: 0, shown: binary.toString('latin1') });
    // Not a terminal: the bytes as they are, as before.
    assert.ok((await blobd(['get', sha256(binary)])).stdout.equals(binary));
  });

  test('no token found: the message names the admin-token path it read, and only that', async () => {
    const { BLOBD_TOKEN: _, ...noToken } = env;
    const dataDir = path.join(work, 'nowhere');
    const line = oneLine(await runCli(['ls'], noToken, { env: { BLOBD_DATA: dataDir } }), 1);
    assert.equal(
      line,
      `blobd: unauthorized: no token found: looked for --token, then BLOBD_TOKEN, then the file ${path.join(dataDir, 'admin-token')}; give one with --token or BLOBD_TOKEN, or set BLOBD_DATA to the daemon's data directory`,
    );
  });

  test('. and .. in BUCKET/KEY are refused before any request: rm never reaches another object, a bucket or a token', async () => {
    for (const bucket of ['dots', 'victim']) assert.ok((await d.api(`/api/buckets/${bucket}`, { method: 'PUT' })).status < 300);
    assert.equal((await d.api('/api/buckets/dots/objects/important.txt', { method: 'PUT', body: 'keep me' })).status, 201);
    const made = await d.api('/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'kept', scopes: ['blobs:read'] }) });
    assert.equal(made.status, 201);
    const token = (await made.json()) as { id: string };
    for (const args of [
      ['rm', 'dots/typo/../important.txt'],
      ['rm', 'dots/../../victim'],
      ['rm', `dots/../../../tokens/${token.id}`],
      ['get', 'dots/./important.txt'],
      ['stat', 'dots/x/..'],
    ]) {
      assert.match(oneLine(await blobd(args), 2), /^blobd: a key has no \. or \.\. segment: /, args.join(' '));
    }
    // A name elsewhere that is only dots never leaves its place in the URL either.
    assert.match(oneLine(await blobd(['bucket', 'rm', '..']), 2), /^blobd: a path segment \. or \.\. would reach another resource/);
    assert.equal(await (await d.api('/api/buckets/dots/objects/important.txt')).text(), 'keep me');
    assert.equal((await d.api('/api/buckets/victim')).status, 200);
    const tokens = (await (await d.api('/api/tokens')).json()) as { items: { id: string }[] };
    assert.ok(tokens.items.some((t) => t.id === token.id), 'the token is still there');
  });

  test('Ctrl-C during put - (standard input): one line saying it cannot resume, exit 130, and its session is cancelled', async () => {
    const proc = spawn(process.execPath, [BLOBD, 'put', '-', '--chunk-size', '1MiB'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const code = new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)));
    proc.stdin!.on('error', () => undefined);
    proc.stdin!.write(randomData(3 * MiB)); // and the input stays open: more may come
    const sessions = async () => ((await (await d.api('/api/blobs/uploads?limit=100')).json()) as { items: { offset: number }[] }).items;
    await waitFor(async () => (await sessions()).some((s) => s.offset >= MiB), 'the session to hold a MiB');
    proc.kill('SIGINT');
    assert.equal(await code, 130, stderr);
    assert.equal(stderr.trim(), 'blobd: interrupted; standard input cannot be resumed, nothing was stored');
    assert.deepEqual(await sessions(), [], 'no session left holding its bytes');
  });

  test('get -o into a device or a FIFO writes into it, never replacing it; through a symbolic link into the file it names', async (t: TestContext) => {
    const small = randomData(300_000);
    const digest = sha256(small);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: small })).status, 201);
    // A FIFO, read by another process.
    const fifo = path.join(work, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = spawn('cat', [fifo]);
    const got: Buffer[] = [];
    reader.stdout.on('data', (c: Buffer) => got.push(c));
    const read = exited(reader);
    assert.equal((await blobd(['get', digest, '-o', fifo])).code, 0);
    await read;
    assert.equal(sha256(Buffer.concat(got)), digest);
    assert.ok((await lstat(fifo)).isFIFO(), 'still a FIFO');
    // A symbolic link: the file it names gets the bytes, the link stays.
    const target = path.join(work, 'target.bin');
    const linked = path.join(work, 'link.bin');
    await writeFile(target, 'old');
    await symlink(target, linked);
    assert.equal((await blobd(['get', digest, '-o', linked])).code, 0);
    assert.ok((await lstat(linked)).isSymbolicLink(), 'still a link');
    assert.equal(sha256sum(target), digest);
    await rm(linked);
    await symlink(path.join(work, 'missing.bin'), linked);
    assert.match(oneLine(await blobd(['get', digest, '-o', linked]), 1), /symbolic link to a file that does not exist/);
    // A character device of its own (a null device, made here: never the machine's /dev/null).
    const nullDevice = path.join(work, 'null');
    try {
      execFileSync('mknod', ['-m', '666', nullDevice, 'c', '1', '3']);
    } catch {
      if (process.env.CI === 'true') assert.fail('mknod failed: the CI runs as root');
      return t.skip('mknod needs root');
    }
    assert.equal((await blobd(['get', digest, '-o', nullDevice])).code, 0);
    assert.ok((await lstat(nullDevice)).isCharacterDevice(), 'still a device');
  });
});
