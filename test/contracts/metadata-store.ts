// What every MetadataStore must do, written once: run it against each implementation (SQLite today,
// PostgreSQL later) with a factory that gives a fresh, empty store.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MetadataStore, NewUpload } from '../../src/storage/metadata-store.ts';

export interface MetadataStoreFixture {
  store: MetadataStore;
  /** Close and open the store again on the same data (a restart). */
  reopen(): Promise<MetadataStore>;
  dispose(): Promise<void>;
}

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

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
      assert.deepEqual(await store.commitBlob({ digest: digest(2), size: 42 }), { created: true });
      assert.deepEqual(await store.commitBlob({ digest: digest(2), size: 42 }), { created: false });
      const row = await store.getBlob(digest(2));
      assert.equal(row?.digest, digest(2));
      assert.equal(row?.size, 42);
      assert.ok(row!.createdAt >= before && row!.createdAt <= Date.now());
    }));

    test('commitBlob with pins, permanent and temporary, by several principals', withStore(async ({ store }) => {
      const pinA = { principal: 'a', temporary: false, expiresAt: null };
      const pinB = { principal: 'b', temporary: true, expiresAt: Date.now() + 1000 };
      assert.deepEqual(await store.commitBlob({ digest: digest(3), size: 1 }, pinA), { created: true });
      assert.deepEqual(await store.commitBlob({ digest: digest(3), size: 1 }, pinB), { created: false });
      assert.deepEqual(await store.commitBlob({ digest: digest(3), size: 1 }, pinA), { created: false });
    }));

    test('concurrent commits of one digest: exactly one creates', withStore(async ({ store }) => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.commitBlob({ digest: digest(4), size: 9 }, { principal: `p${i % 3}`, temporary: false, expiresAt: null }),
        ),
      );
      assert.equal(results.filter((r) => r.created).length, 1);
    }));

    test('committed rows survive a reopen', withStore(async (f) => {
      await f.store.commitBlob({ digest: digest(5), size: 5 });
      const reopened = await f.reopen();
      assert.equal((await reopened.getBlob(digest(5)))?.size, 5);
    }));

    test('ping resolves on a healthy store', withStore(async ({ store }) => {
      await store.ping();
    }));

    const upload = (id: string, extra: Partial<NewUpload> = {}): NewUpload => ({
      id,
      tokenHash: 'ab'.repeat(32),
      principal: 'p',
      filename: 'f.bin',
      contentType: null,
      temporary: false,
      declaredSize: 100,
      expectedDigest: null,
      bucket: null,
      key: null,
      createdAt: Date.now(),
      expiresAt: Date.now() + 60_000,
      ...extra,
    });

    test('an upload session advances, completes once, and replays its result', withStore(async ({ store }) => {
      assert.equal(await store.getUpload('u1'), null);
      await store.createUpload(upload('u1'));
      const fresh = await store.getUpload('u1');
      assert.equal(fresh?.state, 'open');
      assert.equal(fresh?.offset, 0);
      assert.equal(fresh?.filename, 'f.bin');
      await store.advanceUpload('u1', 60, Date.now() + 120_000);
      assert.equal((await store.getUpload('u1'))?.offset, 60);
      await store.beginCompletion('u1', digest(9));
      assert.equal((await store.getUpload('u1'))?.state, 'completing');
      await assert.rejects(store.advanceUpload('u1', 70, Date.now()), 'a completing session takes no bytes');
      await store.reopenUpload('u1');
      assert.equal((await store.getUpload('u1'))?.digest, null);
      const pin = { pin: { principal: 'p', temporary: false, expiresAt: null } };
      const done1 = await store.finishUpload('u1', { digest: digest(9), size: 60 }, pin, () => '{"r":1}', Date.now() + 1000);
      assert.deepEqual(done1, { ok: true, created: true, object: null });
      const done = await store.getUpload('u1');
      assert.equal(done?.state, 'completed');
      assert.equal(done?.result, '{"r":1}');
      assert.equal((await store.getBlob(digest(9)))?.size, 60);
      await assert.rejects(store.finishUpload('u1', { digest: digest(9), size: 60 }, pin, () => '{}', 0), 'completes only once');
      assert.deepEqual(await store.listUnfinishedUploads(), []);
    }));

    test('unfinished, expired and reserved sessions', withStore(async ({ store }) => {
      const now = Date.now();
      await store.createUpload(upload('a', { declaredSize: 1000 }));
      await store.createUpload(upload('b', { declaredSize: null }));
      await store.createUpload(upload('c', { declaredSize: 500, expiresAt: now - 1 }));
      await store.advanceUpload('a', 400, now + 60_000);
      assert.equal(await store.reservedUploadBytes(now), 600, 'only live sessions with a declared size count');
      assert.deepEqual((await store.listUnfinishedUploads()).map((u) => u.id).sort(), ['a', 'b', 'c']);
      assert.deepEqual(await store.listExpiredUploads(now), [{ id: 'c', state: 'open' }]);
      await store.deleteUpload('c');
      assert.equal(await store.getUpload('c'), null);
      assert.deepEqual(await store.listExpiredUploads(now), []);
    }));
  });
}
