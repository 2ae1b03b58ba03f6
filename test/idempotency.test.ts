// Idempotency-Key against the real daemon: replays answer the first 2xx again (status, body, Location,
// Upload-Token, token values) with `Idempotent-Replayed: true` and do nothing again; the same key with
// another request is 422, while the first still runs 409; failures are not stored; principals never share
// keys; bad keys are 400; a claim does not outlive a kill -9; and a stored answer survives a restart.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken, listTokens, openRequest, type TokenJson } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;

interface ObjectJson {
  id: string;
  key: string;
  revision: number;
  digest: string;
}

describe('Idempotency-Key', () => {
  let d: Daemon;
  const bucket = async (name: string) => {
    const res = await d.api(`/api/buckets/${name}`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 201, `create bucket ${name}`);
  };
  const listKeys = async (name: string) => {
    const res = await d.api(`/api/buckets/${name}/objects`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { items: { key: string }[] }).items.map((o) => o.key);
  };
  /** POST /api/buckets/{b}/objects with a key, as `token` (admin by default). */
  const postObject = (b: string, body: string, key: string, token = d.token) =>
    as(d, token, `/api/buckets/${b}/objects`, { method: 'POST', body, headers: { 'content-type': 'text/plain', 'idempotency-key': key } });

  /** POST /api/blobs with this key and Content-Length, headers only; the answer of an early refusal. */
  const sameRequestRefused = async (key: string, length: number) => {
    const probe = openRequest(`${d.url}/api/blobs`, 'POST', {
      authorization: `Bearer ${d.token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'idempotency-key': key,
    });
    try {
      return await probe.headersOnly();
    } finally {
      probe.destroy();
    }
  };

  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    if (!d) return;
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('a replayed POST …/objects answers the same status, body and Location, marked replayed; one object exists', async () => {
    const key = randomUUID();
    // PUT /api/buckets/{b} takes a key too: the replay is the first 201, although a second PUT would be a 200.
    const put = () =>
      d.api('/api/buckets/replay', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json', 'idempotency-key': `${key}-bucket` } });
    const created = await put();
    assert.equal(created.status, 201);
    assert.notEqual(created.headers.get('idempotent-replayed'), 'true');
    const createdBody = await created.text();
    const again = await put();
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await again.text(), createdBody);

    const first = await postObject('replay', 'only once', key);
    assert.equal(first.status, 201);
    assert.notEqual(first.headers.get('idempotent-replayed'), 'true', 'the first answer is not a replay');
    const firstBody = await first.text();
    const o = JSON.parse(firstBody) as ObjectJson;
    assert.equal(first.headers.get('location'), `/api/buckets/replay/objects/${o.key}`);

    const replay = await postObject('replay', 'only once', key);
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(await replay.text(), firstBody);
    assert.equal(replay.headers.get('location'), first.headers.get('location'));
    assert.equal(replay.headers.get('etag'), first.headers.get('etag'));
    assert.equal(replay.headers.get('content-type'), first.headers.get('content-type'));
    assert.deepEqual(await listKeys('replay'), [o.key], 'one object, not two');

    // PUT …/objects/{key}: the replay does not make a second revision.
    const putObject = () => d.api('/api/buckets/replay/objects/fixed', { method: 'PUT', body: 'v1', headers: { 'idempotency-key': `${key}-put` } });
    const v1 = (await (await putObject()).json()) as ObjectJson;
    const v1Again = await putObject();
    assert.equal(v1Again.headers.get('idempotent-replayed'), 'true');
    assert.equal(((await v1Again.json()) as ObjectJson).revision, v1.revision);
    const { items } = (await (await d.api('/api/buckets/replay/objects/fixed?revisions')).json()) as { items: unknown[] };
    assert.equal(items.length, 1, 'one revision');
  });

  test('a replayed PUT /api/blobs/{digest} is the first answer (deduplicated: false), not a second upload', async () => {
    const data = randomData(2000);
    const key = randomUUID();
    const put = () => d.api(`/api/blobs/${sha256(data)}`, { method: 'PUT', body: data, headers: { 'idempotency-key': key } });
    const first = await put();
    assert.equal(first.status, 201);
    assert.deepEqual(await first.json(), { digest: sha256(data), size: data.length, deduplicated: false });
    const replay = await put();
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await replay.json(), { digest: sha256(data), size: data.length, deduplicated: false }, 'a re-run would say deduplicated: true');
    // Without the key the same PUT runs again.
    const rerun = await d.api(`/api/blobs/${sha256(data)}`, { method: 'PUT', body: data });
    assert.equal(((await rerun.json()) as { deduplicated: boolean }).deduplicated, true);
  });

  test('a replayed POST /api/blobs/uploads returns the same session and Upload-Token, and the token works', async () => {
    const key = randomUUID();
    const data = randomData(5000);
    const initiate = () => d.api(`/api/blobs/uploads?size=${data.length}&filename=idem.bin`, { method: 'POST', headers: { 'idempotency-key': key } });
    const first = await initiate();
    assert.equal(first.status, 202);
    const firstBody = (await first.json()) as { id: string; token: string };
    const replay = await initiate();
    assert.equal(replay.status, 202);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const replayBody = (await replay.json()) as { id: string; token: string };
    assert.deepEqual(replayBody, firstBody);
    assert.equal(replay.headers.get('upload-token'), firstBody.token);
    assert.equal(replay.headers.get('location'), first.headers.get('location'));

    const token = replay.headers.get('upload-token')!;
    const appended = await d.api(`/api/blobs/uploads/${replayBody.id}/append`, { method: 'POST', auth: false, headers: { 'upload-token': token }, body: data });
    assert.equal(appended.status, 203);
    const done = await d.api(`/api/blobs/uploads/${replayBody.id}/complete?digest=${sha256(data)}`, { method: 'POST', auth: false, headers: { 'upload-token': token } });
    assert.equal(done.status, 201);
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
  });

  test('a replayed POST /api/tokens returns the same token, which works; POST /api/signed-urls replays the URL', async () => {
    const key = randomUUID();
    const blob = randomData(100);
    assert.equal((await d.api('/api/blobs', { method: 'POST', body: blob })).status, 201);
    const name = `idem-${key}`;
    const make = () =>
      d.api('/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify({ name, scopes: ['blobs:read'] }) });
    const first = await make();
    assert.equal(first.status, 201);
    const t = (await first.json()) as TokenJson;
    const replay = await make();
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const again = (await replay.json()) as TokenJson;
    assert.deepEqual(again, t);
    const got = await as(d, again.token, `/api/blobs/${sha256(blob)}`);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(blob));
    assert.equal((await listTokens(d)).filter((x) => x.name === name).length, 1, 'one token made');

    const sign = () =>
      d.api('/api/signed-urls', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `${key}-sign` },
        body: JSON.stringify({ method: 'GET', path: `/api/blobs/${sha256(blob)}`, expires_in: 600 }),
      });
    const s1 = await sign();
    assert.equal(s1.status, 201);
    const s1Body = await s1.text();
    const s2 = await sign();
    assert.equal(s2.status, 201);
    assert.equal(s2.headers.get('idempotent-replayed'), 'true');
    assert.equal(await s2.text(), s1Body, 'the same URL');
  });

  test('the same key with a different request is 422 idempotency_key_reused, and nothing new is stored', async () => {
    const key = randomUUID();
    const a = randomData(1000);
    const b = randomData(1000);
    const post = (body: Buffer<ArrayBuffer>, headers: Record<string, string> = {}, query = '') =>
      d.api(`/api/blobs${query}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream', 'idempotency-key': key, ...headers } });
    const first = await post(a);
    assert.equal(first.status, 201);
    const firstBody = await first.text();

    const other = await post(b);
    assert.equal(other.status, 422, 'same length, different bytes');
    assert.equal(await errorCode(other), 'idempotency_key_reused');
    assert.equal((await d.api(`/api/blobs/${sha256(b)}`)).status, 404, 'the other body was not stored');

    const otherType = await post(a, { 'content-type': 'text/plain' });
    assert.equal(otherType.status, 422, 'different Content-Type');
    assert.equal(await errorCode(otherType), 'idempotency_key_reused');
    const otherQuery = await post(a, {}, '?temporary=true');
    assert.equal(otherQuery.status, 422, 'different query');
    assert.equal(await errorCode(otherQuery), 'idempotency_key_reused');

    const replay = await post(a);
    assert.equal(replay.status, 201, 'the key still replays its first request');
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(await replay.text(), firstBody);
  });

  test('the same key on a different path is 422 idempotency_key_reused', async () => {
    await bucket('path-one');
    await bucket('path-two');
    const key = randomUUID();
    assert.equal((await postObject('path-one', 'same', key)).status, 201);
    const other = await postObject('path-two', 'same', key);
    assert.equal(other.status, 422);
    assert.equal(await errorCode(other), 'idempotency_key_reused');
    assert.deepEqual(await listKeys('path-two'), [], 'nothing written to the other bucket');
    assert.equal((await listKeys('path-one')).length, 1);
  });

  test('different principals never share a key: each runs its own request', async () => {
    await bucket('shared');
    const one = await createToken(d, ['admin']);
    const two = await createToken(d, ['admin']);
    const key = randomUUID();
    const keys: string[] = [];
    for (const token of [one.token, two.token, d.token]) {
      const res = await postObject('shared', 'same body', key, token);
      assert.equal(res.status, 201);
      assert.notEqual(res.headers.get('idempotent-replayed'), 'true', 'not a replay of another principal');
      keys.push(((await res.json()) as ObjectJson).key);
    }
    assert.equal(new Set(keys).size, 3, 'three objects with their own keys');
    assert.deepEqual((await listKeys('shared')).sort(), [...keys].sort());
    const replay = await postObject('shared', 'same body', key, one.token);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(((await replay.json()) as ObjectJson).key, keys[0], 'each principal replays its own answer');
  });

  test('a failed request is not stored: after the cause is fixed, the same key runs and succeeds', async () => {
    const key = randomUUID();
    const missing = await postObject('late', 'hello', key);
    assert.equal(missing.status, 404);
    assert.equal(await errorCode(missing), 'bucket_not_found');
    await bucket('late');
    const ok = await postObject('late', 'hello', key);
    assert.equal(ok.status, 201);
    assert.notEqual(ok.headers.get('idempotent-replayed'), 'true');
    const body = await ok.text();
    const replay = await postObject('late', 'hello', key);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(await replay.text(), body);
    assert.equal((await listKeys('late')).length, 1);
  });

  test('the same key while the first request still runs is 409 idempotency_key_in_use', async () => {
    const key = randomUUID();
    const data = randomData(32 * MiB);
    const digest = sha256(data);
    const held = openRequest(`${d.url}/api/blobs`, 'POST', {
      authorization: `Bearer ${d.token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(data.length),
      'idempotency-key': key,
    });
    try {
      // 24 MiB handed to the kernel is more than the socket buffers hold: the daemon is reading the body,
      // so the first request is running.
      await held.write(data.subarray(0, 24 * MiB));
      // The same request again. It is refused before its body is read, so it sends its headers only (a
      // client still sending a body the server will not read may see the connection reset instead).
      const second = await sameRequestRefused(key, data.length);
      assert.equal(second.status, 409, second.body);
      assert.equal((JSON.parse(second.body) as { error: { code: string } }).error.code, 'idempotency_key_in_use');

      const first = await held.end(data.subarray(24 * MiB));
      assert.equal(first.status, 201, first.body);
      assert.equal((JSON.parse(first.body) as { digest: string }).digest, digest);
      // Node's fetch may reuse a kept-alive socket the daemon closes meanwhile (EPIPE on a POST); a fresh
      // connection asks the same thing.
      const again = openRequest(`${d.url}/api/blobs`, 'POST', {
        authorization: `Bearer ${d.token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(data.length),
        'idempotency-key': key,
      });
      const third = await again.end(data);
      assert.equal(third.status, 201, third.body);
      assert.equal(third.headers['idempotent-replayed'], 'true');
      assert.equal(third.body, first.body);
    } finally {
      // A failed assertion must not leave the request open (the daemon would wait for it at stop).
      held.destroy();
    }
  });

  test('a JSON body cut short releases the key: the retry runs (not a lasting 409)', async () => {
    const key = randomUUID();
    let body = JSON.stringify({ name: 'cut', scopes: ['blobs:read'] });
    body = body.replace('"cut"', `"cut${'x'.repeat(100 - body.length)}"`);
    assert.equal(body.length, 100);
    const cut = openRequest(`${d.url}/api/tokens`, 'POST', {
      authorization: `Bearer ${d.token}`, 'content-type': 'application/json', 'content-length': '100', 'idempotency-key': key,
    });
    await cut.write(Buffer.from(body.slice(0, 5)));
    cut.destroy();
    const retry = () => d.api('/api/tokens', { method: 'POST', body, headers: { 'content-type': 'application/json', 'idempotency-key': key } });
    const res = (await waitFor(async (): Promise<Response | null> => {
      const r = await retry();
      if (r.status !== 409) return r;
      await r.arrayBuffer();
      return null;
    }, 'the cut-short request to let go of its key'))!;
    assert.equal(res.status, 201, await res.clone().text());
  });

  test('a key that is empty, longer than 255 or not visible ASCII is 400 invalid_request', async () => {
    await bucket('keys');
    for (const [what, bad] of [
      ['empty', ''],
      ['256 chars', 'k'.repeat(256)],
      ['space inside', 'a b'],
      ['tab inside', 'a\tb'],
      ['latin-1 byte', 'caf\u00e9'],
    ] as const) {
      const res = await postObject('keys', 'x', bad);
      assert.equal(res.status, 400, what);
      assert.equal(await errorCode(res), 'invalid_request', what);
    }
    assert.deepEqual(await listKeys('keys'), [], 'nothing was written');
    for (const good of ['k'.repeat(255), '!~{}"\\#', 'a']) {
      const res = await postObject('keys', 'x', good);
      assert.equal(res.status, 201, JSON.stringify(good));
    }
  });

  test('a claim whose request died with the daemon (kill -9) does not hold the key after a restart', async () => {
    const key = randomUUID();
    const data = randomData(32 * MiB);
    const headers = { 'content-type': 'application/octet-stream', 'idempotency-key': key };
    const held = openRequest(`${d.url}/api/blobs`, 'POST', { ...headers, authorization: `Bearer ${d.token}`, 'content-length': String(data.length) });
    try {
      await held.write(data.subarray(0, 24 * MiB));
      const busy = await sameRequestRefused(key, data.length);
      assert.equal(busy.status, 409, `the key is claimed by the running request: ${busy.body}`);
      await d.kill9();
    } finally {
      held.destroy();
    }
    d = await startDaemon({ dataDir: d.dataDir });
    const retry = await d.api('/api/blobs', { method: 'POST', body: data, headers });
    assert.equal(retry.status, 201, 'nothing is running any more: the retry runs');
    assert.notEqual(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(((await retry.json()) as { digest: string }).digest, sha256(data));
    assert.equal((await d.api(`/api/blobs/${sha256(data)}`, { method: 'HEAD' })).status, 200);
  });

  test('the stored answer survives a restart', async () => {
    await bucket('durable');
    const key = randomUUID();
    const first = await postObject('durable', 'kept', key);
    assert.equal(first.status, 201);
    const body = await first.text();
    assert.equal(await d.stop(), 0);
    d = await startDaemon({ dataDir: d.dataDir });
    const replay = await postObject('durable', 'kept', key);
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(await replay.text(), body);
    assert.equal(replay.headers.get('location'), first.headers.get('location'));
    assert.equal((await listKeys('durable')).length, 1);
  });
});
