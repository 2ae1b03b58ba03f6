// Downloads whose clients stop reading: however many there are, the daemon's memory stays bounded, it keeps
// answering, and a client that reads nothing for --send-timeout has its connection closed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { removeDir, startDaemon, testStore, type Daemon } from './helpers/daemon.ts';
import { memoryMiB, uploadGenerated } from './helpers/streamed.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/** A GET over a raw socket whose reading the test controls: it reads the head, then reads on only when told. */
class RawDownload {
  readonly socket: Socket;
  status = 0;
  received = 0;
  closed = false;
  private head = Buffer.alloc(0);
  private readonly hash = createHash('sha256');
  readonly headers: Promise<void>;

  constructor(d: Daemon, digest: string) {
    const url = new URL(d.url);
    this.socket = connect(Number(url.port), url.hostname);
    this.socket.write(`GET /api/blobs/${digest} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${d.token}\r\n\r\n`);
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => {}); // a reset is seen as 'close'
    this.headers = new Promise((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        if (this.status !== 0) return this.body(chunk);
        this.head = Buffer.concat([this.head, chunk]);
        const end = this.head.indexOf('\r\n\r\n');
        if (end < 0) return;
        this.status = Number(/^HTTP\/1\.1 (\d+)/.exec(this.head.toString('latin1'))?.[1]);
        // Stop reading at once: what already came stays in this socket's buffer.
        this.socket.pause();
        this.body(this.head.subarray(end + 4));
        resolve();
      };
      this.socket.on('data', onData);
      this.socket.once('close', () => reject(new Error(`closed before the head (status ${this.status})`)));
    });
    this.headers.catch(() => {});
  }

  private body(chunk: Buffer): void {
    this.received += chunk.length;
    this.hash.update(chunk);
  }

  /** Reads the rest; resolves with the digest of every body byte once `size` of them came. */
  async readAll(size: number): Promise<string> {
    this.socket.resume();
    await waitFor(() => this.received >= size || this.closed, 'the rest of the download', 120_000);
    assert.equal(this.received, size);
    return `sha256:${this.hash.digest('hex')}`;
  }
}

test('200 downloads whose clients stop reading hold bounded memory; the daemon keeps answering', async (t) => {
  // The send timeout is set long (via the environment, which an older daemon ignores) so that nothing is
  // cut while the test measures.
  const d = await startDaemon({ env: { BLOBD_SEND_TIMEOUT: '10m' } });
  const downloads: RawDownload[] = [];
  try {
    const { digest } = await uploadGenerated(d, SIZE);
    // A whole download first: Node's lazily freed socket and file buffers reach their plateau.
    const warm = new RawDownload(d, digest);
    await warm.headers;
    assert.equal(await warm.readAll(SIZE), digest);
    warm.socket.destroy();
    const before = await memoryMiB(d.proc.pid!);

    for (let batch = 0; batch < 10; batch++) {
      const opened = Array.from({ length: 20 }, () => new RawDownload(d, digest));
      downloads.push(...opened);
      await Promise.all(opened.map((o) => o.headers));
    }
    assert.ok(downloads.every((o) => o.status === 200));
    // Until the daemon has put into every socket what it will: its RSS stops moving.
    let last = -1;
    await waitFor(async () => {
      const { rss } = await memoryMiB(d.proc.pid!);
      const settled = Math.abs(rss - last) < 1;
      last = rss;
      if (!settled) await new Promise((r) => setTimeout(r, 250));
      return settled;
    }, 'the daemon RSS to settle', 60_000);

    const health = await d.api('/healthz');
    assert.equal(health.status, 200);
    await health.arrayBuffer();

    // Three of them read on: every byte arrives, right.
    for (const o of downloads.slice(0, 3)) assert.equal(await o.readAll(SIZE), digest);
    const after = await memoryMiB(d.proc.pid!);
    const grew = after.peak - before.peak;
    t.diagnostic(`RSS ${before.rss.toFixed(0)} MiB before, peak ${after.peak.toFixed(0)} MiB with 200 paused downloads (+${grew.toFixed(0)} MiB)`);
    // Before the bound, each paused download held its two 1 MiB copy buffers: +380 MiB for 200. On S3 each
    // paused download also holds its GetObject response, paused with a socket read or two in it (64 KiB
    // each): +54 MiB on a quiet machine, +68 MiB under the full suite's load.
    const bound = testStore() === 's3' ? 100 : 64;
    assert.ok(grew < bound, `peak RSS grew ${grew.toFixed(0)} MiB with 200 paused downloads (bound ${bound} MiB)`);
    // None was cut: a paused client is left alone until its send timeout.
    assert.doesNotMatch(await (await d.api('/metrics')).text(), /^blobd_download_send_timeouts_total [1-9]/m);
  } finally {
    for (const o of downloads) o.socket.destroy();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});

test('a client that reads nothing for --send-timeout has its connection closed and counted', async () => {
  // 2 s: short for the test, long enough that a client reading at full speed is never cut on a busy machine.
  const d = await startDaemon({ args: ['--send-timeout', '2s', '--log-level', 'info'] });
  const stalled: RawDownload[] = [];
  try {
    const { digest } = await uploadGenerated(d, SIZE);
    const paused = new RawDownload(d, digest);
    stalled.push(paused);
    await paused.headers;
    assert.equal(paused.status, 200);
    // The client reads nothing, so it cannot see the connection go until it reads again: ask the daemon.
    await waitFor(async () => {
      const metrics = await (await d.api('/metrics')).text();
      return /^blobd_download_send_timeouts_total 1$/m.test(metrics);
    }, 'the daemon to count the silent download as cut', 60_000);
    await waitFor(() => /download cut: its socket took no more bytes for the send timeout/.test(d.output()), 'the log line of the cut');
    // Reading again, the client gets what was in the socket buffers, then the end: never the whole blob.
    paused.socket.resume();
    await waitFor(() => paused.closed, 'the connection of the cut download to close', 60_000);
    assert.ok(paused.received < SIZE, `the silent client got all ${paused.received} bytes`);

    // A client that reads keeps its download whatever the timeout: all the bytes, right.
    const reading = new RawDownload(d, digest);
    stalled.push(reading);
    await reading.headers;
    assert.equal(await reading.readAll(SIZE), digest);
  } finally {
    for (const o of stalled) o.socket.destroy();
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  }
});
