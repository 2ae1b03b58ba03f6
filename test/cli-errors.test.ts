// The errors a user meets at the command line, as the real bin/blobd prints them: each one line on stderr
// in the form `blobd: CODE: message` (usage errors exit 2, others 1), saying what went wrong in the user's
// words — where a token was looked for, which directory is missing, which BUCKET/KEY — and, with --json,
// the same as one `{"error": {…}}` line: the API's own error object when the daemon answered with one.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { cliEnv, runCli, type CliRun } from './helpers/cli.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

/** The one line on stderr (asserting there is exactly one) and the exit code. */
function oneLine(r: CliRun, code: number): string {
  assert.equal(r.code, code, `exit code ${code}; stderr: ${r.stderr}`);
  assert.ok(r.stderr.endsWith('\n'), `stderr ends its line: ${JSON.stringify(r.stderr)}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.equal(r.stdout.length, 0, `nothing on stdout: ${r.stdout.toString()}`);
  return lines[0]!;
}

describe('blobd CLI: error messages', () => {
  let d: Daemon;
  let work: string;
  let env: Record<string, string>;
  let digest: string;
  const blobd = (args: string[], opts: Parameters<typeof runCli>[2] = {}) => runCli(args, env, opts);

  before(async () => {
    work = await makeTempDir('blobd-cli-errors-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    env = cliEnv(d, path.join(work, 'state'));
    const data = randomData(1000);
    digest = sha256(data);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: data })).status, 201);
    assert.ok((await d.api('/api/buckets/docs', { method: 'PUT' })).ok);
    assert.equal((await d.api('/api/buckets/docs/objects/a.txt', { method: 'PUT', body: 'a' })).status, 201);
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  test('no token anywhere: says that none was found and where it looked', async () => {
    const { BLOBD_TOKEN: _, ...noToken } = env;
    // Outside any folder with a data/ directory, without BLOBD_DATA: the default ./data of the working directory.
    const elsewhere = await makeTempDir('blobd-cli-cwd-');
    try {
      const line = oneLine(await runCli(['stats'], noToken, { cwd: elsewhere }), 1);
      assert.match(line, /^blobd: unauthorized: no token found/);
      for (const place of ['--token', 'BLOBD_TOKEN', path.join(elsewhere, 'data', 'admin-token')]) assert.ok(line.includes(place), `names ${place}: ${line}`);
      const viaData = oneLine(await runCli(['ls'], noToken, { env: { BLOBD_DATA: path.join(work, 'nowhere') } }), 1);
      assert.ok(viaData.includes(path.join(work, 'nowhere', 'admin-token')), viaData);
    } finally {
      await removeDir(elsewhere);
    }
    // A token that was given but is wrong is a different story: the daemon's own words.
    assert.match(oneLine(await blobd(['stats', '--token', 'wrong-token']), 1), /^blobd: unauthorized: the token is not valid$/);
  });

  test("commander's usage errors are in the blobd: form, one line, exit 2", async () => {
    const cases: [string[], string][] = [
      [['frob'], "blobd: unknown command 'frob'"],
      [['gett'], "blobd: unknown command 'gett' (Did you mean get?)"],
      [['get'], "blobd: missing required argument 'target'"],
      [['get', '--bogus', 'x'], "blobd: unknown option '--bogus'"],
      [['put', 'x', '--chunk-size'], "blobd: option '--chunk-size <size>' argument missing"],
      // A word after `uploads` that names none of its commands (ls is the default, and would take it).
      [['uploads', 'frob', 'x'], "blobd: unknown command or argument 'frob' (blobd uploads [ls], blobd uploads rm ID)"],
      [['uploads', 'cancel', 'x'], 'blobd: not an upload session id: "x" (blobd uploads lists them)'],
      [['fsck', '--inline-max', '1KiB'], 'blobd: --inline-max goes with --repack (a check re-hashes every blob whatever its size)'],
    ];
    const runs = await Promise.all(cases.map(([args]) => blobd(args)));
    cases.forEach(([, want], i) => assert.equal(oneLine(runs[i]!, 2), want));
  });

  test('get -o into a directory that does not exist names the user path, not the partial file', async () => {
    const target = path.join(work, 'no-such-dir', 'x.bin');
    const line = oneLine(await blobd(['get', digest, '-o', target]), 1);
    assert.equal(line, `blobd: local_file: cannot write ${target}: the directory ${path.dirname(target)} does not exist`);
    const underAFile = path.join(work, 'a-file', 'x.bin');
    await writeFile(path.dirname(underAFile), 'not a directory');
    assert.equal(oneLine(await blobd(['get', digest, '-o', underAFile]), 1), `blobd: local_file: cannot write ${underAFile}: ${path.dirname(underAFile)} is not a directory`);
  });

  test('a missing object is named BUCKET/KEY, with its revision when one was asked for', async () => {
    assert.equal(oneLine(await blobd(['get', 'docs/nope.txt']), 1), 'blobd: object_not_found: no object docs/nope.txt');
    assert.equal(oneLine(await blobd(['get', 'docs/nope.txt', '-o', path.join(work, 'nope')]), 1), 'blobd: object_not_found: no object docs/nope.txt');
    assert.equal(oneLine(await blobd(['stat', 'docs/sub/nope.txt']), 1), 'blobd: object_not_found: no object docs/sub/nope.txt');
    assert.equal(oneLine(await blobd(['rm', 'docs/nope.txt']), 1), 'blobd: object_not_found: no object docs/nope.txt');
    assert.equal(oneLine(await blobd(['get', 'docs/a.txt', '--revision', '7']), 1), 'blobd: object_not_found: no revision 7 of docs/a.txt');
    assert.equal(oneLine(await blobd(['rm', 'docs/a.txt', '--revision', '7']), 1), 'blobd: object_not_found: no revision 7 of docs/a.txt');
    assert.equal((await blobd(['stat', 'docs/a.txt'])).code, 0, 'the object is still there');
  });

  test('a message names what is wrong, in the words of the command line', async () => {
    for (const bad of ['0', 'abc']) {
      assert.equal(oneLine(await blobd(['get', 'docs/a.txt', '--revision', bad]), 2), 'blobd: --revision is a revision number');
    }
    assert.equal(oneLine(await blobd(['get', digest, '--revision', '1']), 2), 'blobd: --revision N is for BUCKET/KEY');
    // Longer than any key: refused before it makes a request line the daemon's HTTP parser refuses whole.
    const long = 'k'.repeat(20_000);
    assert.equal(oneLine(await blobd(['get', `docs/${long}`]), 2), 'blobd: a key is at most 1024 bytes of UTF-8; this one has 20000');
    assert.equal(oneLine(await blobd(['put', path.join(work, 'a-file'), '--bucket', 'docs', '--key', long]), 2), 'blobd: a key is at most 1024 bytes of UTF-8; this one has 20000');
    const stat = await blobd(['stat', 'docs/a.txt']);
    assert.equal(stat.code, 0, stat.stderr);
    assert.match(stat.stdout.toString(), /^key +a\.txt$/m);
    assert.doesNotMatch(stat.stdout.toString(), / null$/m, 'no field shown as null');
    assert.match((await blobd(['--json', 'stat', 'docs/a.txt'])).stdout.toString(), /":null/, '--json keeps them');
    assert.equal(
      oneLine(await blobd(['bucket', 'rm', 'docs']), 1),
      'blobd: bucket_not_empty: the bucket still holds objects; delete them, or pass --force to delete them with it',
    );
  });

  test('https:// against a plain-http daemon says it could not speak TLS there', async () => {
    const { host } = new URL(d.url);
    const url = `https://${host}`;
    const want = `blobd: tls_failed: could not speak TLS to ${host}: is it plain http? Try --url http://${host}`;
    assert.equal(oneLine(await blobd(['stats', '--url', url]), 1), want);
    assert.equal(oneLine(await blobd(['get', digest, '--url', url]), 1), want);
  });

  test('--json: every error is one {"error": {…}} line on stderr, the API error object when there is one', async () => {
    const api = (await (await d.api('/api/buckets/docs/objects/nope.txt')).json()) as { error: Record<string, unknown> };
    assert.equal(api.error.code, 'object_not_found');
    // The daemon's error object (code and details as sent), its message the same words as without --json.
    const want = { error: { ...api.error, message: 'no object docs/nope.txt' } };
    assert.deepEqual(JSON.parse(oneLine(await blobd(['get', 'docs/nope.txt', '--json']), 1)), want);
    assert.deepEqual(JSON.parse(oneLine(await blobd(['--json', 'stat', 'docs/nope.txt']), 1)), want);

    const missing = path.join(work, 'no-such-file');
    assert.deepEqual(JSON.parse(oneLine(await blobd(['put', missing, '--json']), 1)), { error: { code: 'local_file', message: `cannot read ${missing}: ENOENT` } });
    assert.deepEqual(JSON.parse(oneLine(await blobd(['--json', 'frob']), 2)), { error: { code: 'usage', message: "unknown command 'frob'" } });
    assert.deepEqual(JSON.parse(oneLine(await blobd(['get', 'not-a-digest', '--json']), 2)), { error: { code: 'usage', message: 'not a digest or BUCKET/KEY: "not-a-digest"' } });
    const unreachable = JSON.parse(oneLine(await blobd(['stats', '--json', '--url', 'http://127.0.0.1:1']), 1)) as { error: { code: string; message: string } };
    assert.equal(unreachable.error.code, 'unreachable');
    assert.match(unreachable.error.message, /^cannot reach blobd at http:\/\/127\.0\.0\.1:1: ECONNREFUSED$/);
  });
});
