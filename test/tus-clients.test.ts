// tus as real clients use it: the client's own Upload-Metadata keys (Uppy's name, type, relativePath) are
// kept with the session and returned by HEAD as sent, across a restart, within a bound; any valid base64
// value is accepted and invalid base64 refused; and a creation-with-upload whose body is refused leaves
// no session behind (no Location, no listing, no reservation).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tus from 'tus-js-client';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { heldBody } from './helpers/sessions.ts';
import { waitFor } from './helpers/wait.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const OFFSET_TYPE = 'application/offset+octet-stream';
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('tus: what clients send is what HEAD returns', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  const create = (headers: Record<string, string>, init: RequestInit = {}, url = '/api/tus/') =>
    d.api(url, { method: 'POST', ...init, headers: { ...TUS, ...headers } });
  const head = (location: string) => fetch(d.url + location, { method: 'HEAD', headers: TUS });
  const openSessions = async () =>
    ((await (await d.api('/api/blobs/uploads?limit=1000')).json()) as { items: { id: string }[] }).items.map((s) => s.id);

  test("HEAD returns the client's own metadata keys as sent, and after a restart", async () => {
    const sent = 'filename dHVzLnR4dA==,filetype dGV4dC9wbGFpbg==,custom eHl6,is_confidential';
    const res = await create({ 'upload-length': '3', 'upload-metadata': sent });
    assert.equal(res.status, 201, await res.clone().text());
    const location = res.headers.get('location')!;
    assert.equal((await head(location)).headers.get('upload-metadata'), sent);

    // Uppy's keys through tus-js-client, completed, and HEAD after the upload is done.
    const data = randomData(5000);
    const uppy = { name: 'photo.jpg', type: 'image/jpeg', relativePath: 'album/2024/photo.jpg', filename: 'photo.jpg', filetype: 'image/jpeg' };
    const url = await new Promise<string>((resolve, reject) => {
      const up: tus.Upload = new tus.Upload(data, {
        endpoint: `${d.url}/api/tus/`,
        headers: { authorization: `Bearer ${d.token}` },
        metadata: uppy,
        retryDelays: [],
        onError: reject,
        onSuccess: () => resolve(up.url!),
      });
      up.start();
    });
    const done = await fetch(url, { method: 'HEAD', headers: TUS });
    assert.equal(done.headers.get('blobd-digest'), sha256(data));
    const returned = Object.fromEntries(
      done.headers.get('upload-metadata')!.split(',').map((pair) => {
        const [k, v] = pair.split(' ');
        return [k, Buffer.from(v!, 'base64').toString('utf8')];
      }),
    );
    assert.deepEqual(returned, uppy);

    // The session row keeps it: a restarted daemon returns the same.
    await d.stop();
    d = await startDaemon({ dataDir: d.dataDir });
    const again = await head(location);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('upload-metadata'), sent);
  });

  test('Upload-Metadata is bounded: 8 KiB is kept, one byte more is a 400 and creates nothing', async () => {
    const at = `big ${'A'.repeat(8192 - 'big '.length)}`; // 8188 = 4 × 2047 'A's: valid base64
    assert.equal(at.length, 8192);
    const ok = await create({ 'upload-length': '1', 'upload-metadata': at });
    assert.equal(ok.status, 201, await ok.clone().text());
    assert.equal((await head(ok.headers.get('location')!)).headers.get('upload-metadata'), at);

    const before = await openSessions();
    const over = await create({ 'upload-length': '1', 'upload-metadata': `${at},x` });
    assert.equal(over.status, 400);
    assert.equal(await errorCode(over), 'invalid_request');
    assert.equal(over.headers.get('location'), null);
    assert.deepEqual(await openSessions(), before);
  });

  test('any valid base64 value is accepted and returned verbatim, UTF-8 or not', async () => {
    const binary = await create({ 'upload-length': '1', 'upload-metadata': 'blob /w==,empty ,bare' });
    assert.equal(binary.status, 201, `a value that is not UTF-8: ${await binary.clone().text()}`);
    assert.equal((await head(binary.headers.get('location')!)).headers.get('upload-metadata'), 'blob /w==,empty ,bare');
  });

  test('a value that is not base64 is refused', async () => {
    for (const bad of ['filename aGkhx', 'x a===', 'x abc', 'x ab=c', 'x =', 'x a', 'x ab!=']) {
      const res = await create({ 'upload-length': '1', 'upload-metadata': bad });
      assert.equal(res.status, 400, bad);
      assert.equal(await errorCode(res), 'invalid_request', bad);
    }
    // The keys blobd interprets must be UTF-8 for their meaning.
    for (const key of ['filename', 'filetype', 'bucket', 'key', 'temporary', 'digest']) {
      const res = await create({ 'upload-length': '1', 'upload-metadata': `${key} /w==` });
      assert.equal(res.status, 400, key);
    }
  });

  test('X-HTTP-Method-Override: tus-js-client with overridePatchMethod uploads; DELETE terminates; nothing else', async () => {
    const data = randomData(100_000);
    const methods: string[] = [];
    const url = await new Promise<string>((resolve, reject) => {
      const up: tus.Upload = new tus.Upload(data, {
        endpoint: `${d.url}/api/tus/`,
        headers: { authorization: `Bearer ${d.token}` },
        overridePatchMethod: true,
        chunkSize: 40_000,
        retryDelays: [],
        onBeforeRequest: (req) => void methods.push(`${req.getMethod()} ${req.getHeader('X-HTTP-Method-Override') ?? ''}`.trim()),
        onError: reject,
        onSuccess: () => resolve(up.url!),
      });
      up.start();
    });
    assert.deepEqual(methods, ['POST', 'POST PATCH', 'POST PATCH', 'POST PATCH']);
    assert.equal((await fetch(url, { method: 'HEAD', headers: TUS })).headers.get('blobd-digest'), sha256(data));

    const location = (await create({ 'upload-length': '5' })).headers.get('location')!;
    const other = await fetch(d.url + location, { method: 'POST', headers: { ...TUS, 'x-http-method-override': 'GET' } });
    assert.equal(other.status, 400);
    assert.equal(await errorCode(other), 'invalid_request');
    const terminated = await fetch(d.url + location, { method: 'POST', headers: { ...TUS, 'x-http-method-override': 'DELETE' } });
    assert.equal(terminated.status, 204);
    assert.equal((await head(location)).status, 404);
  });

  test('X-HTTP-Method-Override on the creation URL is refused (400) and creates nothing', async () => {
    const before = await openSessions();
    for (const method of ['DELETE', 'PATCH', 'HEAD', 'GET']) {
      for (const url of ['/api/tus/', '/api/tus']) {
        const res = await create({ 'upload-length': '5', 'x-http-method-override': method }, {}, url);
        assert.equal(res.status, 400, `${method} ${url}`);
        assert.equal(res.headers.get('location'), null);
        assert.equal(await errorCode(res), 'invalid_request');
      }
    }
    assert.deepEqual(await openSessions(), before, 'no session was created');
  });

  describe('a creation-with-upload whose body is refused creates nothing', () => {
    /** POSTs a creation whose body holds after `first` bytes until the session is listed, then sends the rest. */
    async function refusedCreation(headers: Record<string, string>, body: Buffer, first: number) {
      const before = new Set(await openSessions());
      const held = heldBody(body, first);
      const answer = create({ ...headers, 'content-type': OFFSET_TYPE }, { body: held.stream, duplex: 'half' } as RequestInit);
      const id = (await waitFor(async () => (await openSessions()).find((s) => !before.has(s)), 'the session to be listed'))!;
      held.release();
      const res = await answer;
      return { res, id };
    }

    async function assertGone(id: string) {
      // A wrong token tells an existing session (403) from one that is gone (404).
      const probe = await fetch(`${d.url}/api/tus/${id}.not-its-token`, { method: 'HEAD', headers: TUS });
      assert.equal(probe.status, 404, 'HEAD on the session');
      assert.ok(!(await openSessions()).includes(id), 'GET /api/blobs/uploads no longer lists it');
    }

    test('460: a wrong Upload-Checksum', async () => {
      const { res, id } = await refusedCreation({ 'upload-length': '9', 'upload-checksum': `sha256 ${b64('x'.repeat(32))}` }, Buffer.from('abcdef'), 3);
      assert.equal(res.status, 460);
      assert.equal(await errorCode(res), 'checksum_mismatch');
      assert.equal(res.headers.get('location'), null, 'no upload URL for a refused creation');
      await assertGone(id);
    });

    test('413: a body longer than Upload-Length', async () => {
      const { res, id } = await refusedCreation({ 'upload-length': '3' }, Buffer.from('twelve bytes'), 2);
      assert.equal(res.status, 413);
      assert.equal(await errorCode(res), 'too_large');
      assert.equal(res.headers.get('location'), null, 'no upload URL for a refused creation');
      await assertGone(id);
    });

  });
});
