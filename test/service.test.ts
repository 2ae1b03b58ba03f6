// The daemon as an operator sees it: probes, OpenAPI, request ids and JSON logs, the admin token
// bootstrap, configuration errors, and a graceful SIGTERM that lets an in-flight upload finish.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { BLOBD, makeTempDir, metadataArgs, onSqliteOnly, removeDir, startDaemon } from './helpers/daemon.ts';
import { metaProbe } from './helpers/meta-probe.ts';
import { waitFor } from './helpers/wait.ts';

const run = promisify(execFile);

/** `blobd ARGS` run to its end (killed after a minute: a start that should fail and does not fails the test). */
function blobdExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return run(process.execPath, [BLOBD, ...args], {
    env: { ...process.env, BLOBD_ADMIN_TOKEN: 'another-token-0123456789' },
    timeout: 60_000,
    killSignal: 'SIGKILL',
  }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number | null; stderr: string }) => err,
  );
}

test('probes, OpenAPI and request ids', async () => {
  const d = await startDaemon({ args: ['--log-level', 'info'] });
  try {
    assert.deepEqual(await (await d.api('/healthz', { auth: false })).json(), { status: 'ok' });
    const ready = await d.api('/readyz', { auth: false });
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', checks: { database: 'ok', data_dir: 'ok', disk: 'ok' } });

    const doc = (await (await d.api('/openapi.json', { auth: false })).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/api/blobs/{digest}']?.get);
    assert.ok(doc.paths['/api/blobs/{digest}']?.put);
    assert.ok(doc.paths['/api/blobs']?.post);
    assert.ok(doc.paths['/healthz']?.get && doc.paths['/readyz']?.get);

    const given = await d.api('/healthz', { headers: { 'x-request-id': 'my-trace-42' } });
    assert.equal(given.headers.get('x-request-id'), 'my-trace-42');
    const made = await d.api('/api/blobs/nope');
    const id = made.headers.get('x-request-id');
    assert.match(id ?? '', /^[0-9a-f-]{36}$/);
    // One JSON log line per request, carrying the id, the path and the status — but never the token.
    const line = await waitFor(
      () => d.output().split('\n').find((l) => l.includes(`"req_id":"${id}"`) && l.includes('"msg":"request"')),
      'the access log line',
    );
    const entry = JSON.parse(line!) as Record<string, unknown>;
    assert.equal(entry.status, 400);
    assert.equal(entry.path, '/api/blobs/nope');
    assert.equal(entry.method, 'GET');
    assert.ok(!d.output().includes(d.token), 'the token never reaches the log');
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

test('readyz is 503 when the data directory cannot be written', async () => {
  const d = await startDaemon();
  try {
    const tmp = path.join(d.dataDir, 'tmp');
    await rm(tmp, { recursive: true });
    await writeFile(tmp, 'not a directory');
    const res = await d.api('/readyz');
    assert.equal(res.status, 503);
    const body = (await res.json()) as { error: { code: string; checks: Record<string, string> } };
    assert.equal(body.error.code, 'unavailable');
    assert.deepEqual(body.error.checks, { database: 'ok', data_dir: 'failing', disk: 'ok' });
    // Uploads fail cleanly, not with a stack trace.
    // Larger than --inline-max: its bytes need the data directory (small ones go into the database).
    const up = await d.api('/api/blobs', { method: 'POST', body: 'x'.repeat(100_000) });
    assert.equal(up.status, 500);
    const err = (await up.json()) as { error: { code: string; message: string; request_id: string } };
    assert.equal(err.error.code, 'internal_error');
    assert.equal(err.error.request_id, up.headers.get('x-request-id'));
    assert.ok(!JSON.stringify(err).includes(d.dataDir), 'no path leaks');
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

/** Sends raw bytes on a fresh connection and returns everything the server answers. */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => sock.write(bytes));
    let out = '';
    sock.setEncoding('utf8').on('data', (d: string) => (out += d));
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
  });
}

test('requests the HTTP parser rejects still get a JSON error; HTTP/1.0 without Host works', async () => {
  const d = await startDaemon();
  try {
    const cases: [string, number][] = [
      [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
      ['POST /api/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 400],
      ['POST /api/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx', 400],
      ['GET /healthz HTTP/1.1\r\nHost: x\r\nBad\u0001Header: y\r\n\r\n', 400],
    ];
    for (const [bytes, status] of cases) {
      const answer = await raw(d.url, bytes);
      assert.ok(answer.startsWith(`HTTP/1.1 ${status} `), answer.slice(0, 80));
      assert.match(answer, /content-type: application\/json/i);
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
      assert.equal(typeof body.error.code, 'string');
    }
    const old = await raw(d.url, 'GET /healthz HTTP/1.0\r\n\r\n');
    assert.ok(old.startsWith('HTTP/1.1 200 '), old.slice(0, 80));
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

// SQLite has one write lock for the whole file, which readiness tries; PostgreSQL writers wait on the rows they touch.
test('readyz answers at once, 503, while another process holds the database write lock', onSqliteOnly('one write lock for the whole database'), async () => {
  const d = await startDaemon();
  const meta = metaProbe(d);
  try {
    const release = await meta.holdWriteLock();
    const started = Date.now();
    const res = await d.api('/readyz');
    await release();
    assert.equal(res.status, 503);
    assert.deepEqual(((await res.json()) as { error: { checks: unknown } }).error.checks, { database: 'failing', data_dir: 'ok', disk: 'ok' });
    assert.ok(Date.now() - started < 2000, 'no wait on the lock');
    assert.equal((await d.api('/readyz')).status, 200);
  } finally {
    await meta.close();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

test('a second daemon on the same data directory refuses to start', async () => {
  const d = await startDaemon();
  try {
    const second = await run(process.execPath, [BLOBD, 'serve', '--port', '0', '--data', d.dataDir, ...(await metadataArgs(d.dataDir))], {
      env: { ...process.env, BLOBD_ADMIN_TOKEN: 'another-token-0123456789' },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(second.code, 1);
    assert.match(second.stderr, /in use by another blobd process/);
    assert.equal((await d.api('/readyz')).status, 200, 'the first one is untouched');
  } finally {
    await d.stop();
  }
  // Once the first stops (or dies), the directory is free again.
  const again = await startDaemon({ dataDir: d.dataDir });
  await again.kill9();
  const afterCrash = await startDaemon({ dataDir: d.dataDir });
  await afterCrash.stop();
  await removeDir(path.dirname(d.dataDir));
});

test('a data directory in use that lost its blobd.db refuses to start (GC would delete its blob files)', onSqliteOnly('the database file is SQLite\'s'), async () => {
  const d = await startDaemon({ args: ['--inline-max', '0'] });
  const data = randomData(5000);
  const res = await d.api('/api/blobs', { method: 'POST', body: data });
  assert.equal(res.status, 201);
  await d.stop();
  for (const suffix of ['', '-wal', '-shm']) await rm(path.join(d.dataDir, `blobd.db${suffix}`), { force: true });
  const serve = () => blobdExit(['serve', '--port', '0', '--data', d.dataDir]);
  const refused = await serve();
  assert.equal(refused.code, 1);
  assert.match(refused.stderr.trim(), /^blobd: .*blobd\.db is missing, but this data directory was in use \(it holds blob files\): put the database back/);
  // Without the blob files, the record of the store is enough to tell.
  await rm(path.join(d.dataDir, 'blobs'), { recursive: true });
  assert.match((await serve()).stderr, /metadata-store\.json names SQLite/);
  assert.equal(await stat(path.join(d.dataDir, 'blobd.db')).catch(() => null), null, 'no empty database was made');
  await removeDir(path.dirname(d.dataDir));
});

test('a damaged byte-store.json, metadata-store.json or blobd.db (or an empty blobd.db) stops serve, fsck and backup with one line naming the file; nothing is made', onSqliteOnly('the database file is SQLite\'s'), async () => {
  const d = await startDaemon({ args: ['--inline-max', '0'] });
  const data = randomData(3000);
  assert.equal((await d.api('/api/blobs', { method: 'POST', body: data })).status, 201);
  await d.stop();
  const target = path.join(path.dirname(d.dataDir), 'copy');
  const refusals = async (file: string, why: RegExp, serveWhy = why) => {
    for (const args of [['serve', '--port', '0'], ['fsck'], ['backup', target]]) {
      const got = await blobdExit([...args, '--data', d.dataDir]);
      assert.equal(got.code, 1, `${args[0]} with a damaged ${file}`);
      assert.equal(got.stderr.trim().split('\n').length, 1, got.stderr);
      const said = args[0] === 'serve' ? serveWhy : why;
      assert.match(got.stderr, new RegExp(`^blobd: .*${file.replace('.', '\\.')} ${said.source}`), `${args[0]}: ${got.stderr}`);
      assert.equal(await stat(target).catch(() => null), null, `${args[0]} made no backup directory`);
    }
  };
  const byteStore = path.join(d.dataDir, 'byte-store.json');
  const metaStore = path.join(d.dataDir, 'metadata-store.json');
  const [byteText, metaText] = [await readFile(byteStore, 'utf8'), await readFile(metaStore, 'utf8')];
  await writeFile(byteStore, '{"kind":"fs"'); // cut short
  await refusals('byte-store.json', /is damaged \(not a record with "kind" "fs" or "s3"\): put it back from a `blobd backup` copy/);
  await writeFile(byteStore, byteText);
  await writeFile(metaStore, '');
  await refusals('metadata-store.json', /is damaged \(empty\): delete it and start with the same --metadata/);
  await writeFile(metaStore, metaText);
  const db = path.join(d.dataDir, 'blobd.db');
  const original = await readFile(db);
  await writeFile(db, randomData(original.length));
  await refusals('blobd.db', /is damaged \(file is not a database\)/);
  // Cut to nothing: SQLite would take it for a new database, and GC the blob files for strays.
  await writeFile(db, '');
  await refusals('blobd.db', /is empty: put the database back/, /is empty, but this data directory was in use/);
  // Put back, everything is as it was.
  await writeFile(db, original);
  const again = await startDaemon({ dataDir: d.dataDir });
  assert.equal(sha256(Buffer.from(await (await again.api(`/api/blobs/${sha256(data)}`)).arrayBuffer())), sha256(data));
  await again.stop();
  await removeDir(path.dirname(d.dataDir));
});

test('free disk already at or below --min-free at start: a warn line says so, and a refused write names --min-free', async () => {
  const d = await startDaemon({ args: ['--min-free', '1000TiB', '--log-level', 'warn'] });
  try {
    assert.match(d.output(), /"level":40[^\n]*free disk \(\d+ bytes\) is at or below --min-free \(\d+ bytes\)/);
    const res = await d.api('/api/blobs', { method: 'POST', body: 'hello' });
    assert.equal(res.status, 507);
    assert.match(((await res.json()) as { error: { message: string } }).error.message, /writes leave --min-free free/);
    // The empty blob needs no bytes but adds rows: held by --min-free too.
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: '' })).status, 507);
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
  const roomy = await startDaemon({ args: ['--min-free', '0', '--log-level', 'warn'] });
  await roomy.stop();
  assert.doesNotMatch(roomy.output(), /at or below --min-free/);
  await removeDir(path.dirname(roomy.dataDir));
});

test('node-id: kept across restarts; anything but a UUID in it is replaced by a new one', async () => {
  const d = await startDaemon();
  await d.stop();
  const file = path.join(d.dataDir, 'node-id');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const first = (await readFile(file, 'utf8')).trim();
  assert.match(first, UUID);
  await (await startDaemon({ dataDir: d.dataDir })).stop();
  assert.equal((await readFile(file, 'utf8')).trim(), first, 'the same id after a restart');
  for (const garbage of ['-'.repeat(36), 'zzz', '']) {
    await writeFile(file, garbage);
    await (await startDaemon({ dataDir: d.dataDir })).stop();
    const now = (await readFile(file, 'utf8')).trim();
    assert.match(now, UUID, JSON.stringify(garbage));
    assert.notEqual(now, first);
  }
  await removeDir(path.dirname(d.dataDir));
});

test('a port in use is one line naming the address, exit 1, and no data directory is left behind', async () => {
  const occupier = createNetServer();
  await new Promise<void>((resolve) => occupier.listen(0, '127.0.0.1', resolve));
  const port = (occupier.address() as AddressInfo).port;
  const work = await makeTempDir();
  const dataDir = path.join(work, 'never', 'data');
  try {
    const res = await blobdExit(['serve', '--port', String(port), '--host', '127.0.0.1', '--data', dataDir]);
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /^blobd: [^\n]+\n$/, `one line: ${JSON.stringify(res.stderr)}`);
    assert.ok(res.stderr.includes(`127.0.0.1:${port}`) && res.stderr.includes('already in use'), res.stderr);
    assert.match(res.stderr, /choose another --port\)/);
    assert.equal(await stat(path.join(work, 'never')).catch(() => null), null, 'nothing was created');
    // The S3 API's port taken: the line names its own setting.
    const s3 = await blobdExit(['serve', '--port', '0', '--s3-api-port', String(port), '--data', dataDir]);
    assert.equal(s3.code, 1, s3.stderr);
    assert.match(s3.stderr, /^blobd: cannot listen on 127\.0\.0\.1:\d+: the address is already in use \(.*choose another --s3-api-port, or 0 to turn the S3 API off\)\n$/);
    assert.equal(await stat(path.join(work, 'never')).catch(() => null), null, 'nothing was created');
  } finally {
    await new Promise((resolve) => occupier.close(resolve));
    await removeDir(work);
  }
});

test('without BLOBD_ADMIN_TOKEN a token is generated into data/admin-token (0600), never logged', async () => {
  const d = await startDaemon({ adminToken: null, args: ['--log-level', 'info'] });
  try {
    const file = path.join(d.dataDir, 'admin-token');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.ok(d.token.length >= 32);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: 'x' })).status, 201);
    assert.ok(d.output().includes(file), 'the log names the file');
    assert.ok(!d.output().includes(d.token), 'the log never shows the value');
  } finally {
    await d.stop();
  }
  // The same token survives a restart.
  const again = await startDaemon({ dataDir: d.dataDir, adminToken: null });
  try {
    assert.equal(again.token, d.token);
    assert.equal((await again.api(`/api/blobs/${sha256(Buffer.from('x'))}`)).status, 200);
  } finally {
    await again.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

test('configuration errors are one line on stderr and exit 2', async () => {
  for (const args of [['--port', 'many'], ['--max-blob-size', 'huge'], ['--log-level', 'loud'], ['--bogus-flag']]) {
    const res = await run(process.execPath, [BLOBD, 'serve', ...args], { env: { ...process.env } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(res.code, 2, `${args.join(' ')} exits 2`);
    assert.equal(res.stderr.trim().split('\n').length, 1, `one line: ${res.stderr}`);
  }
  const help = await run(process.execPath, [BLOBD, 'serve', '--help']);
  for (const env of ['BLOBD_PORT', 'BLOBD_HOST', 'BLOBD_DATA', 'BLOBD_MAX_BLOB_SIZE']) assert.ok(help.stdout.includes(env));
});

test('SIGTERM lets an in-flight upload finish, refuses new connections, and exits 0', async () => {
  const d = await startDaemon();
  const data = randomData(4 * 1024 * 1024);
  try {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent === 1024 * 1024) await gate; // hold the upload open until SIGTERM has been sent
        if (sent >= data.length) return ctl.close();
        ctl.enqueue(data.subarray(sent, sent + 1024 * 1024));
        sent += 1024 * 1024;
      },
    });
    const upload = d.api('/api/blobs', { method: 'POST', body, duplex: 'half' } as RequestInit);
    await waitFor(() => sent >= 1024 * 1024, 'the upload to start');
    const exit = d.stop();
    await waitFor(async () => fetch(`${d.url}/healthz`).then(() => false, () => true), 'the listener to close');
    release();
    const res = await upload;
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { digest: string }).digest, sha256(data));
    assert.equal(await exit, 0);

    // The upload acknowledged during shutdown is there after a restart.
    const again = await startDaemon({ dataDir: d.dataDir });
    try {
      const back = await again.api(`/api/blobs/${sha256(data)}`);
      assert.equal(back.status, 200);
      assert.ok(Buffer.from(await back.arrayBuffer()).equals(data));
    } finally {
      await again.stop();
    }
  } finally {
    await removeDir(path.dirname(d.dataDir));
  }
});

test('an append still streaming at the shutdown deadline keeps what it received: the session resumes from there', async () => {
  const d = await startDaemon({ args: ['--shutdown-timeout', '1s'] });
  const data = randomData(4 * 1024 * 1024);
  try {
    const started = await d.api(`/api/blobs/uploads?size=${data.length}`, { method: 'POST' });
    assert.equal(started.status, 202);
    const { id, token } = (await started.json()) as { id: string; token: string };
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent === 1024 * 1024) return new Promise<void>(() => {}); // a client that stops sending, and never ends
        ctl.enqueue(data.subarray(sent, sent + 1024 * 1024));
        sent += 1024 * 1024;
      },
    });
    const append = d.api(`/api/blobs/uploads/${id}/append`, {
      method: 'POST',
      auth: false,
      headers: { 'upload-token': token, 'content-type': 'application/octet-stream' },
      body,
      duplex: 'half',
    } as RequestInit).catch(() => null);
    await waitFor(() => sent >= 1024 * 1024, 'the append to start');
    await new Promise((r) => setTimeout(r, 500)); // the first MiB reaches the daemon
    assert.equal(await d.stop(), 0);
    await append;
    const again = await startDaemon({ dataDir: d.dataDir });
    try {
      const status = await again.api(`/api/blobs/uploads/${id}`, { auth: false, headers: { 'upload-token': token } });
      assert.equal(status.status, 200);
      assert.equal(((await status.json()) as { offset: number }).offset, 1024 * 1024, 'the MiB the daemon had received was kept');
    } finally {
      await again.stop();
    }
  } finally {
    await removeDir(path.dirname(d.dataDir));
  }
});
