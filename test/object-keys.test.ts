// One key, one URL: a request target whose percent-encoding is not UTF-8 (a stray byte, an overlong form, a
// surrogate, a cut sequence) is `400 invalid_key` on every object route, never a key of its own; and keys
// are NFC or refused — `é` as one code point is a key, `e` + a combining accent is refused everywhere a
// key can be named (object routes, upload sessions).
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';

/** A request with the target exactly as given (no client-side URL normalization). */
function raw(d: Daemon, method: string, target: string, body?: string): Promise<{ status: number; json: { error?: { code: string } } | null }> {
  const url = new URL(d.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path: target, headers: { authorization: `Bearer ${d.token}`, 'content-length': Buffer.byteLength(body ?? '') } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON (content)
          }
          resolve({ status: res.statusCode!, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('object keys: valid UTF-8 percent-encoding, NFC or refused', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
    assert.equal((await d.api('/api/buckets/k', { method: 'PUT' })).status, 201);
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  const keys = async () => ((await (await d.api('/api/buckets/k/objects')).json()) as { items: { key: string }[] }).items.map((o) => o.key);

  test('percent-encodings that are not UTF-8 are 400 invalid_key on every method, and store nothing', async () => {
    for (const bad of ['%FF', 'a%FFb', '%C0%AF', '%C3%28', '%ED%A0%80', '%E2%82', '%F4%90%80%80', 'dir/%80/x']) {
      for (const method of ['PUT', 'GET', 'HEAD', 'PATCH', 'DELETE']) {
        const res = await raw(d, method, `/api/buckets/k/objects/${bad}`, method === 'PUT' ? 'bytes' : method === 'PATCH' ? '{}' : undefined);
        assert.equal(res.status, 400, `${method} ${bad}`);
        if (method !== 'HEAD') assert.equal(res.json?.error?.code, 'invalid_key', `${method} ${bad}`);
      }
    }
    assert.deepEqual(await keys(), []);
    // The same rule for key= of a session and prefix= of a listing: the query parser would keep them literally.
    for (const target of ['/api/blobs/uploads?bucket=k&key=%ED%A0%80zz', '/api/blobs/uploads?bucket=k&key=a%FF']) {
      const res = await raw(d, 'POST', target);
      assert.deepEqual([res.status, res.json?.error?.code], [400, 'invalid_key'], target);
    }
    for (const target of ['/api/buckets/k/objects?prefix=%FF', '/api/buckets/k/objects?prefix=caf%C3&format=csv', `/api/buckets/k/objects?prefix=${encodeURIComponent('cafe\u0301')}`]) {
      const res = await raw(d, 'GET', target);
      assert.deepEqual([res.status, res.json?.error?.code], [400, 'invalid_key'], target);
    }
  });

  test('a decoded control character, U+FFFE or U+FFFF is 400 invalid_key (not 404); a key holding U+2028 is reachable', async () => {
    for (const bad of ['a%0Ab', 'a%0D', '%09x', 'a%EF%BF%BE', 'a%EF%BF%BFb']) {
      const res = await raw(d, 'PUT', `/api/buckets/k/objects/${bad}`, 'x');
      assert.deepEqual([res.status, res.json?.error?.code], [400, 'invalid_key'], bad);
    }
    const key = 'line\u2028separator';
    assert.equal((await d.api(`/api/buckets/k/objects/${encodeURIComponent(key)}`, { method: 'PUT', body: 'ls' })).status, 201);
    assert.equal(await (await d.api(`/api/buckets/k/objects/${encodeURIComponent(key)}`)).text(), 'ls');
    assert.equal((await d.api(`/api/buckets/k/objects/${encodeURIComponent(key)}`, { method: 'DELETE' })).status, 204);
  });

  test('a key not in NFC is refused; its NFC spelling is the key, however it is percent-encoded', async () => {
    const nfd = 'cafe\u0301.txt';
    const nfc = nfd.normalize('NFC');
    const refused = await d.api(`/api/buckets/k/objects/${encodeURIComponent(nfd)}`, { method: 'PUT', body: 'x' });
    assert.equal(refused.status, 400);
    assert.equal(await errorCode(refused), 'invalid_key');
    assert.equal(await errorCode(await d.api(`/api/buckets/k/objects/${encodeURIComponent(nfd)}`)), 'invalid_key');
    const initiate = await d.api(`/api/blobs/uploads?bucket=k&key=${encodeURIComponent(nfd)}`, { method: 'POST' });
    assert.equal(initiate.status, 400);
    assert.equal(await errorCode(initiate), 'invalid_key');

    assert.equal((await d.api(`/api/buckets/k/objects/${encodeURIComponent(nfc)}`, { method: 'PUT', body: 'nfc' })).status, 201);
    // The same key with its unreserved bytes percent-encoded or not: one key.
    assert.equal((await raw(d, 'GET', '/api/buckets/k/objects/caf%C3%A9%2Etxt')).status, 200);
    assert.equal(await (await d.api(`/api/buckets/k/objects/caf\u00e9.txt`)).text(), 'nfc');
    assert.deepEqual(await keys(), [nfc]);
  });
});
