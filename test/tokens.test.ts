// API tokens against the real daemon: creation shows the token once, listing never does, the three ways
// to present a token, scopes (blobs:*, bucket:NAME:*, wildcards, admin), expiry, last use, revocation,
// bad scopes, and that no secret (API token, admin token, upload token, URL signature) reaches the logs or
// any file of the data dir.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken, filesUnder, listTokens, secretsInFiles, TOKEN_FORMAT, type TokenJson } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { metaProbe } from './helpers/meta-probe.ts';
import { waitFor } from './helpers/wait.ts';

const TOKEN_FIELDS = ['created_at', 'expires_at', 'id', 'last_used_at', 'name', 'scopes'];

function basic(token: string): string {
  return `Basic ${Buffer.from(`${token}:`).toString('base64')}`;
}

/** The status and error code of an answer, for one-line assertions. */
async function outcome(res: Response): Promise<[number, string | null]> {
  if (res.ok) {
    await res.arrayBuffer();
    return [res.status, null];
  }
  return [res.status, await errorCode(res)];
}

describe('API tokens', () => {
  let d: Daemon;
  const blob = randomData(1000);
  const digest = sha256(blob);

  before(async () => {
    d = await startDaemon();
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: blob })).status, 201);
    for (const b of ['a', 'b']) {
      assert.equal((await d.api(`/api/buckets/${b}`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } })).status, 201);
      assert.equal((await d.api(`/api/buckets/${b}/objects/k`, { method: 'PUT', body: `in ${b}` })).status, 201);
    }
  });
  after(async () => {
    if (!d) return;
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('POST /api/tokens: 201 with the token once (bdt_<uuid>_<43 base64url>); GET /api/tokens never shows it', async () => {
    const res = await d.api('/api/tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ci', scopes: ['blobs:read', 'bucket:a:write'] }),
    });
    assert.equal(res.status, 201);
    const t = (await res.json()) as TokenJson;
    assert.deepEqual(Object.keys(t).sort(), [...TOKEN_FIELDS, 'token'].sort());
    assert.match(t.token, TOKEN_FORMAT);
    assert.equal(t.name, 'ci');
    assert.deepEqual(t.scopes, ['blobs:read', 'bucket:a:write']);
    assert.ok(!Number.isNaN(Date.parse(t.created_at)), t.created_at);
    assert.equal(t.expires_at, null, 'no expires_in: never expires');
    assert.equal(t.last_used_at, null);

    const other = await createToken(d, ['blobs:read']);
    assert.notEqual(other.token, t.token);
    assert.notEqual(other.id, t.id);

    const listing = await d.api('/api/tokens');
    assert.equal(listing.status, 200);
    const text = await listing.text();
    const tokens = (JSON.parse(text) as { items: Record<string, unknown>[] }).items;
    const mine = tokens.find((x) => x.id === t.id);
    assert.ok(mine, 'the new token is listed');
    assert.deepEqual(mine, { id: t.id, name: 'ci', scopes: ['blobs:read', 'bucket:a:write'], created_at: t.created_at, expires_at: null, last_used_at: null });
    for (const x of tokens) assert.deepEqual(Object.keys(x).sort(), TOKEN_FIELDS, 'only these fields are listed');
    for (const secret of [t.token, t.token.slice(-43), other.token, other.token.slice(-43)]) {
      assert.ok(!text.includes(secret), 'no token value in the listing');
    }
    for (const tok of [t.token, other.token]) {
      const hex = createHash('sha256').update(tok).digest('hex');
      const b64 = createHash('sha256').update(tok).digest('base64url');
      assert.ok(!text.includes(hex) && !text.includes(b64), 'no token hash in the listing');
    }
  });

  test('a token authenticates as Bearer, X-API-Key and Basic (token as user name, empty password)', async () => {
    const t = await createToken(d, ['blobs:read']);
    const ways: Record<string, Record<string, string>> = {
      bearer: { authorization: `Bearer ${t.token}` },
      'x-api-key': { 'x-api-key': t.token },
      basic: { authorization: basic(t.token) },
    };
    for (const [way, headers] of Object.entries(ways)) {
      const res = await d.api(`/api/blobs/${digest}`, { headers, auth: false });
      assert.equal(res.status, 200, way);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(blob), way);
    }
    // No credential, and bogus ones in each form: 401 unauthorized with WWW-Authenticate.
    const bogus = `bdt_${randomUUID()}_${'A'.repeat(43)}`;
    const bad: Record<string, Record<string, string>> = {
      none: {},
      'bogus bearer': { authorization: `Bearer ${bogus}` },
      'bogus x-api-key': { 'x-api-key': bogus },
      'bogus basic': { authorization: basic(bogus) },
      'altered secret': { authorization: `Bearer ${t.token.slice(0, -1)}${t.token.endsWith('A') ? 'B' : 'A'}` },
    };
    for (const [what, headers] of Object.entries(bad)) {
      const res = await d.api(`/api/blobs/${digest}`, { headers, auth: false });
      assert.deepEqual(await outcome(res), [401, 'unauthorized'], what);
      assert.ok(res.headers.get('www-authenticate'), `${what}: a 401 carries WWW-Authenticate`);
    }
  });

  test('blobs:read may GET and HEAD a blob but not POST one, nor touch buckets', async () => {
    const t = await createToken(d, ['blobs:read']);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/blobs/${digest}`)), [200, null]);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/blobs/${digest}`, { method: 'HEAD' })), [200, null]);
    const other = randomData(10);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/blobs', { method: 'POST', body: other })), [403, 'forbidden']);
    assert.equal((await d.api(`/api/blobs/${sha256(other)}`)).status, 404, 'nothing was stored');
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a/objects/k')), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/c', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } })), [403, 'forbidden']);
  });

  test('bucket:a:read reads bucket a only, not bucket b, not blobs by digest, and may not write', async () => {
    const t = await createToken(d, ['bucket:a:read']);
    const got = await as(d, t.token, '/api/buckets/a/objects/k');
    assert.equal(got.status, 200);
    assert.equal(await got.text(), 'in a');
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a/objects/k?metadata')), [200, null]);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a/objects')), [200, null]);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a')), [200, null]);

    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/b/objects/k')), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/b/objects')), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/b')), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/blobs/${digest}`)), [403, 'forbidden'], 'no probing blobs by digest');
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a/objects/new', { method: 'PUT', body: 'x' })), [403, 'forbidden'], 'read does not imply write');
    assert.deepEqual(await outcome(await as(d, t.token, '/api/buckets/a/objects/k', { method: 'DELETE' })), [403, 'forbidden']);
    assert.equal(await (await d.api('/api/buckets/a/objects/k')).text(), 'in a', 'the object is untouched');
    assert.equal((await d.api('/api/buckets/a/objects/new')).status, 404);
  });

  test('bucket:*:write writes into every bucket but does not read; admin scope may manage tokens', async () => {
    const w = await createToken(d, ['bucket:*:write']);
    for (const b of ['a', 'b']) {
      assert.deepEqual(await outcome(await as(d, w.token, `/api/buckets/${b}/objects/by-wildcard`, { method: 'PUT', body: 'w' })), [201, null], b);
      assert.deepEqual(await outcome(await as(d, w.token, `/api/buckets/${b}/objects/by-wildcard`)), [403, 'forbidden'], `${b}: write does not imply read`);
    }
    const admin = await createToken(d, ['admin']);
    // Upload-session routes take only the session's token: an admin API token there is a 401.
    const init = await as(d, admin.token, '/api/blobs/uploads', { method: 'POST' });
    assert.equal(init.status, 202);
    const session = (await init.json()) as { id: string; token: string };
    assert.deepEqual(await outcome(await as(d, admin.token, `/api/blobs/uploads/${session.id}/append`, { method: 'POST', body: 'x' })), [401, 'unauthorized']);
    assert.deepEqual(await outcome(await d.api(`/api/blobs/uploads/${session.id}/status`, { headers: { 'upload-token': session.token } })), [204, null]);
    const made = await as(d, admin.token, '/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'by-admin-token', scopes: ['blobs:read'] }) });
    assert.equal(made.status, 201);
    assert.deepEqual(await outcome(await as(d, admin.token, `/api/blobs/${digest}`)), [200, null]);
    assert.deepEqual(await outcome(await as(d, admin.token, '/api/buckets/a/objects/k')), [200, null]);
  });

  test('GET /api/buckets lists only the buckets a token may read', async () => {
    const names = async (token: string) => {
      const res = await as(d, token, '/api/buckets');
      assert.equal(res.status, 200);
      return ((await res.json()) as { items: { name: string }[] }).items.map((b) => b.name).sort();
    };
    assert.deepEqual(await names((await createToken(d, ['bucket:a:read'])).token), ['a']);
    assert.deepEqual(await names((await createToken(d, ['bucket:b:read', 'bucket:a:write'])).token), ['b']);
    assert.deepEqual(await names((await createToken(d, ['blobs:read'])).token), []);
    assert.deepEqual(await names((await createToken(d, ['bucket:*:read'])).token), ['a', 'b']);
    assert.deepEqual(await names(d.token), ['a', 'b']);
  });

  test('expires_in: the token stops working with 401 token_expired; durations and bad values', async () => {
    const t = await createToken(d, ['blobs:read'], { expires_in: 1 });
    assert.ok(t.expires_at !== null && Date.parse(t.expires_at) > Date.parse(t.created_at), `expires_at ${t.expires_at}`);
    const expired = await waitFor(async (): Promise<Response | false> => {
      const res = await as(d, t.token, `/api/blobs/${digest}`);
      if (res.status !== 200) return res;
      await res.arrayBuffer();
      return false;
    }, 'the token to expire');
    assert.ok(expired);
    assert.equal(expired.status, 401);
    assert.ok(expired.headers.get('www-authenticate'), 'a 401 carries WWW-Authenticate');
    assert.equal(await errorCode(expired), 'token_expired');
    assert.deepEqual(await outcome(await d.api(`/api/blobs/${digest}`, { auth: false, headers: { 'x-api-key': t.token } })), [401, 'token_expired']);

    const day = await createToken(d, ['blobs:read'], { expires_in: '24h' });
    const span = Date.parse(day.expires_at!) - Date.parse(day.created_at);
    assert.ok(Math.abs(span - 24 * 3600_000) <= 2000, `24h → ${span} ms`);
    const week = await createToken(d, ['blobs:read'], { expires_in: '7d' });
    assert.ok(Math.abs(Date.parse(week.expires_at!) - Date.parse(week.created_at) - 7 * 86400_000) <= 2000);
    const secs = await createToken(d, ['blobs:read'], { expires_in: '90s' });
    assert.ok(Math.abs(Date.parse(secs.expires_at!) - Date.parse(secs.created_at) - 90_000) <= 2000);
    assert.deepEqual(await outcome(await as(d, day.token, `/api/blobs/${digest}`)), [200, null]);

    for (const bad of [0, -1, 1.5, 'soon', '', '10parsecs']) {
      const res = await d.api('/api/tokens', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bad', scopes: ['blobs:read'], expires_in: bad }),
      });
      assert.deepEqual(await outcome(res), [400, 'invalid_request'], `expires_in ${JSON.stringify(bad)}`);
    }
  });

  test('last_used_at is null until the token is used, then set', async () => {
    const t = await createToken(d, ['blobs:read']);
    const before = (await listTokens(d)).find((x) => x.id === t.id);
    assert.equal(before?.last_used_at, null);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/blobs/${digest}`)), [200, null]);
    const used = await waitFor(async () => (await listTokens(d)).find((x) => x.id === t.id)?.last_used_at ?? '', 'last_used_at to be set');
    // Second precision at worst: not before the token was created.
    assert.ok(Date.parse(used) >= Math.floor(Date.parse(t.created_at) / 1000) * 1000, `last_used_at ${used}`);
  });

  test('DELETE /api/tokens/{id} revokes (then 401); an unknown id is 404 token_not_found', async () => {
    const t = await createToken(d, ['blobs:read']);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/blobs/${digest}`)), [200, null]);
    const del = await d.api(`/api/tokens/${t.id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    const after = await as(d, t.token, `/api/blobs/${digest}`);
    assert.deepEqual(await outcome(after), [401, 'unauthorized']);
    assert.ok(!(await listTokens(d)).some((x) => x.id === t.id), 'no longer listed');
    assert.deepEqual(await outcome(await d.api(`/api/tokens/${t.id}`, { method: 'DELETE' })), [404, 'token_not_found']);
    assert.deepEqual(await outcome(await d.api(`/api/tokens/${randomUUID()}`, { method: 'DELETE' })), [404, 'token_not_found']);
  });

  test('invalid or empty scopes are 400 invalid_request, and no token is made', async () => {
    const count = (await listTokens(d)).length;
    const bodies: unknown[] = [
      { name: 'x', scopes: [] },
      { name: 'x', scopes: ['blobs:list'] },
      { name: 'x', scopes: ['blobs'] },
      { name: 'x', scopes: ['bucket:a'] },
      { name: 'x', scopes: ['bucket:a:admin'] },
      { name: 'x', scopes: ['bucket::read'] },
      { name: 'x', scopes: ['superuser'] },
      { name: 'x', scopes: ['blobs:read', 'nope'] },
      { name: 'x', scopes: 'admin' },
      { name: 'x', scopes: [42] },
      { name: 'x' },
    ];
    for (const body of bodies) {
      const res = await d.api('/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.deepEqual(await outcome(res), [400, 'invalid_request'], JSON.stringify(body));
    }
    assert.equal((await listTokens(d)).length, count);
  });

  test('a write-only token sees in its write answers only what it wrote, never the metadata of others', async () => {
    assert.equal((await d.api('/api/buckets/a/objects/secret', { method: 'PUT', body: 'x' })).status, 201);
    const meta = { owner: 'ceo', tags: ['confidential'], properties: { salary: 'secret-123' } };
    assert.equal((await d.api('/api/buckets/a/objects/secret', { method: 'PATCH', body: JSON.stringify(meta), headers: { 'content-type': 'application/json' } })).status, 200);
    const writer = await createToken(d, ['bucket:a:write']);
    const both = await createToken(d, ['bucket:a:write', 'bucket:a:read']);
    for (const [method, body, headers] of [
      ['PATCH', '{}', { 'content-type': 'application/json' }],
      ['PUT', 'new content', {}],
    ] as const) {
      const res = await as(d, writer.token, '/api/buckets/a/objects/secret', { method, body, headers });
      assert.ok(res.status === 200, `${method} → ${res.status}`);
      const text = await res.text();
      assert.doesNotMatch(text, /secret-123|confidential|ceo/, `${method} answer leaks metadata: ${text}`);
      assert.match(text, /"digest":"sha256:[0-9a-f]{64}"/);
    }
    const full = (await (await as(d, both.token, '/api/buckets/a/objects/secret', { method: 'PATCH', body: '{}', headers: { 'content-type': 'application/json' } })).json()) as { owner: string };
    assert.equal(full.owner, 'ceo', 'a token that may read gets the whole object');
  });

  test('an expires_in beyond 100 years is 400, and the token list stays readable', async () => {
    for (const expires_in of ['99999999d', 1e300]) {
      const res = await d.api('/api/tokens', { method: 'POST', body: JSON.stringify({ name: 'long', scopes: ['blobs:read'], expires_in }), headers: { 'content-type': 'application/json' } });
      assert.deepEqual(await outcome(res), [400, 'invalid_request'], String(expires_in));
    }
    assert.ok(!(await listTokens(d)).some((t) => t.name === 'long'));
  });

  test('a token without the admin scope cannot create, list or delete tokens (403)', async () => {
    const victim = await createToken(d, ['blobs:read']);
    const t = await createToken(d, ['blobs:read', 'blobs:write', 'blobs:delete', 'bucket:*:read', 'bucket:*:write', 'bucket:*:delete']);
    const post = await as(d, t.token, '/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'escalate', scopes: ['admin'] }) });
    assert.deepEqual(await outcome(post), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, '/api/tokens')), [403, 'forbidden']);
    assert.deepEqual(await outcome(await as(d, t.token, `/api/tokens/${victim.id}`, { method: 'DELETE' })), [403, 'forbidden']);
    assert.ok(!(await listTokens(d)).some((x) => x.name === 'escalate'));
    assert.deepEqual(await outcome(await as(d, victim.token, `/api/blobs/${digest}`)), [200, null], 'the victim still works');
  });
});

describe('no secret reaches the logs or the data dir', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ args: ['--log-level', 'trace'] });
  });
  after(async () => {
    if (!d) return;
    if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('API token, admin token, upload tokens and URL signatures appear in neither output nor any data file', async () => {
    const secrets: Record<string, string> = { 'admin token': d.token };
    const blob = randomData(2000);
    const digest = sha256(blob);

    // An API token, used in all three forms.
    const t = await createToken(d, ['blobs:read', 'blobs:write']);
    secrets['api token'] = t.token;
    secrets['api token secret part'] = t.token.slice(-43);
    secrets['api token as basic credentials'] = Buffer.from(`${t.token}:`).toString('base64');
    assert.equal((await as(d, t.token, '/api/blobs', { method: 'POST', body: blob })).status, 201);
    assert.equal((await d.api(`/api/blobs/${digest}`, { auth: false, headers: { 'x-api-key': t.token } })).status, 200);
    assert.equal((await d.api(`/api/blobs/${digest}`, { auth: false, headers: { authorization: basic(t.token) } })).status, 200);

    // A token made with an Idempotency-Key: its stored answer holds the token (encrypted at rest).
    const idem = await d.api('/api/tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `tok-${randomUUID()}` },
      body: JSON.stringify({ name: 'idem', scopes: ['blobs:read'] }),
    });
    assert.equal(idem.status, 201);
    const idemToken = ((await idem.json()) as TokenJson).token;
    secrets['idempotent api token'] = idemToken;
    secrets['idempotent api token secret part'] = idemToken.slice(-43);
    assert.equal((await as(d, idemToken, `/api/blobs/${digest}`)).status, 200);

    // A signed URL, used.
    const signed = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 }),
    });
    assert.equal(signed.status, 201, await signed.clone().text());
    const url = ((await signed.json()) as { url: string }).url;
    const signature = new URL(url).searchParams.get('blobd-signature');
    assert.ok(signature, url);
    secrets['url signature'] = signature;
    const viaUrl = await fetch(url);
    assert.equal(viaUrl.status, 200);
    assert.ok(Buffer.from(await viaUrl.arrayBuffer()).equals(blob));

    // An upload session initiated with an Idempotency-Key (the stored answer carries Upload-Token),
    // appended to with its token, and completed with the alias header.
    const data = randomData(3000);
    const init = await as(d, t.token, `/api/blobs/uploads?size=${data.length}`, { method: 'POST', headers: { 'idempotency-key': `up-${randomUUID()}` } });
    assert.equal(init.status, 202);
    const session = (await init.json()) as { id: string; token: string };
    secrets['upload token'] = session.token;
    const appended = await d.api(`/api/blobs/uploads/${session.id}/append`, { method: 'POST', auth: false, headers: { 'upload-token': session.token }, body: data.subarray(0, 1000) });
    assert.equal(appended.status, 203);
    const done = await d.api(`/api/blobs/uploads/${session.id}/complete`, { method: 'POST', auth: false, headers: { 'portsip-upload-token': session.token }, body: data.subarray(1000) });
    assert.equal(done.status, 201);

    // A session started through a signed URL (the browser flow), appended to.
    const signedInit = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'POST', path: '/api/blobs/uploads', expires_in: 600 }),
    });
    assert.equal(signedInit.status, 201, await signedInit.clone().text());
    const initUrl = ((await signedInit.json()) as { url: string }).url;
    secrets['upload url signature'] = new URL(initUrl).searchParams.get('blobd-signature')!;
    const browser = await fetch(initUrl, { method: 'POST' });
    assert.equal(browser.status, 202, await browser.clone().text());
    const browserSession = (await browser.json()) as { id: string; token: string };
    secrets['signed-url upload token'] = browserSession.token;
    const appended2 = await d.api(`/api/blobs/uploads/${browserSession.id}/append`, { method: 'POST', auth: false, headers: { 'upload-token': browserSession.token }, body: 'abc' });
    assert.equal(appended2.status, 203);

    assert.equal(await d.stop(), 0);
    const output = d.output();
    assert.ok(output.length > 0, 'trace logging printed something');
    const inOutput = Object.entries(secrets).filter(([, s]) => output.includes(s)).map(([label]) => label);
    assert.deepEqual(inOutput, [], 'secrets in the daemon output');

    const files = (await filesUnder(d.dataDir)).filter((f) => path.relative(d.dataDir, f) !== 'admin-token');
    if (d.metadata === 'sqlite') assert.ok(files.some((f) => path.basename(f) === 'blobd.db'), `the database is among the files searched: ${files.join(', ')}`);
    assert.deepEqual(await secretsInFiles(files, secrets), [], 'secrets in data files');
    // Rows elsewhere (PostgreSQL) are searched as rows; on SQLite this repeats the file search, decoded.
    const meta = metaProbe(d);
    try {
      const rows = await meta.rows();
      assert.ok(rows.some((r) => r.startsWith('api_tokens:')), `the token rows are among the rows searched: ${rows.length} rows`);
      const inRows = Object.entries(secrets).filter(([, s]) => rows.some((r) => r.includes(s))).map(([label]) => label);
      assert.deepEqual(inRows, [], 'secrets in the database rows');
    } finally {
      await meta.close();
    }
  });
});
