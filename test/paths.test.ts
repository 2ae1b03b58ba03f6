// G6: no input — digest, filename, header — makes blobd read or write outside its data directory.
// Hostile names are thrown at every route; the tree around the data dir must be exactly as before.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { BLOBD, makeTempDir, onFsOnly, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

const run = promisify(execFile);

const SECRET = 'top secret bytes that must never be served';

const HOSTILE = [
  '..%2F..%2Fetc%2Fpasswd',
  '..%2Fsecret',
  '%2e%2e%2fsecret',
  '%252e%252e%252fsecret',
  '..%5C..%5Csecret',
  encodeURIComponent('/etc/passwd'),
  encodeURIComponent('sha256:../../secret'),
  encodeURIComponent(`sha256:${'a'.repeat(62)}/..`),
  encodeURIComponent(`${'a'.repeat(64)}\u0000`),
  '%00',
];

async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

/** Everything beside the data dir (the data dir itself is allowed to change). */
async function besideData(dir: string): Promise<string[]> {
  return (await tree(dir)).filter((f) => f !== 'data' && !f.startsWith(`data${path.sep}`));
}

/** Sends a request line exactly as given (no client-side normalisation of dot segments). */
function rawRequest(url: string, target: string, token: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    });
    let out = '';
    sock.setEncoding('utf8').on('data', (d: string) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

let d: Daemon;
let outside: string;
before(async () => {
  d = await startDaemon();
  outside = path.dirname(d.dataDir);
  await writeFile(path.join(outside, 'secret'), SECRET);
});
after(async () => {
  await d.stop();
  await removeDir(outside);
});

test('hostile digests on every route are 4xx JSON and touch nothing outside data/', async () => {
  const around = await besideData(outside);
  const inside = (await tree(d.dataDir)).filter((f) => !f.startsWith('blobd.db'));
  for (const h of HOSTILE) {
    for (const [method, body] of [['GET', undefined], ['HEAD', undefined], ['PUT', 'payload']] as const) {
      const res = await d.api(`/api/blobs/${h}?filename=..%2F..%2Fsecret`, {
        method,
        body,
        headers: { 'x-request-id': '../../secret' },
      });
      assert.ok(res.status >= 400 && res.status < 500, `${method} ${h} → ${res.status}`);
      if (method !== 'HEAD') {
        const text = await res.text();
        assert.ok(!text.includes(SECRET));
        assert.ok(!text.includes(outside), 'no path in the answer');
        assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      }
    }
  }
  const post = await d.api('/api/blobs?filename=../../secret', { method: 'POST', body: 'x', headers: { 'x-request-id': '../x' } });
  assert.equal(post.status, 201);
  assert.deepEqual(await besideData(outside), around, 'nothing appeared or vanished beside the data dir');
  const nowInside = (await tree(d.dataDir)).filter((f) => !f.startsWith('blobd.db'));
  assert.ok(nowInside.every((f) => inside.includes(f) || f.startsWith('blobs')), `unexpected files: ${nowInside}`);
  assert.equal(await readFile(path.join(outside, 'secret'), 'utf8'), SECRET);
});

test('dot segments in the raw request target never reach a file', async () => {
  for (const target of ['/api/blobs/../../secret', '/api/blobs/../../../../etc/passwd', '/api/blobs/%2e%2e/%2e%2e/secret', '/../secret']) {
    const answer = await rawRequest(d.url, target, d.token);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
    assert.ok(status >= 400 && status < 500, `${target} → ${status}`);
    assert.match(answer, /content-type: application\/json/i);
    assert.ok(!answer.includes(SECRET));
    assert.ok(!answer.includes('root:'), 'no /etc/passwd content');
  }
});

test('a data directory whose uploads/ is a symbolic link out of it refuses to start, and touches nothing there', onFsOnly('session files live in the data directory'), async () => {
  const dataDir = await makeTempDir();
  const outside = await makeTempDir();
  const victim = path.join(outside, '01a24422-0000-7000-8000-000000000001');
  await writeFile(victim, 'precious');
  // (A linked tmp/ is removed at start, as everything in it: the link goes, not what it names.)
  await symlink(outside, path.join(dataDir, 'uploads'));
  // A daemon that starts anyway is stopped by the timeout, and the test fails on its exit code.
  const env = { ...process.env, BLOBD_ADMIN_TOKEN: 'paths-token-0123456789' };
  const started = await run(process.execPath, [BLOBD, 'serve', '--port', '0', '--data', dataDir], { env, timeout: 20_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(started.code, 1);
  assert.match(started.stderr.trim(), /^blobd: uploads\/ in the data directory is not a real directory/);
  assert.equal(await readFile(victim, 'utf8'), 'precious', 'nothing outside the data directory was touched');
  await rm(path.join(dataDir, 'uploads'));
  await removeDir(dataDir);
  await removeDir(outside);
});
