// tus 1.0 against the real daemon, driven by the real tus-js-client: chunked uploads, abort and resume from
// the upload URL, creation-with-upload, deferred length, termination, uploads into a bucket; and raw
// requests for every status the protocol names (412, 409, 415, 413, 404, 410, 460). A tus upload is an
// upload session: its id and token answer the native status route.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as tus from 'tus-js-client';
import { createToken } from './helpers/access.ts';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('tus 1.0 over upload sessions', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ args: ['--max-blob-size', '50MiB'] });
    assert.equal((await d.api('/api/buckets/tusb', { method: 'PUT' })).status, 201);
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  /** Run one tus-js-client upload to its end; resolves with the upload URL. */
  function upload(input: Buffer | Readable, options: Partial<tus.UploadOptions> = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const up: tus.Upload = new tus.Upload(input, {
        endpoint: `${d.url}/api/tus/`,
        headers: { authorization: `Bearer ${d.token}` },
        retryDelays: [],
        ...options,
        onError: reject,
        onSuccess: () => resolve(up.url!),
      });
      up.start();
    });
  }

  /** Start a chunked tus-js-client upload and abort it (`terminate`: with termination) once `stop` says so. */
  function abortWhen(data: Buffer, stop: (sent: number) => boolean, terminate: boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      let stopped = false;
      const up: tus.Upload = new tus.Upload(data, {
        endpoint: `${d.url}/api/tus/`,
        headers: { authorization: `Bearer ${d.token}` },
        chunkSize: 32 * 1024,
        retryDelays: [],
        onError: reject,
        onSuccess: () => reject(new Error('should have been aborted first')),
        onChunkComplete: (_chunk, sent) => {
          if (stopped || !stop(sent)) return;
          stopped = true;
          void up.abort(terminate).then(() => resolve(up.url!), reject);
        },
      });
      up.start();
    });
  }

  const head = (url: string) => fetch(url, { method: 'HEAD', headers: TUS });
  const digestOf = async (url: string) => (await head(url)).headers.get('blobd-digest');
  const blob = async (digest: string) => Buffer.from(await (await d.api(`/api/blobs/${digest}`)).arrayBuffer());

  test('tus-js-client: a chunked upload becomes a blob with the right digest', async () => {
    const data = randomData(300 * 1024 + 7);
    const url = await upload(data, { chunkSize: 64 * 1024, metadata: { filename: 'chunks.bin' } });
    assert.equal(await digestOf(url), sha256(data));
    assert.ok((await blob(sha256(data))).equals(data));
    const pins = (await (await d.api('/api/blobs')).json()) as { items: { digest: string }[] };
    assert.ok(pins.items.some((p) => p.digest === sha256(data)), 'pinned for the uploader, like a native session');
  });

  test('tus-js-client: abort mid-way, then resume from the upload URL; the daemon kept what it acknowledged', async () => {
    const data = randomData(512 * 1024);
    const url = await abortWhen(data, (sent) => sent >= 160 * 1024, false);
    const offset = Number((await head(url)).headers.get('upload-offset'));
    assert.ok(offset >= 160 * 1024 && offset < data.length, `kept ${offset}`);
    let firstPatchOffset = -1;
    const resumed = await upload(data, {
      uploadUrl: url,
      chunkSize: 32 * 1024,
      onBeforeRequest: (req) => {
        if (req.getMethod() === 'PATCH' && firstPatchOffset < 0) firstPatchOffset = Number(req.getHeader('Upload-Offset'));
      },
    });
    assert.equal(resumed, url);
    assert.equal(firstPatchOffset, offset, 'resumed where the daemon said, not from 0');
    assert.equal(await digestOf(url), sha256(data));
    assert.ok((await blob(sha256(data))).equals(data));
  });

  test('tus-js-client: creation-with-upload, and a deferred length from a stream', async () => {
    const small = randomData(20_000);
    const url = await upload(small, { uploadDataDuringCreation: true });
    assert.equal(await digestOf(url), sha256(small));

    const streamed = randomData(200 * 1024);
    const deferredUrl = await upload(Readable.from([streamed.subarray(0, 70_000), streamed.subarray(70_000)]), {
      uploadLengthDeferred: true,
      chunkSize: 64 * 1024,
    });
    assert.equal(await digestOf(deferredUrl), sha256(streamed));
    assert.ok((await blob(sha256(streamed))).equals(streamed));
  });

  test('tus-js-client: metadata bucket/key/filetype writes an object revision', async () => {
    const data = randomData(10_000);
    await upload(data, { metadata: { bucket: 'tusb', key: 'docs/report.pdf', filename: 'report.pdf', filetype: 'application/pdf' } });
    const meta = (await (await d.api('/api/buckets/tusb/objects/docs/report.pdf?metadata')).json()) as Record<string, unknown>;
    assert.deepEqual([meta.digest, meta.size, meta.filename, meta.content_type, meta.revision], [sha256(data), data.length, 'report.pdf', 'application/pdf', 1]);
  });

  test('tus-js-client: termination; afterwards the upload URL is 404 and its bytes are gone', async () => {
    const data = randomData(256 * 1024);
    const url = await abortWhen(data, () => true, true);
    const res = await head(url);
    assert.equal(res.status, 404);
    const patch = await fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'x' });
    assert.equal(patch.status, 404);
    assert.equal(await errorCode(patch), 'upload_not_found');
  });

  test('a tus upload is an upload session: its id and token answer the native status route', async () => {
    const created = await d.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': '10' } });
    assert.equal(created.status, 201);
    const location = created.headers.get('location')!;
    const [id, token] = location.slice('/api/tus/'.length).split('.') as [string, string];
    await fetch(d.url + location, { method: 'PATCH', headers: { ...TUS, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abcd' });
    const status = await d.api(`/api/blobs/uploads/${id}/status`, { headers: { 'upload-token': token } });
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('upload-offset'), '4');
    assert.equal(status.headers.get('upload-length'), '10');
    // And the other way: the native complete route finishes what tus started.
    const native = await d.api(`/api/blobs/uploads/${id}/complete`, { method: 'POST', headers: { 'upload-token': token, 'upload-offset': '4' }, body: 'efghij' });
    assert.equal(native.status, 201);
    assert.equal(((await native.json()) as { digest: string }).digest, sha256(Buffer.from('abcdefghij')));
    // The tus URL with the token in Upload-Token instead of the path works too.
    const byHeader = await fetch(`${d.url}/api/tus/${id}`, { method: 'HEAD', headers: { ...TUS, 'upload-token': token } });
    assert.equal(byHeader.headers.get('upload-offset'), '10');
  });

  describe('raw requests: every status the protocol names', () => {
    const create = async (length = 100, headers: Record<string, string> = {}) => {
      const res = await d.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': String(length), ...headers } });
      assert.equal(res.status, 201, await res.clone().text());
      return d.url + res.headers.get('location')!;
    };
    const patch = (url: string, offset: number, body: BodyInit, headers: Record<string, string> = {}) =>
      fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', ...headers }, body });
    const offsetOf = async (url: string) => Number((await head(url)).headers.get('upload-offset'));

    test('OPTIONS: discovery needs no credential', async () => {
      const res = await fetch(`${d.url}/api/tus/`, { method: 'OPTIONS' });
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('tus-version'), '1.0.0');
      assert.equal(res.headers.get('tus-max-size'), String(50 * 1024 * 1024));
      assert.deepEqual(res.headers.get('tus-extension')!.split(','), ['creation', 'creation-with-upload', 'creation-defer-length', 'termination', 'checksum', 'expiration']);
      assert.equal(res.headers.get('tus-checksum-algorithm'), 'sha256,sha1,md5');
    });

    test('412 without or with a wrong Tus-Resumable, with Tus-Version', async () => {
      const url = await create();
      for (const headers of [{}, { 'tus-resumable': '0.2.2' }] as Record<string, string>[]) {
        for (const res of [await fetch(url, { method: 'HEAD', headers }), await d.api('/api/tus/', { method: 'POST', headers: { 'upload-length': '1', ...headers } })]) {
          assert.equal(res.status, 412);
          assert.equal(res.headers.get('tus-version'), '1.0.0');
        }
      }
    });

    test('409 on a wrong Upload-Offset (nothing written), 415 on another Content-Type, 400 without Upload-Offset', async () => {
      const url = await create();
      assert.equal((await patch(url, 0, 'hello')).status, 204);
      const wrong = await patch(url, 2, 'xx');
      assert.equal(wrong.status, 409);
      assert.equal(await errorCode(wrong), 'offset_mismatch');
      const typed = await fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': '5', 'content-type': 'application/octet-stream' }, body: 'xx' });
      assert.equal(typed.status, 415);
      const noOffset = await fetch(url, { method: 'PATCH', headers: { ...TUS, 'content-type': 'application/offset+octet-stream' }, body: 'xx' });
      assert.equal(noOffset.status, 400);
      assert.equal(await offsetOf(url), 5);
    });

    test('413 past Tus-Max-Size at creation, and past Upload-Length in a PATCH (nothing of it kept)', async () => {
      const big = await d.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': String(51 * 1024 * 1024) } });
      assert.equal(big.status, 413);
      assert.equal(await errorCode(big), 'too_large');
      const url = await create(10);
      const over = await patch(url, 0, 'twelve bytes');
      assert.equal(over.status, 413);
      assert.equal(await offsetOf(url), 0);
    });

    test('460 on a checksum mismatch with nothing written; a matching checksum of each algorithm is kept', async () => {
      const url = await create(9);
      const bad = await patch(url, 0, 'abc', { 'upload-checksum': `sha256 ${b64('not the digest of abc, not even 32 b')}` });
      assert.equal(bad.status, 460);
      assert.equal(await errorCode(bad), 'checksum_mismatch');
      assert.equal(await offsetOf(url), 0, 'nothing of it was kept');
      const { createHash } = await import('node:crypto');
      let offset = 0;
      for (const [algorithm, part] of [['sha256', 'abc'], ['sha1', 'def'], ['md5', 'ghi']] as const) {
        const sum = createHash(algorithm).update(part).digest('base64');
        const res = await patch(url, offset, part, { 'upload-checksum': `${algorithm} ${sum}` });
        assert.equal(res.status, 204, algorithm);
        offset += 3;
      }
      assert.equal(await digestOf(url), sha256(Buffer.from('abcdefghi')));
      const unknown = await patch(await create(3), 0, 'abc', { 'upload-checksum': `crc32 ${b64('1234')}` });
      assert.equal(unknown.status, 400);
    });

    test('404 for unknown uploads and a wrong token is 403; 401 to create without a credential', async () => {
      assert.equal((await head(`${d.url}/api/tus/01a22f8d-823e-76e6-9a5b-c60fc3c3caa7.nope`)).status, 404);
      const url = await create();
      assert.equal((await head(url.replace(/\.[^.]+$/, '.wrong-token'))).status, 403);
      assert.equal((await head(url.replace(/\.[^.]+$/, ''))).status, 401);
      const anon = await fetch(`${d.url}/api/tus/`, { method: 'POST', headers: { ...TUS, 'upload-length': '1' } });
      assert.equal(anon.status, 401);
    });

    test('a signed URL for POST /api/tus/ lets a tokenless client create and upload', async () => {
      const writer = await createToken(d, ['blobs:write']);
      const signed = await d.api('/api/signed-urls', {
        method: 'POST',
        headers: { authorization: `Bearer ${writer.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ method: 'POST', path: '/api/tus/', expires_in: 600, max_size: 1000 }),
      });
      assert.equal(signed.status, 201, await signed.clone().text());
      const { url } = (await signed.json()) as { url: string };
      const data = randomData(900);
      const uploadUrl = await new Promise<string>((resolve, reject) => {
        const up: tus.Upload = new tus.Upload(data, { endpoint: url, retryDelays: [], onError: reject, onSuccess: () => resolve(up.url!) });
        up.start();
      });
      assert.equal(await digestOf(uploadUrl), sha256(data));
      const tooBig = await fetch(url, { method: 'POST', headers: { ...TUS, 'upload-length': '1001' } });
      assert.equal(tooBig.status, 413, "the URL's max_size binds the upload");
    });
  });
});

describe('tus: expiry and limits', () => {
  test('410 Gone once the upload expired; 507 when a declared length cannot be reserved', async () => {
    const d = await startDaemon({ args: ['--upload-ttl', '1s'] });
    try {
      const sent = Date.now();
      const res = await d.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': '5' } });
      const received = Date.now();
      assert.equal(res.status, 201);
      const expires = Date.parse(res.headers.get('upload-expires')!);
      // The TTL (1 s) from a moment between sending and receiving, in an HTTP date's whole seconds: on a
      // loaded machine the answer itself may take longer than the TTL.
      assert.ok(expires >= Math.floor((sent + 1000) / 1000) * 1000 && expires <= received + 1000, `Upload-Expires is the TTL away: ${expires - sent} ms after sending, ${received - sent} ms to answer`);
      const url = d.url + res.headers.get('location')!;
      await waitFor(async () => (await fetch(url, { method: 'HEAD', headers: TUS })).status !== 200, 'the upload to expire');
      const gone = await fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
      assert.ok(gone.status === 410 || gone.status === 404, `${gone.status}`);
      if (gone.status === 410) assert.equal(await errorCode(gone), 'upload_gone');
    } finally {
      await d.stop();
      await removeDir(d.dataDir);
    }
    const full = await startDaemon({ args: ['--min-free', '1000TiB'] });
    try {
      const res = await full.api('/api/tus/', { method: 'POST', headers: { ...TUS, 'upload-length': '5' } });
      assert.equal(res.status, 507);
      assert.equal(await errorCode(res), 'insufficient_storage');
    } finally {
      await full.stop();
      await removeDir(full.dataDir);
    }
  });
});

describe('tus: targets, failed completions and what the log keeps', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ args: ['--log-level', 'info'] });
    for (const b of ['docs', 'secret']) assert.equal((await d.api(`/api/buckets/${b}`, { method: 'PUT' })).status, 201);
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });
  const create = (headers: Record<string, string>, path = '/api/tus/', init: RequestInit = {}) =>
    d.api(path, { method: 'POST', ...init, headers: { ...TUS, ...headers, ...(init.headers as Record<string, string>) } });
  const patch = (url: string, offset: number, body: BodyInit, headers: Record<string, string> = {}) =>
    fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', ...headers }, body });
  const sessionCount = async () => ((await (await d.api('/api/blobs/uploads')).json()) as { items: unknown[] }).items.length;

  test('a completion that fails is never reported as offset == length: HEAD answers its error', async () => {
    const res = await create({ 'upload-length': '3', 'upload-metadata': `digest ${b64(`sha256:${'0'.repeat(64)}`)}` });
    const url = d.url + res.headers.get('location')!;
    const last = await patch(url, 0, 'abc');
    assert.equal(last.status, 400);
    assert.equal(await errorCode(last), 'digest_mismatch');
    const h = await fetch(url, { method: 'HEAD', headers: TUS });
    assert.equal(h.status, 400, 'not 200 with Upload-Offset: 3 of 3');
    assert.equal(h.headers.get('blobd-digest'), null);
  });

  test('Upload-Concat is refused before anything is created (parallel uploads would store halves)', async () => {
    const before = await sessionCount();
    for (const concat of ['partial', 'final;/api/tus/a /api/tus/b']) {
      const res = await create({ 'upload-length': '3', 'upload-concat': concat });
      assert.equal(res.status, 400, concat);
    }
    assert.equal(await sessionCount(), before);
  });

  test('a signed creation URL fixes the bucket and key; metadata cannot move it, and a bucket-only token can sign it', async () => {
    const { createToken } = await import('./helpers/access.ts');
    const writer = await createToken(d, ['bucket:docs:write', 'bucket:secret:write']);
    const pinner = await createToken(d, ['blobs:write', 'bucket:secret:write']);
    const sign = async (path: string, token = writer.token) => {
      const res = await d.api('/api/signed-urls', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ method: 'POST', path, expires_in: 600, max_size: 100 }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      return ((await res.json()) as { url: string }).url;
    };
    const into = await sign('/api/tus/?bucket=docs&key=signed.txt');
    const elsewhere = `bucket ${b64('secret')},key ${b64('x/y.html')}`;
    // A URL signed into docs, and one signed for a pin by a token that may also write secret: neither moves.
    for (const url of [into, await sign('/api/tus/', pinner.token)]) {
      const moved = await fetch(url, { method: 'POST', headers: { ...TUS, 'upload-length': '5', 'upload-metadata': elsewhere } });
      assert.equal(moved.status, 403, url);
      assert.equal(await errorCode(moved), 'signature_invalid');
    }
    assert.equal((await d.api('/api/buckets/secret/objects/x/y.html')).status, 404);
    const ok = await fetch(into, { method: 'POST', headers: { ...TUS, 'upload-length': '5' } });
    assert.equal(ok.status, 201);
    assert.equal((await patch(d.url + ok.headers.get('location')!, 0, 'hello')).status, 204);
    assert.equal(await (await d.api('/api/buckets/docs/objects/signed.txt')).text(), 'hello');
  });

  test('a content type that is not a header value is refused; so is one through ?content_type= of a session', async () => {
    const res = await create({ 'upload-length': '3', 'upload-metadata': `filetype ${b64('text/plain\r\nX-Evil: 1')}` });
    assert.equal(res.status, 400);
    const native = await d.api(`/api/blobs/uploads?content_type=${encodeURIComponent('text/plain\r\nX-Evil: 1')}`, { method: 'POST' });
    assert.equal(native.status, 400);
  });

  test('a refused PATCH changes nothing; a retried last PATCH of a completed upload is answered again', async () => {
    const res = await create({ 'upload-defer-length': '1' });
    const url = d.url + res.headers.get('location')!;
    const wrong = await patch(url, 5, 'abc', { 'upload-length': '3' });
    assert.equal(wrong.status, 409);
    const h = await fetch(url, { method: 'HEAD', headers: TUS });
    assert.equal(h.headers.get('upload-defer-length'), '1', 'the length was not declared by the refused PATCH');
    assert.equal((await patch(url, 0, 'abc', { 'upload-length': '3' })).status, 204);
    const again = await fetch(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': '3', 'content-type': 'application/offset+octet-stream' } });
    assert.equal(again.status, 204);
    assert.equal(again.headers.get('upload-offset'), '3');
    // The last PATCH resent as it was (offset 0, its body): 409 with the final offset, as tusd answers — never
    // 404, which tells a client the upload is gone. At the final offset with a body: 204 again.
    const resent = await patch(url, 0, 'abc');
    assert.equal(resent.status, 409);
    assert.equal(resent.headers.get('upload-offset'), '3');
    assert.equal(await errorCode(resent), 'offset_mismatch');
    const atEnd = await patch(url, 3, 'more');
    assert.equal(atEnd.status, 204);
    assert.equal(atEnd.headers.get('upload-offset'), '3');
  });

  test('a PATCH stalled on a dead connection is cut by the next one (tusd); a busy upload is otherwise 423, not 409', async () => {
    const data = randomData(100_000);
    const res = await create({ 'upload-length': String(data.length) });
    const url = new URL(d.url + res.headers.get('location')!);
    // A PATCH that sends half its declared body and then stalls holds the upload.
    const { request } = await import('node:http');
    const stall = (offset: number, part: Buffer) => {
      const req = request(url, { method: 'PATCH', headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', 'content-length': String(data.length - offset) } });
      req.on('error', () => {});
      req.write(part);
      return req;
    };
    const [id, token] = url.pathname.split('/').pop()!.split('.');
    // A native append at a wrong offset writes nothing; once the stalled PATCH holds the upload it is locked out.
    const nativeLocked = async () => {
      const headers = { 'upload-token': token!, 'upload-offset': '99999', 'content-type': 'application/octet-stream' };
      const r = await d.api(`/api/blobs/uploads/${id}/append`, { method: 'POST', auth: false, headers, body: 'x' });
      return r.status === 409 && (await errorCode(r)) === 'upload_locked';
    };
    const stalled = stall(0, data.subarray(0, 50_000));
    try {
      await waitFor(nativeLocked, 'the stalled PATCH to hold the upload (the native routes say 409)');
      // A DELETE does not take over: 423, and the upload stays.
      const busy = await fetch(url, { method: 'DELETE', headers: TUS });
      assert.equal(busy.status, 423);
      assert.equal(await errorCode(busy), 'upload_locked');
      assert.equal(busy.headers.get('tus-resumable'), '1.0.0');
      // The client, on a new connection, resumes from the offset it last saw: the stalled PATCH is cut, what it
      // had sent is kept, and the new PATCH learns the offset from a 409 — as from tusd.
      const resumed = await patch(url.href, 0, data);
      assert.equal(resumed.status, 409);
      const kept = Number(resumed.headers.get('upload-offset'));
      assert.ok(kept > 0 && kept <= 50_000, `the cut PATCH's bytes were kept: ${kept}`);
      const done = await patch(url.href, kept, data.subarray(kept));
      assert.equal(done.status, 204);
      assert.equal(done.headers.get('blobd-digest'), sha256(data));
    } finally {
      stalled.destroy();
    }
  });

  test('metadata keys like toString are plain keys; HEAD echoes all the metadata', async () => {
    const res = await create({ 'upload-length': '1', 'upload-metadata': `toString ${b64('x')},bucket ${b64('docs')},key ${b64('meta.txt')},temporary ${b64('false')}` });
    assert.equal(res.status, 201);
    const h = await fetch(d.url + res.headers.get('location')!, { method: 'HEAD', headers: TUS });
    const echoed = Object.fromEntries(h.headers.get('upload-metadata')!.split(',').map((p) => p.split(' ')).map(([k, v]) => [k, Buffer.from(v!, 'base64').toString()]));
    assert.deepEqual([echoed.bucket, echoed.key], ['docs', 'meta.txt']);
  });

  test('Idempotency-Key on a creation: the retry gets the same upload URL, marked replayed; one session', async () => {
    const before = await sessionCount();
    const headers = { 'upload-length': '4', 'idempotency-key': `tus-${Date.now()}` };
    const first = await create(headers);
    const again = await create(headers);
    assert.deepEqual([first.status, again.status], [201, 201]);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.headers.get('location'), first.headers.get('location'));
    // A replay is a tus answer like the first one.
    assert.equal(again.headers.get('tus-resumable'), '1.0.0');
    assert.equal(again.headers.get('upload-length'), '4');
    assert.equal(await sessionCount(), before + 1);
    // The same key for another upload (another length, other metadata) is 422, not the first upload again.
    const otherLength = await create({ ...headers, 'upload-length': '5' });
    assert.equal(otherLength.status, 422);
    assert.equal(await errorCode(otherLength), 'idempotency_key_reused');
    const otherTarget = await create({ ...headers, 'upload-metadata': `bucket ${b64('tusb')},key ${b64('elsewhere')}` });
    assert.equal(otherTarget.status, 422);
    assert.equal(await sessionCount(), before + 1);
  });

  test('the upload token never reaches the log, though the upload URL carries it', async () => {
    const res = await create({ 'upload-length': '2' });
    const location = res.headers.get('location')!;
    const token = location.split('.').at(-1)!;
    await patch(d.url + location, 0, 'ab');
    await fetch(d.url + location, { method: 'HEAD', headers: TUS });
    // Nor where the URL does not route: a proxy's prefix left on, a doubled slash (sent as written).
    const raw = (target: string) =>
      new Promise<number>((resolve, reject) => {
        const { hostname, port } = new URL(d.url);
        const req = httpRequest({ hostname, port, path: target, method: 'HEAD', headers: TUS }, (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode!));
        });
        req.on('error', reject);
        req.end();
      });
    for (const target of [`/blobd${location}`, `/${location}`, location.replace('/api/tus/', '/api/tus//')]) assert.equal(await raw(target), 404, target);
    await waitFor(() => (d.output().match(/"status":404/g) ?? []).length >= 3, 'the 404 lines in the log');
    await waitFor(() => d.output().includes(location.split('.')[0]!.slice('/api/tus/'.length)), 'the request lines in the log');
    assert.ok(!d.output().includes(token), 'no upload token in the log');
  });
});
