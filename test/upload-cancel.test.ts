// Cancelling an upload session without its upload token (DELETE /api/blobs/uploads/{id}, POST …/destroy):
// the principal that started it may, with its own credential, and so may an admin; another token — even
// one with the very same scopes — may not. A cancelled session is gone (404) and its bytes are freed.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { as, createToken } from './helpers/access.ts';
import { randomData } from './helpers/bytes.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { probeStore, type StoreProbe } from './helpers/store-probe.ts';

describe('upload sessions: cancelling with the creator credential', () => {
  let d: Daemon;
  let work: string;
  let alice: string;
  let bob: string;

  /** A session `token` started, with some bytes in it. */
  const started = async (token: string) => {
    const res = await as(d, token, '/api/blobs/uploads?filename=x.bin&size=100000', { method: 'POST' });
    assert.equal(res.status, 202, await res.clone().text());
    const s = (await res.json()) as { id: string; token: string };
    const appended = await d.api(`/api/blobs/uploads/${s.id}/append`, { method: 'POST', auth: false, headers: { 'upload-token': s.token }, body: randomData(1000) });
    assert.equal(appended.status, 203);
    return s;
  };
  const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
  let store: StoreProbe;
  const bytesOnDisk = async (id: string) => (await store.sessionStored(id)) !== null;

  before(async () => {
    work = await makeTempDir('blobd-upload-cancel-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    store = probeStore(d);
    alice = (await createToken(d, ['blobs:write'])).token;
    bob = (await createToken(d, ['blobs:write'])).token;
  });

  after(async () => {
    store?.close();
    await d?.stop();
    await removeDir(work);
  });

  test('the creator cancels its own session with its own token; the bytes are freed', async () => {
    for (const [method, suffix] of [['DELETE', ''], ['POST', '/destroy']] as const) {
      const s = await started(alice);
      assert.equal(await bytesOnDisk(s.id), true);
      const res = await as(d, alice, `/api/blobs/uploads/${s.id}${suffix}`, { method });
      assert.equal(res.status, 204, `${method} ${suffix}: ${await res.clone().text()}`);
      assert.equal(await bytesOnDisk(s.id), false, 'the bytes are freed at once');
      const gone = await d.api(`/api/blobs/uploads/${s.id}`, { auth: false, headers: { 'upload-token': s.token } });
      assert.equal(gone.status, 404);
      assert.equal(await code(gone), 'upload_not_found');
      const listed = (await (await as(d, alice, '/api/blobs/uploads')).json()) as { items: { id: string }[] };
      assert.ok(!listed.items.some((i) => i.id === s.id), 'no longer listed');
    }
  });

  test('another token with the same scopes may not; the session stays and resumes', async () => {
    const s = await started(alice);
    for (const [method, suffix] of [['DELETE', ''], ['POST', '/destroy']] as const) {
      const res = await as(d, bob, `/api/blobs/uploads/${s.id}${suffix}`, { method });
      assert.equal(res.status, 403);
      assert.equal(await code(res), 'forbidden');
    }
    const none = await d.api(`/api/blobs/uploads/${s.id}`, { method: 'DELETE', auth: false });
    assert.equal(none.status, 401);
    assert.equal(await code(none), 'unauthorized');
    const status = await d.api(`/api/blobs/uploads/${s.id}`, { auth: false, headers: { 'upload-token': s.token } });
    assert.equal(status.status, 200);
    assert.equal(((await status.json()) as { offset: number }).offset, 1000, 'untouched');
    assert.equal(await bytesOnDisk(s.id), true);
  });

  test("an admin cancels anyone's session; the upload token still works on its own", async () => {
    const s = await started(alice);
    assert.equal((await d.api(`/api/blobs/uploads/${s.id}`, { method: 'DELETE' })).status, 204);
    assert.equal(await bytesOnDisk(s.id), false);
    const t = await started(bob);
    assert.equal((await d.api(`/api/blobs/uploads/${t.id}`, { method: 'DELETE', auth: false, headers: { 'upload-token': t.token } })).status, 204);
    // A wrong upload token is judged by the token, even next to the creator's own credential.
    const u = await started(bob);
    const wrong = await as(d, bob, `/api/blobs/uploads/${u.id}`, { method: 'DELETE', headers: { 'upload-token': t.token } });
    assert.equal(wrong.status, 403);
  });
});
