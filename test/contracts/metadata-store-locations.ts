// The MetadataStore contract's part about where bytes are: blob rows name their location (an object key, or
// the digest itself for a content-addressed store), bytes no row keeps are queued for deletion by the
// transaction that let go of them, claims are by location, and sessions keep their byte store's cursor.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MetadataStore } from '../../src/storage/metadata-store.ts';
import type { MetadataStoreFixture } from './metadata-store.ts';
import { blob, digest, newUpload } from './metadata-samples.ts';

type WithStore = (fn: (f: MetadataStoreFixture) => Promise<void>) => () => Promise<void>;

const queue = async (store: MetadataStore) => await store.listByteDeletions(100);
const pin = (principal = 'p') => ({ principal, temporary: false, expiresAt: null });
const noSettings = { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false };
/** A revision of `key` in bucket 'b' whose content is blob `n` at `location`. */
const revision = (key: string, n: number, location: string) => ({
  bucket: 'b',
  key,
  newObjectId: `obj-${key}`,
  blob: blob(n, 1, location),
  contentType: null,
  filename: null,
  createdBy: 'p',
});

export function locationContract(withStore: WithStore): void {
  test('a blob row names its location: an object key as given, a content address as the digest; across a reopen', withStore(async (f) => {
    await f.store.putBucket('b', noSettings);
    await f.store.commitBlob(blob(1, 1, 'blobs/0190-a'));
    await f.store.commitBlob(blob(2, 2));
    await f.store.addRevision(revision('k', 3, 'blobs/0190-c'));
    await f.store.createUpload(newUpload('s1'));
    await f.store.beginCompletion('s1', digest(4), 'blobs/0190-d');
    await f.store.finishUpload('s1', blob(4, 4, 'blobs/0190-d'), { pin: pin() }, () => '{}', Date.now() + 60_000);
    const expected = [digest(1), 'blobs/0190-a', digest(2), digest(2), digest(3), 'blobs/0190-c', digest(4), 'blobs/0190-d'];
    const named = async (store: MetadataStore) => {
      const rows = await Promise.all([1, 2, 3, 4].map((n) => store.getBlob(digest(n))));
      return rows.flatMap((r) => [r?.digest, r?.location]);
    };
    assert.deepEqual(await named(f.store), expected);
    assert.deepEqual((await f.store.listBlobsAfter('', 10)).flatMap((r) => [r.digest, r.location]), expected, 'fsck sees them too');
    const garbage = await f.store.listGarbageBlobs(Date.now() + 1, Date.now(), 10);
    assert.deepEqual(garbage.map((r) => [r.digest, r.location]), [[digest(1), 'blobs/0190-a'], [digest(2), digest(2)]], 'and GC');
    assert.deepEqual(await queue(f.store), [], 'nothing to delete');
    assert.deepEqual(await named(await f.reopen()), expected);
  }));

  test("a duplicate keeps the row's location and queues its own, from every write that records a blob", withStore(async ({ store }) => {
    await store.putBucket('b', noSettings);
    await store.commitBlob(blob(10, 1, 'key-10'));
    assert.deepEqual(await store.commitBlob(blob(10, 1, 'dup-commit'), pin()), { created: false });
    const ticket = store.announceBlobCommit();
    assert.deepEqual(await ticket.commit(blob(10, 1, 'dup-ticket')), { created: false });
    const added = await store.addRevision(revision('k', 10, 'dup-revision'));
    assert.ok(added.ok && !added.blobCreated);
    await store.createUpload(newUpload('s1'));
    await store.beginCompletion('s1', digest(10), 'dup-upload');
    const done = await store.finishUpload('s1', blob(10, 1, 'dup-upload'), { pin: pin('q') }, () => '{}', Date.now() + 60_000);
    assert.ok(done.ok && !done.created);
    assert.equal((await store.getBlob(digest(10)))?.location, 'key-10');
    assert.deepEqual(await queue(store), ['dup-commit', 'dup-ticket', 'dup-revision', 'dup-upload'].map((location) => ({ location, digest: digest(10) })));
    // The row's own location again, or a content address (the same place for the same content): nothing to delete.
    await store.commitBlob(blob(10, 1, 'key-10'));
    await store.commitBlob(blob(11, 1));
    await store.commitBlob(blob(11, 1), pin());
    await store.addRevision(revision('k2', 11, digest(11)));
    assert.equal((await queue(store)).length, 4);
    assert.equal((await store.getBlob(digest(11)))?.location, digest(11));
  }));

  test('concurrent duplicates: one row, every other location queued once', withStore(async ({ store }) => {
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.commitBlob(blob(12, 5, `race-${i}`))));
    assert.equal(results.filter((r) => r.created).length, 1);
    const kept = (await store.getBlob(digest(12)))!.location;
    const queued = (await queue(store)).map((d) => d.location);
    assert.deepEqual([...queued, kept].sort(), Array.from({ length: 10 }, (_, i) => `race-${i}`).sort());
  }));

  test('a write that is refused or undone queues nothing', withStore(async ({ store }) => {
    await store.putBucket('b', { ...noSettings, quotaBytes: 1 });
    await store.commitBlob(blob(13, 1, 'key-13'));
    await store.addRevision(revision('full', 14, 'key-14'));
    const refused = await store.addRevision(revision('over', 13, 'dup-over-quota'));
    assert.deepEqual(refused, { ok: false, reason: 'quota_exceeded' });
    await store.putBucket('b', noSettings);
    const failing = { ...revision('k', 13, 'dup-undone'), meta: () => { throw new Error('bad metadata'); } };
    await assert.rejects(store.addRevision(failing), /bad metadata/);
    assert.deepEqual(await queue(store), []);
  }));

  test('a quarantined row takes the new location and queues its old one; a content address is not queued', withStore(async ({ store }) => {
    await store.commitBlob(blob(20, 1, 'key-old'));
    await store.markQuarantined(digest(20));
    assert.equal((await store.getBlob(digest(20)))?.location, 'key-old', 'quarantine itself keeps the location');
    assert.deepEqual(await store.commitBlob(blob(20, 1, 'key-new')), { created: false });
    const healed = await store.getBlob(digest(20));
    assert.deepEqual([healed?.location, healed?.quarantined], ['key-new', false]);
    assert.deepEqual(await queue(store), [{ location: 'key-old', digest: digest(20) }]);
    await store.commitBlob(blob(21, 1));
    await store.markQuarantined(digest(21));
    await store.commitBlob(blob(21, 1));
    const again = await store.getBlob(digest(21));
    assert.deepEqual([again?.location, again?.quarantined], [digest(21), false]);
    assert.equal((await queue(store)).length, 1);
    // A row whose size lied (so a repair marked it) takes the size of the verified bytes that re-adopt it.
    await store.commitBlob(blob(22, 2900));
    await store.markQuarantined(digest(22));
    await store.commitBlob(blob(22, 3000));
    assert.deepEqual([(await store.getBlob(digest(22)))?.size, (await store.getBlob(digest(22)))?.quarantined], [3000, false]);
  }));

  test("GC's delete and purge queue the deleted row's location; a delete that does not happen queues nothing", withStore(async ({ store }) => {
    const now = Date.now();
    await store.commitBlob(blob(30, 1, 'key-30'));
    await store.commitBlob(blob(31, 1));
    await store.commitBlob(blob(32, 1, 'key-32'), pin());
    await store.commitBlob(blob(33, 1, 'key-33'));
    const cut = Date.now() + 1;
    await store.addGcHold('h', now + 60_000);
    assert.equal(await store.deleteGarbageBlob(digest(30), cut, now), false, 'held');
    await store.releaseGcHold('h');
    assert.equal(await store.deleteGarbageBlob(digest(32), cut, now), false, 'pinned');
    assert.deepEqual(await queue(store), []);
    assert.equal(await store.deleteGarbageBlob(digest(30), cut, now), true);
    assert.equal(await store.deleteGarbageBlob(digest(31), cut, now), true);
    assert.equal(await store.deleteGarbageBlob(digest(30), cut, now), false, 'gone already');
    assert.deepEqual(await store.purgeBlob(digest(32)), { revisions: 0, pins: 1 });
    assert.equal(await store.purgeBlob(digest(32)), null);
    assert.deepEqual(await queue(store), [
      { location: 'key-30', digest: digest(30) },
      { location: digest(31), digest: digest(31) },
      { location: 'key-32', digest: digest(32) },
    ]);
  }));

  test('the byte-deletion queue: oldest first, at most the limit, finished one location at a time, dated by location, kept across a reopen', withStore(async (f) => {
    await f.store.commitBlob(blob(40, 1, 'key-40'));
    const before = Date.now();
    for (const d of ['d1', 'd2', 'd3', 'd4']) await f.store.commitBlob(blob(40, 1, d));
    const after = Date.now();
    assert.deepEqual((await f.store.listByteDeletions(2)).map((d) => d.location), ['d1', 'd2']);
    await f.store.finishByteDeletion('d2');
    await f.store.finishByteDeletion('d2'); // again: nothing
    await f.store.finishByteDeletion('never-queued');
    assert.deepEqual((await f.store.listByteDeletions(2)).map((d) => d.location), ['d1', 'd3']);
    const queuedAt = await f.store.deletionQueuedAt('d1');
    assert.ok(queuedAt !== null && queuedAt >= before && queuedAt <= after, `queued at ${queuedAt}, between ${before} and ${after}`);
    assert.equal(await f.store.deletionQueuedAt('d2'), null, 'finished');
    assert.equal(await f.store.deletionQueuedAt('key-40'), null, 'the row names it');
    const reopened = await f.reopen();
    assert.deepEqual(await queue(reopened), ['d1', 'd3', 'd4'].map((location) => ({ location, digest: digest(40) })));
    assert.equal(typeof (await reopened.deletionQueuedAt('d4')), 'number', 'across a reopen');
    for (const d of ['d1', 'd3', 'd4']) await reopened.finishByteDeletion(d);
    assert.deepEqual(await queue(reopened), []);
    assert.equal(await reopened.deletionQueuedAt('d4'), null);
    assert.equal((await reopened.getBlob(digest(40)))?.location, 'key-40', 'the row is untouched');
  }));

  test('isLocationClaimed: a row names it, or an unfinished session completing into it; not after reopen or delete', withStore(async ({ store }) => {
    await store.commitBlob(blob(50, 1, 'key-50'));
    await store.commitBlob(blob(51, 1));
    await store.commitBlob(blob(50, 1, 'dup-50'));
    assert.equal(await store.isLocationClaimed('key-50'), true, 'a row names the key');
    assert.equal(await store.isLocationClaimed(digest(51)), true, 'a row at its content address');
    assert.equal(await store.isLocationClaimed(digest(50)), false, "a row's digest is not its location when it names a key");
    assert.equal(await store.isLocationClaimed('dup-50'), false, "a duplicate's queued bytes");
    await store.markQuarantined(digest(51));
    assert.equal(await store.isLocationClaimed(digest(51)), true, 'a quarantined row still names it');

    await store.createUpload(newUpload('c1'));
    await store.createUpload(newUpload('c2'));
    assert.equal((await store.getUpload('c1'))?.location, null, 'an open session has no location');
    assert.equal(await store.isLocationClaimed('key-52'), false);
    await store.beginCompletion('c1', digest(52), 'key-52');
    await store.beginCompletion('c2', digest(53), digest(53));
    assert.equal((await store.getUpload('c1'))?.location, 'key-52');
    assert.equal(await store.isLocationClaimed('key-52'), true, 'a session completing into a key');
    assert.equal(await store.isLocationClaimed(digest(53)), true, 'a session completing into a content address');
    await store.reopenUpload('c1', 'cursor-after-restore', null);
    const reopened = await store.getUpload('c1');
    assert.deepEqual([reopened?.state, reopened?.location, reopened?.digest], ['open', null, null]);
    assert.equal(await store.isLocationClaimed('key-52'), false, 'reopened without a location: the location is let go');
    // A store that gives sessions a location of their own: the session claims it while open, and again
    // when it is reopened with it.
    await store.createUpload(newUpload('c3', { location: 'session-c3' }));
    assert.equal((await store.getUpload('c3'))?.location, 'session-c3');
    assert.equal(await store.isLocationClaimed('session-c3'), true, 'an open session claims its own location');
    await store.beginCompletion('c3', digest(54), 'session-c3');
    await store.reopenUpload('c3', null, 'session-c3');
    assert.equal(await store.isLocationClaimed('session-c3'), true, 'reopened with its location: still claimed');
    await store.deleteUpload('c3');
    assert.equal(await store.isLocationClaimed('session-c3'), false, 'a deleted session claims nothing');
    await store.beginCompletion('c1', digest(52), 'key-52b');
    await store.finishUpload('c1', blob(52, 1, 'key-52b'), { pin: pin() }, () => '{}', Date.now() + 60_000);
    assert.equal(await store.isLocationClaimed('key-52b'), true, 'completed: the row names it');

    assert.ok(await store.deleteGarbageBlob(digest(50), Date.now() + 1, Date.now()));
    assert.equal(await store.isLocationClaimed('key-50'), false, 'deleted: only the queue has it');
  }));

  test("a session's cursor is recorded with its offset through create, advance and reopen, and across a reopen of the store", withStore(async (f) => {
    await f.store.createUpload(newUpload('u1', { cursor: '{"parts":[]}' }));
    await f.store.createUpload(newUpload('u2'));
    assert.equal((await f.store.getUpload('u1'))?.cursor, '{"parts":[]}');
    assert.equal((await f.store.getUpload('u2'))?.cursor, null);
    await f.store.advanceUpload('u1', 10, Date.now() + 60_000, '{"parts":[1]}');
    await f.store.advanceUpload('u2', 5, Date.now() + 60_000, null);
    const advanced = await f.store.getUpload('u1');
    assert.deepEqual([advanced?.offset, advanced?.cursor], [10, '{"parts":[1]}']);
    await f.store.beginCompletion('u1', digest(60), 'key-60');
    await assert.rejects(f.store.advanceUpload('u1', 20, Date.now() + 60_000, 'refused'));
    assert.equal((await f.store.getUpload('u1'))?.cursor, '{"parts":[1]}', 'a refused advance changes nothing');

    // A completion cut short by a restart: the session comes back completing, with its location.
    let store = await f.reopen();
    const completing = await store.getUpload('u1');
    assert.deepEqual([completing?.state, completing?.location, completing?.cursor], ['completing', 'key-60', '{"parts":[1]}']);
    assert.deepEqual((await store.listUnfinishedUploads()).map((u) => [u.id, u.cursor, u.location]).sort(), [
      ['u1', '{"parts":[1]}', 'key-60'],
      ['u2', null, null],
    ]);
    await store.reopenUpload('u1', '{"restored":10}', null);
    await store.advanceUpload('u1', 15, Date.now() + 60_000, '{"restored":15}');
    store = await f.reopen();
    const resumed = await store.getUpload('u1');
    assert.deepEqual([resumed?.state, resumed?.offset, resumed?.cursor, resumed?.location], ['open', 15, '{"restored":15}', null]);
  }));
}
