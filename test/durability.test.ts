// G1/G2 against a real crash: kill -9 the daemon right after a 201 and restart it on the same data dir.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon } from './helpers/daemon.ts';
import { probeStore } from './helpers/store-probe.ts';
import { waitFor } from './helpers/wait.ts';

test('kill -9 right after 201 loses nothing, and a restart serves every acknowledged blob', async () => {
  let d = await startDaemon();
  const acknowledged: [string, Buffer<ArrayBuffer>][] = [];
  try {
    for (const size of [0, 10, 300_000, 3 * 1024 * 1024]) {
      const data = randomData(size);
      const res = await d.api('/api/blobs', { method: 'POST', body: data });
      assert.equal(res.status, 201);
      const { digest } = (await res.json()) as { digest: string };
      acknowledged.push([digest, data]);
    }
    const data = randomData(123_456);
    const put = await d.api(`/api/blobs/${sha256(data)}`, { method: 'PUT', body: data });
    assert.equal(put.status, 201);
    acknowledged.push([sha256(data), data]);
    await d.kill9(); // no graceful anything: straight after the last acknowledgement

    // A staging file left by a crash mid-upload must not survive the next start.
    const store = probeStore(d);
    await store.plantStaging();

    d = await startDaemon({ dataDir: d.dataDir });
    for (const [digest, bytes] of acknowledged) {
      const res = await d.api(`/api/blobs/${digest}`);
      assert.equal(res.status, 200, `blob ${digest} after restart`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
    }
    assert.deepEqual(await store.leftovers(), []);
    store.close();
    // Dedup still knows them after the restart.
    const again = await d.api('/api/blobs', { method: 'POST', body: acknowledged[1]![1] });
    assert.equal(((await again.json()) as { deduplicated: boolean }).deduplicated, true);
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

test('a client that disconnects mid-upload leaves no blob and no staging file', async () => {
  const d = await startDaemon();
  try {
    const controller = new AbortController();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent >= 2 * 1024 * 1024) {
          controller.abort();
          return new Promise(() => {}); // never finish: the abort ends it
        }
        sent += 256 * 1024;
        ctl.enqueue(randomData(256 * 1024));
      },
    });
    await assert.rejects(
      d.api('/api/blobs', { method: 'POST', body, duplex: 'half', signal: controller.signal } as RequestInit),
    );
    const store = probeStore(d);
    await waitFor(async () => (await store.leftovers()).length === 0, 'the staging file to go');
    assert.deepEqual(await store.list(), []);
    store.close();
    assert.equal((await d.api('/healthz')).status, 200);
    assert.ok(!d.output().includes('unhandled error'), 'a client going away is not a server fault');
  } finally {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});
