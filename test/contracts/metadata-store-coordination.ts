// The MetadataStore contract's part about several processes sharing one store: session leases and fenced
// session writes, named leases, shared secrets, idempotency claims by holder, and references to existing
// blobs that must never resurrect a row GC removed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UploadLeaseLost } from '../../src/storage/metadata-store.ts';
import type { MetadataStoreFixture } from './metadata-store.ts';
import { blob, digest, newUpload } from './metadata-samples.ts';

type WithStore = (fn: (f: MetadataStoreFixture) => Promise<void>) => () => Promise<void>;

const pin = (principal = 'p') => ({ principal, temporary: false, expiresAt: null });
const noSettings = { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false };

export function coordinationContract(withStore: WithStore): void {
  test('a session lease: one holder at a time; the holder again renews; a lapsed one is taken over', withStore(async ({ store }) => {
    await store.createUpload(newUpload('s1'));
    const now = Date.now();
    assert.equal(await store.acquireUploadLease('nope', 'a', now, now + 1000), null);
    assert.equal((await store.getUpload('s1'))?.leaseHolder, null);
    const first = await store.acquireUploadLease('s1', 'a', now, now + 1000);
    assert.equal(first?.outcome, 'acquired');
    assert.equal(first?.row.id, 's1');
    assert.equal(first?.row.leaseHolder, 'a');
    assert.equal((await store.listUnfinishedUploads())[0]?.leaseHolder, 'a');
    const busy = await store.acquireUploadLease('s1', 'b', now, now + 1000);
    assert.equal(busy?.outcome, 'busy');
    assert.equal(busy?.row.offset, 0);
    assert.equal((await store.acquireUploadLease('s1', 'a', now, now + 2000))?.outcome, 'acquired');
    assert.equal(await store.renewUploadLease('s1', 'a', now + 3000), true);
    assert.equal(await store.renewUploadLease('s1', 'b', now + 3000), false);
    // Past its end (the holder crashed): another takes it over, and the old holder's renewal fails.
    const taken = await store.acquireUploadLease('s1', 'b', now + 3000, now + 4000);
    assert.equal(taken?.outcome, 'taken_over');
    assert.equal(await store.renewUploadLease('s1', 'a', now + 5000), false);
    // Let go: the next one acquires (not a takeover).
    await store.releaseUploadLease('s1', 'a'); // not a's any more: nothing happens
    assert.equal((await store.acquireUploadLease('s1', 'c', now, now + 1000))?.outcome, 'busy');
    await store.releaseUploadLease('s1', 'b');
    assert.equal((await store.acquireUploadLease('s1', 'c', now, now + 1000))?.outcome, 'acquired');
  }));

  test('fenced session writes: only the lease holder advances, completes or reopens; unfenced writes go on', withStore(async ({ store }) => {
    await store.createUpload(newUpload('s1'));
    const now = Date.now();
    await store.acquireUploadLease('s1', 'a', now, now + 1000);
    await store.advanceUpload('s1', 10, now + 60_000, 'c1', 'a');
    await store.acquireUploadLease('s1', 'b', now + 2000, now + 3000); // a's lease lapsed: b takes over
    await assert.rejects(store.advanceUpload('s1', 20, now + 60_000, 'c2', 'a'), UploadLeaseLost);
    await assert.rejects(store.beginCompletion('s1', digest(1), 'loc', 'a'), UploadLeaseLost);
    let row = await store.getUpload('s1');
    assert.equal(row?.offset, 10);
    assert.equal(row?.cursor, 'c1');
    assert.equal(row?.state, 'open');
    await store.advanceUpload('s1', 20, now + 60_000, 'c2', 'b');
    await store.beginCompletion('s1', digest(1), 'loc', 'b');
    await assert.rejects(store.reopenUpload('s1', 'c3', null, 'a'), UploadLeaseLost);
    assert.equal((await store.getUpload('s1'))?.state, 'completing');
    await store.reopenUpload('s1', 'c3', null, 'b');
    row = await store.getUpload('s1');
    assert.equal(row?.state, 'open');
    assert.equal(row?.offset, 20);
    assert.equal(row?.cursor, 'c3');
    await store.advanceUpload('s1', 30, now + 60_000, 'c4'); // no holder: not fenced (one process)
    assert.equal((await store.getUpload('s1'))?.offset, 30);
  }));

  test("a session's portable hash state is written with its offset when given, and kept as it was otherwise", withStore(async (f) => {
    await f.store.createUpload(newUpload('s1'));
    const now = Date.now();
    assert.equal((await f.store.getUpload('s1'))?.hashState, null);
    await f.store.advanceUpload('s1', 10, now + 60_000, 'c1', undefined, '10:c3RhdGU=');
    await f.store.advanceUpload('s1', 10, now + 60_000, 'c2'); // a new cursor for the same bytes
    let row = await (await f.reopen()).getUpload('s1');
    assert.equal(row?.hashState, '10:c3RhdGU=');
    assert.equal(row?.cursor, 'c2');
    await f.store.advanceUpload('s1', 20, now + 60_000, 'c3', undefined, null);
    row = await f.store.getUpload('s1');
    assert.equal(row?.hashState, null);
    assert.equal(row?.offset, 20);
  }));

  test('finishUpload is fenced: a holder whose lease was taken over completes nothing', withStore(async ({ store }) => {
    await store.createUpload(newUpload('s1'));
    const now = Date.now();
    await store.acquireUploadLease('s1', 'a', now, now + 1000);
    await store.advanceUpload('s1', 3, now + 60_000, 'c1', 'a');
    await store.beginCompletion('s1', digest(1), 'blobs/s1', 'a');
    await store.acquireUploadLease('s1', 'b', now + 2000, now + 3000); // a stalled past its lease
    await store.reopenUpload('s1', 'c2', 'blobs/s1', 'b');
    await store.advanceUpload('s1', 4, now + 60_000, 'c3', 'b');
    const pin = { principal: 'p', temporary: false, expiresAt: null };
    await assert.rejects(store.finishUpload('s1', blob(1, 3, 'blobs/s1'), { pin }, () => '{}', now + 60_000, 'a'), UploadLeaseLost);
    const row = await store.getUpload('s1');
    assert.equal(row?.state, 'open');
    assert.equal(row?.offset, 4);
    assert.equal(await store.getBlob(digest(1)), null);
    assert.equal((await store.listPins('p', 10, null)).length, 0);
    // The holder's own finish goes through.
    await store.beginCompletion('s1', digest(2), 'blobs/s1', 'b');
    const done = await store.finishUpload('s1', blob(2, 4, 'blobs/s1'), { pin }, () => '{}', now + 60_000, 'b');
    assert.equal(done.ok, true);
    assert.equal((await store.getUpload('s1'))?.state, 'completed');
  }));

  test('expired sessions with a live lease are not listed as expired', withStore(async ({ store }) => {
    const now = Date.now();
    await store.createUpload(newUpload('s1', { expiresAt: now - 1000 }));
    await store.createUpload(newUpload('s2', { expiresAt: now - 1000 }));
    await store.acquireUploadLease('s1', 'a', now, now + 60_000);
    assert.deepEqual((await store.listExpiredUploads(now)).map((r) => r.id), ['s2']);
    await store.releaseUploadLease('s1', 'a');
    assert.deepEqual((await store.listExpiredUploads(now)).map((r) => r.id).sort(), ['s1', 's2']);
  }));

  test('named leases: one holder until it lets go or its end passes; live holders by prefix', withStore(async ({ store }) => {
    const now = Date.now();
    assert.equal(await store.acquireLease('gc', 'a', now, now + 1000), true);
    assert.equal(await store.acquireLease('gc', 'b', now, now + 1000), false);
    assert.equal(await store.acquireLease('gc', 'a', now, now + 2000), true); // renewal
    assert.equal(await store.acquireLease('gc', 'b', now + 1500, now + 2500), false);
    assert.equal(await store.acquireLease('gc', 'b', now + 2000, now + 3000), true); // a's ended
    await store.releaseLease('gc', 'a'); // not a's: nothing
    assert.equal(await store.acquireLease('gc', 'c', now + 2000, now + 3000), false);
    await store.releaseLease('gc', 'b');
    assert.equal(await store.acquireLease('gc', 'c', now + 2000, now + 3000), true);
    await store.acquireLease('node:1', 'n1', now, now + 1000);
    await store.acquireLease('node:2', 'n2', now, now + 5000);
    await store.acquireLease('nodes', 'x', now, now + 5000);
    assert.deepEqual(await store.liveLeaseHolders('node:', now + 2000), [{ name: 'node:2', holder: 'n2' }]);
  }));

  test('shared secrets: the first writer wins; listed by prefix in name order', withStore(async (f) => {
    assert.equal(await f.store.getSecret('admin'), null);
    const a = Buffer.from('first-secret');
    assert.deepEqual(await f.store.ensureSecret('admin', a), a);
    assert.deepEqual(await f.store.ensureSecret('admin', Buffer.from('second')), a);
    await f.store.ensureSecret('signing:b', Buffer.from('kb'));
    await f.store.ensureSecret('signing:a', Buffer.from('ka'));
    const store = await f.reopen();
    assert.deepEqual(await store.getSecret('admin'), a);
    assert.deepEqual(
      (await store.listSecrets('signing:')).map((s) => [s.name, s.value.toString()]),
      [['signing:a', 'ka'], ['signing:b', 'kb']],
    );
  }));

  test('a deleted secret is gone for reads and listings; deleting it again finds none', withStore(async (f) => {
    await f.store.ensureSecret('s3key:a', Buffer.from('ka'));
    await f.store.ensureSecret('s3key:b', Buffer.from('kb'));
    assert.equal(await f.store.deleteSecret('s3key:a'), true);
    assert.equal(await f.store.deleteSecret('s3key:a'), false);
    assert.equal(await f.store.deleteSecret('never'), false);
    const store = await f.reopen();
    assert.equal(await store.getSecret('s3key:a'), null);
    assert.deepEqual((await store.listSecrets('s3key:')).map((s) => s.name), ['s3key:b']);
    assert.deepEqual(await store.ensureSecret('s3key:a', Buffer.from('new')), Buffer.from('new'), 'the name can be used again');
  }));

  test('pending idempotency claims are dropped by holder: those of live holders stay', withStore(async ({ store }) => {
    const now = Date.now();
    await store.claimIdempotencyKey('p', 'k1', 'f', now, now - 60_000, 'node-a');
    await store.claimIdempotencyKey('p', 'k2', 'f', now, now - 60_000, 'node-b');
    await store.claimIdempotencyKey('p', 'k3', 'f', now, now - 60_000);
    await store.claimIdempotencyKey('p', 'k4', 'f', now, now - 60_000, 'node-b');
    await store.saveIdempotentResponse('p', 'k4', null, Buffer.from('answer'));
    assert.equal(await store.dropPendingIdempotencyKeys(['node-b']), 2); // k1 (a is gone) and k3 (no holder)
    assert.equal((await store.claimIdempotencyKey('p', 'k2', 'f', now, now - 60_000, 'node-c')).claimed, false);
    assert.equal((await store.claimIdempotencyKey('p', 'k1', 'f', now, now - 60_000, 'node-c')).claimed, true);
    assert.equal(await store.dropPendingIdempotencyKeys(), 2); // k1 and k2; k4 is answered
    assert.equal((await store.claimIdempotencyKey('p', 'k4', 'f', now, now - 60_000)).claimed, false);
  }));

  test('pinExistingBlob pins a live, readable row only, and never makes one', withStore(async ({ store }) => {
    assert.equal(await store.pinExistingBlob(digest(1), pin('q')), null);
    assert.equal(await store.getBlob(digest(1)), null);
    await store.commitBlob(blob(1, 5, 'blobs/1'), pin('p'));
    const row = await store.pinExistingBlob(digest(1), pin('q'));
    assert.equal(row?.location, 'blobs/1');
    assert.equal(row?.size, 5);
    assert.equal((await store.listPins('q', 10, null)).length, 1);
    assert.equal(await store.pinExistingBlob(digest(1), pin('r'), 6), null); // another size
    await store.markQuarantined(digest(1));
    assert.equal(await store.pinExistingBlob(digest(1), pin('r')), null);
    assert.equal((await store.listPins('r', 10, null)).length, 0);
    // Not live (garbage waiting for GC): not pinned either.
    await store.commitBlob(blob(2, 5, 'blobs/2'));
    assert.equal(await store.pinExistingBlob(digest(2), pin('r')), null);
  }));

  test('a revision that must reference an existing blob fails once GC removed it, and makes no row', withStore(async ({ store }) => {
    await store.putBucket('b', noSettings);
    await store.commitBlob(blob(1, 5, 'blobs/1'));
    const write = (key: string) => ({
      bucket: 'b', key, newObjectId: `o-${key}`, blob: { ...blob(1, 5, 'blobs/1'), mustExist: true },
      contentType: null, filename: null, createdBy: 'p',
    });
    const ok = await store.addRevision(write('k1'));
    assert.equal(ok.ok, true);
    await store.deleteObject('b', 'k1');
    assert.equal(await store.deleteGarbageBlob(digest(1), Date.now() + 1000, Date.now()), true);
    const gone = await store.addRevision(write('k2'));
    assert.deepEqual(gone, { ok: false, reason: 'blob_not_found' });
    assert.equal(await store.getBlob(digest(1)), null);
    assert.equal(await store.getObject('b', 'k2'), null);
  }));
}
