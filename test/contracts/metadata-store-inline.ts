// The MetadataStore contract's part about the inline tier, for a store that has one (store.inline): bytes
// offered for a digest are stored by the row write that makes, re-adopts or keeps the row at the digest,
// in its transaction, and by nothing else; a write that fails stores nothing; reads, deletes, quarantine
// and totals see exactly what was stored, across a reopen.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { MetadataStoreFixture } from './metadata-store.ts';
import { blob, digest, newUpload } from './metadata-samples.ts';

type WithStore = (fn: (f: MetadataStoreFixture) => Promise<void>) => () => Promise<void>;

const pin = (principal = 'p') => ({ principal, temporary: false, expiresAt: null });
const noSettings = { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false };

export function inlineContract(withStore: WithStore): void {
  const inlineOnly = (fn: (f: MetadataStoreFixture) => Promise<void>) =>
    withStore(async (f) => {
      if (f.store.inline) await fn(f);
    });

  test('inline: offered bytes are stored by the row write of their digest (commitBlob, addRevision, finishUpload), and kept across a reopen', inlineOnly(async (f) => {
    const inline = f.store.inline!;
    const bytes = [1, 2, 3].map(() => randomBytes(3000));
    for (const [i, b] of bytes.entries()) inline.offer(digest(i + 1), b);
    await f.store.commitBlob(blob(1, 3000), pin());
    await f.store.putBucket('b', noSettings);
    const added = await f.store.addRevision({ bucket: 'b', key: 'k', newObjectId: 'o1', blob: blob(2, 3000), contentType: null, filename: null, createdBy: 'p' });
    assert.equal(added.ok, true);
    await f.store.createUpload(newUpload('s1'));
    await f.store.beginCompletion('s1', digest(3), digest(3));
    await f.store.finishUpload('s1', blob(3, 3000), { pin: pin() }, () => '{}', Date.now() + 60_000);
    for (const [i] of bytes.entries()) inline.withdraw(digest(i + 1));
    const store = await f.reopen();
    for (const [i, b] of bytes.entries()) {
      assert.ok((await store.inline!.read(digest(i + 1)))?.equals(b), `blob ${i + 1}`);
      assert.equal((await store.inline!.stat(digest(i + 1)))?.size, 3000);
      assert.equal(await store.inline!.rowWithoutBytes(digest(i + 1)), false);
    }
    assert.deepEqual(await store.inline!.totals(), { blobs: 3, bytes: 9000 });
    const listed: string[] = [];
    for await (const d of store.inline!.list()) listed.push(d);
    assert.deepEqual(listed, [digest(1), digest(2), digest(3)]);
  }));

  test('inline: nothing is stored without an offer, after a withdraw, for a row at another location, or by a write that fails', inlineOnly(async (f) => {
    const inline = f.store.inline!;
    await f.store.commitBlob(blob(1, 10)); // no offer: a blob whose bytes are in the byte store
    inline.offer(digest(2), randomBytes(10));
    inline.withdraw(digest(2));
    await f.store.commitBlob(blob(2, 10));
    inline.offer(digest(3), randomBytes(10));
    await f.store.commitBlob(blob(3, 10, 'blobs/0190-k')); // an object key, not the digest
    inline.withdraw(digest(3));
    // A revision refused (no such bucket) writes no row and so no bytes.
    inline.offer(digest(4), randomBytes(10));
    const refused = await f.store.addRevision({ bucket: 'none', key: 'k', newObjectId: 'o', blob: blob(4, 10), contentType: null, filename: null, createdBy: 'p' });
    inline.withdraw(digest(4));
    assert.equal(refused.ok, false);
    for (const n of [1, 2, 3, 4]) assert.equal(await inline.read(digest(n)), null, `blob ${n}`);
    assert.equal(await inline.rowWithoutBytes(digest(4)), false);
    assert.equal(await inline.rowWithoutBytes(digest(1)), true); // its bytes are in the byte store
    assert.deepEqual(await inline.totals(), { blobs: 0, bytes: 0 });
  }));

  test('inline: a row write of an existing row replaces damaged bytes when offered; quarantine (and delete) take them out of reads', inlineOnly(async (f) => {
    const inline = f.store.inline!;
    const good = randomBytes(500);
    inline.offer(digest(1), Buffer.from(good).fill(0, 0, 10));
    await f.store.commitBlob(blob(1, 500));
    inline.withdraw(digest(1));
    inline.offer(digest(1), good);
    assert.deepEqual(await f.store.commitBlob(blob(1, 500), pin('q')), { created: false });
    inline.withdraw(digest(1));
    assert.ok((await inline.read(digest(1)))?.equals(good), 'healed by the row write');
    await f.store.markQuarantined(digest(1)); // as fsck --repair does first
    assert.equal(await inline.quarantine(digest(1)), true);
    assert.equal(await inline.read(digest(1)), null);
    assert.equal(await inline.quarantine(digest(1)), false, 'nothing left to move');
    // A session's bytes at its complete, before any reference: durable at once (a reopen reads them).
    await inline.put(digest(2), good);
    assert.ok((await inline.read(digest(2)))?.equals(good), 'put stores them');
    assert.ok((await (await f.reopen()).inline!.read(digest(2)))?.equals(good), 'put is durable');
    const store = f.store;
    const rowMade = (await store.getBlob(digest(2))) !== null;
    if (rowMade) {
      // Bytes in their row (PostgreSQL): the row, unreferenced, at the digest; nothing deletes bytes a row
      // names there (GC removes the row), and the complete's row write finds them in place.
      assert.equal((await store.getBlob(digest(2)))!.location, digest(2));
      await store.inline!.delete(digest(2));
      assert.ok((await store.inline!.read(digest(2)))?.equals(good), 'bytes a row names are not deleted');
      assert.deepEqual(await store.commitBlob(blob(2, good.length), pin('s')), { created: false });
      assert.ok((await store.inline!.read(digest(2)))?.equals(good), 'kept by the row write that references them');
    } else {
      // A table of their own (SQLite): delete removes them.
      await store.inline!.delete(digest(2));
      await store.inline!.delete(digest(2));
      assert.equal(await store.inline!.stat(digest(2)), null);
    }
    // Put over a quarantined row at the digest heals it: the next row write finds the row, and the bytes, in place.
    await store.commitBlob(blob(3, good.length));
    await store.markQuarantined(digest(3));
    await store.inline!.quarantine(digest(3));
    await store.inline!.put(digest(3), good);
    await store.commitBlob(blob(3, good.length), pin('s'));
    assert.ok((await store.inline!.read(digest(3)))?.equals(good), 'put heals the quarantined row: nothing to re-adopt');
    assert.equal((await store.getBlob(digest(3)))?.quarantined, false);
    // A repair cut short (the row marked, its damaged bytes not moved aside yet), then a write that re-adopts
    // the row with no bytes for it (they went to the file tier): the damaged bytes are not kept to be read.
    const damaged = Buffer.from(good).fill(7, 0, 5);
    store.inline!.offer(digest(4), damaged);
    await store.commitBlob(blob(4, good.length));
    store.inline!.withdraw(digest(4));
    await store.markQuarantined(digest(4));
    await store.commitBlob(blob(4, good.length), pin('r'));
    assert.equal((await store.getBlob(digest(4)))?.quarantined, false);
    assert.equal(await store.inline!.read(digest(4)), null, 'no damaged bytes after the re-adopting write');
    // setAside moves bytes only while they are exactly the damaged ones read (a file of the blob took over).
    store.inline!.offer(digest(5), damaged);
    await store.commitBlob(blob(5, good.length));
    store.inline!.withdraw(digest(5));
    assert.equal(await store.inline!.setAside(digest(5), good), false, 'not the bytes in place: kept');
    assert.ok((await store.inline!.read(digest(5)))?.equals(damaged));
    const asideBefore = (await store.inline!.totals()).blobs;
    assert.equal(await store.inline!.setAside(digest(5), damaged), true);
    assert.equal(await store.inline!.read(digest(5)), null);
    assert.equal((await store.getBlob(digest(5)))?.quarantined, false, 'the row stays: its file serves it');
    assert.equal((await store.inline!.totals()).blobs, asideBefore - 1);
    assert.equal(await store.inline!.setAside(digest(5), damaged), false, 'nothing left to move');
    // Put with a size column that lied: the re-adopted row takes the size of the bytes.
    await store.commitBlob(blob(6, good.length - 100));
    await store.markQuarantined(digest(6));
    await store.inline!.put(digest(6), good);
    assert.deepEqual([(await store.getBlob(digest(6)))?.size, (await store.getBlob(digest(6)))?.quarantined], [good.length, false]);
  }));

  test('inline: totals count the bytes a blob row names, not bytes a crash left without one', inlineOnly(async (f) => {
    const inline = f.store.inline!;
    const bytes = randomBytes(700);
    inline.offer(digest(7), bytes);
    await f.store.commitBlob(blob(7, 700));
    inline.withdraw(digest(7));
    await inline.put(digest(8), randomBytes(300)); // a session's bytes at its complete, no row yet on SQLite
    const rowless = (await f.store.getBlob(digest(8))) === null;
    assert.deepEqual(await inline.totals(), rowless ? { blobs: 1, bytes: 700 } : { blobs: 2, bytes: 1000 });
  }));
}
