// What every MetadataStore must do, written once: run it against each implementation (SQLite today,
// PostgreSQL later) with a factory that gives a fresh, empty store.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MetadataStore } from '../../src/storage/metadata-store.ts';

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
  });
}
