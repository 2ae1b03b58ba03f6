// Blobs by digest against the real daemon: round trips of every interesting size, digests agreeing with
// sha256sum, Range and conditional requests, dedup and mismatch on disk, limits, and JSON errors.
import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256, sha256sum } from './helpers/bytes.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { requestWithExpect } from './helpers/sessions.ts';
import { probeStore, type StoreProbe } from './helpers/store-probe.ts';

async function expectError(res: Response, status: number, code: string) {
  assert.equal(res.status, status, `status of ${res.url}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  return body.error as Record<string, unknown>;
}

describe('blobs by digest', () => {
  let d: Daemon;
  let scratch: string;
  let store: StoreProbe;
  const blobFiles = () => store.list();
  before(async () => {
    d = await startDaemon({ args: ['--max-blob-size', '60MiB'] });
    store = probeStore(d);
    scratch = await makeTempDir();
  });
  after(async () => {
    store.close();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
    await removeDir(scratch);
  });

  for (const size of [0, 1, 65535, 65536, 65537, 50 * 1024 * 1024]) {
    test(`round trip of ${size} bytes matches sha256sum`, async () => {
      const data = randomData(size);
      const file = path.join(scratch, `in-${size}`);
      await writeFile(file, data);
      const res = await d.api('/api/blobs', { method: 'POST', body: data });
      assert.equal(res.status, 201);
      const body = (await res.json()) as { digest: string; size: number; deduplicated: boolean };
      assert.equal(body.digest, sha256sum(file));
      assert.equal(body.size, size);
      assert.equal(res.headers.get('location'), `/api/blobs/${body.digest}`);

      const get = await d.api(`/api/blobs/${body.digest}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('content-length'), String(size));
      assert.equal(get.headers.get('etag'), `"${body.digest}"`);
      assert.match(get.headers.get('cache-control') ?? '', /immutable/);
      const back = Buffer.from(await get.arrayBuffer());
      assert.equal(back.length, size);
      assert.ok(back.equals(data), 'bytes read back equal bytes written');

      // The bare hex form names the same blob.
      const bare = await d.api(`/api/blobs/${body.digest.slice('sha256:'.length)}`, { method: 'HEAD' });
      assert.equal(bare.status, 200);
      assert.equal(bare.headers.get('content-length'), String(size));
    });
  }

  describe('ranges', () => {
    const data = randomData(1000);
    const digest = sha256(data);
    before(async () => {
      assert.equal((await d.api(`/api/blobs/${digest}`, { method: 'PUT', body: data })).status, 201);
    });

    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0], // first byte
      ['bytes=999-999', 999, 999], // last byte
      ['bytes=-10', 990, 999], // suffix
      ['bytes=-5000', 0, 999], // suffix longer than the blob
      ['bytes=990-', 990, 999], // open end
      ['bytes=100-199', 100, 199],
      ['bytes=900-5000', 900, 999], // end clamped
    ];
    for (const [range, start, end] of cases) {
      test(`${range} → 206 ${start}-${end}`, async () => {
        const res = await d.api(`/api/blobs/${digest}`, { headers: { range } });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/1000`);
        assert.equal(res.headers.get('content-length'), String(end - start + 1));
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(start, end + 1)));
      });
    }

    for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
      test(`${range} → 416`, async () => {
        const res = await d.api(`/api/blobs/${digest}`, { headers: { range } });
        assert.equal(res.headers.get('content-range'), 'bytes */1000');
        await expectError(res, 416, 'range_not_satisfiable');
      });
    }

    for (const range of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-1', 'bytes=abc']) {
      test(`${range} is ignored → full 200`, async () => {
        const res = await d.api(`/api/blobs/${digest}`, { headers: { range } });
        assert.equal(res.status, 200);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));
      });
    }

    test('If-Range with another ETag sends everything', async () => {
      const res = await d.api(`/api/blobs/${digest}`, { headers: { range: 'bytes=0-0', 'if-range': '"sha256:00"' } });
      assert.equal(res.status, 200);
      assert.equal((await res.arrayBuffer()).byteLength, 1000);
    });

    test('If-None-Match with the ETag → 304 without a body; another → 200', async () => {
      const hit = await d.api(`/api/blobs/${digest}`, { headers: { 'if-none-match': `W/"x", "${digest}"` } });
      assert.equal(hit.status, 304);
      assert.equal(hit.headers.get('etag'), `"${digest}"`);
      assert.equal((await hit.arrayBuffer()).byteLength, 0);
      const miss = await d.api(`/api/blobs/${digest}`, { headers: { 'if-none-match': '"sha256:other"' } });
      assert.equal(miss.status, 200);
      await miss.arrayBuffer();
    });

    test('HEAD answers the headers and no body', async () => {
      const res = await d.api(`/api/blobs/${digest}`, { method: 'HEAD', headers: { range: 'bytes=0-9' } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-length'), '10');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    });

    test('?filename= sets an RFC 6266 Content-Disposition', async () => {
      const res = await d.api(`/api/blobs/${digest}?filename=${encodeURIComponent('résumé "v2".pdf')}`);
      await res.arrayBuffer();
      assert.equal(
        res.headers.get('content-disposition'),
        `attachment; filename="r_sum_ _v2_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf`,
      );
    });
  });

  test('two uploads of the same bytes leave exactly one file (a blob over --inline-max)', async () => {
    const data = randomData(100_000);
    const digest = sha256(data);
    const first = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.deepEqual(await first.json(), { digest, size: 100_000, deduplicated: false });
    const second = await d.api('/api/blobs?temporary=true', { method: 'POST', body: data });
    assert.deepEqual(await second.json(), { digest, size: 100_000, deduplicated: true });
    const third = await d.api(`/api/blobs/${digest}`, { method: 'PUT', body: data });
    assert.equal(((await third.json()) as { deduplicated: boolean }).deduplicated, true);
    assert.equal(await store.copies(digest), 1, 'one stored copy');
    if (d.store === 'fs') {
      // Where and how the local store keeps it (an object store has no paths or modes).
      const hex = digest.slice(7);
      const file = path.join(d.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
      assert.equal((await stat(file)).mode & 0o777, 0o400, 'blob files are read-only, and only to their owner');
    }
    assert.deepEqual(await store.leftovers(), [], 'no staging file is left');
  });

  test('a digest mismatch keeps nothing', async () => {
    const data = randomData(2048);
    const wrong = sha256(Buffer.from('something else'));
    const before = await blobFiles();
    const res = await d.api(`/api/blobs/${wrong}`, { method: 'PUT', body: data });
    const err = await expectError(res, 400, 'digest_mismatch');
    assert.equal(err.expected, wrong);
    assert.equal(err.actual, sha256(data));
    assert.deepEqual(await blobFiles(), before);
    assert.deepEqual(await store.leftovers(), []);
    await expectError(await d.api(`/api/blobs/${sha256(data)}`), 404, 'blob_not_found');
  });

  test('a body over --max-blob-size is 413 and keeps nothing', async () => {
    const big = randomData(61 * 1024 * 1024);
    // Announced length over the limit: refused before a byte is sent (Expect: 100-continue).
    const early = await requestWithExpect(`${d.url}/api/blobs`, 'POST', { authorization: `Bearer ${d.token}` }, big);
    assert.equal(early.status, 413);
    assert.equal(early.continued, false, 'no 100 Continue for a body that will be refused');
    assert.equal((JSON.parse(early.body) as { error: { code: string } }).error.code, 'too_large');
    // An acceptable body with Expect: 100-continue is asked for, and stored.
    const fine = await requestWithExpect(`${d.url}/api/blobs`, 'POST', { authorization: `Bearer ${d.token}` }, big.subarray(0, 1000));
    assert.deepEqual([fine.status, fine.continued], [201, true]);
    const before = await blobFiles();
    // No announced length (chunked): refused while streaming.
    const chunked = new ReadableStream<Uint8Array>({
      start(ctl) {
        for (let i = 0; i < big.length; i += 1 << 20) ctl.enqueue(big.subarray(i, i + (1 << 20)));
        ctl.close();
      },
    });
    const res = await d
      .api('/api/blobs', { method: 'POST', body: chunked, duplex: 'half' } as RequestInit)
      .catch((err: Error) => err);
    if (res instanceof Response) await expectError(res, 413, 'too_large');
    assert.deepEqual(await blobFiles(), before);
    assert.deepEqual(await store.leftovers(), []);
    assert.equal((await d.api('/healthz')).status, 200);
  });

  test('malformed digests are 400 invalid_digest', async () => {
    for (const bad of ['abc', 'sha256:XYZ', `sha256:${'A'.repeat(64)}`, `md5:${'a'.repeat(32)}`, `${'a'.repeat(65)}`]) {
      await expectError(await d.api(`/api/blobs/${encodeURIComponent(bad)}`), 400, 'invalid_digest');
      await expectError(await d.api(`/api/blobs/${encodeURIComponent(bad)}`, { method: 'PUT', body: 'x' }), 400, 'invalid_digest');
    }
  });

  test('an absent blob is 404 blob_not_found, for GET and HEAD', async () => {
    const absent = sha256(Buffer.from('never uploaded'));
    await expectError(await d.api(`/api/blobs/${absent}`), 404, 'blob_not_found');
    const head = await d.api(`/api/blobs/${absent}`, { method: 'HEAD' });
    assert.equal(head.status, 404);
  });

  test('bad query values are 400 invalid_request in JSON', async () => {
    await expectError(await d.api('/api/blobs?temporary=maybe', { method: 'POST', body: 'x' }), 400, 'invalid_request');
  });

  test('every /api route needs the token: none → 401, wrong → 401', async () => {
    const digest = sha256(Buffer.from('x'));
    const routes: [string, string][] = [
      ['GET', `/api/blobs/${digest}`],
      ['HEAD', `/api/blobs/${digest}`],
      ['POST', '/api/blobs'],
      ['PUT', `/api/blobs/${digest}`],
    ];
    for (const [method, p] of routes) {
      const body = method === 'POST' || method === 'PUT' ? 'x' : undefined;
      const none = await d.api(p, { method, body, auth: false });
      assert.equal(none.status, 401, `${method} ${p} without a token`);
      if (method !== 'HEAD') await expectError(none, 401, 'unauthorized');
      const wrong = await d.api(p, { method, body, headers: { authorization: 'Bearer nope' } });
      assert.equal(wrong.status, 401);
      await wrong.arrayBuffer();
    }
    // The three ways to present a token all work.
    const ok1 = await d.api('/api/blobs', { method: 'POST', body: 'x', headers: { 'x-api-key': d.token } });
    const basic = Buffer.from(`${d.token}:`).toString('base64');
    const ok2 = await d.api('/api/blobs', { method: 'POST', body: 'x', headers: { authorization: `Basic ${basic}` } });
    assert.equal(ok1.status, 201);
    assert.equal(ok2.status, 201);
  });

  test('unknown routes and methods get a JSON 404', async () => {
    await expectError(await d.api('/nope'), 404, 'not_found');
    await expectError(await d.api('/api/blobs', { method: 'PATCH', body: 'x' }), 404, 'not_found');
  });

  test('If-Match: a listed ETag or * serves, anything else is 412', async () => {
    const data = randomData(100);
    const digest = sha256(data);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    for (const ok of [`"${digest}"`, '*', `"sha256:x", "${digest}"`]) {
      const res = await d.api(`/api/blobs/${digest}`, { headers: { 'if-match': ok } });
      assert.equal(res.status, 200, ok);
      await res.arrayBuffer();
    }
    await expectError(await d.api(`/api/blobs/${digest}`, { headers: { 'if-match': '"sha256:other"' } }), 412, 'precondition_failed');
    await expectError(await d.api(`/api/blobs/${digest}`, { headers: { 'if-match': `W/"${digest}"` } }), 412, 'precondition_failed');
  });

  test('an empty ?filename= sets no Content-Disposition', async () => {
    const digest = sha256(Buffer.from('x'));
    await (await d.api('/api/blobs', { method: 'POST', body: 'x' })).arrayBuffer();
    const res = await d.api(`/api/blobs/${digest}?filename=`);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-disposition'), null);
  });

  test('POST takes multipart/form-data: the part named file is stored, not the envelope', async () => {
    const form = new FormData();
    form.append('note', 'ignored');
    form.append('file', new Blob([Buffer.from('inside a form')]), 'a.txt');
    const res = await d.api('/api/blobs', { method: 'POST', body: form });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { digest: string }).digest, sha256(Buffer.from('inside a form')));
    const noFile = new FormData();
    noFile.append('other', 'x');
    await expectError(await d.api('/api/blobs', { method: 'POST', body: noFile }), 400, 'invalid_request');
    const before = await blobFiles();
    await expectError(await d.api(`/api/blobs/${sha256(Buffer.from('inside a form'))}`, { method: 'PUT', body: form }), 415, 'unsupported_media_type');
    await expectError(
      await d.api('/api/blobs', { method: 'POST', body: '--x\r\ngarbage', headers: { 'content-type': 'multipart/form-data; boundary=x' } }),
      400,
      'invalid_request',
    );
    assert.deepEqual(await blobFiles(), before);
  });

  test('a Content-Length beyond any limit (even past 2^53) is 413 up front', async () => {
    // (20 digits do not even parse: Node's HTTP parser answers 400, through our JSON clientError.)
    const res = await requestWithExpect(
      `${d.url}/api/blobs`,
      'POST',
      { authorization: `Bearer ${d.token}`, 'content-length': '99999999999999999' },
      Buffer.alloc(0),
    );
    assert.equal(res.status, 413);
    assert.equal(res.continued, false);
  });

  test('auth header forms: a tab after Bearer works; another scheme says so', async () => {
    await (await d.api('/api/blobs', { method: 'POST', body: 'x' })).arrayBuffer();
    const tab = await d.api(`/api/blobs/${sha256(Buffer.from('x'))}`, { method: 'HEAD', headers: { authorization: `Bearer\t${d.token}` } });
    assert.equal(tab.status, 200);
    const other = await d.api('/api/blobs', { method: 'POST', body: 'x', headers: { authorization: 'Digest abc' } });
    assert.equal(other.status, 401);
    assert.match(((await other.json()) as { error: { message: string } }).error.message, /unsupported Authorization scheme/);
  });

  test('a blob file shorter than its row cuts the download instead of hanging', async () => {
    const data = randomData(200_000);
    const digest = sha256(data);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    await store.overwrite(digest, data.subarray(0, 1000));
    const res = await d.api(`/api/blobs/${digest}`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);
    await assert.rejects(res.arrayBuffer(), (err: Error) => err.name !== 'TimeoutError', 'the body errors, it does not hang');
  });

  test('downloads that share the daemon never mix chunks: 6 slow concurrent full and ranged reads of 24 MiB', async () => {
    // The download path reuses two buffers per download: a buffer read into again before the socket took
    // its last chunk would show here. The readers are slow, so the kernel's socket buffers fill up.
    const data = randomData(24 * 1024 * 1024 + 12345);
    const digest = sha256(data);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    const ranges: [number, number][] = [[0, data.length - 1], [1, 20 * 1024 * 1024], [1024 * 1024 - 1, 22 * 1024 * 1024], [data.length - 7, data.length - 1]];
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const [start, end] = ranges[i % ranges.length]!;
        const res = await d.api(`/api/blobs/${digest}`, { headers: { range: `bytes=${start}-${end}` } });
        assert.equal(res.status, 206);
        const chunks: Buffer[] = [];
        for await (const chunk of res.body!) {
          chunks.push(Buffer.from(chunk));
          await new Promise((r) => setTimeout(r, 2));
        }
        assert.equal(sha256(Buffer.concat(chunks)), sha256(data.subarray(start, end + 1)));
      }),
    );
  });

  test('a download the client abandons midway closes its file', async () => {
    const data = randomData(40 * 1024 * 1024);
    const digest = sha256(data);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    // Descriptors of the blob file (local store), or connections to the object store with unread bytes (S3).
    const openOnBlob = () => store.openHandles(d.proc.pid!, digest);
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      const res = await d.api(`/api/blobs/${digest}`, { signal: ac.signal });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      await reader.read(); // some bytes arrived: the copy is under way
      ac.abort();
    }
    // Connections reset (RST) at once after the first bytes, many times: a write the reset socket drops
    // never calls back, and a copy waiting on it would hold the file open for good.
    for (let i = 0; i < 60; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = request(`${d.url}/api/blobs/${digest}`, { headers: { authorization: `Bearer ${d.token}` } }, (res) => {
          res.once('data', () => {
            res.socket.resetAndDestroy();
            resolve();
          });
        });
        req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve() : reject(err)));
        req.end();
      });
    }
    const deadline = Date.now() + 10_000;
    while ((await openOnBlob()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await openOnBlob(), 0, 'no descriptor of the blob file is left open');
    // And the daemon still serves it whole.
    const again = await d.api(`/api/blobs/${digest}`);
    assert.equal(sha256(Buffer.from(await again.arrayBuffer())), digest);
  });

  test('the blob file holds exactly the bytes (read from disk)', async () => {
    const data = randomData(777);
    const digest = sha256(data);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    const stored = await store.read(digest);
    assert.ok(stored?.equals(data));
  });
});
