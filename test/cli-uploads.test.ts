// `blobd uploads` and `blobd uploads rm ID` with the real bin/blobd: an interrupted put leaves an open
// session that holds its bytes on the daemon; the CLI lists it (bytes so far, target, expiry, the local
// file) and cancels it — the bytes are freed at once, the put's local resume state is forgotten, and only
// the session's creator or an admin may cancel it without its upload token.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken } from './helpers/access.ts';
import { randomData, writeRandomFile } from './helpers/bytes.ts';
import { cliEnv, rememberedUploads, runCli, startCli, type CliRun } from './helpers/cli.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 ** 2;

interface Listed {
  id: string;
  offset: number;
  size: number | null;
  filename: string | null;
  content_type: string | null;
  temporary: boolean;
  bucket: string | null;
  key: string | null;
  created_at: string;
  expires_at: string;
  file: string | null;
}

describe('blobd uploads', () => {
  let d: Daemon;
  let work: string;
  let stateHome: string;
  let env: Record<string, string>;
  let big: string;
  let bigDigest: string;
  const text = (r: CliRun) => r.stdout.toString('utf8').trim();
  const ok = async (args: string[], e = env) => {
    const r = await runCli(args, e);
    assert.equal(r.code, 0, `blobd ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    return r;
  };
  const onDisk = (id: string) => stat(path.join(d.dataDir, 'uploads', id)).then(() => true, () => false);
  const openIds = async (token = d.token) => ((await (await as(d, token, '/api/blobs/uploads')).json()) as { items: { id: string }[] }).items.map((i) => i.id);

  /** A put of `big` stopped with SIGINT once the daemon holds some of it; its session. */
  async function interruptedPut(extra: string[]): Promise<{ id: string; token: string }> {
    const known = new Set((await rememberedUploads(stateHome)).flatMap((s) => s.parts.map((p) => p.id)));
    // 1 MiB requests, each made durable before the next: the put is still running when it is stopped.
    const run = startCli(['put', big, '--chunk-size', '1MiB', ...extra], env);
    const session = (await waitFor(async () => (await rememberedUploads(stateHome)).flatMap((s) => s.parts).find((p) => !known.has(p.id)), 'put to remember its session', 60_000))!;
    await waitFor(async () => {
      const res = await d.api(`/api/blobs/uploads/${session.id}`, { auth: false, headers: { 'upload-token': session.token } });
      return res.status === 200 && ((await res.json()) as { offset: number }).offset > 0;
    }, 'the daemon to hold part of the file', 60_000);
    run.proc.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    return session;
  }

  before(async () => {
    work = await makeTempDir('blobd-cli-uploads-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    stateHome = path.join(work, 'state');
    env = cliEnv(d, stateHome);
    big = path.join(work, 'big.bin');
    bigDigest = await writeRandomFile(big, 256 * MiB);
    assert.ok((await d.api('/api/buckets/docs', { method: 'PUT' })).ok);
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  test('lists interrupted puts: id, bytes so far, target, expiry and the local file; rm cancels and forgets', async () => {
    const pin = await interruptedPut([]);
    const object = await interruptedPut(['--bucket', 'docs', '--key', 'big.bin']);

    const listed = text(await ok(['uploads', '--json'])).split('\n').map((l) => JSON.parse(l) as Listed);
    assert.deepEqual(listed.map((s) => s.id).sort(), [pin.id, object.id].sort());
    for (const s of listed) {
      assert.ok(s.offset > 0 && s.offset < 256 * MiB, `bytes so far: ${s.offset}`);
      assert.equal(s.size, 256 * MiB);
      assert.equal(s.filename, 'big.bin');
      assert.equal(s.file, big, 'the local file whose put started it');
      assert.ok(Date.parse(s.expires_at) > Date.now(), s.expires_at);
      assert.equal(Object.hasOwn(s, 'token'), false, 'never a token');
    }
    const asObject = listed.find((s) => s.id === object.id)!;
    assert.deepEqual([asObject.bucket, asObject.key, asObject.temporary], ['docs', 'big.bin', false]);
    assert.deepEqual([listed.find((s) => s.id === pin.id)!.bucket, listed.find((s) => s.id === pin.id)!.key], [null, null]);

    const table = text(await ok(['uploads'])).split('\n');
    assert.match(table[0]!, /^ID +RECEIVED +TARGET +EXPIRES +FILE$/);
    const row = (id: string) => table.find((l) => l.startsWith(id)) ?? '';
    assert.match(row(pin.id), new RegExp(`^${pin.id}  .* of 256 MiB +pin big\\.bin +\\d{4}-\\d\\d-\\d\\dT\\S+ +${big}$`));
    assert.match(row(object.id), new RegExp(`^${object.id}  .* of 256 MiB +docs/big\\.bin +\\d{4}-\\S+ +${big}$`));
    assert.equal(await onDisk(pin.id), true, 'an interrupted put holds its bytes');

    // Cancel the pin's session: gone on the daemon, its bytes freed, and the put forgets it.
    const rm = await ok(['uploads', 'rm', pin.id]);
    assert.equal(text(rm), '');
    assert.equal(rm.stderr, `cancelled upload session ${pin.id}; the next put of ${big} starts afresh\n`);
    assert.ok(!(await openIds()).includes(pin.id));
    assert.equal(await onDisk(pin.id), false, 'the bytes are freed now, not at --upload-ttl');
    assert.ok(!(await rememberedUploads(stateHome)).some((s) => s.parts.some((p) => p.id === pin.id)), 'the local resume state is forgotten');
    // The next put starts afresh, without a word about a session that is gone.
    const again = await ok(['put', big]);
    assert.equal(text(again), bigDigest);
    assert.equal(again.stderr, '');

    const gone = await runCli(['uploads', 'rm', pin.id], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^blobd: upload_not_found: [^\n]*\n$/);

    const json = await ok(['uploads', 'rm', object.id, '--json']);
    assert.deepEqual(JSON.parse(text(json)), { id: object.id, cancelled: true, file: big });
    assert.equal(await onDisk(object.id), false);
    assert.deepEqual(await rememberedUploads(stateHome), []);
    const none = await ok(['uploads']);
    assert.deepEqual([text(none), none.stderr], ['', 'no open upload sessions\n']);
    assert.equal(text(await ok(['uploads', '--json'])), '');
  });

  test("without the upload token: the creator's own token and an admin may cancel, another token may not", async () => {
    const alice = (await createToken(d, ['blobs:write'])).token;
    const bob = (await createToken(d, ['blobs:write'])).token;
    const started = async (token: string) => {
      const res = await as(d, token, '/api/blobs/uploads?filename=a.bin', { method: 'POST' });
      const s = (await res.json()) as { id: string; token: string };
      const appended = await d.api(`/api/blobs/uploads/${s.id}/append`, { method: 'POST', auth: false, headers: { 'upload-token': s.token }, body: randomData(5000) });
      assert.equal(appended.status, 203);
      return s;
    };
    // A state directory that remembers nothing: the CLI has only the caller's own credential.
    const bare = cliEnv(d, path.join(work, 'other-state'));
    const a1 = await started(alice);
    const a2 = await started(alice);

    const mine = text(await ok(['uploads', '--json', '--token', alice], bare)).split('\n').map((l) => (JSON.parse(l) as Listed).id);
    assert.deepEqual(mine.sort(), [a1.id, a2.id].sort());
    assert.equal(text(await ok(['uploads', '--json', '--token', bob], bare)), '', "bob sees none of alice's sessions");

    const refused = await runCli(['uploads', 'rm', a1.id, '--token', bob], bare);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^blobd: forbidden: [^\n]*\n$/);
    assert.equal(await onDisk(a1.id), true, 'still there');

    await ok(['uploads', 'rm', a1.id, '--token', alice], bare);
    assert.equal(await onDisk(a1.id), false);
    await ok(['uploads', 'rm', a2.id], bare); // the admin token
    assert.deepEqual(await openIds(alice), []);

    const usage = await runCli(['uploads', 'rm', 'not-an-id'], bare);
    assert.equal(usage.code, 2);
    assert.equal(usage.stderr, 'blobd: not an upload session id: "not-an-id" (blobd uploads lists them)\n');
  });
});
