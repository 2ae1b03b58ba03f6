// What every ByteStore must do, written once: run it against each implementation (the local filesystem,
// an S3-compatible store) with a factory that gives a fresh, empty store. Where the stores differ by design
// (content addresses vs unique keys) it asserts the promise both keep, never one store's way of keeping it.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { BytesNotFoundError, type ByteStore, type Location, type StagedBlob, type UploadCursor } from '../../src/storage/byte-store.ts';
import { waitFor } from '../helpers/wait.ts';

export interface ByteStoreFixture {
  store: ByteStore;
  /**
   * Bytes per part where the store writes in parts (the suite's sessions use sizes like 2.5 × partSize so
   * that they cross part boundaries); any size where it does not.
   */
  partSize: number;
  /** How many staged-but-uncommitted blobs the store holds; `committed` are the locations the test committed. */
  stagedCount(committed: readonly Location[]): Promise<number>;
  /**
   * Write the blob's row, as core does between commit and discard, for a store some of whose bytes land
   * with the row (the inline tier); absent where committed bytes need no row.
   */
  record?(blob: { digest: string; size: number; location: Location }): Promise<void>;
  dispose(): Promise<void>;
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of r) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const listAll = async (store: ByteStore) => (await collect(store.list())).sort();
/** Commit staged bytes and write their row where the fixture has rows (see ByteStoreFixture.record). */
async function commitStaged(f: ByteStoreFixture, staged: StagedBlob): Promise<Location> {
  const location = await f.store.commit(staged);
  await f.record?.({ digest: staged.digest, size: staged.size, location });
  return location;
}

/** Stage and commit a body as core does, discarding the staged handle once "its row is written". */
async function stored(f: ByteStoreFixture, source: Readable): Promise<string> {
  const staged = await f.store.stage(source);
  const location = await commitStaged(f, staged);
  await f.store.discard(staged);
  return location;
}
const listUploads = async (store: ByteStore) => (await collect(store.listUploads())).sort();

/** `data` as a body of `size`-byte chunks (100 000 by default: never on a part or batch boundary). */
const chunked = (data: Buffer, size = 100_000) => Readable.from(Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size)));

/**
 * A session driven as core drives one: every append's cursor is recorded with its offset and settled, and
 * the bytes the store reported are kept to compare with what it gives back.
 */
class Session {
  offset = 0;
  cursor: UploadCursor = null;
  readonly sent: Buffer[] = [];

  constructor(
    readonly store: ByteStore,
    readonly id: string,
  ) {}

  static async create(store: ByteStore, id: string): Promise<Session> {
    const s = new Session(store, id);
    s.cursor = await store.createUpload(id);
    return s;
  }

  /** Appends `source` (or `data` in odd chunks) and records the result; what onChunk saw, and the result. */
  async append(data: Buffer | Readable) {
    const seen: Buffer[] = [];
    const res = await this.store.appendUpload(this.id, this.offset, this.cursor, Buffer.isBuffer(data) ? chunked(data) : (data as Readable), (c) => seen.push(Buffer.from(c)));
    const reported = Buffer.concat(seen);
    assert.equal(res.written, reported.length, 'written counts exactly the bytes reported');
    const before = this.cursor;
    this.offset += res.written;
    this.cursor = res.cursor;
    await this.store.settleAppend(this.id, before, res.cursor);
    this.sent.push(reported);
    return { res, reported };
  }

  /** The session's bytes through readUpload, recording (and settling) the cursor it hands back. */
  async read(): Promise<Buffer> {
    const { bytes, cursor } = await this.store.readUpload(this.id, this.offset, this.cursor);
    const got = await readAll(bytes);
    const before = this.cursor;
    this.cursor = cursor;
    await this.store.settleAppend(this.id, before, cursor);
    return got;
  }

  get bytes(): Buffer {
    return Buffer.concat(this.sent);
  }

  /** Commits the bytes and returns where they went. */
  async commit(): Promise<Location> {
    const digest = digestOf(this.bytes);
    await this.store.commitUpload(this.id, this.offset, this.cursor, digest);
    return this.store.uploadLocation(this.id, digest);
  }
}

let idSeq = 0;
/** A fresh session id (a uuidv7's shape) for every session of a test. */
const newId = () => `0190a2b3-c4d5-7${(++idSeq).toString(16).padStart(3, '0')}-8000-${randomBytes(6).toString('hex')}`;

export function byteStoreContract(name: string, make: () => Promise<ByteStoreFixture>, options: { skip?: string } = {}): void {
  describe(`ByteStore contract: ${name}`, options, () => {
    const withStore = (fn: (f: ByteStoreFixture) => Promise<void>) => async () => {
      const f = await make();
      try {
        await fn(f);
      } finally {
        await f.dispose();
      }
    };

    test('stage hashes what it streams; commit makes it readable at the location it names', withStore(async (f) => {
      const { store, stagedCount, partSize } = f;
      for (const size of [1000, Math.floor(2.5 * partSize) + 7]) {
        const data = randomBytes(size);
        const staged = await store.stage(chunked(data));
        assert.equal(staged.digest, digestOf(data));
        assert.equal(staged.size, data.length);
        const location = await commitStaged(f, staged);
        await store.discard(staged); // harmless after commit
        assert.equal((await store.stat(location))?.size, data.length);
        assert.ok((await readAll(await store.openRead(location))).equals(data));
        assert.deepEqual(await listAll(store), [location]);
        assert.equal(await stagedCount([location]), 0);
        await store.delete(location);
      }
    }));

    test('the empty blob', withStore(async (f) => {
      const { store } = f;
      const staged = await store.stage(Readable.from([]));
      assert.equal(staged.digest, 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
      const location = await commitStaged(f, staged);
      assert.equal((await store.stat(location))?.size, 0);
      assert.equal((await readAll(await store.openRead(location))).length, 0);
    }));

    test('ranges are inclusive, for reads and copies', withStore(async (f) => {
      const { store } = f;
      const data = Buffer.from('0123456789');
      const location = await stored(f, Readable.from([data]));
      assert.equal(await text(await store.openRead(location, { start: 2, end: 4 })), '234');
      assert.equal(await text(await store.openRead(location, { start: 9, end: 9 })), '9');
      const parts: Buffer[] = [];
      const copy = await store.openCopy(location, { start: 3, end: 7 });
      assert.equal(await copy.pipeTo(async (c) => void parts.push(Buffer.from(c))), 5);
      assert.equal(Buffer.concat(parts).toString(), '34567');
    }));

    test('openCopy hands out one chunk at a time: a write that has not settled holds the copy', withStore(async (f) => {
      const { store } = f;
      // What bounds the memory of a download whose client stopped reading: it holds one chunk, no more.
      const data = randomBytes(5 * 1024 * 1024 + 3);
      const location = await stored(f, Readable.from([data]));
      const copy = await store.openCopy(location);
      const parts: Buffer[] = [];
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const copied = copy.pipeTo(async (chunk) => {
        parts.push(Buffer.from(chunk));
        if (parts.length === 1) await held;
      });
      await waitFor(() => parts.length > 0, 'the first chunk');
      // Time for a copy that reads ahead to do so: a whole read of the blob through the same store.
      assert.ok((await readAll(await store.openRead(location))).equals(data));
      assert.equal(parts.length, 1, 'a second chunk was handed out while the first was still being written');
      release();
      assert.equal(await copied, data.length);
      assert.ok(Buffer.concat(parts).equals(data));
      // A copy closed unread is fine, once or twice.
      const unread = await store.openCopy(location);
      await unread.close();
      await unread.close();
    }));

    test('discard forgets staged bytes', withStore(async (f) => {
      const { store, stagedCount } = f;
      const staged = await store.stage(Readable.from([Buffer.from('gone')]));
      assert.equal(await stagedCount([]), 1);
      await store.discard(staged);
      await store.discard(staged);
      assert.equal(await stagedCount([]), 0);
      assert.deepEqual(await listAll(store), []);
    }));

    test('a failing source rejects with its own error and leaves nothing, before or after a whole part', withStore(async (f) => {
      const { store, stagedCount, partSize } = f;
      for (const size of [100_000, Math.floor(2.5 * partSize)]) {
        const boom = new Error('client went away');
        // Once the store has taken the whole body (parts may still be uploading), the client goes.
        let at = 0;
        const source = new Readable({
          read() {
            if (at >= size) return void setImmediate(() => this.destroy(boom));
            this.push(randomBytes(Math.min(100_000, size - at)));
            at += 100_000;
          },
        });
        await assert.rejects(store.stage(source), (err) => err === boom);
        assert.equal(await stagedCount([]), 0);
        assert.deepEqual(await listAll(store), []);
      }
    }));

    test('absent locations: stat null, openRead and openCopy BytesNotFoundError, delete is fine', withStore(async (f) => {
      const { store } = f;
      const absent = await stored(f, Readable.from([Buffer.from('absent')]));
      await store.delete(absent);
      assert.equal(await store.stat(absent), null);
      await assert.rejects(store.openRead(absent), BytesNotFoundError);
      await assert.rejects(store.openCopy(absent), BytesNotFoundError);
      await store.delete(absent);
    }));

    test('concurrent commits of one content: every location named reads back, and list names each once', withStore(async (f) => {
      const { store, stagedCount } = f;
      // A content-addressed store names one location eight times; a store of unique keys names eight.
      const data = randomBytes(200_000);
      const staged = await Promise.all(Array.from({ length: 8 }, () => store.stage(Readable.from([data]))));
      const locations = await Promise.all(staged.map((s) => commitStaged(f, s)));
      await Promise.all(staged.map((s) => store.discard(s))); // their rows are written: done with staging
      const distinct = [...new Set(locations)].sort();
      assert.deepEqual(await listAll(store), distinct);
      for (const l of distinct) assert.ok((await readAll(await store.openRead(l))).equals(data));
      assert.equal(await stagedCount(locations), 0);
    }));

    test('delete removes the bytes', withStore(async (f) => {
      const { store } = f;
      const location = await stored(f, Readable.from([Buffer.from('bye')]));
      await store.delete(location);
      assert.equal(await store.stat(location), null);
      assert.deepEqual(await listAll(store), []);
    }));

    test('ping resolves on a healthy store; free space is a positive number', withStore(async (f) => {
      const { store } = f;
      await store.ping();
      assert.ok((await store.freeSpace()) > 0);
    }));

    test('appends across part boundaries: each chunk reported once, in order; readUpload and commit give exactly them', withStore(async (f) => {
      const { store, partSize } = f;
      const s = await Session.create(store, newId());
      await s.append(randomBytes(Math.floor(2.5 * partSize)));
      await s.append(randomBytes(5));
      await s.append(randomBytes(partSize)); // fills the half part left, and crosses into the next
      assert.equal(s.offset, Math.floor(2.5 * partSize) + 5 + partSize);
      assert.deepEqual(await listUploads(store), [s.id]);
      assert.ok((await s.read()).equals(s.bytes));
      const location = await s.commit();
      assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
      assert.equal((await store.stat(location))?.size, s.offset);
      assert.deepEqual(await listUploads(store), [], 'a committed session has no session bytes left');
    }));

    test('a failing source keeps what arrived and returns its error', withStore(async (f) => {
      const { store } = f;
      const s = await Session.create(store, newId());
      const boom = new Error('client went away');
      const source = new Readable({ read() {} });
      const first = randomBytes(64 * 1024);
      source.push(first);
      setTimeout(() => source.destroy(boom), 50);
      const { res, reported } = await s.append(source);
      assert.equal(res.sourceError, boom);
      assert.equal(res.written, first.length);
      assert.ok(reported.equals(first));
      assert.ok((await s.read()).equals(first));
    }));

    test('a source that fails after several odd-sized chunks: every chunk reported is kept, and nothing else', withStore(async (f) => {
      const { store, partSize } = f;
      const s = await Session.create(store, newId());
      await s.append(Buffer.from('head'));
      // 2.5 parts in 100 000-byte chunks (never on a part or batch boundary), then the client goes away.
      const sent = randomBytes(Math.floor(2.5 * partSize));
      const source = new Readable({ read() {} });
      for (let at = 0; at < sent.length; at += 100_000) source.push(sent.subarray(at, at + 100_000));
      setImmediate(() => source.destroy(new Error('client went away')));
      const { res, reported } = await s.append(source);
      assert.ok(res.sourceError instanceof Error);
      assert.ok(reported.equals(sent.subarray(0, reported.length)), 'the chunks reported are a prefix of what was sent, in order');
      assert.equal(s.offset, 4 + reported.length);
      assert.ok((await s.read()).equals(Buffer.concat([Buffer.from('head'), reported])));
      await s.append(randomBytes(partSize + 1));
      const location = await s.commit();
      assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
    }));

    test('an abandoned append leaves the session at its recorded offset; the next append goes on from there', withStore(async (f) => {
      const { store, partSize } = f;
      const s = await Session.create(store, newId());
      await s.append(randomBytes(Math.floor(1.5 * partSize)));
      // An append whose cursor is never recorded (refused after it, say): the session goes back. It wrote
      // more whole parts than anything after it will, so they are never all overwritten.
      const dropped = await store.appendUpload(s.id, s.offset, s.cursor, chunked(randomBytes(Math.floor(3.2 * partSize))), () => {});
      await store.abandonAppend(s.id, s.offset, s.cursor, dropped.cursor);
      assert.ok((await s.read()).equals(s.bytes), 'the acknowledged bytes, and only they');
      await s.append(randomBytes(Math.floor(1.1 * partSize)));
      assert.ok((await s.read()).equals(s.bytes));
      const location = await s.commit();
      assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
    }));

    test('readUpload gives exactly the first offset bytes, again and again, and a cursor that appends go on from', withStore(async (f) => {
      const { store, partSize } = f;
      const s = await Session.create(store, newId());
      assert.equal((await s.read()).length, 0, 'an empty session reads empty');
      await s.append(randomBytes(Math.floor(2.5 * partSize)));
      assert.ok((await s.read()).equals(s.bytes));
      assert.ok((await s.read()).equals(s.bytes), 'a second read, from the cursor the first handed back');
      // What a sweep of row-less locations must spare: a session's bytes show in list() only at its own location.
      for (const l of await listAll(store)) assert.equal(l, store.sessionLocation(s.id));
      await s.append(randomBytes(partSize + 3));
      assert.ok((await s.read()).equals(s.bytes));
      await s.append(randomBytes(7));
      const location = await s.commit();
      assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
    }));

    test('commitUpload puts the bytes at uploadLocation; uploadCommitted tells before from after', withStore(async (f) => {
      const { store, partSize } = f;
      for (const size of [0, 1000, Math.floor(2.5 * partSize)]) {
        const s = await Session.create(store, newId());
        if (size > 0) await s.append(randomBytes(size));
        const digest = digestOf(s.bytes);
        assert.equal(await store.uploadCommitted(s.id, s.offset, s.cursor, digest), false, `${size} bytes: not committed yet`);
        await store.commitUpload(s.id, s.offset, s.cursor, digest);
        assert.equal(await store.uploadCommitted(s.id, s.offset, s.cursor, digest), true, `${size} bytes: committed`);
        const location = store.uploadLocation(s.id, digest);
        assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
        assert.ok(!(await listUploads(store)).includes(s.id));
      }
    }));

    test('uploadCommitted is null when neither the session nor the location holds the bytes', withStore(async (f) => {
      const { store, partSize } = f;
      for (const size of [1000, Math.floor(2.5 * partSize)]) {
        const s = await Session.create(store, newId());
        await s.append(randomBytes(size));
        await store.deleteUpload(s.id, s.cursor);
        assert.equal(await store.uploadCommitted(s.id, s.offset, s.cursor, digestOf(s.bytes)), null, `${size} bytes`);
      }
    }));

    test('restoreUpload gives a session back its committed bytes: it appends and commits to the right bytes', withStore(async (f) => {
      const { store, partSize } = f;
      for (const size of [0, 1000, Math.floor(2.5 * partSize)]) {
        const s = await Session.create(store, newId());
        if (size > 0) await s.append(randomBytes(size));
        const committed = await s.commit();
        const old = s.bytes;
        s.cursor = await store.restoreUpload(s.id, committed, size);
        await s.append(Buffer.from('+more'));
        assert.ok((await readAll(await store.openRead(committed))).equals(old), 'appending to the session leaves the committed bytes alone');
        await store.delete(committed); // the session no longer needs them
        assert.ok((await s.read()).equals(s.bytes));
        const location = await s.commit();
        assert.ok((await readAll(await store.openRead(location))).equals(Buffer.concat([old, Buffer.from('+more')])), `${size} bytes`);
      }
    }));

    test('recoverUpload keeps the acknowledged bytes and drops what an unrecorded append wrote past them', withStore(async (f) => {
      const { store, partSize } = f;
      const s = await Session.create(store, newId());
      await s.append(randomBytes(Math.floor(1.5 * partSize)));
      // A crash after the bytes were written and before their cursor was recorded.
      await store.appendUpload(s.id, s.offset, s.cursor, chunked(randomBytes(Math.floor(3.3 * partSize))), () => {});
      const recovered = await store.recoverUpload(s.id, s.offset, s.cursor);
      assert.ok(recovered !== null);
      s.cursor = recovered.cursor;
      assert.ok((await s.read()).equals(s.bytes));
      await s.append(randomBytes(Math.floor(1.1 * partSize)));
      const location = await s.commit();
      assert.ok((await readAll(await store.openRead(location))).equals(s.bytes));
    }));

    test('recoverUpload is null when acknowledged bytes are gone', withStore(async (f) => {
      const { store, partSize } = f;
      for (const size of [1000, Math.floor(2.5 * partSize)]) {
        const s = await Session.create(store, newId());
        await s.append(randomBytes(size));
        await store.deleteUpload(s.id, s.cursor);
        assert.equal(await store.recoverUpload(s.id, s.offset, s.cursor), null, `${size} bytes`);
      }
    }));

    test('deleteUpload frees a session, twice is fine, and never touches a committed blob', withStore(async (f) => {
      const { store, partSize } = f;
      const done = await Session.create(store, newId());
      await done.append(randomBytes(Math.floor(2.5 * partSize)));
      const location = await done.commit();
      await store.deleteUpload(done.id, done.cursor);
      assert.ok((await readAll(await store.openRead(location))).equals(done.bytes), 'the committed blob stays');
      const live = await Session.create(store, newId());
      await live.append(randomBytes(Math.floor(1.5 * partSize)));
      assert.deepEqual(await listUploads(store), [live.id]);
      await store.deleteUpload(live.id, live.cursor);
      await store.deleteUpload(live.id, live.cursor);
      assert.deepEqual(await listUploads(store), []);
      assert.ok((await readAll(await store.openRead(location))).equals(done.bytes));
    }));

    test('sessionLocation never throws', withStore(async (f) => {
      const { store } = f;
      const id = newId();
      const l = store.sessionLocation(id);
      assert.ok(l === null || typeof l === 'string');
      assert.doesNotThrow(() => store.sessionLocation('../../etc'));
    }));

    test('quarantine moves a blob aside and keeps its bytes; nameOf names where a blob lives', withStore(async (f) => {
      const { store } = f;
      const data = randomBytes(300);
      const location = await stored(f, Readable.from([data]));
      const other = await stored(f, Readable.from([randomBytes(300)]));
      const name = await store.nameOf(location);
      assert.ok(name.length > 0 && !name.startsWith('/'), 'a name relative to the store');
      assert.notEqual(name, await store.nameOf(other));
      const before = await store.stat(location);
      assert.ok(before && before.size === 300 && before.regular && before.modifiedAt > 0 && before.modifiedAt <= Date.now() + 1000);
      const moved = await store.quarantine(location);
      assert.ok(moved !== null && !moved.startsWith('/'), 'a name relative to the store');
      assert.equal(await store.stat(location), null, 'no longer served');
      assert.deepEqual(await listAll(store), [other]);
      assert.equal(await store.quarantine(location), null, 'nothing left to move');
      assert.deepEqual(await collect(store.strays()), [], 'quarantined bytes are not strays of the blob area');
    }));
  });
}
