// The command line as a user's shell sees it: the real bin/blobd against a real daemon — round trips from
// files and pipes, buckets and objects, tokens, signed URLs, admin commands, digest verification, and the
// exit codes (0 ok, 1 error with one line on stderr, 2 usage). The long resume tests are in cli-resume.test.ts.
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { probeStore } from './helpers/store-probe.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { cliEnv, runCli, type CliRun } from './helpers/cli.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

const exists = (file: string) => stat(file).then(() => true, () => false);

/** Exit code 1 and exactly one line on stderr, matching `pattern`. */
function failed(r: CliRun, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code 1; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0]!, pattern);
}

describe('blobd CLI', () => {
  let d: Daemon;
  let work: string;
  let env: Record<string, string>;
  const blobd = (args: string[], opts: Parameters<typeof runCli>[2] = {}) => runCli(args, env, opts);
  const ok = async (args: string[], opts: Parameters<typeof runCli>[2] = {}) => {
    const r = await blobd(args, opts);
    assert.equal(r.code, 0, `blobd ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    return r;
  };
  const text = (r: CliRun) => r.stdout.toString('utf8').trim();
  const json = <T>(r: CliRun) => JSON.parse(r.stdout.toString('utf8')) as T;
  const lines = <T>(r: CliRun) => text(r).split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);

  before(async () => {
    work = await makeTempDir('blobd-cli-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    env = cliEnv(d, path.join(work, 'state'));
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  test('--help lists every command, and each command has its own help (exit 0)', async () => {
    const help = text(await ok(['--help']));
    const commands = ['serve', 'put', 'get', 'stat', 'ls', 'rm', 'uploads', 'bucket', 'token', 'sign', 'gc', 'fsck', 'backup', 'keys', 'stats'];
    for (const c of commands) assert.match(help, new RegExp(`^  ${c}\\b`, 'm'), `${c} in blobd --help`);
    assert.match(help, /Exit codes: 0 ok, 1 error/);
    // Side by side: each is a process start, and they share nothing.
    const all = [...commands, 'uploads ls', 'uploads rm', 'bucket create', 'bucket set', 'bucket ls', 'bucket rm', 'token create', 'token ls', 'token revoke', 'keys rotate'];
    const helps = await Promise.all(all.map((c) => ok([...c.split(' '), '--help'])));
    all.forEach((c, i) => assert.match(text(helps[i]!), new RegExp(`^Usage: blobd ${c}\\b`), c));
  });

  test('put FILE prints the digest; get writes the same bytes to stdout and to -o FILE; stat', async () => {
    const data = randomData(3 * 1024 * 1024 + 17);
    const file = path.join(work, 'three.bin');
    await writeFile(file, data);
    // Small requests, so that the file goes in several appends.
    const put = await ok(['put', file, '--chunk-size', '1MiB']);
    assert.equal(text(put), sha256(data));
    assert.equal(put.stderr, '', 'no notes and no progress bar when stderr is not a terminal');

    const out = await ok(['get', sha256(data)]);
    assert.ok(out.stdout.equals(data));
    const copy = path.join(work, 'copy.bin');
    const got = await ok(['get', sha256(data).slice('sha256:'.length), '-o', copy, '--json']);
    assert.ok((await readFile(copy)).equals(data));
    assert.deepEqual(json(got), { digest: sha256(data), size: data.length, path: copy, resumed_from: 0 });
    assert.equal(await exists(`${copy}.blobd-part`), false, 'no partial file left');

    assert.deepEqual(json(await ok(['stat', sha256(data), '--json'])), { digest: sha256(data), size: data.length });
    assert.match(text(await ok(['stat', sha256(data)])), /^size\s+3145745 \(3\.0 MiB\)$/m);
  });

  test('put - reads a pipe (several requests), get to a pipe; put --json is {digest, size, deduplicated}', async () => {
    const data = randomData(2 * 1024 * 1024 + 5);
    const put = await ok(['put', '-', '--chunk-size', '512KiB', '--json'], { input: data });
    assert.deepEqual(json(put), { digest: sha256(data), size: data.length, deduplicated: false });
    const res = await d.api(`/api/blobs/${sha256(data)}`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data), 'the daemon holds exactly the piped bytes');
    // An empty pipe is an empty blob.
    assert.equal(text(await ok(['put', '-'], { input: Buffer.alloc(0) })), sha256(Buffer.alloc(0)));
  });

  test('a file put before is offered by digest first: nothing is sent again', async () => {
    const data = randomData(100_000);
    const file = path.join(work, 'again.bin');
    await writeFile(file, data);
    await ok(['put', file]);
    const again = await ok(['put', file, '--json']);
    assert.deepEqual(json(again), { digest: sha256(data), size: data.length, deduplicated: true });
    const notes = await ok(['put', file]);
    assert.match(notes.stderr, /already stored \(100000 bytes\): nothing sent/);
    // The daemon holds no open session of this caller: none was needed.
    const sessions = (await (await d.api('/api/blobs/uploads')).json()) as { items: unknown[] };
    assert.deepEqual(sessions.items, []);
  });

  test('put --bucket of a file stored before sends nothing: the object points at the stored blob', async () => {
    const data = randomData(50_000);
    const file = path.join(work, 'known.bin');
    await writeFile(file, data);
    await ok(['put', file]);
    await ok(['bucket', 'create', 'known']);
    const put = await ok(['put', file, '--bucket', 'known']);
    assert.equal(text(put), sha256(data));
    assert.match(put.stderr, /already stored \(50000 bytes\): nothing sent/);
    assert.match(put.stderr, /stored as known\/known\.bin revision 1/);
    const again = await ok(['put', file, '--bucket', 'known', '--key', 'copy.bin', '--json']);
    assert.deepEqual(json(again), { digest: sha256(data), size: data.length, deduplicated: true, bucket: 'known', key: 'copy.bin', revision: 1 });
    const sessions = (await (await d.api('/api/blobs/uploads')).json()) as { items: unknown[] };
    assert.deepEqual(sessions.items, [], 'no session was started');
    assert.ok((await ok(['get', 'known/known.bin'])).stdout.equals(data));
    // The daemon is shared by this file's tests: the bucket listing test expects its own buckets only.
    assert.equal((await d.api('/api/buckets/known?force=true', { method: 'DELETE' })).status, 204);
  });

  test('buckets and objects: bucket create/set/ls/rm, put --bucket, ls, get and stat BUCKET/KEY, rm', async () => {
    await ok(['bucket', 'create', 'docs', '--max-revisions', '5']);
    failed(await blobd(['bucket', 'create', 'docs']), /^blobd: bucket_exists: /);
    const set = json<{ max_revisions: number; public_read: boolean; quota_bytes: number }>(await ok(['bucket', 'set', 'docs', '--quota', '10MiB', '--json']));
    assert.deepEqual([set.max_revisions, set.quota_bytes, set.public_read], [5, 10 * 1024 * 1024, false], 'set keeps what it does not name');
    assert.deepEqual(text(await ok(['bucket', 'ls'])), 'docs');

    const a = randomData(1000);
    const b = randomData(2000);
    await writeFile(path.join(work, 'a.txt'), a);
    await writeFile(path.join(work, 'b.txt'), b);
    const put = await ok(['put', path.join(work, 'a.txt'), '--bucket', 'docs', '--key', 'reports/2026/a.txt']);
    assert.equal(text(put), sha256(a));
    assert.match(put.stderr, /stored as docs\/reports\/2026\/a\.txt revision 1/);
    const putB = await ok(['put', path.join(work, 'b.txt'), '--bucket', 'docs', '--json']); // key: the file name
    assert.deepEqual(json(putB), { digest: sha256(b), size: b.length, deduplicated: false, bucket: 'docs', key: 'b.txt', revision: 1 });

    const [plain, prefixed, longRun, jsonRun] = await Promise.all([
      ok(['ls', 'docs']),
      ok(['ls', 'docs', '--prefix', 'reports/']),
      ok(['ls', 'docs', '-l']),
      ok(['ls', 'docs', '--json']),
    ]);
    assert.equal(text(plain), 'b.txt\nreports/2026/a.txt');
    assert.equal(text(prefixed), 'reports/2026/a.txt');
    assert.match(text(longRun), new RegExp(`2\\.0 KiB  \\S+  r1 +${sha256(b)}  b\\.txt`));
    const items = lines<{ key: string; digest: string; size: number }>(jsonRun);
    assert.deepEqual(items.map((o) => [o.key, o.digest, o.size]), [['b.txt', sha256(b), 2000], ['reports/2026/a.txt', sha256(a), 1000]]);

    const out = path.join(work, 'a-copy.txt');
    const [, gotB, statA] = await Promise.all([
      ok(['get', 'docs/reports/2026/a.txt', '-o', out]),
      ok(['get', 'docs/b.txt']),
      ok(['stat', 'docs/reports/2026/a.txt', '--json']),
    ]);
    assert.ok((await readFile(out)).equals(a));
    assert.ok(gotB.stdout.equals(b));
    const meta = json<{ key: string; revision: number; digest: string }>(statA);
    assert.deepEqual([meta.key, meta.revision, meta.digest], ['reports/2026/a.txt', 1, sha256(a)]);

    await ok(['rm', 'docs/b.txt']);
    failed(await blobd(['get', 'docs/b.txt']), /^blobd: object_not_found: /);
    failed(await blobd(['bucket', 'rm', 'docs']), /^blobd: bucket_not_empty: /);
    await ok(['bucket', 'rm', 'docs', '--force']);
    assert.equal(text(await ok(['bucket', 'ls'])), '');
  });

  test('ls without a bucket lists your pins; rm DIGEST drops your pin', async () => {
    const data = randomData(4321);
    const file = path.join(work, 'pin.bin');
    await writeFile(file, data);
    await ok(['put', file, '--temporary']);
    const pins = lines<{ digest: string; temporary: boolean }>(await ok(['ls', '--json']));
    assert.ok(pins.some((p) => p.digest === sha256(data) && p.temporary));
    await ok(['rm', sha256(data)]);
    assert.ok(!text(await ok(['ls'])).split('\n').includes(sha256(data)));
    failed(await blobd(['rm', sha256(data)]), /^blobd: pin_not_found: /);
  });

  test('tokens: create prints the token once, ls lists it, revoke ends it', async () => {
    const created = await ok(['token', 'create', 'ci', '--scope', 'blobs:read', '--scope', 'blobs:write', '--expires', '1d']);
    const token = text(created);
    assert.match(token, /^bdt_/);
    const listed = lines<{ id: string; name: string; scopes: string[] }>(await ok(['token', 'ls', '--json']));
    const mine = listed.find((t) => t.name === 'ci')!;
    assert.deepEqual(mine.scopes, ['blobs:read', 'blobs:write']);
    assert.ok(!text(await ok(['token', 'ls'])).includes(token), 'never the value');

    const data = randomData(500);
    const file = path.join(work, 'by-token.bin');
    await writeFile(file, data);
    assert.equal(text(await ok(['put', file, '--token', token])), sha256(data));
    failed(await blobd(['gc', '--token', token]), /^blobd: forbidden: /);

    await ok(['token', 'revoke', mine.id]);
    failed(await blobd(['get', sha256(data), '--token', token]), /^blobd: unauthorized: /);
    const noScope = await blobd(['token', 'create', 'x']);
    assert.equal(noScope.code, 2, 'a token needs at least one --scope: a usage error');
  });

  test('sign prints a URL that works without a token; keys rotate makes a new key sign', async () => {
    const data = randomData(777);
    await writeFile(path.join(work, 'signed.bin'), data);
    await ok(['put', path.join(work, 'signed.bin')]);
    const url = text(await ok(['sign', 'GET', `/api/blobs/${sha256(data)}`, '--expires', '10m']));
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));

    const rotated = json<{ key_id: string }>(await ok(['keys', 'rotate', '--json']));
    const after = text(await ok(['sign', 'GET', `/api/blobs/${sha256(data)}`]));
    assert.equal(new URL(after).searchParams.get('blobd-key'), rotated.key_id, 'the new key signs at once');
    assert.equal((await fetch(url)).status, 200, 'URLs signed with the older key still work');
    assert.equal((await fetch(after)).status, 200);

    // A key typed as it is, or already percent-encoded: the same object, through a URL that works.
    await ok(['bucket', 'create', 'signs']);
    await ok(['put', path.join(work, 'signed.bin'), '--bucket', 'signs', '--key', 'a b/é #1.bin']);
    for (const typed of ['/api/buckets/signs/objects/a b/é #1.bin', '/api/buckets/signs/objects/a%20b/%C3%A9%20%231.bin']) {
      const signed = text(await ok(['sign', 'GET', typed]));
      assert.ok(signed.includes('/objects/a%20b/%C3%A9%20%231.bin?'), signed);
      const got = await fetch(signed);
      assert.equal(got.status, 200, typed);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(data));
    }
  });

  test('gc --dry-run, stats and fsck report as text or --json', async () => {
    const gc = json<{ dry_run: boolean; blobs_removed: number }>(await ok(['gc', '--dry-run', '--json']));
    assert.equal(gc.dry_run, true);
    assert.match(text(await ok(['gc', '--dry-run'])), /^would remove \d+ blobs/);
    const stats = json<{ blobs: number; stored_bytes: number }>(await ok(['stats', '--json']));
    assert.ok(stats.blobs > 0 && stats.stored_bytes > 0);
    assert.match(text(await ok(['stats'])), /^blobs\s+\d+$/m);
    const fsck = json<{ checked: number; corrupt: string[] }>(await ok(['fsck', '--json']));
    assert.deepEqual(fsck.corrupt, []);
    assert.match(text(await ok(['fsck'])), /^checked \d+ blobs: 0 corrupt, 0 missing, 0 orphaned files$/);
  });

  test('get verifies the digest: damaged bytes are exit 1, and -o leaves no file', async () => {
    const data = randomData(50_000);
    await writeFile(path.join(work, 'damage.bin'), data);
    await ok(['put', path.join(work, 'damage.bin')]);
    // Damaged where the daemon keeps them (a small blob: in the database).
    const store = probeStore(d);
    const damaged = Buffer.from(data);
    damaged[100] = damaged[100]! ^ 0xff;
    await store.overwrite(sha256(data), damaged);
    const out = path.join(work, 'damaged-copy.bin');
    failed(await blobd(['get', sha256(data), '-o', out]), /^blobd: digest_mismatch: the downloaded bytes hash to sha256:[0-9a-f]{64}, not /);
    assert.equal(await exists(out), false);
    assert.equal(await exists(`${out}.blobd-part`), false);
    failed(await blobd(['get', sha256(data)]), /^blobd: digest_mismatch: /);
    await store.overwrite(sha256(data), data); // leave the data directory clean for fsck
    store.close();
  });

  test('exit codes: 2 for usage errors, 1 for errors, each one line on stderr', async () => {
    const usage = [['frobnicate'], ['get'], ['get', 'not-a-digest'], ['put', 'x', '--chunk-size', 'lots'], ['put', 'x', '--key', 'k'], ['rm', 'a/b', '--revision', 'x'], ['ls', '--prefix', 'p'], ['get', `sha256:${'0'.repeat(64)}`, '-o', work]];
    const runs = await Promise.all(usage.map((args) => blobd(args)));
    usage.forEach((args, i) => {
      const r = runs[i]!;
      assert.equal(r.code, 2, `blobd ${args.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${JSON.stringify(r.stderr)}`);
    });
    const errors: [string[], RegExp][] = [
      [['get', `sha256:${'0'.repeat(64)}`], /^blobd: blob_not_found: /],
      [['stat', `sha256:${'0'.repeat(64)}`], /^blobd: blob_not_found: /],
      [['put', path.join(work, 'no-such-file')], /^blobd: local_file: cannot read .*ENOENT/],
      [['stats', '--url', 'http://127.0.0.1:1'], /^blobd: unreachable: cannot reach blobd at http:\/\/127\.0\.0\.1:1/],
      [['get', `sha256:${'0'.repeat(64)}`, '--url', 'http://127.0.0.1:1'], /^blobd: unreachable: cannot reach blobd at http:\/\/127\.0\.0\.1:1/],
      [['stats', '--token', 'wrong-token'], /^blobd: unauthorized: /],
    ];
    const answers = await Promise.all(errors.map(([args]) => blobd(args)));
    errors.forEach(([, pattern], i) => failed(answers[i]!, pattern));
    // The admin token from data/admin-token (of BLOBD_DATA, else ./data) when neither --token nor BLOBD_TOKEN is given.
    const { BLOBD_TOKEN: _, ...noToken } = env;
    const elsewhere = path.join(work, 'elsewhere');
    assert.match((await runCli(['stats'], noToken, { env: { BLOBD_DATA: elsewhere } })).stderr, /^blobd: unauthorized: /);
    await mkdir(elsewhere);
    await writeFile(path.join(elsewhere, 'admin-token'), `${d.token}\n`);
    assert.equal((await runCli(['stats'], noToken, { env: { BLOBD_DATA: elsewhere } })).code, 0);
  });
});
