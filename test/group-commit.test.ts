// Group commit of blob rows and revisions: a group waits for commits announced ahead (announceBlobCommit)
// and for nothing else, every caller is answered, and each write of a group succeeds or fails alone. The SQLite store is opened with a one-minute window so that the wait
// can be seen without timing anything: a group that wrongly waits shows up as a hang, cut by `settles`.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { BlobService } from '../src/core/blobs.ts';
import { DiskBudget } from '../src/core/disk-budget.ts';
import { FsByteStore } from '../src/storage/fs/fs-byte-store.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';
import { makeTempDir, removeDir } from './helpers/daemon.ts';

const MINUTE = 60_000;
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const blob = (n: number, size: number) => ({ digest: digest(n), size, location: digest(n) });
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
/** The promise's value, or a failure naming `what` if it has not settled within 10 s (a hang, not a speed). */
async function settles<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after 10 s`)), 10_000);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

async function withStore(fn: (store: SqliteMetadataStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTempDir();
  const store = SqliteMetadataStore.open(path.join(dir, 'blobd.db'), { groupWindowMs: MINUTE });
  try {
    await fn(store, dir);
  } finally {
    await store.close();
    await removeDir(dir);
  }
}

test('a group waits for an announced commit and takes it along; afterwards nothing waits', () =>
  withStore(async (store) => {
    for (let cycle = 0; cycle < 2; cycle++) {
      const ticket = store.announceBlobCommit();
      const first = store.commitBlob(blob(10 + 2 * cycle, 1));
      await turns(5);
      assert.equal(store.blobCommitGroups, cycle, 'the group waits while the announced commit is on its way');
      const second = ticket.commit(blob(11 + 2 * cycle, 1));
      assert.deepEqual(await settles('the gathered group', Promise.all([first, second])), [{ created: true }, { created: true }]);
      assert.equal(store.blobCommitGroups, cycle + 1, 'both rows in one transaction');
    }
    // Every ticket was used: a plain commit goes on the next turn.
    await settles('a commit with nothing announced', store.commitBlob(blob(20, 1)));
    assert.equal(store.blobCommitGroups, 3);
  }));

test('a cancelled ticket lets a waiting group go', () =>
  withStore(async (store) => {
    const ticket = store.announceBlobCommit();
    const waiting = store.commitBlob(blob(30, 1));
    await turns(5);
    assert.equal(store.blobCommitGroups, 0);
    ticket.cancel();
    ticket.cancel(); // twice: no effect
    assert.deepEqual(await settles('the group after cancel', waiting), { created: true });
    await settles('a later commit', store.commitBlob(blob(31, 1)));
  }));

test('revisions share a group with blob rows; each is decided alone, and all are durable after close', async () => {
  const dir = await makeTempDir();
  const file = path.join(dir, 'blobd.db');
  try {
    const store = SqliteMetadataStore.open(file, { groupWindowMs: MINUTE });
    await store.putBucket('b', { maxObjectSize: null, quotaBytes: 3, maxRevisions: null, publicRead: false, publicRevisions: false });
    const rev = (key: string, n: number, extra: object = {}) => ({
      bucket: 'b',
      key,
      newObjectId: `0190a000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`,
      blob: blob(n, 1),
      contentType: null,
      filename: null,
      createdBy: 'test',
      ...extra,
    });
    const groups = store.blobCommitGroups;
    const ticket = store.announceBlobCommit();
    const writes = [
      store.addRevision(rev('k', 40, { ifNoneMatch: true })),
      store.addRevision(rev('k', 41, { ifNoneMatch: true })),
      store.addRevision(
        rev('m', 42, {
          meta: () => {
            throw new Error('a patch that fails its checks');
          },
        }),
      ),
      store.commitBlob(blob(43, 1)),
      store.addRevision(rev('q1', 44)),
      store.addRevision(rev('q2', 45)),
    ];
    await turns(5);
    assert.equal(store.blobCommitGroups, groups, 'the group waits for the announced revision');
    const last = ticket.addRevision(rev('q3', 46));
    const settled = await settles('the group', Promise.allSettled<unknown>([...writes, last]));
    const [first, second, thrown, row, q1, q2, q3] = settled.map((r) => (r.status === 'fulfilled' ? (r.value as Record<string, unknown>) : 'rejected'));
    assert.equal(store.blobCommitGroups, groups + 1, 'one transaction for all of them');
    assert.equal((first as Record<string, unknown>).ok, true);
    assert.deepEqual(second, { ok: false, reason: 'precondition_failed' }, 'If-None-Match sees the write before it in the group');
    assert.equal(thrown, 'rejected', 'a write that throws fails alone');
    assert.deepEqual(row, { created: true });
    // Quota 3 bytes: k took one, q1 and q2 the rest; q3 is refused from within the same group.
    assert.deepEqual([q1, q2, q3].map((r) => (r as Record<string, unknown>).ok || (r as Record<string, unknown>).reason), [true, true, 'quota_exceeded']);
    await assert.rejects(ticket.addRevision(rev('q4', 47)), /used already/);
    await store.close();

    const again = SqliteMetadataStore.open(file);
    try {
      assert.equal((await again.getObject('b', 'k'))?.digest, digest(40));
      assert.equal(await again.getObject('b', 'm'), null, 'nothing of the write that threw');
      assert.equal((await again.getBlob(digest(43)))?.size, 1);
      assert.equal((await again.getBucket('b'))?.storedBytes, 3);
    } finally {
      await again.close();
    }
  } finally {
    await removeDir(dir);
  }
});

test('close commits a group that is waiting, leaves no timer, and refuses commits after it', async () => {
  const dir = await makeTempDir();
  try {
    const store = SqliteMetadataStore.open(path.join(dir, 'blobd.db'), { groupWindowMs: MINUTE });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const ticket = store.announceBlobCommit();
    const waiting = store.commitBlob(blob(40, 4));
    await turns(5);
    assert.equal(store.blobCommitGroups, 0);
    assert.equal(timers(), before + 1, 'the window timer is armed');
    await store.close();
    assert.deepEqual(await settles('the group at close', waiting), { created: true });
    assert.equal(timers(), before, 'no timer outlives close');
    // Refused at once, even with a ticket still out (a group would otherwise wait for it).
    await assert.rejects(settles('a commit after close', store.commitBlob(blob(41, 1))), /closed/);
    await assert.rejects(settles('an announced commit after close', ticket.commit(blob(42, 1))), /closed/);
    await store.close(); // again: nothing
    const reopened = SqliteMetadataStore.open(path.join(dir, 'blobd.db'));
    assert.equal((await reopened.getBlob(digest(40)))?.size, 4);
    assert.equal(await reopened.getBlob(digest(41)), null);
    assert.equal(await reopened.getBlob(digest(42)), null);
    await reopened.close();
  } finally {
    await removeDir(dir);
  }
});

test('an upload whose bytes cannot be put in place gives its ticket back at once', async () => {
  const dir = await makeTempDir();
  const outside = await makeTempDir('blobd-outside-');
  try {
    const layout = new DataLayout(path.join(dir, 'data'));
    const bytes = await FsByteStore.open(layout);
    const meta = SqliteMetadataStore.open(layout.databaseFile, { groupWindowMs: MINUTE });
    const blobs = new BlobService(meta, bytes, new DiskBudget(meta, bytes, 0), { maxBlobSize: 1 << 30, temporaryTtlMs: MINUTE });
    const principal = { id: 'admin', scopes: ['admin'] as const };
    try {
      // A planted symlink where the first blob's shard belongs: its commit is refused (G6).
      const bad = randomBytes(100);
      const hex = createHash('sha256').update(bad).digest('hex');
      await mkdir(path.join(layout.blobsDir, hex.slice(0, 2)));
      await symlink(outside, path.join(layout.blobsDir, hex.slice(0, 2), hex.slice(2, 4)));
      const failing = blobs.ingest(() => Readable.from([bad]), { principal: { ...principal, scopes: [...principal.scopes] } });
      // Another upload's row arrives while the failing one holds its ticket, or after it gave it back.
      const good = blobs.ingest(() => Readable.from([randomBytes(100)]), { principal: { ...principal, scopes: [...principal.scopes] } });
      await assert.rejects(settles('the refused upload', failing), /not a real directory/);
      assert.equal((await settles('the other upload', good)).deduplicated, false);
      // Nothing is announced any more: a plain commit goes at once.
      await settles('a commit after both', meta.commitBlob(blob(50, 1)));
    } finally {
      await meta.close();
    }
  } finally {
    await removeDir(dir);
    await removeDir(outside);
  }
});

test("the daemon's WAL is checkpointed on a thread of its own: the database file takes the rows before SQLite's own threshold", async () => {
  const dir = await makeTempDir();
  const file = path.join(dir, 'blobd.db');
  const store = SqliteMetadataStore.open(file, { checkpointThread: true });
  try {
    const before = (await stat(file)).size;
    // 30 group commits of 5 rows: far fewer WAL pages than the 1000 at which SQLite checkpoints itself
    // (and the daemon's connection waits for 4000 with the thread running).
    for (let g = 0; g < 30; g++) {
      await Promise.all(Array.from({ length: 5 }, (_, i) => store.commitBlob(blob(1000 + g * 5 + i, 1), { principal: 'p', temporary: false, expiresAt: null })));
    }
    const walPages = Math.round((await stat(`${file}-wal`)).size / (4096 + 24));
    assert.ok(walPages < 1000, `the WAL holds ${walPages} pages`);
    // A checkpoint starts at most every 250 ms, after a commit: commit until one has copied the rows.
    let grown = false;
    for (let i = 0; i < 40 && !grown; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await store.commitBlob(blob(5000 + i, 1));
      grown = (await stat(file)).size > before;
    }
    assert.ok(grown, 'the database file grew: frames were copied out of the WAL while the store was open');
    assert.equal((await store.getBlob(digest(1000)))?.size, 1);
  } finally {
    await store.close();
    await removeDir(dir);
  }
  // close() waited for the thread: nothing of it holds the directory any more.
});
