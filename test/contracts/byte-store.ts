// What every ByteStore must do, written once: run it against each implementation (filesystem today,
// S3-compatible later) with a factory that gives a fresh, empty store.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { BytesNotFoundError, type ByteStore } from '../../src/storage/byte-store.ts';
import { waitFor } from '../helpers/wait.ts';

export interface ByteStoreFixture {
  store: ByteStore;
  /** How many staged-but-uncommitted blobs the implementation currently holds. */
  stagedCount(): Promise<number>;
  dispose(): Promise<void>;
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of r) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

async function listAll(store: ByteStore): Promise<string[]> {
  const out: string[] = [];
  for await (const d of store.list()) out.push(d);
  return out.sort();
}

export function byteStoreContract(name: string, make: () => Promise<ByteStoreFixture>): void {
  describe(`ByteStore contract: ${name}`, () => {
    const withStore = (fn: (f: ByteStoreFixture) => Promise<void>) => async () => {
      const f = await make();
      try {
        await fn(f);
      } finally {
        await f.dispose();
      }
    };

    test('stage hashes what it streams; commit makes it readable under its digest', withStore(async ({ store, stagedCount }) => {
      const data = randomBytes(3 * 1024 * 1024 + 7);
      const staged = await store.stage(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      assert.equal(staged.digest, digestOf(data));
      assert.equal(staged.size, data.length);
      assert.equal(await store.stat(staged.digest), null, 'staged bytes are not visible yet');
      await store.commit(staged);
      await store.discard(staged); // harmless after commit
      assert.equal((await store.stat(staged.digest))?.size, data.length);
      assert.ok((await readAll(await store.openRead(staged.digest))).equals(data));
      assert.deepEqual(await listAll(store), [staged.digest]);
      assert.equal(await stagedCount(), 0);
    }));

    test('the empty blob', withStore(async ({ store }) => {
      const staged = await store.stage(Readable.from([]));
      assert.equal(staged.digest, 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
      await store.commit(staged);
      assert.equal((await store.stat(staged.digest))?.size, 0);
      assert.equal((await readAll(await store.openRead(staged.digest))).length, 0);
    }));

    test('ranges are inclusive', withStore(async ({ store }) => {
      const data = Buffer.from('0123456789');
      const staged = await store.stage(Readable.from([data]));
      await store.commit(staged);
      assert.equal(await text(await store.openRead(staged.digest, { start: 2, end: 4 })), '234');
      assert.equal(await text(await store.openRead(staged.digest, { start: 9, end: 9 })), '9');
    }));

    test('openCopy hands out one chunk at a time: a write that has not settled holds the copy', withStore(async ({ store }) => {
      // What bounds the memory of a download whose client stopped reading: it holds one chunk, no more.
      const data = randomBytes(5 * 1024 * 1024 + 3);
      await store.commit(await store.stage(Readable.from([data])));
      const copy = await store.openCopy(digestOf(data));
      const parts: Buffer[] = [];
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const copied = copy.pipeTo(async (chunk) => {
        parts.push(Buffer.from(chunk));
        if (parts.length === 1) await held;
      });
      await waitFor(() => parts.length > 0, 'the first chunk');
      // Time for a copy that reads ahead to do so: a whole read of the blob through the same store.
      assert.ok((await readAll(await store.openRead(digestOf(data)))).equals(data));
      assert.equal(parts.length, 1, 'a second chunk was handed out while the first was still being written');
      release();
      assert.equal(await copied, data.length);
      assert.ok(Buffer.concat(parts).equals(data));
    }));

    test('discard forgets staged bytes', withStore(async ({ store, stagedCount }) => {
      const staged = await store.stage(Readable.from([Buffer.from('gone')]));
      assert.equal(await stagedCount(), 1);
      await store.discard(staged);
      await store.discard(staged);
      assert.equal(await stagedCount(), 0);
      assert.equal(await store.stat(staged.digest), null);
    }));

    test('a failing source rejects with its own error and leaves nothing', withStore(async ({ store, stagedCount }) => {
      const boom = new Error('client went away');
      const source = new Readable({ read() {} });
      source.push(randomBytes(100_000));
      setImmediate(() => source.destroy(boom));
      await assert.rejects(store.stage(source), (err) => err === boom);
      assert.equal(await stagedCount(), 0);
      assert.deepEqual(await listAll(store), []);
    }));

    test('absent digests: stat null, openRead BytesNotFoundError, delete is fine', withStore(async ({ store }) => {
      const absent = digestOf(Buffer.from('absent'));
      assert.equal(await store.stat(absent), null);
      await assert.rejects(store.openRead(absent), BytesNotFoundError);
      await store.delete(absent);
    }));

    test('concurrent commits of one digest leave one readable blob', withStore(async ({ store, stagedCount }) => {
      const data = randomBytes(200_000);
      const staged = await Promise.all(Array.from({ length: 8 }, () => store.stage(Readable.from([data]))));
      await Promise.all(staged.map((s) => store.commit(s)));
      assert.deepEqual(await listAll(store), [digestOf(data)]);
      assert.ok((await readAll(await store.openRead(digestOf(data)))).equals(data));
      assert.equal(await stagedCount(), 0);
    }));

    test('delete removes the bytes', withStore(async ({ store }) => {
      const staged = await store.stage(Readable.from([Buffer.from('bye')]));
      await store.commit(staged);
      await store.delete(staged.digest);
      assert.equal(await store.stat(staged.digest), null);
      assert.deepEqual(await listAll(store), []);
    }));

    test('ping resolves on a healthy store; free space is a positive number', withStore(async ({ store }) => {
      await store.ping();
      assert.ok((await store.freeSpace()) > 0);
    }));

    const ID = '01a2b3c4-0000-7000-8000-000000000001';

    test('upload bytes grow by positional appends and report each written chunk', withStore(async ({ store }) => {
      await store.createUpload(ID);
      assert.equal(await store.uploadSize(ID), 0);
      const seen: Buffer[] = [];
      const a = randomBytes(300_000);
      const b = randomBytes(5);
      assert.deepEqual(await store.appendUpload(ID, 0, Readable.from([a]), (c) => seen.push(Buffer.from(c))), { written: a.length });
      assert.deepEqual(await store.appendUpload(ID, a.length, Readable.from([b]), (c) => seen.push(Buffer.from(c))), { written: 5 });
      assert.ok(Buffer.concat(seen).equals(Buffer.concat([a, b])), 'onWritten saw exactly the bytes, in order');
      assert.equal(await store.uploadSize(ID), a.length + 5);
      assert.ok((await readAll(await store.readUpload(ID, a.length))).equals(a));
      assert.equal((await readAll(await store.readUpload(ID, 0))).length, 0);
      assert.deepEqual(await listUploads(store), [ID]);
    }));

    test('a failing source keeps what was written and returns its error', withStore(async ({ store }) => {
      await store.createUpload(ID);
      const boom = new Error('client went away');
      const source = new Readable({ read() {} });
      const first = randomBytes(64 * 1024);
      source.push(first);
      setTimeout(() => source.destroy(boom), 50);
      let reported = 0;
      const res = await store.appendUpload(ID, 0, source, (c) => (reported += c.length));
      assert.equal(res.sourceError, boom);
      assert.equal(res.written, first.length);
      assert.equal(reported, first.length);
      assert.equal(await store.uploadSize(ID), first.length);
    }));

    test('a source that fails after several odd-sized chunks: every chunk reported is in the file, and nothing else', withStore(async ({ store }) => {
      await store.createUpload(ID);
      await store.appendUpload(ID, 0, Readable.from([Buffer.from('head')]), () => {});
      // 2.5 MiB in 100 000-byte chunks (never on a batch boundary), then the client goes away.
      const sent = randomBytes(2.5 * 1024 * 1024);
      const source = new Readable({ read() {} });
      for (let at = 0; at < sent.length; at += 100_000) source.push(sent.subarray(at, at + 100_000));
      setImmediate(() => source.destroy(new Error('client went away')));
      const seen: Buffer[] = [];
      const res = await store.appendUpload(ID, 4, source, (c) => seen.push(Buffer.from(c)));
      const reported = Buffer.concat(seen);
      assert.ok(res.sourceError instanceof Error);
      assert.equal(res.written, reported.length);
      assert.ok(reported.equals(sent.subarray(0, reported.length)), 'the chunks reported are a prefix of what was sent, in order');
      assert.equal(await store.uploadSize(ID), 4 + reported.length);
      assert.ok((await readAll(await store.readUpload(ID, 4 + reported.length))).equals(Buffer.concat([Buffer.from('head'), reported])));
    }));

    test('a slow source: bytes short of a whole write reach the file while it waits for more', withStore(async ({ store }) => {
      await store.createUpload(ID);
      const source = new Readable({ read() {} });
      source.push(randomBytes(300_000));
      const pending = store.appendUpload(ID, 0, source, () => {});
      await waitFor(async () => (await store.uploadSize(ID)) === 300_000, 'the first 300 000 bytes in the file');
      source.push(randomBytes(5));
      source.push(null);
      assert.deepEqual(await pending, { written: 300_005 });
    }));

    test('truncate cuts the tail; commit moves the bytes under their digest; delete frees them', withStore(async ({ store }) => {
      await store.createUpload(ID);
      const data = Buffer.from('keep this|not this');
      await store.appendUpload(ID, 0, Readable.from([data]), () => {});
      await store.truncateUpload(ID, 9);
      assert.equal(await store.uploadSize(ID), 9);
      const digest = digestOf(data.subarray(0, 9));
      await store.commitUpload(ID, digest);
      assert.equal(await store.uploadSize(ID), null);
      assert.deepEqual(await listUploads(store), []);
      assert.equal(await text(await store.openRead(digest)), 'keep this');
      // A completion whose rows could not be written hands a copy back to the session; the blob stays.
      await store.restoreUpload(ID, digest);
      assert.equal(await store.uploadSize(ID), 9);
      await store.appendUpload(ID, 9, Readable.from([Buffer.from('+more')]), () => {});
      assert.equal(await text(await store.readUpload(ID, 14)), 'keep this+more');
      assert.equal(await text(await store.openRead(digest)), 'keep this', 'appending to the copy leaves the blob alone');
      await store.deleteUpload(ID);
      const other = '01a2b3c4-0000-7000-8000-000000000002';
      await store.createUpload(other);
      await store.deleteUpload(other);
      await store.deleteUpload(other);
      assert.equal(await store.uploadSize(other), null);
    }));

    test('quarantine moves a blob aside and keeps its bytes; nameOf names where a blob lives', withStore(async ({ store }) => {
      const data = randomBytes(300);
      await store.commit(await store.stage(Readable.from([data])));
      const digest = digestOf(data);
      assert.match(store.nameOf(digest), new RegExp(digest.slice(7)));
      const before = await store.stat(digest);
      assert.ok(before && before.size === 300 && before.modifiedAt > 0 && before.modifiedAt <= Date.now() + 1000);
      const moved = await store.quarantine(digest);
      assert.ok(moved !== null && !moved.startsWith('/'), 'a name relative to the store');
      assert.equal(await store.stat(digest), null, 'no longer served');
      assert.deepEqual(await listAll(store), []);
      assert.equal(await store.quarantine(digest), null, 'nothing left to move');
      const strays: string[] = [];
      for await (const n of store.strays()) strays.push(n);
      assert.deepEqual(strays, [], 'quarantined bytes are not strays of the blob area');
    }));
  });
}

async function listUploads(store: ByteStore): Promise<string[]> {
  const out: string[] = [];
  for await (const id of store.listUploads()) out.push(id);
  return out.sort();
}
