// What an operator checks first, against real daemons: /metrics counters move with uploads, downloads,
// dedup hits and GC passes and never show a token, key or object name; --metrics=false turns it off;
// /openapi.json is valid OpenAPI 3.1 and describes every registered route; the daemon starts from
// BLOBD_* variables alone and refuses a bad one with one line.
import { Validator } from '@seriousme/openapi-schema-validator';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { BLOBD, makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

/** The samples of a Prometheus text exposition: `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{.*\})?)\s+(\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe('GET /metrics', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ args: ['--gc-interval', '0s', '--gc-grace', '0s'] });
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });
  const scrape = async () => {
    const res = await fetch(`${d.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return res.text();
  };
  const value = (m: Map<string, number>, name: string) => m.get(name) ?? 0;

  test('counters move after an upload, a download, a dedup hit and a GC pass; gauges follow the store', async () => {
    const before = parseMetrics(await scrape());
    const data = randomData(100_000);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: data })).status, 201);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: data })).status, 201, 'the same bytes again');
    const down = await d.api(`/api/blobs/${sha256(data)}`);
    assert.equal((await down.arrayBuffer()).byteLength, data.length);
    const session = (await (await d.api('/api/blobs/uploads', { method: 'POST' })).json()) as { id: string; token: string };
    assert.equal((await d.api(`/api/blobs/uploads/${session.id}/append`, { method: 'POST', body: randomData(1000), headers: { 'upload-token': session.token } })).status, 203);
    const garbage = randomData(500);
    await d.api('/api/blobs', { method: 'POST', body: garbage });
    await d.api(`/api/blobs/${sha256(garbage)}`, { method: 'DELETE' });
    assert.equal((await d.api('/api/admin/gc', { method: 'POST' })).status, 200);

    const text = await scrape();
    const after = parseMetrics(text);
    assert.equal(value(after, 'blobd_upload_bytes_total') - value(before, 'blobd_upload_bytes_total'), 2 * data.length + 1000 + 500);
    assert.ok(value(after, 'blobd_download_bytes_total') - value(before, 'blobd_download_bytes_total') >= data.length);
    assert.equal(value(after, 'blobd_dedup_hits_total') - value(before, 'blobd_dedup_hits_total'), 1);
    assert.equal(value(after, 'blobd_gc_runs_total') - value(before, 'blobd_gc_runs_total'), 1);
    assert.equal(value(after, 'blobd_gc_removed_bytes_total') - value(before, 'blobd_gc_removed_bytes_total'), 500);
    assert.equal(value(after, 'blobd_uploads_open'), 1);
    assert.equal(value(after, 'blobd_blobs'), 1);
    assert.equal(value(after, 'blobd_stored_bytes'), data.length);
    const posts = 'blobd_http_requests_total{method="POST",route="/api/blobs",status_class="2xx"}';
    assert.equal(value(after, posts) - value(before, posts), 3);
    assert.ok(value(after, 'blobd_http_request_duration_seconds_count{method="GET",route="/api/blobs/:digest",status_class="2xx"}') >= 1);
    assert.ok([...after.keys()].some((k) => k.startsWith('process_resident_memory_bytes')), 'Node process metrics');
  });

  test('it never shows a token, a key, an object name or a signature', async () => {
    assert.equal((await d.api('/api/buckets/secretive', { method: 'PUT' })).status, 201);
    assert.equal((await d.api('/api/buckets/secretive/objects/very-private-name.txt', { method: 'PUT', body: 'x' })).status, 201);
    assert.equal((await d.api('/api/buckets/secretive/objects/missing-private-name')).status, 404);
    const signed = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'GET', path: '/api/buckets/secretive/objects/very-private-name.txt', expires_in: 60 }),
    });
    const { url } = (await signed.json()) as { url: string };
    assert.equal((await fetch(url)).status, 200);
    const text = await scrape();
    for (const secret of ['very-private-name', 'missing-private-name', d.token, new URL(url).searchParams.get('blobd-signature')!]) {
      assert.ok(!text.includes(secret), `${secret.slice(0, 12)}… in /metrics`);
    }
    assert.ok(text.includes('route="/api/buckets/:bucket/objects/:key{[^]+}"'), 'the route template stands for the key');
  });

  test('--metrics=false: no /metrics', async () => {
    const off = await startDaemon({ args: ['--metrics=false'] });
    try {
      assert.equal((await fetch(`${off.url}/metrics`)).status, 404);
      assert.equal((await off.api('/api/blobs', { method: 'POST', body: 'still works' })).status, 201);
    } finally {
      await off.stop();
      await removeDir(off.dataDir);
    }
  });
});

describe('GET /openapi.json', () => {
  let server: RunningServer;
  let root: string;
  before(async () => {
    root = await makeTempDir();
    server = await startServer(loadConfig({ port: '0', host: '127.0.0.1', data: path.join(root, 'data'), logLevel: 'silent' }, { BLOBD_ADMIN_TOKEN: 'openapi-test-admin-token' }));
  });
  after(async () => {
    await server.close();
    await removeDir(root);
  });

  test('is valid OpenAPI 3.1 and describes every registered route', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    assert.match(doc.openapi, /^3\.1\./);
    const validator = new Validator();
    const res = await validator.validate(doc as never);
    if (!res.valid) assert.fail(`invalid OpenAPI: ${JSON.stringify(res.errors ?? null).slice(0, 2000)}`);
    const missing: string[] = [];
    for (const r of server.routes) {
      // Hono's `:name` and `:name{regex}` are OpenAPI's `{name}`.
      const p = r.path.replace(/:([A-Za-z_]+)(\{[^/]*\}+)?/g, '{$1}');
      if (!doc.paths[p]?.[r.method.toLowerCase()]) missing.push(`${r.method} ${r.path} (as ${p})`);
    }
    assert.deepEqual(missing, [], 'every registered route is in /openapi.json');
    assert.ok(doc.paths['/metrics']?.get, '/metrics is described too');
  });
});

describe('configuration from the environment', () => {
  const run = (env: Record<string, string>, args: string[] = []) => {
    const full = { ...(process.env as Record<string, string>), ...env };
    for (const k of Object.keys(full)) if (k.startsWith('BLOBD_') && !(k in env)) delete full[k];
    return spawn(process.execPath, [BLOBD, 'serve', ...args], { env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  };

  test('the daemon starts from BLOBD_* variables alone', async () => {
    const root = await makeTempDir();
    const proc = run({
      BLOBD_HOST: '127.0.0.1',
      BLOBD_PORT: '0',
      BLOBD_DATA: path.join(root, 'data'),
      BLOBD_LOG_LEVEL: 'warn',
      BLOBD_ADMIN_TOKEN: 'env-only-admin-token-1234',
      BLOBD_MAX_BLOB_SIZE: '1KiB',
      BLOBD_METRICS: 'false',
    });
    try {
      let out = '';
      proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no start: ${out}`)), 30_000);
        proc.stdout!.on('data', () => {
          const m = /blobd listening on (\S+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
      });
      const auth = { authorization: 'Bearer env-only-admin-token-1234' };
      assert.equal((await fetch(`${url}/api/blobs`, { method: 'POST', headers: auth, body: 'small' })).status, 201, 'BLOBD_ADMIN_TOKEN');
      assert.equal((await fetch(`${url}/api/blobs`, { method: 'POST', headers: auth, body: randomData(2048) })).status, 413, 'BLOBD_MAX_BLOB_SIZE');
      assert.equal((await fetch(`${url}/metrics`)).status, 404, 'BLOBD_METRICS');
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      await removeDir(root);
    }
  });

  test('a bad value stops start-up with one line and exit code 2', async () => {
    for (const env of [{ BLOBD_PORT: 'eighty' }, { BLOBD_GC_GRACE: 'soon' }, { BLOBD_METRICS: 'maybe' }, { BLOBD_LOG_FORMAT: 'xml' }] as Record<string, string>[]) {
      const proc = run({ ...env, BLOBD_DATA: '/nonexistent-never-created' });
      let err = '';
      proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
      const code = await new Promise<number | null>((r) => proc.once('exit', r));
      assert.equal(code, 2, JSON.stringify(env));
      assert.equal(err.trim().split('\n').length, 1, `one line: ${err}`);
      assert.match(err, /^blobd: /);
    }
  });
});
