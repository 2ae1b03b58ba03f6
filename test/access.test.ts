// The access table: every registered route × every kind of credential, with the exact status each cell
// must answer (401 vs 403 vs 2xx). The daemon runs in-process so the test can read the list of registered
// routes: a route that is not in the table fails the test.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { makeTempDir, metadataEnv, removeDir } from './helpers/daemon.ts';
import { waitFor } from './helpers/wait.ts';

const ADMIN = 'access-test-admin-token-0123456789';

const CREDENTIALS = [
  'none', 'bogus token', 'expired token', 'blobs:read', 'blobs:write', 'bucket:a:read', 'bucket:a:write',
  'bucket:*:read', 'admin', 'upload token of another session', 'signed URL for another path', 'expired signed URL',
  'upload token of this session',
] as const;
type Credential = (typeof CREDENTIALS)[number];
const SCOPED = ['blobs:read', 'blobs:write', 'bucket:a:read', 'bucket:a:write', 'bucket:*:read'] as const;
type Principal = (typeof SCOPED)[number] | 'admin';
const EVERY_PRINCIPAL: Principal[] = [...SCOPED, 'admin'];

interface Req {
  method: string;
  /** Path with an optional query. */
  path: string;
  body?: BodyInit;
  headers?: Record<string, string>;
  /** The session this request works on (upload-token routes). */
  uploadToken?: string;
}

interface Case {
  /** The registered route this case exercises, as `METHOD hono-path`. */
  route: string;
  /** What the case is about, when one route has several. */
  note?: string;
  /**
   * `principal`: scopes decide; `upload`: only the session's token opens it; `upload-or-owner`: the
   * session's token, or the credential of its creator (the admin made every session here) or an admin;
   * `public`: anyone.
   */
  kind: 'principal' | 'upload' | 'upload-or-owner' | 'public';
  /** Principals whose scopes allow it (kind principal). */
  allow?: Principal[];
  ok: number;
  make: () => Promise<Req>;
  /** The route refuses to be signed (tokens, signed URLs): an expired signature for it cannot exist. */
  unsignable?: boolean;
}

describe('access table: every route × every credential', () => {
  let server: RunningServer;
  let root: string;
  const tokens = new Map<string, string>();
  let n = 0;
  const unique = (prefix: string) => `${prefix}-${++n}`;

  const call = (p: string, init: RequestInit = {}) =>
    fetch(server.url + p, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...(init.headers as Record<string, string>) } });
  const ok = async (res: Promise<Response>) => {
    const r = await res;
    assert.ok(r.status < 300, `fixture request failed: ${r.status} ${await r.clone().text()}`);
    return r;
  };
  const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const newToken = async (scopes: string[], expires_in?: number) =>
    ((await (await ok(call('/api/tokens', { method: 'POST', ...json({ name: unique('t'), scopes, expires_in }) }))).json()) as { id: string; token: string });
  const newS3Key = async () =>
    ((await (await ok(call('/api/s3-keys', { method: 'POST', ...json({ scopes: ['bucket:a:read'] }) }))).json()) as { access_key_id: string });
  const newBlob = async () => {
    const data = randomData(64);
    await ok(call('/api/blobs', { method: 'POST', body: data }));
    return sha256(data);
  };
  const newObject = async (bucket: string) => {
    const key = unique('obj');
    await ok(call(`/api/buckets/${bucket}/objects/${key}`, { method: 'PUT', body: 'content' }));
    return key;
  };
  const newSession = async () =>
    (await (await ok(call('/api/blobs/uploads', { method: 'POST' }))).json()) as { id: string; token: string };
  const sign = async (method: string, p: string, expires_in: number) => {
    const res = await call('/api/signed-urls', { method: 'POST', ...json({ method, path: p, expires_in }) });
    return res.status === 201 ? ((await res.json()) as { path: string }).path : null;
  };
  /** The signature parameters of a signed path, to graft onto another path. */
  const signatureOf = (signed: string) => new URL(signed, 'http://x').searchParams;
  const withParams = (p: string, params: URLSearchParams) => `${p}${p.includes('?') ? '&' : '?'}${params.toString()}`;

  let blobDigest: string;
  let otherSignature: URLSearchParams;

  const session = (method: string, suffix: string, ok: number, kind: Case['kind'] = 'upload'): Case => ({
    route: `${method} /api/blobs/uploads/:id${suffix}`,
    kind,
    ok,
    make: async () => {
      const s = await newSession();
      return { method, path: `/api/blobs/uploads/${s.id}${suffix.replace(':id', s.id)}`, uploadToken: s.token, body: suffix === '/append' ? 'abc' : undefined };
    },
  });
  const TUS = { 'tus-resumable': '1.0.0' };
  /** A tus route on an upload of its own, addressed by id alone: only the Upload-Token header opens it. */
  const tusUpload = (method: string, ok: number, headers: Record<string, string> = {}, body?: string): Case => ({
    route: `${method === 'HEAD' ? 'GET' : method} /api/tus/:ref`,
    note: method === 'HEAD' ? 'HEAD' : undefined,
    kind: 'upload',
    ok,
    make: async () => {
      const s = await newSession();
      return { method, path: `/api/tus/${s.id}`, uploadToken: s.token, headers: { ...TUS, ...headers }, body };
    },
  });
  const readers: Principal[] = ['bucket:a:read', 'bucket:*:read', 'admin'];
  const writers: Principal[] = ['bucket:a:write', 'admin'];

  const CASES: Case[] = [
    { route: 'GET /healthz', kind: 'public', ok: 200, make: async () => ({ method: 'GET', path: '/healthz' }) },
    { route: 'GET /readyz', kind: 'public', ok: 200, make: async () => ({ method: 'GET', path: '/readyz' }) },
    { route: 'GET /openapi.json', kind: 'public', ok: 200, make: async () => ({ method: 'GET', path: '/openapi.json' }) },
    { route: 'GET /metrics', kind: 'public', ok: 200, make: async () => ({ method: 'GET', path: '/metrics' }) },
    { route: 'POST /api/blobs/uploads', note: 'a pinned session', kind: 'principal', allow: ['blobs:write', 'admin'], ok: 202, make: async () => ({ method: 'POST', path: '/api/blobs/uploads?filename=x.bin' }) },
    { route: 'POST /api/blobs/uploads', note: 'a session into bucket a', kind: 'principal', allow: writers, ok: 202, make: async () => ({ method: 'POST', path: `/api/blobs/uploads?bucket=a&key=${unique('up')}` }) },
    session('POST', '/append', 203),
    session('POST', '/complete', 201),
    session('GET', '/status', 204),
    session('GET', '', 200),
    session('POST', '/destroy', 204, 'upload-or-owner'),
    session('DELETE', '', 204, 'upload-or-owner'),
    ...['/api/tus', '/api/tus/'].flatMap((p): Case[] => [
      { route: `OPTIONS ${p}`, note: 'tus discovery', kind: 'public', ok: 204, make: async () => ({ method: 'OPTIONS', path: p }) },
      { route: `POST ${p}`, note: 'tus creation', kind: 'principal', allow: ['blobs:write', 'admin'], ok: 201, make: async () => ({ method: 'POST', path: p, headers: { ...TUS, 'upload-length': '3' } }) },
    ]),
    { route: 'POST /api/tus/', note: 'tus creation into bucket a', kind: 'principal', allow: writers, ok: 201, make: async () => ({ method: 'POST', path: '/api/tus/', headers: { ...TUS, 'upload-length': '3', 'upload-metadata': `bucket ${Buffer.from('a').toString('base64')},key ${Buffer.from(unique('tus')).toString('base64')}` } }) },
    tusUpload('HEAD', 200),
    tusUpload('GET', 200),
    tusUpload('PATCH', 204, { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, 'abc'),
    tusUpload('DELETE', 204),
    tusUpload('POST', 204, { 'x-http-method-override': 'PATCH', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, 'abc'),
    { route: 'GET /api/blobs/:digest', kind: 'principal', allow: ['blobs:read', 'admin'], ok: 200, make: async () => ({ method: 'GET', path: `/api/blobs/${blobDigest}` }) },
    { route: 'GET /api/blobs/:digest', note: 'HEAD', kind: 'principal', allow: ['blobs:read', 'admin'], ok: 200, make: async () => ({ method: 'HEAD', path: `/api/blobs/${blobDigest}` }) },
    { route: 'POST /api/blobs', kind: 'principal', allow: ['blobs:write', 'admin'], ok: 201, make: async () => ({ method: 'POST', path: '/api/blobs', body: randomData(32) }) },
    {
      route: 'PUT /api/blobs/:digest', kind: 'principal', allow: ['blobs:write', 'admin'], ok: 201,
      make: async () => {
        const data = randomData(32);
        return { method: 'PUT', path: `/api/blobs/${sha256(data)}`, body: data };
      },
    },
    { route: 'GET /api/blobs', kind: 'principal', allow: ['blobs:read', 'admin'], ok: 200, make: async () => ({ method: 'GET', path: '/api/blobs?limit=5' }) },
    { route: 'GET /api/blobs/uploads', note: "the caller's own sessions", kind: 'principal', allow: EVERY_PRINCIPAL, ok: 200, make: async () => ({ method: 'GET', path: '/api/blobs/uploads?limit=5' }) },
    { route: 'DELETE /api/blobs/:digest', note: "the caller's pin", kind: 'principal', allow: ['admin'], ok: 204, make: async () => ({ method: 'DELETE', path: `/api/blobs/${await newBlob()}` }) },
    { route: 'DELETE /api/blobs/:digest', note: 'force: purge', kind: 'principal', allow: ['admin'], ok: 204, make: async () => ({ method: 'DELETE', path: `/api/blobs/${await newBlob()}?force=true` }) },
    { route: 'POST /api/admin/gc', note: 'dry run', kind: 'principal', allow: ['admin'], ok: 200, make: async () => ({ method: 'POST', path: '/api/admin/gc?dry_run=true' }) },
    { route: 'POST /api/admin/fsck', kind: 'principal', allow: ['admin'], ok: 200, make: async () => ({ method: 'POST', path: '/api/admin/fsck' }) },
    { route: 'GET /api/admin/stats', kind: 'principal', allow: ['admin'], ok: 200, make: async () => ({ method: 'GET', path: '/api/admin/stats' }) },
    { route: 'POST /api/admin/keys/rotate', kind: 'principal', allow: ['admin'], ok: 201, unsignable: true, make: async () => ({ method: 'POST', path: '/api/admin/keys/rotate' }) },
    { route: 'GET /api/buckets', kind: 'principal', allow: EVERY_PRINCIPAL, ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets' }) },
    { route: 'PUT /api/buckets/:bucket', kind: 'principal', allow: ['admin'], ok: 201, make: async () => ({ method: 'PUT', path: `/api/buckets/${unique('new')}`, ...json({}) }) },
    { route: 'GET /api/buckets/:bucket', kind: 'principal', allow: readers, ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/a' }) },
    { route: 'GET /api/buckets/:bucket', note: 'another bucket', kind: 'principal', allow: ['bucket:*:read', 'admin'], ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/b' }) },
    {
      route: 'DELETE /api/buckets/:bucket', kind: 'principal', allow: ['admin'], ok: 204,
      make: async () => {
        const name = unique('gone');
        await ok(call(`/api/buckets/${name}`, { method: 'PUT' }));
        return { method: 'DELETE', path: `/api/buckets/${name}` };
      },
    },
    { route: 'PUT /api/buckets/:bucket/objects/:key{[^]+}', kind: 'principal', allow: writers, ok: 201, make: async () => ({ method: 'PUT', path: `/api/buckets/a/objects/dir/${unique('k')}`, body: 'x' }) },
    { route: 'PUT /api/buckets/:bucket/objects/:key{[^]+}', note: 'another bucket', kind: 'principal', allow: ['admin'], ok: 201, make: async () => ({ method: 'PUT', path: `/api/buckets/b/objects/${unique('k')}`, body: 'x' }) },
    { route: 'POST /api/buckets/:bucket/objects', kind: 'principal', allow: writers, ok: 201, make: async () => ({ method: 'POST', path: '/api/buckets/a/objects', body: 'x' }) },
    { route: 'PATCH /api/buckets/:bucket/objects/:key{[^]+}', kind: 'principal', allow: writers, ok: 200, make: async () => ({ method: 'PATCH', path: '/api/buckets/a/objects/doc.txt', ...json({ tags: ['x'] }) }) },
    { route: 'GET /api/buckets/:bucket/objects/:key{[^]+}', kind: 'principal', allow: readers, ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/a/objects/doc.txt' }) },
    { route: 'GET /api/buckets/:bucket/objects/:key{[^]+}', note: '?metadata', kind: 'principal', allow: readers, ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/a/objects/doc.txt?metadata' }) },
    { route: 'GET /api/buckets/:bucket/objects/:key{[^]+}', note: 'another bucket', kind: 'principal', allow: ['bucket:*:read', 'admin'], ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/b/objects/doc.txt' }) },
    { route: 'DELETE /api/buckets/:bucket/objects/:key{[^]+}', kind: 'principal', allow: ['admin'], ok: 204, make: async () => ({ method: 'DELETE', path: `/api/buckets/a/objects/${await newObject('a')}` }) },
    { route: 'GET /api/buckets/:bucket/objects', kind: 'principal', allow: readers, ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/a/objects?limit=5' }) },
    { route: 'GET /api/buckets/:bucket/objects', note: 'another bucket', kind: 'principal', allow: ['bucket:*:read', 'admin'], ok: 200, make: async () => ({ method: 'GET', path: '/api/buckets/b/objects' }) },
    { route: 'POST /api/tokens', kind: 'principal', allow: ['admin'], ok: 201, unsignable: true, make: async () => ({ method: 'POST', path: '/api/tokens', ...json({ name: unique('n'), scopes: ['blobs:read'] }) }) },
    { route: 'GET /api/tokens', kind: 'principal', allow: ['admin'], ok: 200, unsignable: true, make: async () => ({ method: 'GET', path: '/api/tokens' }) },
    { route: 'DELETE /api/tokens/:id', kind: 'principal', allow: ['admin'], ok: 204, unsignable: true, make: async () => ({ method: 'DELETE', path: `/api/tokens/${(await newToken(['blobs:read'])).id}` }) },
    { route: 'POST /api/s3-keys', kind: 'principal', allow: ['admin'], ok: 201, unsignable: true, make: async () => ({ method: 'POST', path: '/api/s3-keys', ...json({ scopes: ['bucket:a:read'] }) }) },
    { route: 'GET /api/s3-keys', kind: 'principal', allow: ['admin'], ok: 200, unsignable: true, make: async () => ({ method: 'GET', path: '/api/s3-keys' }) },
    { route: 'DELETE /api/s3-keys/:id', kind: 'principal', allow: ['admin'], ok: 204, unsignable: true, make: async () => ({ method: 'DELETE', path: `/api/s3-keys/${(await newS3Key()).access_key_id}` }) },
    {
      route: 'POST /api/signed-urls', note: 'signing a blob download', kind: 'principal', allow: ['blobs:read', 'admin'], ok: 201, unsignable: true,
      make: async () => ({ method: 'POST', path: '/api/signed-urls', ...json({ method: 'GET', path: `/api/blobs/${blobDigest}`, expires_in: 60 }) }),
    },
  ];

  /** The exact status (and, for refusals, error code) a cell must answer. */
  function expected(c: Case, cred: Credential): { status: number; code?: string } {
    if (cred === 'signed URL for another path') return { status: 403, code: 'signature_invalid' };
    if (cred === 'expired signed URL') {
      const signable = c.kind === 'principal' && !c.unsignable;
      return { status: 403, code: signable ? 'signature_expired' : 'signature_invalid' };
    }
    if (c.kind === 'public') return { status: c.ok };
    if (c.kind === 'upload') {
      if (cred === 'upload token of this session') return { status: c.ok };
      if (cred === 'upload token of another session') return { status: 403, code: 'forbidden' };
      return { status: 401, code: 'unauthorized' };
    }
    if (c.kind === 'upload-or-owner') {
      if (cred === 'upload token of this session' || cred === 'admin') return { status: c.ok };
      if (cred === 'expired token') return { status: 401, code: 'token_expired' };
      if (cred === 'none' || cred === 'bogus token') return { status: 401, code: 'unauthorized' };
      // Another session's token, or a principal that did not start this session.
      return { status: 403, code: 'forbidden' };
    }
    if (cred === 'expired token') return { status: 401, code: 'token_expired' };
    if (cred === 'none' || cred === 'bogus token' || cred === 'upload token of another session' || cred === 'upload token of this session') {
      return { status: 401, code: 'unauthorized' };
    }
    return c.allow!.includes(cred) ? { status: c.ok } : { status: 403, code: 'forbidden' };
  }

  before(async () => {
    root = await makeTempDir();
    const data = path.join(root, 'data');
    server = await startServer(
      loadConfig({ port: '0', host: '127.0.0.1', data, logLevel: 'silent' }, { BLOBD_ADMIN_TOKEN: ADMIN, ...(await metadataEnv(data)) }),
    );
    tokens.set('admin', ADMIN);
    for (const scope of SCOPED) tokens.set(scope, (await newToken([scope])).token);
    tokens.set('bogus token', `bdt_${'0'.repeat(8)}-0000-7000-8000-${'0'.repeat(12)}_${'A'.repeat(43)}`);
    const expiring = await newToken(['admin'], 1);
    for (const b of ['a', 'b']) {
      await ok(call(`/api/buckets/${b}`, { method: 'PUT' }));
      await ok(call(`/api/buckets/${b}/objects/doc.txt`, { method: 'PUT', body: 'hello' }));
    }
    blobDigest = await newBlob();
    otherSignature = signatureOf((await sign('GET', `/api/blobs/${await newBlob()}`, 3600))!);
    await waitFor(async () => {
      const res = await fetch(`${server.url}/api/buckets`, { headers: { authorization: `Bearer ${expiring.token}` } });
      return res.status === 401 && ((await res.json()) as { error: { code: string } }).error.code === 'token_expired';
    }, 'the 1-second token to expire');
    tokens.set('expired token', expiring.token);
  });

  after(async () => {
    await server?.close();
    await removeDir(root);
  });

  test('the table covers every registered route', () => {
    const registered = server.routes.map((r) => `${r.method} ${r.path}`).sort();
    const tabled = [...new Set(CASES.map((c) => c.route))].sort();
    assert.deepEqual(tabled, registered, 'each registered route needs a row in the access table (and each row a route)');
  });

  test('each cell answers its exact status', async () => {
    // Requests first (fixtures included), then an expired signature of each, then every cell.
    const cells: { c: Case; cred: Credential; req: Req }[] = [];
    for (const c of CASES) for (const cred of CREDENTIALS) cells.push({ c, cred, req: await c.make() });
    const expiredSignatures = new Map<(typeof cells)[number], string>();
    let probe: { method: string; path: string } | undefined;
    for (const cell of cells.filter((x) => x.cred === 'expired signed URL')) {
      if (cell.c.kind !== 'principal' || cell.c.unsignable) continue;
      const signed = await sign(cell.req.method, cell.req.path, 1);
      assert.ok(signed, `the admin can sign ${cell.req.method} ${cell.req.path}`);
      expiredSignatures.set(cell, signed);
      // The last one signed expires last: once it has, every one has.
      probe = { method: cell.req.method, path: signed };
    }
    await waitFor(async () => {
      const res = await fetch(server.url + probe!.path, { method: probe!.method, headers: { authorization: `Bearer ${ADMIN}` } });
      return res.status === 403 && ((await res.json()) as { error: { code: string } }).error.code === 'signature_expired';
    }, 'the 1-second signatures to expire');

    const failures: string[] = [];
    for (const cell of cells) {
      const { c, cred, req } = cell;
      const headers: Record<string, string> = { ...req.headers };
      let target = req.path;
      if (tokens.has(cred)) headers.authorization = `Bearer ${tokens.get(cred)}`;
      if (cred === 'upload token of this session' && req.uploadToken) headers['upload-token'] = req.uploadToken;
      if (cred === 'upload token of another session') headers['upload-token'] = (await newSession()).token;
      if (cred === 'signed URL for another path') target = withParams(req.path, otherSignature);
      if (cred === 'expired signed URL') target = expiredSignatures.get(cell) ?? withParams(req.path, signatureOf(probe!.path));
      const res = await fetch(server.url + target, { method: req.method, headers, body: req.body });
      const body = req.method === 'HEAD' ? '' : await res.text();
      const want = expected(c, cred);
      let code: string | undefined;
      if (res.status >= 400 && req.method !== 'HEAD') code = (JSON.parse(body) as { error: { code: string } }).error.code;
      const label = `${req.method} ${c.route}${c.note ? ` (${c.note})` : ''} × ${cred}`;
      if (res.status !== want.status || (want.code && req.method !== 'HEAD' && code !== want.code)) {
        failures.push(`${label}: got ${res.status} ${code ?? ''}, want ${want.status} ${want.code ?? ''}`);
      }
    }
    assert.deepEqual(failures, [], `cells that answered differently:\n${failures.join('\n')}`);
  });
});
