// Signing keys while the daemon runs: a key file added under data/keys/ signs within --key-refresh, and a
// key file removed stops its URLs within the same interval — no restart either way.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KeyFiles } from '../src/storage/fs/key-files.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { waitFor } from './helpers/wait.ts';

describe('signing keys are picked up and dropped without a restart', () => {
  let d: Daemon;
  let digest: string;
  before(async () => {
    d = await startDaemon({ args: ['--key-refresh', '300ms'] });
    digest = ((await (await d.api('/api/blobs', { method: 'POST', body: 'signed bytes' })).json()) as { digest: string }).digest;
  });
  after(async () => {
    await d.stop();
    await removeDir(d.dataDir);
  });

  const sign = async () => {
    const res = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'GET', path: `/api/blobs/${digest}`, expires_in: 600 }),
    });
    assert.equal(res.status, 201);
    const { url } = (await res.json()) as { url: string };
    return { target: url.slice(new URL(url).origin.length), kid: new URL(url).searchParams.get('blobd-key')! };
  };

  test('a new key file signs; removing the old key file kills the URLs it signed, the new ones keep working', async () => {
    const old = await sign();
    assert.equal((await fetch(d.url + old.target)).status, 200);
    const added = await new KeyFiles(new DataLayout(d.dataDir)).createSigningKey();
    const fresh = await waitFor(async () => {
      const s = await sign();
      return s.kid === added.kid ? s : null;
    }, 'the new key to sign');
    await rm(path.join(d.dataDir, 'keys', `signing-${old.kid}.key`));
    await waitFor(async () => (await fetch(d.url + old.target)).status === 403, 'the removed key to stop verifying');
    const refused = await fetch(d.url + old.target);
    assert.equal(await errorCode(refused), 'signature_invalid');
    const ok = await fetch(d.url + fresh!.target);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'signed bytes');
  });
});
