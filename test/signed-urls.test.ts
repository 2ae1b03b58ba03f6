// Signed URLs against the real daemon: a signed GET serves the bytes with no credential and nothing else;
// every altered character, added or removed parameter is signature_invalid; expiry; what a signer may sign;
// revoking the signer's token; a browser starting an upload session with no API token; max_size and
// content_type constraints; and the signing keys on disk.
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KeyFiles } from '../src/storage/fs/key-files.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { openRequest } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { onSqliteOnly, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

interface Signed {
  url: string;
  method: string;
  expires_at: string;
}

interface SignRequest {
  method: string;
  path: string;
  expires_in: number | string;
  max_size?: number;
  content_type?: string;
}

/**
 * One character of the same class, but different: a letter shifted by one in the alphabet, a digit plus
 * one (mod 10), anything else 'x'.
 */
function tamperChar(ch: string): string {
  if (/[a-y]|[A-Y]/.test(ch)) return String.fromCharCode(ch.charCodeAt(0) + 1);
  if (ch === 'z') return 'a';
  if (ch === 'Z') return 'A';
  if (/[0-9]/.test(ch)) return String((Number(ch) + 1) % 10);
  return 'x';
}

/** The request target of an absolute URL exactly as the daemon wrote it (no re-serialisation). */
function splitUrl(url: string): { origin: string; target: string } {
  const origin = new URL(url).origin;
  assert.ok(url.startsWith(origin), url);
  return { origin, target: url.slice(origin.length) };
}

describe('signed URLs', () => {
  let d: Daemon;
  let data: Buffer<ArrayBuffer>;
  let digest: string;

  /** POST /api/signed-urls as admin, or with `token` when given. */
  const sign = (body: SignRequest, token?: string) =>
    d.api('/api/signed-urls', {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  const signed = async (body: SignRequest, token?: string): Promise<Signed> => {
    const res = await sign(body, token);
    assert.equal(res.status, 201, `sign ${body.method} ${body.path} → ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as Signed;
  };
  const createToken = async (scopes: string[]): Promise<{ id: string; token: string }> => {
    const res = await d.api('/api/tokens', {
      method: 'POST',
      body: JSON.stringify({ name: `t-${scopes.join('-')}`, scopes }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 201, `create token ${scopes} → ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as { id: string; token: string };
  };
  const bucket = async (name: string) => {
    const res = await d.api(`/api/buckets/${name}`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.ok(res.status === 200 || res.status === 201, `PUT bucket ${name} → ${res.status}`);
  };
  const putObject = async (p: string, body: BodyInit) => {
    const res = await d.api(`/api/buckets/${p}`, { method: 'PUT', body });
    assert.equal(res.status, 201, `PUT ${p} → ${res.status} ${await res.clone().text()}`);
  };
  /** Answers 403 with `code` (a HEAD answer has no body, so only its status is checked). */
  const assertRefused = async (res: Response, code: string, what: string, head = false) => {
    assert.equal(res.status, 403, `${what}: ${res.status} ${await res.clone().text()}`);
    if (head) await res.arrayBuffer();
    else assert.equal(await errorCode(res), code, what);
  };

  before(async () => {
    d = await startDaemon();
    data = randomData(4096);
    const res = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(res.status, 201);
    digest = ((await res.json()) as { digest: string }).digest;
    assert.equal(digest, sha256(data));
    await bucket('a');
    await bucket('b');
    await putObject('a/objects/k', 'in bucket a');
    await putObject('b/objects/k', 'in bucket b');
  });
  after(async () => {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('a signed GET serves the exact bytes with no credential; the URL names its expiry, principal, key and signature', async () => {
    const before = Math.floor(Date.now() / 1000);
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 3600 });
    assert.equal(s.method, 'GET');
    const url = new URL(s.url);
    assert.equal(url.origin, new URL(d.url).origin, 'absolute, on the origin the request came to');
    assert.equal(decodeURIComponent(url.pathname), `/api/blobs/${digest}`);
    const names = [...url.searchParams.keys()];
    assert.equal(names.at(-1), 'blobd-signature', 'the signature is the last parameter');
    for (const name of ['blobd-expires', 'blobd-principal', 'blobd-key']) assert.ok(names.includes(name), name);
    assert.equal(url.searchParams.get('blobd-principal'), 'admin');
    const expires = Number(url.searchParams.get('blobd-expires'));
    assert.ok(expires >= before + 3600 && expires <= before + 3600 + 60, `blobd-expires ${expires}`);
    assert.ok(Math.abs(Date.parse(s.expires_at) / 1000 - expires) < 1, `expires_at ${s.expires_at} is blobd-expires ${expires}`);

    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
  });

  test('the method is signed: HEAD, PUT and DELETE with a GET signature are signature_invalid', async () => {
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 3600 });
    await assertRefused(await fetch(s.url, { method: 'HEAD' }), 'signature_invalid', 'HEAD', true);
    await assertRefused(await fetch(s.url, { method: 'PUT', body: data }), 'signature_invalid', 'PUT');
    await assertRefused(await fetch(s.url, { method: 'DELETE' }), 'signature_invalid', 'DELETE');
    const still = await d.api(`/api/blobs/${digest}`);
    assert.equal(still.status, 200, 'the blob is untouched');
    await still.arrayBuffer();
  });

  /**
   * Sends `url` once per character after the origin, that character altered (all but the '?'), and returns
   * every answer that is not 403 signature_invalid.
   */
  const tamperedAnswers = async (url: string, method: string): Promise<string[]> => {
    const { origin, target } = splitUrl(url);
    assert.equal(target.split('?').length, 2, `one '?' in ${target}`);
    const wrong: string[] = [];
    // Position 0 is the '/' that ends the origin: altering it makes no URL at all, like the '?'.
    for (let i = 1; i < target.length; i++) {
      if (target[i] === '?') continue;
      const tampered = target.slice(0, i) + tamperChar(target[i]!) + target.slice(i + 1);
      const res = await fetch(origin + tampered, { method });
      const text = await res.text();
      const code = /^\{/.test(text) ? ((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '') : '';
      if (res.status !== 403 || code !== 'signature_invalid') wrong.push(`[${i}] ${tampered} → ${res.status} ${code || `(no error code, ${text.length} chars)`}`);
    }
    return wrong;
  };

  test('every altered character of a signed GET is signature_invalid', async () => {
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 3600 });
    const ok = await fetch(s.url);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.deepEqual(await tamperedAnswers(s.url, 'GET'), [], 'each altered URL must answer 403 signature_invalid');
  });

  test("every altered character of a token's signed session start (query, max_size, content_type) is signature_invalid", async () => {
    const writer = await createToken(['bucket:a:write']);
    const s = await signed(
      { method: 'POST', path: '/api/blobs/uploads?bucket=a&key=tampered.bin', expires_in: 3600, max_size: 1000, content_type: 'image/png' },
      writer.token,
    );
    assert.deepEqual(await tamperedAnswers(s.url, 'POST'), [], 'each altered URL must answer 403 signature_invalid');
    const ok = await fetch(s.url, { method: 'POST' });
    assert.equal(ok.status, 202, 'the unaltered URL still works');
    await ok.arrayBuffer();
  });

  test('an added or a removed parameter is signature_invalid; with no blobd-* parameter at all it is anonymous', async () => {
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 3600 });
    await assertRefused(await fetch(`${s.url}&filename=x`), 'signature_invalid', 'appended &filename=x');
    const url = new URL(s.url);
    const names = [...url.searchParams.keys()].filter((n) => n.startsWith('blobd-'));
    assert.ok(names.length >= 4, names.join());
    for (const name of names) {
      const less = new URL(s.url);
      less.searchParams.delete(name);
      await assertRefused(await fetch(less), 'signature_invalid', `without ${name}`);
    }
    const bare = await fetch(`${url.origin}${url.pathname}`);
    assert.equal(bare.status, 401);
    assert.equal(await errorCode(bare), 'unauthorized');
  });

  test('the signature is checked before the expiry: a blobd-expires moved into the past is signature_invalid', async () => {
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 3600 });
    for (const expires of ['1000000000', String(Math.floor(Date.now() / 1000) - 10)]) {
      const url = new URL(s.url);
      url.searchParams.set('blobd-expires', expires);
      await assertRefused(await fetch(url), 'signature_invalid', `blobd-expires=${expires}`);
    }
  });

  test('a blobd-* parameter is judged by its signature on every path, /healthz too', async () => {
    await assertRefused(await fetch(`${d.url}/healthz?blobd-signature=x`), 'signature_invalid', '/healthz');
    await assertRefused(
      await d.api(`/api/blobs/${digest}?blobd-signature=x`),
      'signature_invalid',
      'a bogus signature beside the admin token',
    );
  });

  test('expires_in 1 works and then answers signature_expired', async (t) => {
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 1 });
    const first = await fetch(s.url);
    if (first.status === 200) {
      assert.equal(sha256(Buffer.from(await first.arrayBuffer())), digest);
    } else {
      assert.equal(first.status, 403);
      assert.equal(await errorCode(first), 'signature_expired');
      t.diagnostic('already expired at the first request');
    }
    await waitFor(async () => {
      const res = await fetch(s.url);
      if (res.status === 200) return void (await res.arrayBuffer());
      assert.equal(res.status, 403);
      assert.equal(await errorCode(res), 'signature_expired');
      return true;
    }, 'the signed URL to expire');
  });

  test('expires_in is 1..604800 seconds, as a number or a duration as tokens take it', async () => {
    for (const bad of [604801, 0, '8d', '604800.5s', 'soon', '']) {
      const res = await sign({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: bad });
      assert.equal(res.status, 400, `expires_in ${bad}`);
      assert.equal(await errorCode(res), 'invalid_request');
    }
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 604800 });
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    for (const [duration, seconds] of [['7d', 604800], ['90s', 90], ['1h', 3600], ['1500ms', 2]] as const) {
      const before = Date.now();
      const d = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: duration });
      const lifetime = (Date.parse(d.expires_at) - before) / 1000;
      assert.ok(lifetime > seconds - 2 && lifetime <= seconds + 1, `${duration}: ${lifetime} s`);
      const got = await fetch(d.url);
      assert.equal(got.status, 200);
      await got.arrayBuffer();
    }
  });

  test('a signer signs only what it may do itself; some routes are never signable', async () => {
    const reader = await createToken(['blobs:read']);
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 }, reader.token);
    assert.equal(new URL(s.url).searchParams.get('blobd-principal'), `token:${reader.id}`);
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);

    for (const [method, p] of [
      ['PUT', `/api/blobs/${digest}`],
      ['GET', '/api/buckets/a/objects/k'],
    ] as const) {
      const refused = await sign({ method, path: p, expires_in: 600 }, reader.token);
      assert.equal(refused.status, 403, `${method} ${p}`);
      assert.equal(await errorCode(refused), 'forbidden', `${method} ${p}`);
    }

    // A session id that exists, so that the upload-token route is a real one.
    const session = await d.api('/api/blobs/uploads', { method: 'POST' });
    assert.equal(session.status, 202);
    const { id } = (await session.json()) as { id: string };
    const unsignable = [
      ['POST', '/api/tokens'],
      ['POST', '/api/signed-urls'],
      ['POST', `/api/blobs/uploads/${id}/append`],
      ['GET', '/healthz'],
      ['GET', '/api/no-such-route'],
    ] as const;
    for (const [who, token] of [
      ['admin', undefined],
      ['blobs:read', reader.token],
    ] as const) {
      for (const [method, p] of unsignable) {
        const res = await sign({ method, path: p, expires_in: 600 }, token);
        assert.equal(res.status, 400, `${who} signs ${method} ${p}: ${res.status} ${await res.clone().text()}`);
        assert.equal(await errorCode(res), 'invalid_request', `${who} signs ${method} ${p}`);
      }
    }
  });

  test("deleting the signer's token kills its signed URLs", async () => {
    const reader = await createToken(['blobs:read']);
    const s = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 }, reader.token);
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal((await d.api(`/api/tokens/${reader.id}`, { method: 'DELETE' })).status, 204);
    await assertRefused(await fetch(s.url), 'signature_invalid', 'after DELETE /api/tokens/{id}');
  });

  test('a bucket:a:read token signs reads of bucket a only', async () => {
    const reader = await createToken(['bucket:a:read']);
    const s = await signed({ method: 'GET', path: '/api/buckets/a/objects/k', expires_in: 600 }, reader.token);
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'in bucket a');
    for (const p of ['/api/buckets/b/objects/k', `/api/blobs/${digest}`]) {
      const refused = await sign({ method: 'GET', path: p, expires_in: 600 }, reader.token);
      assert.equal(refused.status, 403, p);
      assert.equal(await errorCode(refused), 'forbidden', p);
    }
  });

  test('a browser starts a session from a signed POST /api/blobs/uploads with no API token; max_size caps it', async () => {
    const s = await signed({
      method: 'POST',
      path: '/api/blobs/uploads?bucket=a&key=photo.bin',
      expires_in: 600,
      max_size: 1000,
      content_type: 'image/png',
    });
    const url = new URL(s.url);
    assert.equal(url.searchParams.get('bucket'), 'a');
    assert.equal(url.searchParams.get('key'), 'photo.bin');
    assert.equal(url.searchParams.get('blobd-max-size'), '1000');
    assert.equal(url.searchParams.get('blobd-content-type'), 'image/png');

    const init = await fetch(s.url, { method: 'POST' });
    assert.equal(init.status, 202, await init.clone().text());
    const session = (await init.json()) as { id: string; token: string };
    assert.ok(session.id && session.token);
    const append = (body: Buffer<ArrayBuffer>) =>
      fetch(`${d.url}/api/blobs/uploads/${session.id}/append`, { method: 'POST', body, headers: { 'upload-token': session.token } });
    const status = async () => {
      const res = await fetch(`${d.url}/api/blobs/uploads/${session.id}/status`, { headers: { 'upload-token': session.token } });
      assert.equal(res.status, 204);
      return res.headers.get('upload-offset');
    };

    const photo = randomData(600);
    const first = await append(photo);
    assert.equal(first.status, 203);
    assert.equal(first.headers.get('upload-offset'), '600');
    const over = await append(randomData(600));
    assert.equal(over.status, 413);
    assert.equal(await errorCode(over), 'too_large');
    assert.equal(await status(), '600', 'nothing of the refused append is kept');

    const done = await fetch(`${d.url}/api/blobs/uploads/${session.id}/complete`, { method: 'POST', headers: { 'upload-token': session.token } });
    assert.equal(done.status, 201, await done.clone().text());
    const completed = (await done.json()) as { digest: string; size: number; bucket?: string; key?: string };
    assert.equal(completed.digest, sha256(photo));
    assert.equal(completed.bucket, 'a');
    assert.equal(completed.key, 'photo.bin');

    const meta = await d.api('/api/buckets/a/objects/photo.bin?metadata');
    assert.equal(meta.status, 200);
    const m = (await meta.json()) as { content_type: string | null; size: number; digest: string };
    assert.equal(m.content_type, 'image/png', 'the signed content_type is the session content type');
    assert.equal(m.size, 600);
    assert.equal(m.digest, sha256(photo));
  });

  test('a bucket:a:write token signs session starts into bucket a only', async () => {
    const writer = await createToken(['bucket:a:write']);
    const s = await signed({ method: 'POST', path: '/api/blobs/uploads?bucket=a&key=from-token.bin', expires_in: 600 }, writer.token);
    const init = await fetch(s.url, { method: 'POST' });
    assert.equal(init.status, 202, await init.clone().text());
    await init.arrayBuffer();
    for (const p of ['/api/blobs/uploads?bucket=b&key=x', '/api/blobs/uploads']) {
      const refused = await sign({ method: 'POST', path: p, expires_in: 600 }, writer.token);
      assert.equal(refused.status, 403, p);
      assert.equal(await errorCode(refused), 'forbidden', p);
    }
  });

  test('max_size and content_type constrain a signed one-shot PUT', async () => {
    const s = await signed({ method: 'PUT', path: '/api/buckets/a/objects/small', expires_in: 600, max_size: 10 });
    const big = await fetch(s.url, { method: 'PUT', body: Buffer.from('0123456789A') });
    assert.equal(big.status, 413);
    assert.equal(await errorCode(big), 'too_large');
    const absent = await d.api('/api/buckets/a/objects/small');
    assert.equal(absent.status, 404, 'nothing of the refused body is kept');
    assert.equal(await errorCode(absent), 'object_not_found');
    const fits = await fetch(s.url, { method: 'PUT', body: Buffer.from('0123456789') });
    assert.equal(fits.status, 201, await fits.clone().text());
    await fits.arrayBuffer();
    const stored = await d.api('/api/buckets/a/objects/small');
    assert.equal(await stored.text(), '0123456789');

    const typed = await signed({ method: 'PUT', path: '/api/buckets/a/objects/pic', expires_in: 600, content_type: 'image/png' });
    await assertRefused(
      await fetch(typed.url, { method: 'PUT', body: 'not a png', headers: { 'content-type': 'text/plain' } }),
      'signature_invalid',
      'text/plain body for an image/png signature',
    );
    const gone = await d.api('/api/buckets/a/objects/pic');
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();
    const png = await fetch(typed.url, { method: 'PUT', body: randomData(32), headers: { 'content-type': 'image/png' } });
    assert.equal(png.status, 201, await png.clone().text());
    await png.arrayBuffer();
    // A JSON write or a form names the stored type inside the body: under a content_type grant, refused.
    const asJson = await signed({ method: 'PUT', path: '/api/buckets/a/objects/page', expires_in: 600, content_type: 'application/json' });
    const html = JSON.stringify({ content_base64: Buffer.from('<script>1</script>').toString('base64'), content_type: 'text/html' });
    await assertRefused(await fetch(asJson.url, { method: 'PUT', body: html, headers: { 'content-type': 'application/json' } }), 'signature_invalid', 'a JSON write');
    const form = new FormData();
    form.append('file', new Blob(['<script>1</script>'], { type: 'text/html' }), 'page.html');
    const formReq = new Request('http://x', { method: 'PUT', body: form });
    const formType = formReq.headers.get('content-type')!;
    const asForm = await signed({ method: 'PUT', path: '/api/buckets/a/objects/page', expires_in: 600, content_type: formType });
    await assertRefused(await fetch(asForm.url, { method: 'PUT', body: await formReq.arrayBuffer(), headers: { 'content-type': formType } }), 'signature_invalid', 'a form');
    const page = await d.api('/api/buckets/a/objects/page');
    assert.equal(page.status, 404, 'nothing was stored');
    await page.arrayBuffer();
    // max_size holds for a session that completes at once by digest as a pin, as it does into a bucket.
    const known = (await (await d.api('/api/blobs', { method: 'POST', body: 'fourteen bytes' })).json()) as { digest: string };
    for (const target of ['', '&bucket=a&key=known']) {
      const capped = await signed({ method: 'POST', path: `/api/blobs/uploads?digest=${known.digest}${target}`, expires_in: 600, max_size: 5 });
      const res = await fetch(capped.url, { method: 'POST' });
      assert.equal(res.status, 413, `${target || 'a pin'}: ${await res.clone().text()}`);
      assert.equal(await errorCode(res), 'too_large');
    }
  });

  test('no spelling of /api/tokens or /api/signed-urls gets signed (percent-encoded letters included)', async () => {
    const paths: [string, string][] = [['GET', '/api/%74okens'], ['POST', '/api/%74okens'], ['POST', '/api/signed-url%73'], ['GET', '/api/tokens/'], ['POST', '/api/%73igned-urls']];
    for (const [method, p] of paths) {
      const res = await sign({ method, path: p, expires_in: 60 });
      assert.equal(res.status, 400, `${method} ${p} → ${res.status} ${await res.clone().text()}`);
      assert.equal(await errorCode(res), 'invalid_request');
    }
  });

  test('what the signer allows is what is stored: max_size up to 15 digits, no blobd-* in the signed path', async () => {
    for (const body of [
      { method: 'GET', path: `/api/blobs/${digest}`, expires_in: 60, max_size: 10 ** 15 },
      { method: 'GET', path: `/api/blobs/${digest}?blobd-x=1`, expires_in: 60 },
    ]) {
      const res = await sign(body);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status}`);
      await res.arrayBuffer();
    }
    const biggest = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 60, max_size: 10 ** 15 - 1 });
    const res = await fetch(biggest.url);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  test('content_type binds the whole header, also on an empty body; max_size binds chunked bodies and writes by digest', async () => {
    const png = await signed({ method: 'PUT', path: '/api/buckets/a/objects/typed', expires_in: 600, content_type: 'image/png', max_size: 10 });
    for (const type of ['text/plain', 'image/png; charset=x', 'image/pngx']) {
      const res = await fetch(png.url, { method: 'PUT', headers: { 'content-type': type }, body: '' });
      await assertRefused(res, 'signature_invalid', `empty body as ${type}`);
    }
    // A chunked body (no Content-Length) over max_size: 413, nothing stored.
    const { target } = splitUrl(png.url);
    const chunked = openRequest(`${d.url}${target}`, 'PUT', { 'content-type': 'image/png' });
    await chunked.write(Buffer.alloc(100, 1));
    const answer = await chunked.end();
    assert.equal(answer.status, 413, answer.body);
    assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'too_large');
    assert.equal((await d.api('/api/buckets/a/objects/typed?metadata')).status, 404);
    // A JSON write by digest names 4096 bytes: over a max_size of 100.
    const byDigest = await signed({ method: 'PUT', path: '/api/buckets/a/objects/by-digest', expires_in: 600, max_size: 100 });
    const res = await fetch(byDigest.url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ digest }) });
    assert.equal(res.status, 413, await res.clone().text());
    assert.equal((await d.api('/api/buckets/a/objects/by-digest?metadata')).status, 404);
  });

  test('holders of two signed URLs of one signer never get each other\'s Idempotency-Key answers', async () => {
    const one = await signed({ method: 'POST', path: '/api/blobs/uploads', expires_in: 600 });
    const two = await signed({ method: 'POST', path: '/api/blobs/uploads?filename=x', expires_in: 600 });
    const first = await fetch(one.url, { method: 'POST', headers: { 'idempotency-key': 'upload-photo.jpg' } });
    assert.equal(first.status, 202);
    const second = await fetch(two.url, { method: 'POST', headers: { 'idempotency-key': 'upload-photo.jpg' } });
    assert.equal(second.status, 202);
    assert.equal(second.headers.get('idempotent-replayed'), null);
    assert.notEqual(second.headers.get('upload-token'), first.headers.get('upload-token'));
    await Promise.all([first.arrayBuffer(), second.arrayBuffer()]);
  });

  // With PostgreSQL metadata the signing keys are rows every node shares, not files.
  const keyFiles = onSqliteOnly('signing keys are files in data/keys/; on PostgreSQL they are rows of the shared database');
  test('signing keys live in data/keys/, each file 0600', keyFiles, async () => {
    await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 60 });
    const dir = path.join(d.dataDir, 'keys');
    assert.ok((await stat(dir)).isDirectory());
    const files = await readdir(dir);
    assert.ok(files.length > 0, 'at least one key');
    for (const f of files) {
      const st = await stat(path.join(dir, f));
      assert.ok(st.isFile(), f);
      assert.equal((st.mode & 0o777).toString(8), '600', f);
    }
  });

  test('a new signing key signs from the next start on; URLs signed with the old key keep working', async () => {
    const old = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 });
    const oldKid = new URL(old.url).searchParams.get('blobd-key');
    // A key file added beside the old one; on PostgreSQL a key row, added the way `blobd keys rotate` does.
    const added =
      d.metadata === 'postgres'
        ? { kid: ((await (await d.api('/api/admin/keys/rotate', { method: 'POST' })).json()) as { key_id: string }).key_id }
        : await new KeyFiles(new DataLayout(d.dataDir)).createSigningKey();
    await d.stop();
    d = await startDaemon({ dataDir: d.dataDir });
    const fresh = await signed({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 });
    assert.equal(new URL(fresh.url).searchParams.get('blobd-key'), added.kid);
    assert.notEqual(oldKid, added.kid);
    for (const url of [old.url, fresh.url]) {
      const { target } = splitUrl(url);
      const res = await fetch(d.url + target);
      assert.equal(res.status, 200, url);
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest);
    }
  });
});
