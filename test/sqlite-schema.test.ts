// The SQLite schema itself: a data directory made before blob locations (schema 7) opens at schema 8 with
// its blobs at their digests, local-store rows keep a NULL location, and the location lookups use indexes.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { openDatabase } from '../src/storage/sqlite/db.ts';
import { LOCATION_CLAIMED } from '../src/storage/sqlite/lifecycle-repo.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';
import { blob, digest } from './contracts/metadata-samples.ts';
import { makeTempDir, removeDir } from './helpers/daemon.ts';

const MIGRATIONS = path.join(import.meta.dirname, '../src/storage/sqlite/migrations');

/** A database as blobd left it at schema `version`: the migrations up to it, applied as db.ts applies them. */
function databaseAt(file: string, version: number): Database.Database {
  const db = new Database(file);
  for (const f of readdirSync(MIGRATIONS).filter((f) => /^\d{3}-.*\.sql$/.test(f)).sort()) {
    if (Number(f.slice(0, 3)) > version) break;
    db.exec(readFileSync(path.join(MIGRATIONS, f), 'utf8'));
  }
  db.pragma(`user_version = ${version}`);
  return db;
}

async function inTempDir(fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await makeTempDir();
  try {
    await fn(path.join(dir, 'blobd.db'));
  } finally {
    await removeDir(dir);
  }
}

test('a schema-7 database opens at the current version: blobs at their digests, a completing session claims its digest, cursors null', () =>
  inTempDir(async (file) => {
    const old = databaseAt(file, 7);
    const blobRow = old.prepare('INSERT INTO blobs (digest, size, created_at, quarantined_at) VALUES (?, ?, ?, ?)');
    blobRow.run(digest(1), 10, 1000, null);
    blobRow.run(digest(2), 20, 1000, 2000);
    old.prepare('INSERT INTO pins (principal, digest, created_at) VALUES (?, ?, ?)').run('p', digest(1), 1000);
    const session = old.prepare(`INSERT INTO upload_sessions (id, token_hash, principal, upload_offset, state, digest, created_at,
      updated_at, expires_at) VALUES (?, 'h', 'p', ?, ?, ?, 1000, 1000, ?)`);
    session.run('open-1', 5, 'open', null, Date.now() + 60_000);
    session.run('completing-1', 30, 'completing', digest(3), Date.now() + 60_000);
    old.close();

    const store = SqliteMetadataStore.open(file);
    try {
      const b1 = await store.getBlob(digest(1));
      assert.deepEqual([b1?.location, b1?.size, b1?.quarantined], [digest(1), 10, false]);
      assert.deepEqual((await store.listBlobsAfter('', 10)).map((b) => [b.location, b.quarantined]), [[digest(1), false], [digest(2), true]]);
      assert.equal(await store.isLocationClaimed(digest(1)), true);
      assert.equal(await store.isLocationClaimed(digest(2)), true, 'a quarantined row');
      const completing = await store.getUpload('completing-1');
      assert.deepEqual([completing?.state, completing?.location, completing?.cursor], ['completing', digest(3), null]);
      assert.equal(await store.isLocationClaimed(digest(3)), true, 'the session completing into its digest');
      const open = await store.getUpload('open-1');
      assert.deepEqual([open?.offset, open?.location, open?.cursor], [5, null, null]);
      assert.deepEqual(await store.listByteDeletions(10), []);
      // The pin moved to the table keyed by digest first (schema 13) and still holds its blob.
      assert.deepEqual((await store.listPins('p', 10, null)).map((p) => [p.digest, p.createdAt]), [[digest(1), 1000]]);
      assert.deepEqual((await store.listGarbageBlobs(Date.now(), Date.now(), 10)).map((b) => b.digest), [digest(2)], 'the pinned blob is referenced');
      // The old rows go on as local-store rows: the same content again queues nothing.
      assert.deepEqual(await store.commitBlob(blob(1, 10), { principal: 'q', temporary: false, expiresAt: null }), { created: false });
      assert.deepEqual(await store.listByteDeletions(10), []);
    } finally {
      await store.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('user_version', { simple: true }), 13);
    } finally {
      db.close();
    }
  }));

test('a content-addressed location is stored as NULL (rows stay lean); an object key is stored as given', () =>
  inTempDir(async (file) => {
    const store = SqliteMetadataStore.open(file);
    try {
      await store.commitBlob(blob(1, 1));
      await store.commitBlob(blob(2, 1, 'blobs/0190-b'));
      await store.commitBlob(blob(3, 1, 'blobs/0190-c'));
      await store.markQuarantined(digest(3));
      await store.commitBlob(blob(3, 1)); // healed by the local store: back to its digest
    } finally {
      await store.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      const rows = db.prepare('SELECT digest, location FROM blobs ORDER BY digest').all();
      assert.deepEqual(rows, [
        { digest: digest(1), location: null },
        { digest: digest(2), location: 'blobs/0190-b' },
        { digest: digest(3), location: null },
      ]);
    } finally {
      db.close();
    }
  }));

test('the location lookups are index searches, never table scans', () =>
  inTempDir(async (file) => {
    const db = openDatabase(file);
    try {
      const plan = (sql: string) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ location: 'x' }) as { detail: string }[]).map((r) => r.detail);
      const claimed = plan(LOCATION_CLAIMED);
      assert.deepEqual(
        claimed.filter((d) => /^(SCAN|SEARCH) /.test(d) && d !== 'SCAN CONSTANT ROW'), // the outer SELECT of EXISTS terms
        [
          'SEARCH blobs USING COVERING INDEX blobs_by_location (location=?)',
          'SEARCH blobs USING PRIMARY KEY (digest=?)',
          'SEARCH upload_sessions USING INDEX upload_sessions_by_location (location=?)',
        ],
        claimed.join('\n'),
      );
      assert.deepEqual(plan('DELETE FROM byte_deletions WHERE location = @location'), [
        'SEARCH byte_deletions USING INDEX sqlite_autoindex_byte_deletions_1 (location=?)',
      ]);
    } finally {
      db.close();
    }
  }));

test('the pin lookups (by digest, by principal and digest, a principal newest first, by expiry) are index searches', () =>
  inTempDir(async (file) => {
    const db = openDatabase(file);
    try {
      const plan = (sql: string) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ d: 'x', p: 'y', now: 1 }) as { detail: string }[]).map((r) => r.detail).join('\n');
      assert.match(plan('SELECT 1 FROM pins WHERE digest = @d AND (expires_at IS NULL OR expires_at > @now)'), /^SEARCH pins USING PRIMARY KEY \(digest=\?\)$/);
      assert.match(plan('DELETE FROM pins WHERE principal = @p AND digest = @d'), /^SEARCH pins USING PRIMARY KEY \(digest=\? AND principal=\?\)$/);
      assert.match(plan('SELECT digest FROM pins WHERE principal = @p ORDER BY created_at DESC, digest DESC'), /^SEARCH pins USING (COVERING )?INDEX pins_by_principal_created \(principal=\?\)$/);
      assert.match(plan('DELETE FROM pins WHERE expires_at IS NOT NULL AND expires_at <= @now'), /^SEARCH pins USING (COVERING )?INDEX pins_by_expiry \(expires_at>\? AND expires_at<\?\)$/);
    } finally {
      db.close();
    }
  }));
