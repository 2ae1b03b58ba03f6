// The PostgreSQL MetadataStore against a real PostgreSQL 15: the same contract suite as SQLite (a fresh
// database per test), plus what only a shared database has — several nodes migrating one database at once,
// a schema newer than the code, and passwords that must never show in an error.
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import postgres from 'postgres';
import { UploadLeaseLost } from '../src/storage/metadata-store.ts';
import { PostgresMetadataStore } from '../src/storage/postgres/pg-metadata-store.ts';
import { knownSchemaVersion } from '../src/storage/postgres/migrate.ts';
import { metadataStoreContract } from './contracts/metadata-store.ts';
import { blob, digest, newUpload } from './contracts/metadata-samples.ts';
import { pgTestOptions, sharedPostgres } from './helpers/postgres.ts';

const options = pgTestOptions();

/** A short-lived plain connection for looking at a database from the outside. */
async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

if (options.skip) {
  test('PostgreSQL MetadataStore', options, () => {});
} else {
  metadataStoreContract('PostgreSQL', async () => {
    const url = await (await sharedPostgres()).newDatabase();
    let store = await PostgresMetadataStore.open(url, { max: 4 });
    return {
      get store() {
        return store; // the reopened one after a reopen
      },
      async reopen() {
        await store.close();
        store = await PostgresMetadataStore.open(url, { max: 4 });
        return store;
      },
      dispose: () => store.close(),
    };
  });

  describe('PostgreSQL MetadataStore: a database shared by several processes', () => {
    test('stores opening one empty database at the same moment migrate it exactly once', async () => {
      const url = await (await sharedPostgres()).newDatabase();
      const stores = await Promise.all(Array.from({ length: 5 }, () => PostgresMetadataStore.open(url, { max: 2 })));
      try {
        const versions = await withSql(url, (sql) => sql<{ version: number }[]>`SELECT version FROM schema_version`);
        assert.deepEqual(versions.map((v) => v.version), [knownSchemaVersion()], 'one row, the newest version');
        // Every store works on the one schema: a blob committed by one is seen by all.
        await stores[0]!.commitBlob(blob(1, 3));
        for (const s of stores) assert.equal((await s.getBlob(digest(1)))?.size, 3);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    test('a schema newer than this blobd is refused, naming both versions, and nothing is changed', async () => {
      const url = await (await sharedPostgres()).newDatabase();
      await (await PostgresMetadataStore.open(url)).close();
      const known = knownSchemaVersion();
      const tables = (sql: postgres.Sql) =>
        sql<{ n: string }[]>`SELECT table_name AS n FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`;
      const before = await withSql(url, async (sql) => {
        await sql`UPDATE schema_version SET version = ${known + 1}`;
        return tables(sql);
      });
      await assert.rejects(PostgresMetadataStore.open(url), (err: Error) => {
        assert.match(err.message, new RegExp(`the database schema is version ${known + 1}; this blobd knows up to ${known}: upgrade blobd`));
        return true;
      });
      const after = await withSql(url, async (sql) => ({
        tables: await tables(sql),
        version: (await sql<{ version: number }[]>`SELECT version FROM schema_version`).map((r) => r.version),
      }));
      assert.deepEqual(after, { tables: before, version: [known + 1] });
    });

    test("a URL's password never shows in the error of a failed open", async () => {
      const pg = await sharedPostgres();
      const url = await pg.newDatabase();
      const secret = 'Wr0ng-s3cret-p4ss';
      // Trust is the helper's rule except for this role (see test/helpers/postgres.ts): its password is checked.
      await withSql(url, async (sql) => {
        await sql.unsafe(`DO $$ BEGIN CREATE ROLE blobd_pw LOGIN PASSWORD 'the-right-one'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
      });
      const dbName = new URL(url).pathname.slice(1);
      const cases = [
        `postgres://blobd_pw:${secret}@127.0.0.1:${pg.port}/${dbName}`, // wrong password
        `postgres://blobd_pw:${encodeURIComponent(secret + '/@')}@127.0.0.1:${pg.port}/${dbName}`, // encoded characters
        `postgres://blobd_pw:${secret}@127.0.0.1:1/${dbName}`, // nothing listens
      ];
      for (const bad of cases) {
        let caught: unknown;
        try {
          await PostgresMetadataStore.open(bad);
        } catch (err) {
          caught = err;
        }
        assert.ok(caught instanceof Error, `opening ${bad.replace(secret, '***')} fails`);
        const shown = `${caught.message}\n${caught.stack}\n${JSON.stringify(caught)}\n${String((caught as { cause?: unknown }).cause ?? '')}`;
        assert.ok(!shown.includes(secret) && !shown.includes(encodeURIComponent(secret)), `no password in: ${caught.message}`);
        assert.match(caught.message, /cannot open the PostgreSQL database postgres:\/\/blobd_pw:\*\*\*@127\.0\.0\.1/);
      }
    });

    /** Two stores (two pools: two nodes) on one fresh database. */
    async function twoNodes(): Promise<[PostgresMetadataStore, PostgresMetadataStore]> {
      const url = await (await sharedPostgres()).newDatabase();
      return [await PostgresMetadataStore.open(url, { max: 4 }), await PostgresMetadataStore.open(url, { max: 4 })];
    }

    test('GC on one node and a dedup on another never both win (G4)', async () => {
      const [a, b] = await twoNodes();
      try {
        const pin = { principal: 'p', temporary: false, expiresAt: null };
        for (let i = 1; i <= 20; i++) await a.commitBlob(blob(i, 1, `key-${i}`));
        const cut = Date.now() + 1;
        const outcomes = await Promise.all(Array.from({ length: 20 }, async (_, j) => {
          const i = j + 1;
          const [gc, dedup] = await Promise.all([a.deleteGarbageBlob(digest(i), cut, Date.now()), b.commitBlob(blob(i, 1, `dup-${i}`), pin)]);
          return { i, gc, created: dedup.created };
        }));
        const queued = new Set((await a.listByteDeletions(100)).map((d) => d.location));
        for (const { i, gc, created } of outcomes) {
          assert.equal(gc, created, `blob ${i}: the dedup made a new row exactly when GC had removed the old one`);
          const row = await b.getBlob(digest(i));
          assert.ok(row, `blob ${i}: the dedup's pin keeps a row`);
          assert.equal(queued.has(row.location), false, `blob ${i}: the row's own location is not queued for deletion`);
          const other = row.location === `key-${i}` ? `dup-${i}` : `key-${i}`;
          assert.equal(queued.has(other), true, `blob ${i}: the location no row names is queued`);
        }
        assert.equal((await a.listPins('p', 100, null)).length, 20);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('a reference to an existing blob racing GC on another node: it fails whole or keeps the row (G4)', async () => {
      const [a, b] = await twoNodes();
      try {
        await a.putBucket('b', { maxObjectSize: null, quotaBytes: null, maxRevisions: null, publicRead: false, publicRevisions: false });
        for (let i = 1; i <= 20; i++) await a.commitBlob(blob(i, 1, `key-${i}`));
        const cut = Date.now() + 1;
        await Promise.all(Array.from({ length: 20 }, async (_, j) => {
          const i = j + 1;
          const write = { bucket: 'b', key: `k${i}`, newObjectId: `o${i}`, blob: { ...blob(i, 1, `key-${i}`), mustExist: true },
            contentType: null, filename: null, createdBy: 'p' };
          const [gc, added] = await Promise.all([a.deleteGarbageBlob(digest(i), cut, Date.now()), b.addRevision(write)]);
          assert.notEqual(gc, added.ok, `blob ${i}: exactly one of GC and the reference won`);
          const row = await a.getBlob(digest(i));
          if (added.ok) assert.equal(row?.location, `key-${i}`);
          else assert.deepEqual([added.reason, row, await a.getObject('b', `k${i}`)], ['blob_not_found', null, null]);
        }));
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('pinExistingBlob on one node racing GC on another: the pin holds the row, or there is neither (G4)', async () => {
      const [a, b] = await twoNodes();
      try {
        // A temporary pin that is live by the clock of pinExistingBlob but lapsed by the `now` given to GC.
        const pinned = { principal: 'p', temporary: true, expiresAt: Date.now() + 60_000 };
        for (let i = 1; i <= 20; i++) await a.commitBlob(blob(i, 1, `key-${i}`), pinned);
        const gcNow = Date.now() + 120_000;
        await Promise.all(Array.from({ length: 20 }, async (_, j) => {
          const i = j + 1;
          const [gc, row] = await Promise.all([
            a.deleteGarbageBlob(digest(i), gcNow, gcNow),
            b.pinExistingBlob(digest(i), { principal: 'q', temporary: false, expiresAt: null }),
          ]);
          assert.notEqual(gc, row !== null, `blob ${i}: exactly one of GC and the pin won`);
          assert.equal((await a.getBlob(digest(i)))?.location, row ? `key-${i}` : undefined);
          assert.equal((await a.listPins('q', 100, null)).some((p) => p.digest === digest(i)), row !== null);
        }));
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test("two nodes racing for one session's lease: exactly one gets it", async () => {
      const [a, b] = await twoNodes();
      try {
        const now = Date.now();
        for (let i = 0; i < 10; i++) {
          await a.createUpload(newUpload(`s${i}`));
          const got = await Promise.all([a.acquireUploadLease(`s${i}`, 'node-a', now, now + 60_000), b.acquireUploadLease(`s${i}`, 'node-b', now, now + 60_000)]);
          assert.deepEqual(got.map((g) => g?.outcome).sort(), ['acquired', 'busy']);
          const winner = got[0]?.outcome === 'acquired' ? 'node-a' : 'node-b';
          const loser = winner === 'node-a' ? b : a;
          await assert.rejects(loser.advanceUpload(`s${i}`, 1, now + 60_000, null, winner === 'node-a' ? 'node-b' : 'node-a'), UploadLeaseLost);
        }
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('a write behind a lock held elsewhere fails after the lock timeout instead of hanging', async () => {
      const url = await (await sharedPostgres()).newDatabase();
      const store = await PostgresMetadataStore.open(url, { lockTimeoutMs: 200 });
      const other = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await store.createUpload(newUpload('s1'));
        const conn = await other.reserve();
        await conn`BEGIN`;
        await conn`SELECT 1 FROM upload_sessions WHERE id = 's1' FOR UPDATE`; // an admin's open transaction
        await assert.rejects(store.advanceUpload('s1', 5, Date.now() + 60_000, null), (err: { code?: string }) => err.code === '55P03');
        await conn`ROLLBACK`;
        conn.release();
        await store.advanceUpload('s1', 5, Date.now() + 60_000, null);
        assert.equal((await store.getUpload('s1'))?.offset, 5);
      } finally {
        await other.end({ timeout: 5 });
        await store.close();
      }
    });

    test("a failed statement's error carries neither the statement nor its bound parameters (loggers print errors)", async () => {
      const url = await (await sharedPostgres()).newDatabase();
      const store = await PostgresMetadataStore.open(url);
      try {
        const secretHash = 'cd'.repeat(32);
        await store.createUpload(newUpload('dup', { tokenHash: secretHash }));
        const err = await store.createUpload(newUpload('dup', { tokenHash: secretHash })).then(() => null, (e: unknown) => e as Error & { code?: string });
        assert.ok(err, 'a second session with the same id is refused');
        assert.deepEqual([err.name, err.code], ['PostgresError', '23505'], 'what core tells failures by is kept');
        for (const field of ['query', 'parameters', 'args', 'types']) assert.equal(Object.keys(err).includes(field), false, field);
        assert.equal(JSON.stringify(err).includes(secretHash), false);
      } finally {
        await store.close();
      }
    });

    test('ping fails, instead of hanging, when the database goes silent (readiness must answer)', async () => {
      const url = new URL(await (await sharedPostgres()).newDatabase());
      // A TCP relay in front of PostgreSQL that can stop passing bytes (a partition, a silent failover).
      const pgPort = Number(url.port);
      let silent = false;
      const sockets = new Set<Socket>();
      const relay = createServer((client) => {
        const server = connect(pgPort, '127.0.0.1');
        for (const s of [client, server]) {
          sockets.add(s);
          s.on('error', () => {});
        }
        client.on('data', (b) => silent || server.write(b));
        server.on('data', (b) => silent || client.write(b));
      });
      await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
      url.port = String((relay.address() as { port: number }).port);
      const store = await PostgresMetadataStore.open(url.toString());
      try {
        await store.ping();
        silent = true;
        await assert.rejects(store.ping(), (err: { code?: string }) => err.code === 'CONNECT_TIMEOUT');
      } finally {
        await store.close();
        for (const s of sockets) s.destroy();
        relay.close();
      }
    });

    test('the store counts its round trips; backupTo points to pg_dump', async () => {
      const url = await (await sharedPostgres()).newDatabase();
      const store = await PostgresMetadataStore.open(url);
      try {
        const q0 = store.queries;
        await store.getUpload('none');
        assert.equal(store.queries - q0, 1, 'getUpload is one statement');
        const q1 = store.queries;
        await store.commitBlob(blob(2, 1), { principal: 'p', temporary: false, expiresAt: null });
        assert.equal(store.queries - q1, 1, 'commitBlob is one statement');
        const q2 = store.queries;
        await store.createUpload(newUpload('s1'));
        await store.acquireUploadLease('s1', 'n', Date.now(), Date.now() + 1000);
        await store.advanceUpload('s1', 1, Date.now() + 1000, null, 'n');
        await store.pinExistingBlob(digest(2), { principal: 'q', temporary: false, expiresAt: null });
        assert.equal(store.queries - q2, 4, 'createUpload, acquireUploadLease, advanceUpload, pinExistingBlob: one each');
        await store.beginCompletion('s1', digest(3), digest(3), 'n');
        const q3 = store.queries;
        const done = await store.finishUpload('s1', blob(3, 1), { pin: { principal: 'p', temporary: false, expiresAt: null } }, () => '{}', Date.now() + 1000, 'n');
        assert.deepEqual([done, store.queries - q3], [{ ok: true, created: true, object: null }, 1], 'finishUpload with a pin is one statement');
        await assert.rejects(store.backupTo('/tmp/x.db'), /pg_dump/);
      } finally {
        await store.close();
      }
    });
  });
}
