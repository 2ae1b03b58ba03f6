// Runs the storage conformance suites against blobd's first implementations: the local filesystem and
// SQLite, each on a real temp directory.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { byteStoreContract } from './contracts/byte-store.ts';
import { metadataStoreContract } from './contracts/metadata-store.ts';
import { makeTempDir, removeDir } from './helpers/daemon.ts';
import { FsByteStore } from '../src/storage/fs/fs-byte-store.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';

byteStoreContract('local filesystem', async () => {
  const dir = await makeTempDir();
  const layout = new DataLayout(dir);
  const store = await FsByteStore.open(layout);
  return {
    store,
    stagedCount: async () => (await readdir(layout.tmpDir)).length,
    dispose: () => removeDir(dir),
  };
});

metadataStoreContract('SQLite', async () => {
  const dir = await makeTempDir();
  const file = path.join(dir, 'blobd.db');
  let store = SqliteMetadataStore.open(file);
  return {
    store,
    async reopen() {
      await store.close();
      store = SqliteMetadataStore.open(file);
      return store;
    },
    async dispose() {
      await store.close();
      await removeDir(dir);
    },
  };
});

// G6 at the byte store: a shard directory that is a symlink (planted by hand, at either level) is never
// written through, and the staged bytes stay out of the directory it points to.
describe('local filesystem: shard directories', () => {
  for (const level of ['first', 'second'] as const) {
    test(`a commit refuses a symlinked ${level}-level shard and writes nothing outside`, async () => {
      const dir = await makeTempDir();
      const outside = await makeTempDir('blobd-outside-');
      try {
        const layout = new DataLayout(path.join(dir, 'data'));
        const store = await FsByteStore.open(layout);
        const data = randomBytes(1000);
        const hex = createHash('sha256').update(data).digest('hex');
        const first = path.join(layout.blobsDir, hex.slice(0, 2));
        if (level === 'first') await symlink(outside, first);
        else {
          await mkdir(first);
          await symlink(outside, path.join(first, hex.slice(2, 4)));
        }
        const staged = await store.stage(Readable.from([data]));
        assert.equal(staged.digest, `sha256:${hex}`);
        await assert.rejects(store.commit(staged), /not a real directory/);
        await store.discard(staged);
        assert.deepEqual(await readdir(outside), []);
        assert.equal(await store.stat(staged.digest), null);
        assert.deepEqual(await readdir(layout.tmpDir), []);
      } finally {
        await removeDir(dir);
        await removeDir(outside);
      }
    });
  }

  test('concurrent commits into one new shard share its creation; every blob lands and reads back', async () => {
    const dir = await makeTempDir();
    try {
      const layout = new DataLayout(dir);
      const store = await FsByteStore.open(layout);
      // 400 random blobs over 256 first-level shards: many share one, so its creation races in this process.
      const blobs = Array.from({ length: 400 }, () => randomBytes(64));
      const staged = await Promise.all(blobs.map((b) => store.stage(Readable.from([b]))));
      await Promise.all(staged.map((s) => store.commit(s)));
      await Promise.all(staged.map((s) => store.discard(s)));
      for (const [i, s] of staged.entries()) {
        const got: Buffer[] = [];
        for await (const c of await store.openRead(s.digest)) got.push(c as Buffer);
        assert.deepEqual(Buffer.concat(got), blobs[i]);
      }
      assert.deepEqual(await readdir(layout.tmpDir), []);
    } finally {
      await removeDir(dir);
    }
  });
});
