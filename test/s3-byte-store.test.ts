// What only the S3 byte store does, on a real Ceph RGW at its default 5 MiB minimum part size: ping's plain
// messages, bounded memory for a large stage (G5), a lost hash rebuilt by seal-and-rebase (and recovered when
// a crash interrupts it), a failed tail write that keeps the acknowledged offset (G1), keys kept inside the
// prefix. The ByteStore contract itself runs in storage.test.ts.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { failingProxy } from './helpers/failing-proxy.ts';
import { createServer as createTcpServer } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CompleteMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { UploadCursor } from '../src/storage/byte-store.ts';
import { S3ByteStore, type S3StoreOptions } from '../src/storage/s3/s3-byte-store.ts';
import { rgwTestOptions, startRgw, type Rgw } from './helpers/rgw.ts';
import { generated } from './helpers/streamed.ts';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of r) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

const chunked = (data: Buffer, size = 100_000) => Readable.from(Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size)));

/** A port with nothing listening on it (bound, then closed). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createTcpServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}


describe('S3 byte store on Ceph RGW', rgwTestOptions(), () => {
  let rgw: Rgw;
  let s3: S3Client;
  const stores: S3ByteStore[] = [];
  before(async () => {
    rgw = await startRgw(); // the shared gateway: RGW's default 5 MiB minimum part size
    s3 = rgw.client();
  });
  after(() => {
    for (const s of stores) s.close();
    s3?.destroy();
  });

  const options = async (extra: Partial<S3StoreOptions> = {}): Promise<S3StoreOptions> => ({
    endpoint: rgw.endpoint,
    bucket: await rgw.newBucket(),
    region: rgw.region,
    prefix: 'blobd',
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    partSize: 5 * MiB,
    ...extra,
  });
  const open = async (opts: S3StoreOptions) => {
    const store = await S3ByteStore.open(opts);
    stores.push(store);
    return store;
  };
  const keys = async (bucket: string, prefix: string) =>
    ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();
  const openUploads = async (bucket: string) => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => u.UploadId!);

  test('a stage holds bounded memory (G5): a 4× larger body than 64 MiB leaves peak RSS where it was', async (t) => {
    const store = await open(await options());
    /** The highest RSS seen while `work` runs, sampled every 5 ms, in MiB. */
    const peakDuring = async (work: () => Promise<unknown>) => {
      let peak = process.memoryUsage.rss();
      const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
      try {
        await work();
      } finally {
        clearInterval(timer);
      }
      return Math.max(peak, process.memoryUsage.rss()) / MiB;
    };
    const stageGenerated = async (size: number) => {
      const body = generated(size);
      const started = performance.now();
      const staged = await store.stage(body.stream);
      t.diagnostic(`staged ${size / MiB} MiB at ${(size / MiB / ((performance.now() - started) / 1000)).toFixed(0)} MiB/s`);
      assert.equal(staged.digest, body.digest());
      assert.equal(staged.size, size);
      const location = await store.commit(staged);
      assert.equal((await store.stat(location))?.size, size);
      await store.delete(location); // the OSD keeps every byte in RAM
    };
    // The first body takes the pipeline (part buffers, sockets, the generator's garbage) to its steady state.
    const warm = await peakDuring(() => stageGenerated(64 * MiB));
    const big = await peakDuring(() => stageGenerated(256 * MiB));
    t.diagnostic(`peak RSS ${warm.toFixed(0)} MiB staging 64 MiB, ${big.toFixed(0)} MiB staging 256 MiB (5 MiB parts, 4 in flight)`);
    assert.ok(big - warm < 32, `peak RSS grew ${(big - warm).toFixed(0)} MiB with a 4× larger body`);
  });

  test('at RGW defaults (5 MiB minimum part, 8 MiB parts): stage, session, seal and rebase, commit', async () => {
    const opts = await options({ partSize: undefined });
    const store = await open(opts);
    const data = randomBytes(20 * MiB + 11);
    const staged = await store.stage(chunked(data));
    assert.equal(staged.digest, sha(data));
    const location = await store.commit(staged);
    assert.ok((await readAll(await store.openRead(location))).equals(data));

    const id = '0190a2b3-c4d5-7000-8000-00000000d5f1';
    let cursor = await store.createUpload(id);
    let offset = 0;
    for (const piece of [data.subarray(0, 9 * MiB), data.subarray(9 * MiB)]) {
      const res = await store.appendUpload(id, offset, cursor, chunked(piece), () => {});
      await store.settleAppend(id, cursor, res.cursor);
      offset += res.written;
      cursor = res.cursor;
    }
    const read = await store.readUpload(id, offset, cursor);
    assert.ok((await readAll(read.bytes)).equals(data));
    await store.settleAppend(id, cursor, read.cursor);
    await store.commitUpload(id, offset, read.cursor, sha(data));
    assert.ok((await readAll(await store.openRead(store.uploadLocation(id, sha(data))))).equals(data));
    assert.deepEqual(await openUploads(opts.bucket), []);
    assert.deepEqual(await keys(opts.bucket, 'blobd/uploads/'), []);
  });

  test('ping says plainly what is wrong, and never shows the secret', async () => {
    const good = await options();
    await (await open(good)).ping();
    const secret = `${rgw.secretAccessKey.slice(0, 10)}wrongwrongwrong`;
    const cases: [string, Partial<S3StoreOptions>, RegExp][] = [
      ['wrong secret', { credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: secret } }, /^the S3 store refused the credentials \(SignatureDoesNotMatch\)/],
      ['unknown key id', { credentials: { accessKeyId: 'NOSUCHKEY0000', secretAccessKey: secret } }, /^the S3 store refused the credentials \(InvalidAccessKeyId\)/],
      ['missing bucket', { bucket: 'no-such-bucket-here' }, /^the S3 bucket "no-such-bucket-here" does not exist at http:\/\/127\.0\.0\.1:\d+$/],
    ];
    const port = await closedPort();
    cases.push(['nothing listening', { endpoint: `http://127.0.0.1:${port}` }, new RegExp(`^cannot reach the S3 endpoint http://127\\.0\\.0\\.1:${port}: ECONNREFUSED$`)]);
    for (const [what, change, expected] of cases) {
      const err = await (await open({ ...good, ...change })).ping().then(() => null, (e: Error) => e);
      assert.ok(err, `${what}: ping resolved`);
      assert.match(err.message, expected, what);
      assert.ok(!err.message.includes(secret) && !err.message.includes(rgw.secretAccessKey), `${what}: the secret is not in the message`);
    }
  });

  test('a hung store gives an error, not a hang', async () => {
    const store = await open(await options({ socketTimeoutMs: 1000 }));
    await store.ping();
    await rgw.pause('hang');
    try {
      await assert.rejects(store.ping(), /^Error: cannot reach the S3 endpoint http:\/\/127\.0\.0\.1:\d+: TimeoutError$/);
    } finally {
      await rgw.resume();
    }
    await store.ping();
  });

  /** A session of more than two parts, written by one store (a process that then goes away). */
  const twoPartsAndATail = async (store: S3ByteStore, id: string) => {
    const sent = randomBytes(12 * MiB + 5); // parts of 5 MiB: two, and a 2 MiB tail
    let cursor: UploadCursor = await store.createUpload(id);
    let offset = 0;
    for (const piece of [sent.subarray(0, 3 * MiB), sent.subarray(3 * MiB)]) {
      const res = await store.appendUpload(id, offset, cursor, chunked(piece), () => {});
      await store.settleAppend(id, cursor, res.cursor);
      offset += res.written;
      cursor = res.cursor;
    }
    assert.equal(offset, sent.length);
    assert.equal(JSON.parse(cursor!).p.length, 2);
    return { sent, offset, cursor };
  };

  test('a lost hash: another process reads the session back (seal and rebase), appends more and commits the right digest', async () => {
    const opts = await options();
    const id = '0190a2b3-c4d5-7000-8000-00000000a001';
    const first = await twoPartsAndATail(await open(opts), id);
    // A new process: its own client, and no hash of the session's bytes.
    const store = await open(opts);
    const hash = createHash('sha256');
    const read = await store.readUpload(id, first.offset, first.cursor);
    for await (const c of read.bytes) hash.update(c as Buffer);
    await store.settleAppend(id, first.cursor, read.cursor);
    assert.notEqual(read.cursor, first.cursor);
    const more = randomBytes(6 * MiB + 3);
    const res = await store.appendUpload(id, first.offset, read.cursor, chunked(more), (c) => hash.update(c));
    await store.settleAppend(id, read.cursor, res.cursor);
    const digest = `sha256:${hash.digest('hex')}`;
    const all = Buffer.concat([first.sent, more]);
    assert.equal(digest, sha(all), 'the hash rebuilt from the read-back bytes plus the new ones');
    await store.commitUpload(id, all.length, res.cursor, digest);
    assert.ok((await readAll(await store.openRead(store.uploadLocation(id, digest)))).equals(all));
    assert.deepEqual(await openUploads(opts.bucket), [], 'no multipart upload left open');
    assert.deepEqual(await keys(opts.bucket, 'blobd/uploads/'), [], 'no tail left');
  });

  test('a seal interrupted before its cursor was recorded: recovery goes on from the sealed bytes', async () => {
    const opts = await options();
    const id = '0190a2b3-c4d5-7000-8000-00000000a002';
    const first = await twoPartsAndATail(await open(opts), id);
    const store = await open(opts);
    // The seal and the new upload happen; the process dies before recording the cursor readUpload gave.
    const lost = await store.readUpload(id, first.offset, first.cursor);
    lost.bytes.destroy();
    const recovered = await store.recoverUpload(id, first.offset, first.cursor);
    assert.ok(recovered !== null, 'the acknowledged bytes are still there (in the sealed object)');
    assert.equal((await openUploads(opts.bucket)).length, 1, 'the orphaned upload of the interrupted rebase is aborted; one remains');
    const more = Buffer.from('+after recovery');
    const res = await store.appendUpload(id, first.offset, recovered.cursor, Readable.from([more]), () => {});
    const all = Buffer.concat([first.sent, more]);
    await store.commitUpload(id, all.length, res.cursor, sha(all));
    assert.ok((await readAll(await store.openRead(store.uploadLocation(id, sha(all))))).equals(all));
  });

  test('recovery removes what the recorded cursor does not name: a later tail, an upload a later append began', async () => {
    const opts = await options();
    const store = await open(opts);
    const id = '0190a2b3-c4d5-7000-8000-00000000a007';
    const acked = randomBytes(3 * MiB); // a tail only: no multipart upload yet
    const res = await store.appendUpload(id, 0, null, chunked(acked), () => {});
    const tails = await keys(opts.bucket, 'blobd/uploads/');
    // An append that began the upload (a whole part) and wrote a new tail, then the process died unrecorded.
    await store.appendUpload(id, acked.length, res.cursor, chunked(randomBytes(4 * MiB)), () => {});
    assert.equal((await openUploads(opts.bucket)).length, 1);
    assert.equal((await keys(opts.bucket, 'blobd/uploads/')).length, 2);
    assert.deepEqual(await store.recoverUpload(id, acked.length, res.cursor), { cursor: res.cursor });
    assert.deepEqual(await keys(opts.bucket, 'blobd/uploads/'), tails, 'only the recorded tail is left');
    assert.deepEqual(await openUploads(opts.bucket), [], 'the unrecorded upload is aborted');
    const ids: string[] = [];
    for await (const u of store.listUploads()) ids.push(u);
    assert.deepEqual(ids, [id]);
    const read = await store.readUpload(id, acked.length, res.cursor);
    assert.ok((await readAll(read.bytes)).equals(acked));
  });

  test('a completion around unrecorded parts that a crash cut half-way: the session keeps its bytes and completes right', async () => {
    const opts = await options();
    const store = await open(opts);
    const id = '0190a2b3-c4d5-7000-8000-00000000a008';
    const acked = randomBytes(7 * MiB + 3); // one part and a tail
    const res = await store.appendUpload(id, 0, null, chunked(acked), () => {});
    // An append never recorded leaves parts 2 and 3 in the upload (RGW will not complete without them).
    await store.appendUpload(id, acked.length, res.cursor, chunked(randomBytes(11 * MiB)), () => {});
    // The first half of a completion around them, then the crash: the upload is gone, the object holds the
    // recorded part and the unrecorded ones, the tail is still on its own.
    const cursor = JSON.parse(res.cursor!) as { u: string; p: [number, string, number][] };
    const key = `blobd/blobs/${id}`;
    const parts = ((await s3.send(new ListPartsCommand({ Bucket: opts.bucket, Key: key, UploadId: cursor.u }))).Parts ?? []).map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag }));
    assert.deepEqual(parts.map((p) => p.PartNumber), [1, 2, 3]);
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: opts.bucket, Key: key, UploadId: cursor.u, MultipartUpload: { Parts: parts } }));

    assert.equal(await store.uploadCommitted(id, acked.length, res.cursor, sha(acked)), false, 'not committed: the session can go on');
    const recovered = await store.recoverUpload(id, acked.length, res.cursor);
    assert.ok(recovered !== null, 'the acknowledged bytes are still there');
    const read = await store.readUpload(id, acked.length, recovered.cursor);
    assert.ok((await readAll(read.bytes)).equals(acked));
    await store.commitUpload(id, acked.length, read.cursor, sha(acked));
    assert.ok((await readAll(await store.openRead(store.uploadLocation(id, sha(acked))))).equals(acked));
  });

  test('a tail write that fails keeps the acknowledged offset and bytes (G1); nothing of the failed append stays', async () => {
    const opts = await options();
    let failTails = false;
    const proxy = await failingProxy(rgw.endpoint, (method, url) => failTails && method === 'PUT' && url.includes('/blobd/uploads/') && !url.includes('partNumber'));
    try {
      const store = await open({ ...opts, endpoint: proxy.endpoint });
      const id = '0190a2b3-c4d5-7000-8000-00000000a003';
      const acked = randomBytes(7 * MiB + 1); // a part and a tail
      const res = await store.appendUpload(id, 0, null, chunked(acked), () => {});
      const cursor = res.cursor;
      const tailsBefore = await keys(opts.bucket, 'blobd/uploads/');
      assert.equal(tailsBefore.length, 1);
      failTails = true;
      // This append's whole parts go up; its tail is refused: the append fails, and the caller abandons it.
      await assert.rejects(store.appendUpload(id, acked.length, cursor, chunked(randomBytes(6 * MiB + 9)), () => {}), /InternalError|injected/);
      await store.abandonAppend(id, acked.length, cursor);
      failTails = false;
      assert.deepEqual(await keys(opts.bucket, 'blobd/uploads/'), tailsBefore, 'the acknowledged tail is untouched');
      const read = await store.readUpload(id, acked.length, cursor);
      assert.ok((await readAll(read.bytes)).equals(acked), 'the acknowledged bytes, exactly');
      await store.settleAppend(id, cursor, read.cursor);
      const more = randomBytes(1000);
      const next = await store.appendUpload(id, acked.length, read.cursor, Readable.from([more]), () => {});
      const all = Buffer.concat([acked, more]);
      await store.commitUpload(id, all.length, next.cursor, sha(all));
      assert.ok((await readAll(await store.openRead(store.uploadLocation(id, sha(all))))).equals(all));
    } finally {
      proxy.server.close();
    }
  });

  test('nothing outside the layout is ever named: bad locations and cursors are refused; strays are what fits no layout', async () => {
    const opts = await options();
    const store = await open(opts);
    for (const bad of ['../blobs/x', 'blobs/../../etc', 'quarantine/blobs/0190a2b3-c4d5-7000-8000-00000000a004', 'blobs/', '/blobs/0190a2b3-c4d5-7000-8000-00000000a004', 'sha256:abc']) {
      await assert.rejects(store.stat(bad), /malformed location/, bad);
      await assert.rejects(store.delete(bad), /malformed location/, bad);
    }
    const id = '0190a2b3-c4d5-7000-8000-00000000a005';
    const other = '0190a2b3-c4d5-7000-8000-00000000a006';
    const foreign = JSON.stringify({ u: null, p: [], t: [`uploads/${other}/0-0123456789abcdef`, 5] });
    await assert.rejects(store.appendUpload(id, 5, foreign, Readable.from([Buffer.from('x')]), () => {}), /malformed tail/);
    await assert.rejects(store.commitUpload(id, 5, JSON.stringify({ u: null, p: [], t: ['../../x', 5] }), 'sha256:x'), /malformed/);
    await assert.rejects(store.readUpload(id, 9, foreign), /malformed tail/);

    const staged = await store.stage(Readable.from([Buffer.from('blob')]));
    const location = await store.commit(staged);
    // Until its row is written (discard), a stage is not listed: GC's sweep of row-less keys must not take it.
    for await (const l of store.list()) assert.notEqual(l, location, 'listed before its row was written');
    await store.discard(staged);
    for (const key of ['blobd/blobs/not-an-id', 'blobd/odd', 'elsewhere/blobs/x']) {
      await s3.send(new PutObjectCommand({ Bucket: opts.bucket, Key: key, Body: 'x' }));
    }
    const strays: string[] = [];
    for await (const s of store.strays()) strays.push(s);
    assert.deepEqual(strays.sort(), ['blobd/blobs/not-an-id', 'blobd/odd'], 'keys outside the prefix are not ours to report');
    const listed: string[] = [];
    for await (const l of store.list()) listed.push(l);
    assert.deepEqual(listed, [location]);
    assert.equal(store.nameOf(location), `blobd/${location}`);
  });
});
