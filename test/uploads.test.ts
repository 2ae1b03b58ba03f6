// Upload sessions against the real daemon: chunked happy path, resume after kill -9 (G3), locks,
// disconnects, limits, destroy and expiry, reservations, and that idle sessions hold no resources.
import assert from 'node:assert/strict';
import { readdir, stat, statfs } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { onFsOnly, removeDir, startDaemon, TEST_PART_SIZE, type Daemon } from './helpers/daemon.ts';
import { privateDisk } from './helpers/disk.ts';
import { metaProbe } from './helpers/meta-probe.ts';
import { errorCode } from './helpers/http.ts';
import { append, complete, heldBody, initiate, requestWithExpect, status, type Session } from './helpers/sessions.ts';
import { probeStore } from './helpers/store-probe.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;

/**
 * Bytes of an append reach an object store a whole part at a time, so tests that wait for some to arrive
 * mid-append scale their sizes with the part size on S3 (the numbers are the original ones on fs).
 */
const unitOf = (d: Daemon, fsBytes: number) => (d.store === 's3' ? TEST_PART_SIZE : fsBytes);

/** The session's stored bytes a completion can use (the session file's size on the local store). */
async function uploadFileSize(d: Daemon, s: Session): Promise<number | null> {
  const store = probeStore(d);
  try {
    return await store.sessionKept(s.id);
  } finally {
    store.close();
  }
}

/** Every byte stored for the session, unacknowledged ones included; null: nothing. */
async function sessionStored(d: Daemon, s: Session): Promise<number | null> {
  const store = probeStore(d);
  try {
    return await store.sessionStored(s.id);
  } finally {
    store.close();
  }
}

async function download(d: Daemon, digest: string): Promise<Buffer> {
  const res = await d.api(`/api/blobs/${digest}`);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

describe('upload sessions', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ args: ['--max-blob-size', '64MiB'] });
  });
  after(async () => {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('chunks of 1 byte, 5 MiB, 0 bytes and the rest make the right blob', async () => {
    const data = randomData(7 * MiB + 3);
    const res = await d.api(`/api/blobs/uploads?filename=big.bin&size=${data.length}`, { method: 'POST' });
    assert.equal(res.status, 202);
    const body = (await res.json()) as { id: string; token: string; offset: number; size: number; expires_at: string };
    assert.equal(res.headers.get('location'), `/api/blobs/uploads/${body.id}`);
    assert.equal(res.headers.get('upload-token'), body.token);
    assert.equal(res.headers.get('upload-offset'), '0');
    assert.equal(body.offset, 0);
    assert.equal(body.size, data.length);
    assert.ok(Date.parse(body.expires_at) > Date.now());
    const s = { id: body.id, token: body.token };

    let offset = 0;
    for (const n of [1, 5 * MiB, 0]) {
      const r = await append(d, s, data.subarray(offset, offset + n), { 'upload-offset': String(offset) });
      assert.equal(r.status, 203);
      offset += n;
      assert.equal(r.headers.get('upload-offset'), String(offset));
    }
    const st = await status(d, s);
    assert.deepEqual(st, { status: 204, offset, state: 'open' });
    const done = await complete(d, s, `digest=${sha256(data)}`, data.subarray(offset));
    assert.equal(done.status, 201);
    assert.deepEqual(await done.json(), {
      id: sha256(data),
      digest: sha256(data),
      size: data.length,
      filename: 'big.bin',
      deduplicated: false,
    });
    assert.ok((await download(d, sha256(data))).equals(data));
    assert.equal(await sessionStored(d, s), null, 'the session file became the blob');

    // A lost response can be retried: the same 201 body, and the session now says completed.
    const again = await complete(d, s);
    assert.equal(again.status, 201);
    assert.equal(((await again.json()) as { digest: string }).digest, sha256(data));
    assert.equal((await status(d, s)).state, 'completed');
    // HEAD on the session itself answers the status headers; GET answers JSON.
    const head = await d.api(`/api/blobs/uploads/${s.id}`, { method: 'HEAD', auth: false, headers: { 'upload-token': s.token } });
    assert.equal(head.status, 204);
    assert.equal(head.headers.get('upload-offset'), String(data.length));
    const show = await d.api(`/api/blobs/uploads/${s.id}`, { auth: false, headers: { 'portsip-upload-token': s.token } });
    assert.equal(((await show.json()) as { state: string }).state, 'completed');
  });

  test('the session token is the only credential: missing 401, wrong 403, alias accepted', async () => {
    const s = await initiate(d);
    const missing = await d.api(`/api/blobs/uploads/${s.id}/append`, { method: 'POST', body: 'x', auth: false });
    assert.equal(missing.status, 401);
    assert.equal(await errorCode(missing), 'unauthorized');
    const wrong = await append(d, { ...s, token: 'not-the-token' }, 'x');
    assert.equal(wrong.status, 403);
    assert.equal(await errorCode(wrong), 'forbidden');
    // The admin token is no substitute for the session token.
    const admin = await d.api(`/api/blobs/uploads/${s.id}/append`, { method: 'POST', body: 'x' });
    assert.equal(admin.status, 401);
    const alias = await d.api(`/api/blobs/uploads/${s.id}/append`, {
      method: 'POST',
      body: 'x',
      auth: false,
      headers: { 'portsip-upload-token': s.token },
    });
    assert.equal(alias.status, 203);
    assert.equal((await status(d, s)).offset, 1);
    const unknown = await append(d, { id: '01a2b3c4-0000-7000-8000-000000000000', token: s.token }, 'x');
    assert.equal(unknown.status, 404);
    assert.equal(await errorCode(unknown), 'upload_not_found');
    // Initiating needs a principal.
    assert.equal((await d.api('/api/blobs/uploads', { method: 'POST', auth: false })).status, 401);
  });

  test('Upload-Offset mismatch is 409 with the current offset, and writes nothing', async () => {
    const s = await initiate(d);
    assert.equal((await append(d, s, 'abc')).status, 203);
    const res = await append(d, s, 'zzz', { 'upload-offset': '0' });
    assert.equal(res.status, 409);
    assert.equal(res.headers.get('upload-offset'), '3');
    assert.equal(await errorCode(res), 'offset_mismatch');
    assert.equal(await sessionStored(d, s), 3);
    // A client that asks first is refused before it sends the body.
    const asked = await requestWithExpect(`${d.url}/api/blobs/uploads/${s.id}/append`, 'POST', { 'upload-token': s.token, 'upload-offset': '0' }, randomData(MiB));
    assert.deepEqual([asked.status, asked.continued], [409, false]);
    const bad = await append(d, s, 'zzz', { 'upload-offset': 'three' });
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), 'invalid_request');
  });

  test('two concurrent appends: one is locked out, the bytes come out right', async () => {
    const unit = unitOf(d, 512 * 1024);
    const data = randomData(4 * unit);
    const s = await initiate(d);
    const held = heldBody(data.subarray(0, 2 * unit), unit);
    const first = append(d, s, held.stream);
    await waitFor(async () => ((await sessionStored(d, s)) ?? 0) >= unit / 2, 'the first append to reach the disk', 30_000);
    // Refused before its body is read; the client still gets the answer, not a reset under its body (the
    // daemon reads and discards a bounded rest: a proxy in front would otherwise show a 502).
    const second = await append(d, s, randomData(16 * MiB));
    assert.equal(second.status, 409);
    assert.equal(await errorCode(second), 'upload_locked');
    held.release();
    const r1 = await first;
    assert.equal(r1.status, 203);
    assert.equal(r1.headers.get('upload-offset'), String(2 * unit));
    assert.equal((await append(d, s, data.subarray(2 * unit))).status, 203);
    const done = await complete(d, s);
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
  });

  test('a refusal before a body is read keeps the connection: the rest is read and discarded, the next request is answered', async () => {
    // What a proxy needs: closing under an unread body resets the connection, and nginx then shows its
    // client a 502 (its write of the body failed) and takes this node out of rotation.
    const s = await initiate(d);
    const { hostname, port } = new URL(d.url);
    const sock = connect(Number(port), hostname);
    const body = randomData(8 * MiB);
    let received = '';
    sock.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    sock.write(
      `POST /api/blobs/uploads/${s.id}/append HTTP/1.1\r\nHost: x\r\nUpload-Token: wrong-${s.token}\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`,
    );
    sock.write(body);
    await waitFor(async () => received.includes('"forbidden"'), 'the 403 answer', 30_000);
    assert.match(received, /^HTTP\/1\.1 403 /);
    assert.doesNotMatch(received, /connection: close/i);
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(async () => /HTTP\/1\.1 200 /.test(received), 'the second answer on the same connection', 30_000);
    sock.destroy();
    assert.equal((await status(d, s)).offset, 0);
  });

  test('a client that disconnects mid-append keeps what arrived and resumes from status', async () => {
    const unit = unitOf(d, MiB);
    const data = randomData(3 * unit);
    const s = await initiate(d);
    const controller = new AbortController();
    const held = heldBody(data, unit);
    const pending = append(d, s, held.stream, {}, { signal: controller.signal }).catch((e: Error) => e);
    await waitFor(async () => ((await sessionStored(d, s)) ?? 0) >= unit, 'the first MiB to reach the disk', 30_000);
    controller.abort();
    assert.ok((await pending) instanceof Error);
    const kept = await waitFor(async () => {
      const st = await status(d, s);
      return st.offset > 0 ? st.offset : 0;
    }, 'the kept bytes to be acknowledged');
    assert.equal(kept, unit);
    assert.equal((await append(d, s, data.subarray(kept), { 'upload-offset': String(kept) })).status, 203);
    const done = await complete(d, s, `digest=${sha256(data)}`);
    assert.equal(done.status, 201);
    assert.ok((await download(d, sha256(data))).equals(data));
  });

  test('over the declared size or the max blob size: 413 and nothing of the request is kept', async () => {
    const s = await initiate(d, 'size=100');
    assert.equal((await append(d, s, randomData(60))).status, 203);
    // Announced length too large: refused before reading.
    const announced = await append(d, s, randomData(41));
    assert.equal(announced.status, 413);
    assert.equal(await errorCode(announced), 'too_large');
    // Chunked, so the limit bites while streaming: the 60 bytes before stay, the rest goes.
    const chunked = new ReadableStream<Uint8Array>({
      start(ctl) {
        ctl.enqueue(randomData(30));
        ctl.enqueue(randomData(30));
        ctl.close();
      },
    });
    const streamed = await append(d, s, chunked).catch((e: Error) => e);
    if (streamed instanceof Response) assert.equal(streamed.status, 413);
    const st = await waitFor(async () => ((await status(d, s)).status === 204 ? status(d, s) : null), 'the session');
    assert.equal(st!.offset, 60);
    assert.equal(await sessionStored(d, s), 60);
    // Max blob size at initiate and while appending to an undeclared session.
    const tooBig = await d.api(`/api/blobs/uploads?size=${65 * MiB}`, { method: 'POST' });
    assert.equal(tooBig.status, 413);
    const open = await initiate(d);
    // A client that announces too much and waits for 100 Continue is refused before sending; one that does
    // not wait may see the connection closed under its body instead (nothing is kept either way).
    const early = await requestWithExpect(`${d.url}/api/blobs/uploads/${open.id}/append`, 'POST', { 'upload-token': open.token }, randomData(65 * MiB));
    assert.deepEqual([early.status, early.continued], [413, false]);
    // An empty session is an empty file on the local store, and nothing at all in an object store.
    assert.equal(await sessionStored(d, open), d.store === 's3' ? null : 0);
  });

  test('a complete whose final body is cut short keeps the bytes and leaves the session open', async () => {
    const data = randomData(1000);
    const s = await initiate(d, 'size=1000');
    await append(d, s, data.subarray(0, 100));
    // Announce 900 bytes, send 300, hang up.
    const { hostname, port } = new URL(d.url);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(Number(port), hostname, () => {
        sock.write(`POST /api/blobs/uploads/${s.id}/complete HTTP/1.1\r\nHost: x\r\nUpload-Token: ${s.token}\r\nContent-Length: 900\r\n\r\n`);
        sock.write(data.subarray(100, 400), () => setTimeout(() => sock.destroy(), 200));
      });
      sock.on('close', () => resolve());
      sock.on('error', reject);
    });
    const st = await waitFor(async () => {
      const now = await status(d, s);
      return now.offset === 400 ? now : null;
    }, 'the kept bytes');
    assert.equal(st!.state, 'open', 'a cut-short complete must not complete');
    // The offset is recorded before the cut request has let go of the session (an object store still deletes
    // its old tail): a client retries a 409 upload_locked, as the CLI does.
    const rest = await waitFor(async () => {
      const r = await append(d, s, data.subarray(400));
      return r.status === 409 ? null : r;
    }, 'the cut request to let go of the session');
    assert.equal(rest!.status, 203);
    const done = await complete(d, s);
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
  });

  test('digests named at initiate and at complete are both preconditions, also on a replay', async () => {
    const data = randomData(50);
    const s = await initiate(d, `digest=${sha256(data)}`);
    await append(d, s, data);
    const other = sha256(Buffer.from('other'));
    assert.equal((await complete(d, s, `digest=${other}`)).status, 400);
    assert.equal((await complete(d, s, `digest=${sha256(data)}`)).status, 201);
    const replay = await complete(d, s, `digest=${other}`);
    assert.equal(replay.status, 400);
    assert.equal(await errorCode(replay), 'digest_mismatch');
  });

  test('a digest mismatch keeps the session at its offset; the right digest then completes', async () => {
    const data = randomData(1000);
    const s = await initiate(d, `size=1000`);
    assert.equal((await append(d, s, data)).status, 203);
    const wrong = sha256(Buffer.from('other'));
    const res = await complete(d, s, `digest=${wrong}`);
    assert.equal(res.status, 400);
    const err = ((await res.json()) as { error: Record<string, unknown> }).error;
    assert.equal(err.code, 'digest_mismatch');
    assert.equal(err.expected, wrong);
    assert.equal(err.actual, sha256(data));
    assert.deepEqual(await status(d, s), { status: 204, offset: 1000, state: 'open' });
    const ok = await complete(d, s, `digest=${sha256(data).slice(7)}`);
    assert.equal(ok.status, 201);
  });

  test('the declared size must be met at complete', async () => {
    const s = await initiate(d, 'size=10');
    await append(d, s, '12345');
    const res = await complete(d, s);
    assert.equal(res.status, 400);
    const err = ((await res.json()) as { error: Record<string, unknown> }).error;
    assert.deepEqual([err.code, err.expected, err.actual], ['size_mismatch', 10, 5]);
    assert.equal((await status(d, s)).state, 'open');
  });

  test('completing into an existing digest stores nothing new', async () => {
    const data = randomData(5000);
    const one = await d.api('/api/blobs', { method: 'POST', body: data });
    assert.equal(one.status, 201);
    const s = await initiate(d);
    await append(d, s, data);
    const res = await complete(d, s);
    assert.equal(((await res.json()) as { deduplicated: boolean }).deduplicated, true);
    const store = probeStore(d);
    assert.equal(await store.copies(sha256(data)), 1);
    store.close();
    assert.equal(await sessionStored(d, s), null, 'the session bytes are gone');
  });

  test('digest= at initiate: a known blob completes at once with no bytes sent', async () => {
    const data = randomData(4321);
    await (await d.api('/api/blobs', { method: 'POST', body: data })).arrayBuffer();
    const res = await d.api(`/api/blobs/uploads?digest=${sha256(data)}&filename=a.bin`, { method: 'POST' });
    assert.equal(res.status, 201);
    assert.deepEqual(await res.json(), { id: sha256(data), digest: sha256(data), size: 4321, filename: 'a.bin', deduplicated: true });
    // An unknown digest starts a normal session that must end with it.
    const other = randomData(10);
    const s = await initiate(d, `digest=${sha256(other)}`);
    await append(d, s, randomData(10));
    assert.equal((await complete(d, s)).status, 400);
    const bad = await d.api('/api/blobs/uploads?digest=nope', { method: 'POST' });
    assert.equal(await errorCode(bad), 'invalid_digest');
  });

  test('destroy frees the bytes at once; the session is gone', async () => {
    for (const how of ['post', 'delete'] as const) {
      const s = await initiate(d);
      await append(d, s, randomData(1000));
      assert.equal(await sessionStored(d, s), 1000);
      const res =
        how === 'post'
          ? await d.api(`/api/blobs/uploads/${s.id}/destroy`, { method: 'POST', auth: false, headers: { 'upload-token': s.token } })
          : await d.api(`/api/blobs/uploads/${s.id}`, { method: 'DELETE', auth: false, headers: { 'upload-token': s.token } });
      assert.equal(res.status, 204);
      assert.equal(await sessionStored(d, s), null);
      assert.equal((await status(d, s)).status, 404);
    }
  });

  test('a session with bucket/key completes into the object\'s next revision', async () => {
    await d.api('/api/buckets/up', { method: 'PUT' });
    const first = randomData(3000);
    const s1 = await initiate(d, `bucket=up&key=${encodeURIComponent('dir/file.bin')}&filename=file.bin&content_type=image/png`);
    await append(d, s1, first);
    const r1 = await complete(d, s1);
    assert.equal(r1.status, 201);
    const b1 = (await r1.json()) as Record<string, unknown>;
    assert.deepEqual([b1.bucket, b1.key, b1.revision, b1.digest, b1.deduplicated], ['up', 'dir/file.bin', 1, sha256(first), false]);
    const got = await d.api('/api/buckets/up/objects/dir/file.bin');
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(first));
    const meta = (await (await d.api('/api/buckets/up/objects/dir/file.bin?metadata')).json()) as { id: string };
    assert.equal(b1.id, meta.id, 'the id is the object id');
    // The same bytes again: a new revision that shares the blob (deduplicated).
    const s2 = await initiate(d, 'bucket=up&key=dir/file.bin');
    await append(d, s2, first);
    const b2 = (await (await complete(d, s2)).json()) as Record<string, unknown>;
    assert.deepEqual([b2.revision, b2.deduplicated], [2, true]);
    // Bucket rules apply to sessions too.
    assert.equal(await errorCode(await d.api('/api/blobs/uploads?bucket=nope&key=k', { method: 'POST' })), 'bucket_not_found');
    assert.equal(await errorCode(await d.api('/api/blobs/uploads?bucket=up&key=a%2F..%2Fb', { method: 'POST' })), 'invalid_key');
    assert.equal(await errorCode(await d.api('/api/blobs/uploads?bucket=up', { method: 'POST' })), 'invalid_request');
    await d.api('/api/buckets/tiny', { method: 'PUT', body: JSON.stringify({ max_object_size: 10 }), headers: { 'content-type': 'application/json' } });
    assert.equal(await errorCode(await d.api('/api/blobs/uploads?bucket=tiny&key=k&size=11', { method: 'POST' })), 'too_large');
    const s3 = await initiate(d, 'bucket=tiny&key=k');
    assert.equal((await append(d, s3, randomData(8))).status, 203);
    const over = await append(d, s3, randomData(8));
    assert.equal(over.status, 413);
    assert.equal((await status(d, s3)).offset, 8);
  });

  test('200 idle open sessions hold no file descriptors', async () => {
    const fds = async () => (await readdir(`/proc/${d.proc.pid}/fd`)).length;
    const before = await fds();
    const sessions: Session[] = [];
    for (let i = 0; i < 200; i++) {
      const s = await initiate(d);
      assert.equal((await append(d, s, 'x')).status, 203);
      sessions.push(s);
    }
    const afterwards = await fds();
    assert.ok(afterwards - before < 10, `${afterwards - before} more descriptors for 200 sessions`);
    for (const s of sessions) {
      await d.api(`/api/blobs/uploads/${s.id}`, { method: 'DELETE', auth: false, headers: { 'upload-token': s.token } });
    }
  });
});

describe('upload sessions across crashes (G3)', () => {
  test('kill -9 between appends and during a slow append; resume after restart', async () => {
    let d = await startDaemon();
    const unit = unitOf(d, MiB);
    try {
      const data = randomData(6 * unit);
      const s = await initiate(d, `size=${data.length}`);
      let acknowledged = 0;
      for (const n of [unit, 1]) {
        const r = await append(d, s, data.subarray(acknowledged, acknowledged + n));
        acknowledged = Number(r.headers.get('upload-offset'));
      }
      await d.kill9(); // between appends
      d = await startDaemon({ dataDir: d.dataDir });
      assert.equal((await status(d, s)).offset, acknowledged);

      // Now a slow append: half of it reaches the disk, then the daemon dies under it.
      const held = heldBody(data.subarray(acknowledged, acknowledged + 3 * unit), 2 * unit);
      const pending = append(d, s, held.stream).catch((e: Error) => e);
      await waitFor(async () => ((await sessionStored(d, s)) ?? 0) >= acknowledged + unit, 'bytes of the slow append on disk', 30_000);
      await d.kill9();
      held.release();
      await pending;
      d = await startDaemon({ dataDir: d.dataDir });
      const st = await status(d, s);
      assert.ok(st.offset >= acknowledged, `offset ${st.offset} went below ${acknowledged}`);
      assert.equal(await uploadFileSize(d, s), st.offset, 'bytes past the offset were cut off');

      const r = await append(d, s, data.subarray(st.offset), { 'upload-offset': String(st.offset) });
      assert.equal(r.status, 203);
      const done = await complete(d, s, `digest=${sha256(data)}`);
      assert.equal(done.status, 201);
      assert.ok((await download(d, sha256(data))).equals(data));
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  test('a restart cuts unacknowledged tails and removes stray session files', async () => {
    let d = await startDaemon();
    try {
      const s = await initiate(d);
      await append(d, s, 'acknowledged');
      await d.stop();
      const store = probeStore(d);
      await store.growSession(s.id, Buffer.from('garbage that was never acknowledged'));
      const stray = await store.plantStraySession();
      d = await startDaemon({ dataDir: d.dataDir });
      assert.equal((await status(d, s)).offset, 12);
      assert.equal(await store.sessionStored(s.id), 12, 'only the acknowledged bytes are left (the digest below checks them)');
      assert.equal(await store.sessionStored(stray), null, 'the stray session bytes are gone');
      store.close();
      const done = await complete(d, s);
      assert.equal(((await done.json()) as { digest: string }).digest, sha256(Buffer.from('acknowledged')));
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });
});

describe('upload session limits that need their own daemon', () => {
  test('idle sessions expire after --upload-ttl and their bytes are freed', async () => {
    const d = await startDaemon({ args: ['--upload-ttl', '1s'] });
    try {
      const s = await initiate(d);
      await append(d, s, randomData(1000));
      assert.equal(await sessionStored(d, s), 1000);
      await waitFor(async () => (await status(d, s)).status === 404, 'the session to expire');
      await waitFor(async () => (await sessionStored(d, s)) === null, 'the bytes to be freed');
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  test('a client that stalls mid-append is cut after --idle-timeout; the bytes stay and the lock goes', async () => {
    const d = await startDaemon({ args: ['--idle-timeout', '1s'] });
    try {
      const data = randomData(2 * MiB);
      const s = await initiate(d);
      const held = heldBody(data, MiB); // sends 1 MiB, then goes silent
      const stalled = append(d, s, held.stream).catch((e: Error) => e);
      await waitFor(async () => (await status(d, s)).offset === MiB, 'the stalled append to be cut and its bytes acknowledged');
      assert.ok((await stalled) instanceof Error, 'the stalled request was cut');
      assert.equal((await append(d, s, data.subarray(MiB), { 'upload-offset': String(MiB) })).status, 203);
      assert.equal(((await (await complete(d, s)).json()) as { digest: string }).digest, sha256(data));
      held.release();
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  test('an offset that cannot be recorded rolls the bytes and the hash back', async () => {
    const d = await startDaemon();
    const meta = metaProbe(d);
    try {
      const s = await initiate(d);
      await append(d, s, 'A'.repeat(10));
      const release = await meta.holdWriteLock(); // longer than the daemon waits for a lock
      const failed = await append(d, s, 'B'.repeat(10));
      await release();
      assert.equal(failed.status, 500);
      assert.equal((await status(d, s)).offset, 10);
      assert.equal(await sessionStored(d, s), 10, 'the unrecorded bytes were cut');
      await append(d, s, 'C'.repeat(10), { 'upload-offset': '10' });
      const done = (await (await complete(d, s)).json()) as { digest: string };
      const expected = sha256(Buffer.from('A'.repeat(10) + 'C'.repeat(10)));
      assert.equal(done.digest, expected, 'the digest is of the bytes actually stored');
      assert.ok((await download(d, expected)).equals(Buffer.from('A'.repeat(10) + 'C'.repeat(10))));
    } finally {
      await meta.close();
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  // The three tests below are about the local disk that holds session files; an object store has no such budget.
  test('disk reservations: concurrent initiates cannot promise the same bytes; appends respect others', onFsOnly('session bytes on the local disk'), async () => {
    // Leave about 600 MiB of room (one 400 MiB promise fits, two never do), on a filesystem of its own
    // where it can be had: other test files write and delete gigabytes meanwhile.
    const disk = await privateDisk(1024);
    const minFree = await disk.minFreeLeaving(600 * MiB);
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', String(minFree), '--max-blob-size', '1TiB'] });
    try {
      const tries = await Promise.all(
        Array.from({ length: 8 }, () => d.api(`/api/blobs/uploads?size=${400 * MiB}`, { method: 'POST' })),
      );
      const statuses = tries.map((r) => r.status).sort();
      assert.deepEqual(statuses, [202, 507, 507, 507, 507, 507, 507, 507]);
      // A session without a declared size may not eat into that promise.
      const open = await initiate(d);
      const big = await requestWithExpect(
        `${d.url}/api/blobs/uploads/${open.id}/append`,
        'POST',
        { 'upload-token': open.token, 'content-length': String(300 * MiB) },
        Buffer.alloc(0),
      );
      assert.deepEqual([big.status, big.continued], [507, false]);
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });

  test('a chunked append past the disk budget is 507 and keeps nothing of that request', onFsOnly('session bytes on the local disk'), async () => {
    const disk = await privateDisk(512);
    const minFree = await disk.minFreeLeaving(150 * MiB);
    const d = await startDaemon({ dataDir: disk.dataDir, args: ['--min-free', String(minFree)] });
    try {
      const s = await initiate(d);
      assert.equal((await append(d, s, 'kept')).status, 203);
      let left = 400 * MiB;
      const block = randomData(MiB);
      const body = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (left <= 0) return ctl.close();
          ctl.enqueue(block);
          left -= MiB;
        },
      });
      const res = await append(d, s, body).catch((e: Error) => e);
      if (res instanceof Response) {
        assert.equal(res.status, 507);
        assert.equal(await errorCode(res), 'insufficient_storage');
      }
      await waitFor(async () => (await sessionStored(d, s)) === 4, 'the refused bytes to be cut');
      assert.equal((await status(d, s)).offset, 4);
    } finally {
      await d.stop();
      await disk.dispose();
    }
  });

  test('below --min-free: 507 at initiate and append; a session opened before resumes later', async () => {
    let d = await startDaemon({ args: ['--min-free', '0'] });
    try {
      const s = await initiate(d);
      await d.stop();
      d = await startDaemon({ dataDir: d.dataDir, args: ['--min-free', '1000TiB'] });
      const refused = await d.api('/api/blobs/uploads?size=10', { method: 'POST' });
      assert.equal(refused.status, 507);
      assert.equal(await errorCode(refused), 'insufficient_storage');
      // Without a declared size too: below --min-free the database takes no new rows either.
      const unsized = await d.api('/api/blobs/uploads', { method: 'POST' });
      assert.equal(unsized.status, 507);
      assert.equal(await errorCode(unsized), 'insufficient_storage');
      const full = await append(d, s, 'data');
      assert.equal(full.status, 507);
      assert.equal(await errorCode(full), 'insufficient_storage');
      assert.equal((await status(d, s)).offset, 0);
      await d.stop();
      d = await startDaemon({ dataDir: d.dataDir, args: ['--min-free', '0'] });
      assert.equal((await append(d, s, 'data')).status, 203);
      assert.equal((await complete(d, s)).status, 201);
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });

  test('a 10 GiB declared session allocates nothing up front, and reservations add up', onFsOnly('a sparse session file'), async () => {
    const d = await startDaemon({ args: ['--min-free', '0', '--max-blob-size', '1TiB'] });
    try {
      const fs = await statfs(d.dataDir);
      const free = fs.bavail * fs.bsize;
      const size = 10 * 1024 ** 3;
      if (free < size * 1.5) {
        // Too little disk here for the full check: the reservation must refuse instead.
        const res = await d.api(`/api/blobs/uploads?size=${free + 1}`, { method: 'POST' });
        assert.equal(res.status, 507);
        return;
      }
      const s = await initiate(d, `size=${size}`);
      const file = await stat(path.join(d.dataDir, 'uploads', s.id));
      assert.equal(file.size, 0);
      assert.equal(file.blocks, 0);
      const after = await statfs(d.dataDir);
      assert.ok(free - after.bavail * after.bsize < 100 * MiB, 'no space was allocated');
      // The promise counts: a second session that needs more than what is left is refused before any byte.
      const rest = free - size;
      const second = await d.api(`/api/blobs/uploads?size=${rest + 512 * MiB}`, { method: 'POST' });
      assert.equal(second.status, 507);
      await d.api(`/api/blobs/uploads/${s.id}`, { method: 'DELETE', auth: false, headers: { 'upload-token': s.token } });
      const third = await d.api(`/api/blobs/uploads?size=${rest + 512 * MiB}`, { method: 'POST' });
      assert.equal(third.status, 202, 'destroying the first session released its reservation');
    } finally {
      await d.stop();
      await removeDir(path.dirname(d.dataDir));
    }
  });
});
