// What every MetadataStore must do, written once: run it against each implementation (SQLite today,
// PostgreSQL later) with a factory that gives a fresh, empty store.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BucketSettings, MetadataStore, NewRevision, PropertyFilter } from '../../src/storage/metadata-store.ts';
import { coordinationContract } from './metadata-store-coordination.ts';
import { inlineContract } from './metadata-store-inline.ts';
import { locationContract } from './metadata-store-locations.ts';
import { blob, digest, newUpload as upload } from './metadata-samples.ts';

export interface MetadataStoreFixture {
  store: MetadataStore;
  /** Close and open the store again on the same data (a restart). */
  reopen(): Promise<MetadataStore>;
  dispose(): Promise<void>;
}


export function metadataStoreContract(name: string, make: () => Promise<MetadataStoreFixture>): void {
  describe(`MetadataStore contract: ${name}`, () => {
    const withStore = (fn: (f: MetadataStoreFixture) => Promise<void>) => async () => {
      const f = await make();
      try {
        await fn(f);
      } finally {
        await f.dispose();
      }
    };

    test('an unknown blob is null', withStore(async ({ store }) => {
      assert.equal(await store.getBlob(digest(1)), null);
    }));

    test('commitBlob creates once, then reports the existing row', withStore(async ({ store }) => {
      const before = Date.now();
      assert.deepEqual(await store.commitBlob(blob(2, 42)), { created: true });
      assert.deepEqual(await store.commitBlob(blob(2, 42)), { created: false });
      const row = await store.getBlob(digest(2));
      assert.equal(row?.digest, digest(2));
      assert.equal(row?.size, 42);
      assert.ok(row!.createdAt >= before && row!.createdAt <= Date.now());
    }));

    test('commitBlob with pins, permanent and temporary, by several principals', withStore(async ({ store }) => {
      const pinA = { principal: 'a', temporary: false, expiresAt: null };
      const pinB = { principal: 'b', temporary: true, expiresAt: Date.now() + 1000 };
      assert.deepEqual(await store.commitBlob(blob(3, 1), pinA), { created: true });
      assert.deepEqual(await store.commitBlob(blob(3, 1), pinB), { created: false });
      assert.deepEqual(await store.commitBlob(blob(3, 1), pinA), { created: false });
    }));

    test('concurrent commits of one digest: exactly one creates', withStore(async ({ store }) => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.commitBlob(blob(4, 9), { principal: `p${i % 3}`, temporary: false, expiresAt: null }),
        ),
      );
      assert.equal(results.filter((r) => r.created).length, 1);
    }));

    test('commits made together are answered one by one: a bad one fails alone', withStore(async ({ store }) => {
      // Issued in one turn, so a store that groups commits puts them in one transaction.
      const settled = await Promise.allSettled([
        store.commitBlob(blob(40, 1), { principal: 'p', temporary: false, expiresAt: null }),
        store.commitBlob(blob(41, -1)),
        store.commitBlob(blob(42, 3)),
        store.commitBlob(blob(40, 1), { principal: 'q', temporary: false, expiresAt: null }),
      ]);
      assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      assert.deepEqual((settled[0] as PromiseFulfilledResult<{ created: boolean }>).value, { created: true });
      assert.deepEqual((settled[3] as PromiseFulfilledResult<{ created: boolean }>).value, { created: false });
      assert.equal(await store.getBlob(digest(41)), null);
      assert.equal((await store.getBlob(digest(42)))?.size, 3);
      const pins = await store.listPins('q', 10, null);
      assert.deepEqual(pins.map((p) => p.digest), [digest(40)]);
    }));

    test('an announced commit is a commitBlob; its ticket is used once', withStore(async ({ store }) => {
      const pin = { principal: 'p', temporary: false, expiresAt: null };
      const ticket = store.announceBlobCommit();
      assert.deepEqual(await ticket.commit(blob(50, 2), pin), { created: true });
      await assert.rejects(ticket.commit(blob(51, 2), pin));
      ticket.cancel(); // after commit: nothing
      assert.equal((await store.getBlob(digest(50)))?.size, 2);
      assert.equal(await store.getBlob(digest(51)), null);
      assert.deepEqual((await store.listPins('p', 10, null)).map((p) => p.digest), [digest(50)]);
    }));

    test('announced commits arriving apart are all answered; one that never comes holds nothing back', withStore(async ({ store }) => {
      const never = store.announceBlobCommit();
      const [a, b, c] = [store.announceBlobCommit(), store.announceBlobCommit(), store.announceBlobCommit()];
      const first = a.commit(blob(60, 1));
      const plain = store.commitBlob(blob(61, 1));
      await new Promise((r) => setImmediate(r));
      const second = b.commit(blob(62, 1));
      c.cancel();
      // `never` is neither committed nor cancelled until all of these are answered.
      assert.deepEqual(await Promise.all([first, plain, second]), [{ created: true }, { created: true }, { created: true }]);
      never.cancel();
      for (const n of [60, 61, 62]) assert.equal((await store.getBlob(digest(n)))?.size, 1);
    }));

    test('a group still waiting for announced commits is committed by close', withStore(async (f) => {
      const waitedFor = f.store.announceBlobCommit();
      const committing = f.store.commitBlob(blob(70, 7));
      const reopened = await f.reopen(); // closes the store while the group waits for `waitedFor`
      assert.deepEqual(await committing, { created: true });
      assert.equal((await reopened.getBlob(digest(70)))?.size, 7);
      waitedFor.cancel();
    }));

    test('committed rows survive a reopen', withStore(async (f) => {
      await f.store.commitBlob(blob(5, 5));
      const reopened = await f.reopen();
      assert.equal((await reopened.getBlob(digest(5)))?.size, 5);
    }));

    test('ping resolves on a healthy store', withStore(async ({ store }) => {
      await store.ping();
    }));

    test('an upload session advances, completes once, and replays its result', withStore(async ({ store }) => {
      assert.equal(await store.getUpload('u1'), null);
      await store.createUpload(upload('u1'));
      const fresh = await store.getUpload('u1');
      assert.equal(fresh?.state, 'open');
      assert.equal(fresh?.offset, 0);
      assert.equal(fresh?.filename, 'f.bin');
      await store.advanceUpload('u1', 60, Date.now() + 120_000, null);
      assert.equal((await store.getUpload('u1'))?.offset, 60);
      await store.beginCompletion('u1', digest(9), digest(9));
      assert.equal((await store.getUpload('u1'))?.state, 'completing');
      await assert.rejects(store.advanceUpload('u1', 70, Date.now(), null), 'a completing session takes no bytes');
      await store.reopenUpload('u1', null, null);
      assert.equal((await store.getUpload('u1'))?.digest, null);
      const pin = { pin: { principal: 'p', temporary: false, expiresAt: null } };
      const done1 = await store.finishUpload('u1', blob(9, 60), pin, () => '{"r":1}', Date.now() + 1000);
      assert.deepEqual(done1, { ok: true, created: true, object: null });
      const done = await store.getUpload('u1');
      assert.equal(done?.state, 'completed');
      assert.equal(done?.result, '{"r":1}');
      assert.equal((await store.getBlob(digest(9)))?.size, 60);
      await assert.rejects(store.finishUpload('u1', blob(9, 60), pin, () => '{}', 0), 'completes only once');
      assert.deepEqual(await store.listUnfinishedUploads(), []);
    }));

    test("an upload session keeps the client's metadata as given, across a reopen", withStore(async (f) => {
      const sent = 'filename dHVzLnR4dA==,blob /w==,is_confidential';
      await f.store.createUpload(upload('u2', { clientMetadata: sent }));
      await f.store.createUpload(upload('u3'));
      assert.equal((await f.store.getUpload('u2'))?.clientMetadata, sent);
      assert.equal((await f.store.getUpload('u3'))?.clientMetadata, null);
      const reopened = await f.reopen();
      assert.equal((await reopened.getUpload('u2'))?.clientMetadata, sent);
      assert.deepEqual((await reopened.listUnfinishedUploads()).map((u) => [u.id, u.clientMetadata]).sort(), [['u2', sent], ['u3', null]]);
    }));

    const settings = (extra: Partial<BucketSettings> = {}): BucketSettings => ({
      maxObjectSize: null,
      quotaBytes: null,
      maxRevisions: null,
      publicRead: false,
      publicRevisions: false,
      ...extra,
    });
    const rev = (bucket: string, key: string, n: number, size: number, extra: Partial<NewRevision> = {}): NewRevision => ({
      bucket,
      key,
      newObjectId: `obj-${bucket}-${key}`,
      blob: blob(n, size),
      contentType: null,
      filename: null,
      createdBy: 'p',
      ...extra,
    });

    test('buckets: create, update, list, delete only when empty unless forced', withStore(async ({ store }) => {
      assert.deepEqual(await store.putBucket('b1', settings()), { created: true });
      assert.deepEqual(await store.putBucket('b1', settings({ maxRevisions: 2 })), { created: false });
      assert.equal((await store.getBucket('b1'))?.maxRevisions, 2);
      assert.equal(await store.getBucket('nope'), null);
      await store.putBucket('a0', settings());
      assert.deepEqual((await store.listBuckets(100, null)).map((b) => b.name), ['a0', 'b1']);
      assert.deepEqual((await store.listBuckets(1, null)).map((b) => b.name), ['a0'], 'a page');
      assert.deepEqual((await store.listBuckets(100, 'a0')).map((b) => b.name), ['b1'], 'after the cursor');
      await store.addRevision(rev('b1', 'k', 1, 10));
      assert.equal(await store.deleteBucket('b1', false), 'not_empty');
      assert.equal(await store.deleteBucket('b1', true), 'deleted');
      assert.equal(await store.deleteBucket('b1', true), 'not_found');
      assert.equal(await store.getObject('b1', 'k'), null);
    }));

    test('revisions: numbering, preconditions, quota, pruning and usage counters', withStore(async ({ store }) => {
      await store.putBucket('b', settings({ quotaBytes: 100, maxRevisions: 2 }));
      assert.deepEqual(await store.addRevision(rev('nope', 'k', 1, 1)), { ok: false, reason: 'bucket_not_found' });
      const r1 = await store.addRevision(rev('b', 'k', 1, 10, { contentType: 'text/plain' }));
      assert.ok(r1.ok && r1.object.revision === 1 && r1.blobCreated && r1.object.contentType === 'text/plain');
      assert.deepEqual(await store.addRevision(rev('b', 'k', 2, 10, { ifNoneMatch: true })), { ok: false, reason: 'precondition_failed' });
      assert.deepEqual(await store.addRevision(rev('b', 'k', 2, 10, { ifMatch: digest(7) })), { ok: false, reason: 'precondition_failed' });
      const r2 = await store.addRevision(rev('b', 'k', 2, 20, { ifMatch: digest(1) }));
      assert.ok(r2.ok && r2.object.revision === 2 && r2.object.contentType === 'text/plain', 'content type is kept');
      const r3 = await store.addRevision(rev('b', 'k', 3, 30));
      assert.ok(r3.ok && r3.object.revision === 3);
      assert.deepEqual((await store.listRevisions('b', 'k', 100))?.map((r) => r.revision), [3, 2], 'max_revisions prunes the oldest');
      assert.deepEqual((await store.listRevisions('b', 'k', 1))?.map((r) => r.revision), [3], 'a page');
      assert.deepEqual((await store.listRevisions('b', 'k', 100, 3))?.map((r) => r.revision), [2], 'below the cursor');
      assert.equal((await store.getObject('b', 'k', 2))?.digest, digest(2));
      assert.equal(await store.getObject('b', 'k', 1), null);
      let bucket = await store.getBucket('b');
      assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [1, 50]);
      assert.deepEqual(await store.addRevision(rev('b', 'other', 4, 51)), { ok: false, reason: 'quota_exceeded' });
      assert.ok((await store.addRevision(rev('b', 'other', 4, 50))).ok);
      assert.equal(await store.deleteObject('b', 'k', 3), true);
      assert.equal((await store.getObject('b', 'k'))?.revision, 2, 'the previous revision becomes current');
      assert.equal(await store.deleteObject('b', 'k', 9), false);
      assert.equal(await store.deleteObject('b', 'k'), true);
      assert.equal(await store.deleteObject('b', 'k'), false);
      bucket = await store.getBucket('b');
      assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [1, 50]);
    }));

    test('object metadata and revision snapshots', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      await store.addRevision(rev('b', 'k', 1, 1));
      const meta = { contentType: 'a/b', filename: 'f', owner: 'o', tags: ['t'], properties: { p: 1 }, expiresAt: Date.now() + 3_600_000 };
      assert.equal(await store.setObjectMeta('b', 'k', meta, [digest(7), digest(8)]), 'precondition_failed');
      assert.equal((await store.getObject('b', 'k'))?.owner, null, 'If-Match failed: nothing changed');
      const updated = await store.setObjectMeta('b', 'k', meta, [digest(7), digest(1)]);
      assert.ok(updated !== null && updated !== 'precondition_failed');
      assert.deepEqual([updated.owner, updated.tags, updated.properties, updated.revision], ['o', ['t'], { p: 1 }, 1]);
      assert.deepEqual((await store.listRevisions('b', 'k', 100))?.[0]?.metadata, meta);
      assert.equal(await store.setObjectMeta('b', 'missing', meta), null);
      assert.equal(await store.setObjectMeta('b', 'missing', meta, '*'), null);
    }));

    test('deleteObject with If-Match: the content deleted (current, or the revision named) must match', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      await store.addRevision(rev('b', 'k', 1, 10));
      await store.addRevision(rev('b', 'k', 2, 20));
      assert.equal(await store.deleteObject('b', 'k', undefined, digest(1)), 'precondition_failed', 'revision 1 is not current');
      assert.equal(await store.deleteObject('b', 'k', 2, [digest(1)]), 'precondition_failed');
      assert.equal(await store.deleteObject('b', 'k', 9, '*'), false, 'no such revision');
      assert.equal((await store.listRevisions('b', 'k', 100))?.length, 2, 'nothing deleted');
      assert.equal(await store.deleteObject('b', 'k', 1, digest(1)), true);
      assert.equal(await store.deleteObject('b', 'k', undefined, [digest(9), digest(2)]), true);
      assert.equal(await store.getObject('b', 'k'), null);
      assert.equal(await store.deleteObject('b', 'k', undefined, '*'), false);
      assert.deepEqual([(await store.getBucket('b'))?.objectCount, (await store.getBucket('b'))?.storedBytes], [0, 0]);
    }));

    test('listing: key order, cursor, prefix, owner, tag and property filters', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      for (const [i, k] of ['b/2', 'a/1', 'b/1', 'c'].entries()) await store.addRevision(rev('b', k, i + 1, 1));
      await store.setObjectMeta('b', 'b/1', { contentType: null, filename: null, owner: 'ann', tags: ['x', 'y'], properties: { color: 'red', n: 3 }, expiresAt: null });
      const keys = async (q: Partial<Parameters<MetadataStore['listObjects']>[0]>) =>
        (await store.listObjects({ bucket: 'b', prefix: '', after: null, limit: 100, ...q })).map((o) => o.key);
      assert.deepEqual(await keys({}), ['a/1', 'b/1', 'b/2', 'c']);
      assert.deepEqual(await keys({ limit: 2 }), ['a/1', 'b/1']);
      assert.deepEqual(await keys({ after: 'b/1' }), ['b/2', 'c']);
      assert.deepEqual(await keys({ prefix: 'b/' }), ['b/1', 'b/2']);
      assert.deepEqual(await keys({ prefix: 'b/', after: 'b/1' }), ['b/2']);
      assert.deepEqual(await keys({ prefix: 'b/', after: 'a' }), ['b/1', 'b/2']);
      assert.deepEqual(await keys({ owner: 'ann' }), ['b/1']);
      assert.deepEqual(await keys({ tag: 'y' }), ['b/1']);
      assert.deepEqual(await keys({ properties: [{ name: 'color', op: 'eq', value: 'red' }, { name: 'n', op: 'eq', value: '3' }] }), ['b/1']);
      assert.deepEqual(await keys({ properties: [{ name: 'color', op: 'eq', value: 'blue' }] }), []);
    }));

    test('property filters: numbers as numbers when both sides are finite numbers, else text', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      const values: Record<string, unknown> = { n9: 9, n10: 10, s100: '100', s9: '9', word: 'abc', yes: true, none: null, obj: { a: 1 }, one: 1 };
      for (const [i, [k, v]] of Object.entries(values).entries()) {
        await store.addRevision(rev('b', k, i + 1, 1));
        await store.setObjectMeta('b', k, { contentType: null, filename: null, owner: null, tags: [], properties: { v }, expiresAt: null });
      }
      await store.addRevision(rev('b', 'missing', 20, 1));
      const keys = async (op: PropertyFilter['op'], value: string) =>
        (await store.listObjects({ bucket: 'b', prefix: '', after: null, limit: 100, properties: [{ name: 'v', op, value }] })).map((o) => o.key);
      assert.deepEqual(await keys('gt', '9'), ['n10', 's100'], '10 and "100" are more than 9 as numbers (as text "10" < "9")');
      assert.deepEqual(await keys('gte', '9'), ['n10', 'n9', 's100', 's9']);
      assert.deepEqual(await keys('lt', '10'), ['n9', 'one', 's9']);
      assert.deepEqual(await keys('lte', '9.0'), ['n9', 'one', 's9']);
      assert.deepEqual(await keys('eq', 'true'), ['yes'], 'true is not the number 1');
      assert.deepEqual(await keys('eq', '1e2'), ['s100'], 'numerically equal');
      assert.deepEqual(await keys('eq', 'abc'), ['word']);
      assert.deepEqual(await keys('gt', 'abb'), ['word'], 'text with text only: not numbers, true, null or objects');
      assert.deepEqual(await keys('lt', 'b'), ['word']);
      assert.deepEqual(await keys('eq', 'null'), ['none']);
      assert.deepEqual(await keys('eq', '{"a":1}'), ['obj']);
      assert.deepEqual(await keys('ne', '9'), ['missing', 'n10', 'none', 'obj', 'one', 's100', 'word', 'yes'], 'ne also matches a missing property');
      assert.deepEqual(await keys('exists', 'false'), ['missing']);
      assert.equal((await keys('exists', 'true')).length, 9);
    }));

    test('an object past expires_at is gone for reads at once; a write to its key starts a new object', withStore(async ({ store }) => {
      await store.putBucket('b', settings({ quotaBytes: 25 }));
      await store.addRevision(rev('b', 'old', 1, 10));
      await store.addRevision(rev('b', 'old', 2, 10));
      await store.addRevision(rev('b', 'keep', 3, 5));
      const past = { contentType: null, filename: null, owner: null, tags: [], properties: {}, expiresAt: Date.now() - 1 };
      assert.ok(await store.setObjectMeta('b', 'old', past), 'the write that expires it');
      assert.equal(await store.getObject('b', 'old'), null);
      assert.equal(await store.getObject('b', 'old', 1), null);
      assert.equal(await store.listRevisions('b', 'old', 100), null);
      assert.equal(await store.setObjectMeta('b', 'old', past), null);
      assert.equal(await store.deleteObject('b', 'old'), false);
      assert.deepEqual((await store.listObjects({ bucket: 'b', prefix: '', after: null, limit: 100 })).map((o) => o.key), ['keep']);
      const bucket = await store.getBucket('b');
      assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [1, 5], 'usage leaves it out');
      assert.equal((await store.stats()).objects, 1);
      assert.equal(await store.isBlobLive(digest(1)), false, 'its blobs are no longer live');
      assert.equal(await store.isBlobLive(digest(3)), true);
      // 5 + 20 fits the quota only because the expired revisions no longer count.
      const fresh = await store.addRevision(rev('b', 'old', 4, 20, { newObjectId: 'obj-new', ifNoneMatch: true }));
      assert.ok(fresh.ok && fresh.object.revision === 1 && fresh.object.id === 'obj-new', 'a new object, If-None-Match holds');
      assert.deepEqual((await store.listRevisions('b', 'old', 100))?.map((r) => r.digest), [digest(4)]);
    }));

    test('metadata sent with content is written in the revision transaction; a throw undoes the write', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      await store.addRevision(rev('b', 'k', 1, 1, { meta: (m) => ({ ...m, owner: 'ann', tags: ['a'] }) }));
      const r2 = await store.addRevision(rev('b', 'k', 2, 1, { meta: (m) => ({ ...m, tags: [...m.tags, `after-${m.owner}`] }) }));
      assert.ok(r2.ok);
      assert.deepEqual([r2.object.owner, r2.object.tags], ['ann', ['a', 'after-ann']], 'the callback sees the metadata as of this write');
      assert.deepEqual((await store.listRevisions('b', 'k', 100))?.[0]?.metadata.tags, ['a', 'after-ann'], 'the snapshot has it');
      await assert.rejects(store.addRevision(rev('b', 'k', 3, 1, { meta: () => { throw new Error('bad metadata'); } })), /bad metadata/);
      assert.equal((await store.getObject('b', 'k'))?.revision, 2, 'no revision 3');
      assert.equal(await store.getBlob(digest(3)), null, 'no blob row either');
    }));

    test('an entity tag is kept with its revision and read back by every read; a revision written without one has none', withStore(async ({ store }) => {
      await store.putBucket('b', settings());
      const r1 = await store.addRevision(rev('b', 'k', 1, 3, { etag: '9e107d9d372bb6826bd81d3542a419d6' }));
      assert.ok(r1.ok);
      assert.equal(r1.object.etag, '9e107d9d372bb6826bd81d3542a419d6', 'the written object');
      assert.equal((await store.getObject('b', 'k'))?.etag, '9e107d9d372bb6826bd81d3542a419d6');
      const listed = async () => (await store.listObjects({ bucket: 'b', prefix: '', after: null, limit: 100 })).map((o) => [o.key, o.etag]);
      assert.deepEqual(await listed(), [['k', '9e107d9d372bb6826bd81d3542a419d6']]);
      const r2 = await store.addRevision(rev('b', 'k', 2, 4));
      assert.ok(r2.ok);
      assert.equal(r2.object.etag, null, 'a later revision without one');
      assert.equal((await store.getObject('b', 'k'))?.etag, null);
      assert.equal((await store.getObject('b', 'k', 1))?.etag, '9e107d9d372bb6826bd81d3542a419d6', 'the revision asked for');
      await store.addRevision(rev('b', 'k', 3, 5, { etag: '0cc175b9c0f1b6a831c399e269772661-2' }));
      await store.addRevision(rev('b', 'plain', 4, 1, { etag: null }));
      assert.deepEqual(await listed(), [['k', '0cc175b9c0f1b6a831c399e269772661-2'], ['plain', null]]);
      assert.deepEqual((await store.listRevisions('b', 'k', 100))?.map((r) => [r.revision, r.etag]), [
        [3, '0cc175b9c0f1b6a831c399e269772661-2'],
        [2, null],
        [1, '9e107d9d372bb6826bd81d3542a419d6'],
      ]);
      const meta = { contentType: 'a/b', filename: null, owner: null, tags: [], properties: { p: 'q' }, expiresAt: null };
      const patched = await store.setObjectMeta('b', 'k', meta);
      assert.equal(patched !== 'precondition_failed' && patched?.etag, '0cc175b9c0f1b6a831c399e269772661-2', 'a metadata write keeps the content\'s tag');
      assert.equal(await store.deleteObject('b', 'k', 3), true);
      assert.equal((await store.getObject('b', 'k'))?.etag, null, 'the revision that becomes current brings its own');
      await store.createUpload(upload('s1'));
      const target = { revision: { bucket: 'b', key: 'up', newObjectId: 'o-up', contentType: null, filename: null, createdBy: 'p', etag: 'abc' } };
      const done = await store.finishUpload('s1', blob(5, 2), target, () => 'x', Date.now() + 1000);
      assert.ok(done.ok && done.object?.etag === 'abc', 'a session completing into a revision');
      assert.equal((await store.getObject('b', 'up'))?.etag, 'abc');
    }));

    test('a session can complete into an object revision, atomically', withStore(async ({ store }) => {
      await store.putBucket('b', settings({ quotaBytes: 10 }));
      await store.createUpload(upload('s1'));
      const target = { revision: { bucket: 'b', key: 'k', newObjectId: 'o1', contentType: null, filename: 'f.bin', createdBy: 'p' } };
      const refused = await store.finishUpload('s1', blob(8, 11), target, () => 'x', Date.now() + 1000);
      assert.deepEqual(refused, { ok: false, reason: 'quota_exceeded' });
      assert.equal((await store.getUpload('s1'))?.state, 'open', 'nothing changed');
      assert.equal(await store.getBlob(digest(8)), null);
      const done = await store.finishUpload('s1', blob(8, 5), target, (o) => JSON.stringify({ rev: o?.revision }), Date.now() + 1000);
      assert.ok(done.ok && done.object?.key === 'k' && done.created);
      assert.equal((await store.getUpload('s1'))?.result, '{"rev":1}');
    }));

    test('what open sessions reserve follows every write to them and every expiry, asked after each', withStore(async ({ store }) => {
      const now = Date.now();
      const reserved = (at = now) => store.reservedUploadBytes(at);
      assert.equal(await reserved(), 0);
      await store.createUpload(upload('a', { declaredSize: 1000, expiresAt: now + 60_000 }));
      assert.equal(await reserved(), 1000);
      await store.createUpload(upload('b', { declaredSize: null, expiresAt: now + 60_000 }));
      await store.createUpload(upload('d', { declaredSize: 300, expiresAt: now + 2000 }));
      assert.equal(await reserved(), 1300);
      await store.declareUploadSize('b', 200);
      assert.equal(await reserved(), 1500);
      await store.advanceUpload('a', 400, now + 60_000, null);
      assert.equal(await reserved(), 1100);
      assert.equal(await reserved(now + 3000), 800, "d's promise ends with it");
      assert.equal(await reserved(), 1100, 'asked for an earlier moment again');
      await store.beginCompletion('b', digest(1), digest(1));
      assert.equal(await reserved(), 900, 'a completing session has all its bytes');
      await store.reopenUpload('b', null, null);
      assert.equal(await reserved(), 1100);
      await store.beginCompletion('b', digest(1), digest(1));
      await store.finishUpload('b', blob(1, 200), { pin: { principal: 'p', temporary: false, expiresAt: null } }, () => '{}', now + 60_000);
      assert.equal(await reserved(), 900);
      await store.deleteUpload('d');
      assert.equal(await reserved(), 600);
    }));

    test('unfinished, expired and reserved sessions', withStore(async ({ store }) => {
      const now = Date.now();
      await store.createUpload(upload('a', { declaredSize: 1000 }));
      await store.createUpload(upload('b', { declaredSize: null }));
      await store.createUpload(upload('c', { declaredSize: 500, expiresAt: now - 1 }));
      await store.advanceUpload('a', 400, now + 60_000, null);
      assert.equal(await store.reservedUploadBytes(now), 600, 'only live sessions with a declared size count');
      assert.deepEqual((await store.listUnfinishedUploads()).map((u) => u.id).sort(), ['a', 'b', 'c']);
      assert.deepEqual(await store.listExpiredUploads(now), [{ id: 'c', state: 'open' }]);
      await store.deleteUpload('c');
      assert.equal(await store.getUpload('c'), null);
      assert.deepEqual(await store.listExpiredUploads(now), []);
    }));

    test('tokens: created, found by id, listed, used (at most once per window), deleted; they survive a reopen', withStore(async (f) => {
      const t = { id: 't1', name: 'ci', tokenHash: 'cd'.repeat(32), scopes: ['blobs:read', 'bucket:a:write'], createdBy: 'admin', createdAt: 1000, expiresAt: null };
      await f.store.createToken(t);
      assert.deepEqual(await f.store.getToken('t1'), { ...t, lastUsedAt: null });
      assert.equal(await f.store.getToken('t2'), null);
      await f.store.touchToken('t1', 5000, 4000);
      await f.store.touchToken('t1', 5500, 4500); // within the window: the recorded use stays
      const reopened = await f.reopen();
      assert.equal((await reopened.getToken('t1'))?.lastUsedAt, 5000);
      await reopened.touchToken('t1', 9000, 6000);
      assert.equal((await reopened.getToken('t1'))?.lastUsedAt, 9000);
      assert.deepEqual((await reopened.listTokens(100, null)).map((x) => x.id), ['t1']);
      await reopened.createToken({ ...t, id: 't2' });
      assert.deepEqual((await reopened.listTokens(1, null)).map((x) => x.id), ['t1'], 'a page, in id order');
      assert.deepEqual((await reopened.listTokens(100, 't1')).map((x) => x.id), ['t2'], 'after the cursor');
      assert.equal(await reopened.deleteToken('t1'), true);
      assert.equal(await reopened.deleteToken('t1'), false);
      assert.equal(await reopened.deleteToken('t2'), true);
      assert.deepEqual(await reopened.listTokens(100, null), []);
    }));

    test('idempotency keys: claim, in use, answered, stale, released, per principal', withStore(async ({ store }) => {
      const now = 100_000;
      assert.deepEqual(await store.claimIdempotencyKey('p', 'k', 'fp1', now, now - 1000), { claimed: true });
      const pending = await store.claimIdempotencyKey('p', 'k', 'fp2', now + 1, now - 999);
      assert.ok(!pending.claimed && pending.record.response === null && pending.record.fingerprint === 'fp1');
      assert.deepEqual(await store.claimIdempotencyKey('q', 'k', 'fp2', now, now - 1000), { claimed: true }, 'another principal has its own keys');
      await store.saveIdempotentResponse('p', 'k', 'bh', Buffer.from('sealed'));
      const answered = await store.claimIdempotencyKey('p', 'k', 'fp1', now + 2, now - 998);
      assert.ok(!answered.claimed && answered.record.response?.toString() === 'sealed' && answered.record.bodyHash === 'bh');
      // Past the window the old record gives way to a new claim.
      assert.deepEqual(await store.claimIdempotencyKey('p', 'k', 'fp3', now + 5000, now + 1), { claimed: true });
      await store.releaseIdempotencyKey('p', 'k');
      assert.deepEqual(await store.claimIdempotencyKey('p', 'k', 'fp4', now + 6000, now), { claimed: true }, 'a released claim is free');
      assert.equal(await store.dropPendingIdempotencyKeys(), 2, "p's and q's pending claims");
      await store.claimIdempotencyKey('p', 'old', 'fp', now, now - 1000);
      await store.saveIdempotentResponse('p', 'old', null, Buffer.from('x'));
      assert.equal(await store.deleteIdempotencyRecordsBefore(now + 1), 1);
      assert.deepEqual(await store.claimIdempotencyKey('p', 'old', 'fp', now + 2, 0), { claimed: true });
    }));

    test('concurrent claims of one idempotency key: exactly one wins', withStore(async ({ store }) => {
      const now = Date.now();
      const results = await Promise.all(Array.from({ length: 20 }, () => store.claimIdempotencyKey('p', 'race', 'fp', now, now - 1000)));
      assert.equal(results.filter((r) => r.claimed).length, 1);
    }));

    test('pins of a principal, newest first, paged by (created_at, digest); a dropped pin is gone', withStore(async ({ store }) => {
      for (let i = 1; i <= 3; i++) await store.commitBlob(blob(100 + i, i), { principal: 'p', temporary: false, expiresAt: null });
      await store.commitBlob(blob(200, 9), { principal: 'q', temporary: false, expiresAt: null });
      const first = await store.listPins('p', 2, null);
      assert.equal(first.length, 2);
      const rest = await store.listPins('p', 2, { createdAt: first[1]!.createdAt, digest: first[1]!.digest });
      assert.deepEqual([...first, ...rest].map((p) => p.digest).sort(), [digest(101), digest(102), digest(103)]);
      assert.equal(await store.dropPin('p', digest(101)), true);
      assert.equal(await store.dropPin('p', digest(101)), false);
      assert.equal((await store.listPins('p', 10, null)).length, 2);
      await store.commitBlob(blob(104, 1), { principal: 'p', temporary: true, expiresAt: Date.now() - 1 });
      assert.equal(await store.dropPin('p', digest(104)), false, 'an expired pin is no pin');
      assert.equal(await store.isBlobLive(digest(104)), false);
      assert.equal(await store.isBlobLive(digest(102)), true);
    }));

    test("a principal's open sessions, newest first, paged by id; completed and others' sessions are not listed", withStore(async ({ store }) => {
      for (const id of ['s1', 's2', 's3']) await store.createUpload(upload(id));
      await store.createUpload(upload('s4', { principal: 'q' }));
      await store.createUpload(upload('s5', { expiresAt: Date.now() - 1 }));
      assert.deepEqual((await store.listUploads('p', 100, null)).map((u) => u.id), ['s3', 's2', 's1']);
      assert.deepEqual((await store.listUploads('p', 1, null)).map((u) => u.id), ['s3']);
      assert.deepEqual((await store.listUploads('p', 100, 's3')).map((u) => u.id), ['s2', 's1']);
      await store.beginCompletion('s2', digest(1), digest(1));
      await store.finishUpload('s2', blob(1, 0), { pin: { principal: 'p', temporary: false, expiresAt: null } }, () => '{}', Date.now() + 1000);
      assert.deepEqual((await store.listUploads('p', 100, null)).map((u) => u.id), ['s3', 's1']);
    }));

    test('garbage: unreferenced, older than the cut-off, no valid pin; deleting re-checks and respects holds', withStore(async ({ store }) => {
      const now = Date.now();
      await store.commitBlob(blob(301, 1)); // no reference at all
      await store.commitBlob(blob(302, 2), { principal: 'p', temporary: true, expiresAt: now - 1 }); // expired pin
      await store.commitBlob(blob(303, 3), { principal: 'p', temporary: false, expiresAt: null }); // pinned
      await store.putBucket('g', settings({}));
      await store.addRevision({ bucket: 'g', key: 'k', newObjectId: 'og', blob: blob(304, 4), contentType: null, filename: null, createdBy: 'p' });
      const cut = Date.now() + 1;
      assert.deepEqual((await store.listGarbageBlobs(cut, now, 100)).map((b) => b.digest), [digest(301), digest(302)]);
      assert.deepEqual(await store.listGarbageBlobs(now - 60_000, now, 100), [], 'younger than the cut-off: none');
      await store.addGcHold('h', now + 60_000);
      assert.equal(await store.deleteGarbageBlob(digest(301), cut, now), false, 'a hold pauses removal');
      await store.releaseGcHold('h');
      // Referenced between listing and deleting: the delete re-checks and keeps it.
      await store.commitBlob(blob(301, 1), { principal: 'late', temporary: false, expiresAt: null });
      assert.equal(await store.deleteGarbageBlob(digest(301), cut, now), false);
      assert.equal(await store.deleteGarbageBlob(digest(302), cut, now), true);
      assert.equal(await store.getBlob(digest(302)), null);
      assert.equal(await store.deleteGarbageBlob(digest(304), cut, now), false, 'a revision keeps it');
    }));

    test('expiry of pins and objects: counted in a dry run, deleted otherwise', withStore(async ({ store }) => {
      const now = Date.now();
      await store.commitBlob(blob(401, 1), { principal: 'p', temporary: true, expiresAt: now - 1 });
      await store.putBucket('e', settings({}));
      await store.addRevision({ bucket: 'e', key: 'old', newObjectId: 'oe', blob: blob(402, 2), contentType: null, filename: null, createdBy: 'p' });
      await store.setObjectMeta('e', 'old', { contentType: null, filename: null, owner: null, tags: [], properties: {}, expiresAt: now - 1 });
      assert.deepEqual(await store.expirePinsAndObjects(now, true), { pins: 1, objects: 1 });
      const cut = Date.now() + 1;
      assert.deepEqual((await store.listGarbageBlobs(cut, now, 10)).map((b) => b.digest), [digest(401)], 'the expired object still references 402');
      assert.deepEqual((await store.listGarbageBlobs(cut, now, 10, true)).map((b) => b.digest), [digest(401), digest(402)], 'after expiry it would not');
      assert.equal(await store.getObject('e', 'old'), null, 'gone for readers before the rows go');
      assert.deepEqual(await store.expirePinsAndObjects(now, false), { pins: 1, objects: 1 });
      assert.equal(await store.getObject('e', 'old'), null);
      assert.equal((await store.getBucket('e'))?.objectCount, 0, 'bucket usage follows');
    }));

    test('purge removes every revision using a blob (objects fall back or go), its pins and its row', withStore(async ({ store }) => {
      await store.putBucket('u', settings({}));
      const w = (key: string, n: number, id: string) =>
        store.addRevision({ bucket: 'u', key, newObjectId: id, blob: blob(n, n), contentType: null, filename: null, createdBy: 'p' });
      await w('only', 501, 'o1');
      await w('two', 502, 'o2');
      await w('two', 501, 'o2');
      await store.commitBlob(blob(501, 501), { principal: 'p', temporary: false, expiresAt: null });
      assert.deepEqual(await store.purgeBlob(digest(501)), { revisions: 2, pins: 1 });
      assert.equal(await store.getObject('u', 'only'), null);
      assert.equal((await store.getObject('u', 'two'))?.digest, digest(502), 'falls back to its older revision');
      assert.equal(await store.getBlob(digest(501)), null);
      assert.equal(await store.purgeBlob(digest(501)), null);
      const s = await store.stats();
      assert.equal(s.objects, 1);
      assert.equal(s.logicalBytes, 502);
    }));

    test('a quarantined blob is marked; the next insert of it heals the mark', withStore(async ({ store }) => {
      await store.commitBlob(blob(601, 1));
      await store.markQuarantined(digest(601));
      assert.equal((await store.getBlob(digest(601)))?.quarantined, true);
      assert.deepEqual(await store.commitBlob(blob(601, 1)), { created: false });
      assert.equal((await store.getBlob(digest(601)))?.quarantined, false);
    }));

    locationContract(withStore);
    inlineContract(withStore);
    coordinationContract(withStore);
  });
}
