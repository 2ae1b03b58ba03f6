// Runs the storage conformance suites against blobd's first implementations: the local filesystem and
// SQLite, each on a real temp directory.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
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
