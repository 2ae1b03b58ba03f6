// CORS for configured origins only (flags and BLOBD_CORS_ORIGIN), preflights without a credential, and
// anonymous reads: --public-blobs opens GET/HEAD by digest, a public_read bucket opens its objects' reads —
// nothing else, and a bogus token is never treated as anonymous.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon, type StartOptions } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';

const ALLOWED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'Upload-Token',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Tus-Resumable',
  'Idempotency-Key',
  'X-API-Key',
];
const EXPOSED_HEADERS = ['Upload-Offset', 'Location', 'ETag', 'Upload-Token'];
/** What tus-js-client and Uppy send (Upload-Concat with parallelUploads, the override with overridePatchMethod). */
const TUS_REQUEST_HEADERS = [
  'Tus-Resumable', 'Upload-Length', 'Upload-Defer-Length', 'Upload-Offset', 'Upload-Metadata', 'Upload-Checksum',
  'Upload-Concat', 'X-HTTP-Method-Override', 'Content-Type', 'Authorization', 'X-Requested-With',
];
/** Every header blobd's tus answers carry that a client reads. */
const TUS_RESPONSE_HEADERS = [
  'Location', 'Upload-Offset', 'Upload-Length', 'Upload-Defer-Length', 'Upload-Expires', 'Upload-Metadata', 'Blobd-Digest',
  'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm',
];
const TUS_DISCOVERY = ['tus-resumable', 'tus-version', 'tus-extension', 'tus-max-size', 'tus-checksum-algorithm'];

/** The comma-separated list of a header, lower-cased. */
function listOf(res: Response, name: string): string[] {
  return (res.headers.get(name) ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

function assertIncludes(res: Response, header: string, wanted: string[]) {
  const got = listOf(res, header);
  const missing = wanted.filter((w) => !got.includes(w.toLowerCase()));
  assert.deepEqual(missing, [], `${header}: ${res.headers.get(header)}`);
}

/** A browser's preflight for a session start (no credential). */
function preflight(d: Daemon, origin: string): Promise<Response> {
  return fetch(`${d.url}/api/blobs/uploads`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'upload-token,idempotency-key,content-type',
    },
  });
}

/** Starts them together; if one fails, stops the others before failing (nothing is left running). */
async function startAll<T extends StartOptions[]>(...opts: T): Promise<{ [K in keyof T]: Daemon }> {
  const settled = await Promise.allSettled(opts.map((o) => startDaemon(o)));
  const started = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopAll(...started);
    throw failed.reason;
  }
  return started as { [K in keyof T]: Daemon };
}

async function stopAll(...daemons: (Daemon | undefined)[]) {
  for (const d of daemons) {
    if (!d) continue;
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
}

describe('CORS', () => {
  let cors: Daemon;
  let plain: Daemon;
  let fromEnv: Daemon;
  before(async () => {
    [cors, plain, fromEnv] = await startAll(
      { args: ['--cors-origin', 'https://app.example', '--cors-origin', 'https://two.example'] },
      {},
      { env: { BLOBD_CORS_ORIGIN: 'https://a.example,https://b.example' } },
    );
  });
  after(() => stopAll(cors, plain, fromEnv));

  test('a preflight from a configured origin needs no credential and allows the upload headers', async () => {
    const res = await preflight(cors, 'https://app.example');
    await res.arrayBuffer();
    assert.ok(res.status === 204 || res.status === 200, `preflight → ${res.status}`);
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example');
    assertIncludes(res, 'access-control-allow-methods', ALLOWED_METHODS);
    assertIncludes(res, 'access-control-allow-headers', ALLOWED_HEADERS);
  });

  test('a preflight from another origin gets no Access-Control-Allow-Origin', async () => {
    const res = await preflight(cors, 'https://evil.example');
    await res.arrayBuffer();
    assert.equal(res.headers.get('access-control-allow-origin'), null);
  });

  test('an actual request from a configured origin names it and exposes the upload headers', async () => {
    const res = await cors.api('/api/buckets', { headers: { origin: 'https://two.example' } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://two.example');
    assertIncludes(res, 'access-control-expose-headers', EXPOSED_HEADERS);

    const other = await cors.api('/api/buckets', { headers: { origin: 'https://evil.example' } });
    assert.equal(other.status, 200);
    await other.arrayBuffer();
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  test('without --cors-origin no origin gets Access-Control-Allow-Origin', async () => {
    for (const origin of ['https://app.example', 'https://evil.example', 'null']) {
      const pre = await preflight(plain, origin);
      await pre.arrayBuffer();
      assert.equal(pre.headers.get('access-control-allow-origin'), null, `preflight from ${origin}`);
      const res = await plain.api('/api/buckets', { headers: { origin } });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(res.headers.get('access-control-allow-origin'), null, `GET from ${origin}`);
    }
  });

  /** The tus discovery headers of an answer (what a tus client reads from OPTIONS). */
  const discovery = (res: Response) =>
    Object.fromEntries(TUS_DISCOVERY.map((h) => [h, res.headers.get(h)]));

  test('tus discovery answers the same with and without CORS: plain OPTIONS, with an Origin, and a preflight', async () => {
    const expected = await fetch(`${plain.url}/api/tus/`, { method: 'OPTIONS' });
    await expected.arrayBuffer();
    assert.equal(expected.status, 204);
    assert.equal(expected.headers.get('tus-version'), '1.0.0');
    const asks: [string, Record<string, string>][] = [
      ['no Origin', {}],
      ['an Origin only', { origin: 'https://app.example' }],
      ['a preflight for a creation', {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'tus-resumable,upload-length,upload-metadata,upload-concat',
      }],
    ];
    for (const path of ['/api/tus/', '/api/tus']) {
      for (const [what, headers] of asks) {
        const res = await fetch(`${cors.url}${path}`, { method: 'OPTIONS', headers });
        await res.arrayBuffer();
        assert.equal(res.status, 204, `${path}, ${what}`);
        assert.deepEqual(discovery(res), discovery(expected), `${path}, ${what}: the tus headers`);
        if (headers.origin) assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example', `${path}, ${what}`);
      }
    }
    const pre = await fetch(`${cors.url}/api/tus/`, { method: 'OPTIONS', headers: asks[2]![1] });
    await pre.arrayBuffer();
    assertIncludes(pre, 'access-control-allow-methods', ALLOWED_METHODS);
    assertIncludes(pre, 'access-control-allow-headers', TUS_REQUEST_HEADERS);
  });

  test('tus clients: every request header they send is allowed, every header they read is exposed', async () => {
    // Uppy with parallelUploads sends Upload-Concat (refused with 400, which the page must be able to
    // see); overridePatchMethod sends X-HTTP-Method-Override.
    const res = await fetch(`${cors.url}/api/tus/0190a0a0-0000-7000-8000-000000000000.t`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'x-http-method-override' },
    });
    await res.arrayBuffer();
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example');
    assertIncludes(res, 'access-control-allow-headers', TUS_REQUEST_HEADERS);
    const created = await cors.api('/api/tus/', { method: 'POST', headers: { origin: 'https://app.example', 'tus-resumable': '1.0.0', 'upload-length': '1' } });
    await created.arrayBuffer();
    assert.equal(created.status, 201);
    assertIncludes(created, 'access-control-expose-headers', TUS_RESPONSE_HEADERS);
    const concat = await cors.api('/api/tus/', {
      method: 'POST',
      headers: { origin: 'https://app.example', 'tus-resumable': '1.0.0', 'upload-length': '1', 'upload-concat': 'partial' },
    });
    assert.equal(concat.status, 400);
    assert.equal(concat.headers.get('access-control-allow-origin'), 'https://app.example', 'the refusal is readable by the page');
    assert.equal(await errorCode(concat), 'invalid_request');
  });

  test('a download (written straight to the socket) and an idempotent replay carry CORS headers and whole bodies', async () => {
    const data = randomData(300_000);
    const stored = await cors.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(stored.status, 201);
    await stored.arrayBuffer();
    for (const origin of ['https://app.example', undefined]) {
      const res = await cors.api(`/api/blobs/${sha256(data)}`, { headers: origin ? { origin } : {} });
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data), `the bytes, with Origin ${origin}`);
      assert.equal(res.headers.get('access-control-allow-origin'), origin ?? null);
    }
    const headers = { origin: 'https://two.example', 'idempotency-key': `cors-${Date.now()}` };
    const first = await cors.api('/api/tus/', { method: 'POST', headers: { ...headers, 'tus-resumable': '1.0.0', 'upload-length': '1' } });
    const replay = await cors.api('/api/tus/', { method: 'POST', headers: { ...headers, 'tus-resumable': '1.0.0', 'upload-length': '1' } });
    await Promise.all([first.arrayBuffer(), replay.arrayBuffer()]);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.headers.get('location'), first.headers.get('location'));
    assert.equal(replay.headers.get('access-control-allow-origin'), 'https://two.example');
    assertIncludes(replay, 'access-control-expose-headers', ['Location', 'Idempotent-Replayed']);
  });

  test('BLOBD_CORS_ORIGIN takes a comma-separated list', async () => {
    for (const origin of ['https://a.example', 'https://b.example']) {
      const pre = await preflight(fromEnv, origin);
      await pre.arrayBuffer();
      assert.ok(pre.status === 204 || pre.status === 200, `preflight from ${origin} → ${pre.status}`);
      assert.equal(pre.headers.get('access-control-allow-origin'), origin);
      const res = await fromEnv.api('/api/buckets', { headers: { origin } });
      await res.arrayBuffer();
      assert.equal(res.headers.get('access-control-allow-origin'), origin);
    }
    const res = await fromEnv.api('/api/buckets', { headers: { origin: 'https://c.example' } });
    await res.arrayBuffer();
    assert.equal(res.headers.get('access-control-allow-origin'), null);
  });
});

describe('public reads', () => {
  let plain: Daemon;
  let open: Daemon;
  const data = randomData(2048);
  const digest = sha256(data);

  const upload = async (d: Daemon) => {
    const res = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { digest: string }).digest, digest);
  };
  const anonymous = (d: Daemon, p: string, init: RequestInit = {}) => d.api(p, { ...init, auth: false });
  const assertUnauthorized = async (res: Response, what: string) => {
    assert.equal(res.status, 401, `${what}: ${res.status} ${await res.clone().text()}`);
    assert.equal(await errorCode(res), 'unauthorized', what);
  };

  before(async () => {
    [plain, open] = await startAll({}, { args: ['--public-blobs'] });
    await Promise.all([upload(plain), upload(open)]);
  });
  after(() => stopAll(plain, open));

  test('by default blobs need a token', async () => {
    await assertUnauthorized(await anonymous(plain, `/api/blobs/${digest}`), 'anonymous GET');
  });

  test('--public-blobs: anonymous GET and HEAD by digest; writes and bogus tokens are still 401', async () => {
    const res = await anonymous(open, `/api/blobs/${digest}`);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));
    const head = await anonymous(open, `/api/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(data.length));
    await head.arrayBuffer();

    await assertUnauthorized(await anonymous(open, '/api/blobs', { method: 'POST', body: randomData(10) }), 'anonymous POST /api/blobs');
    await assertUnauthorized(
      await open.api(`/api/blobs/${digest}`, { headers: { authorization: 'Bearer not-a-real-token' } }),
      'GET with a bogus bearer token',
    );
  });

  test('a public_read bucket opens its objects to anonymous reads, and nothing else', async () => {
    for (const [name, publicRead] of [
      ['pub', true],
      ['priv', false],
    ] as const) {
      const made = await plain.api(`/api/buckets/${name}`, {
        method: 'PUT',
        body: JSON.stringify({ public_read: publicRead }),
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(made.status, 201);
      const put = await plain.api(`/api/buckets/${name}/objects/hello.txt`, { method: 'PUT', body: 'hello', headers: { 'content-type': 'text/plain' } });
      assert.equal(put.status, 201);
    }

    const res = await anonymous(plain, '/api/buckets/pub/objects/hello.txt');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello');
    const meta = await anonymous(plain, '/api/buckets/pub/objects/hello.txt?metadata');
    assert.equal(meta.status, 200);
    assert.equal(((await meta.json()) as { size: number }).size, 5);

    await assertUnauthorized(await anonymous(plain, '/api/buckets/pub/objects'), 'anonymous listing');
    await assertUnauthorized(await anonymous(plain, '/api/buckets/pub'), 'anonymous GET bucket');
    await assertUnauthorized(await anonymous(plain, '/api/buckets/pub/objects/new.txt', { method: 'PUT', body: 'x' }), 'anonymous PUT');
    await assertUnauthorized(await anonymous(plain, '/api/buckets/priv/objects/hello.txt'), 'anonymous GET in a private bucket');
    await assertUnauthorized(
      await plain.api('/api/buckets/pub/objects/hello.txt', { headers: { authorization: 'Bearer not-a-real-token' } }),
      'bogus token on a public object',
    );
    const absent = await plain.api('/api/buckets/pub/objects/new.txt');
    assert.equal(absent.status, 404, 'the anonymous PUT stored nothing');
    await absent.arrayBuffer();
  });
});
