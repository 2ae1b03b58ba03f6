// The PostgreSQL catalog under concurrent writers on several nodes: two PgDb pools on one database stand for
// two blobd processes. Revision numbers, quota, preconditions, max_revisions pruning, metadata callbacks and
// bucket counters must come out exactly as if the writes had run one at a time. Plus: key order is byte
// order even in a database whose default collation is not.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import type { AddRevisionResult, BucketSettings, NewRevision } from '../src/storage/metadata-store.ts';
import { KEY_END } from '../src/storage/metadata-store.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ListObjectsQuery } from '../src/storage/metadata-store.ts';
import { PgCatalogRepo } from '../src/storage/postgres/catalog-repo.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';
import { PgDb } from '../src/storage/postgres/db.ts';
import { migrate } from '../src/storage/postgres/migrate.ts';
import { blob } from './contracts/metadata-samples.ts';
import { pgTestOptions, sharedPostgres, type Pg } from './helpers/postgres.ts';

const settings = (s: Partial<BucketSettings> = {}): BucketSettings => ({
  maxObjectSize: null,
  quotaBytes: null,
  maxRevisions: null,
  publicRead: false,
  publicRevisions: false,
  ...s,
});

const rev = (bucket: string, key: string, n: number, size: number, extra: Partial<NewRevision> = {}): NewRevision => ({
  bucket,
  key,
  newObjectId: `obj-${key}-${n}`,
  blob: blob(n, size),
  contentType: null,
  filename: null,
  createdBy: 'p',
  ...extra,
});

interface Nodes {
  /** Two catalogs on one database, each with its own pool: two blobd nodes. */
  nodes: [PgCatalogRepo, PgCatalogRepo];
  /** The row sums the bucket counters must equal. */
  recount(bucket: string): Promise<{ objects: number; bytes: number }>;
  close(): Promise<void>;
}

async function twoNodes(pg: Pg, url?: string): Promise<Nodes> {
  const dbUrl = url ?? (await pg.newDatabase());
  const dbs = [new PgDb(dbUrl, { max: 8 }), new PgDb(dbUrl, { max: 8 })] as const;
  await Promise.all(dbs.map((db) => migrate(db))); // both nodes start at once: the migrations run once
  return {
    nodes: [new PgCatalogRepo(dbs[0]), new PgCatalogRepo(dbs[1])],
    async recount(bucket) {
      const [row] = await dbs[0].sql<{ objects: number; bytes: number }[]>`
        SELECT (SELECT count(*) FROM objects WHERE bucket = ${bucket})::bigint AS objects,
          (SELECT coalesce(sum(r.size), 0) FROM revisions r JOIN objects o ON o.id = r.object_id WHERE o.bucket = ${bucket})::bigint AS bytes`;
      return row!;
    },
    async close() {
      await Promise.all(dbs.map((db) => db.close()));
    },
  };
}

/** `n` writes started together, alternating between the two nodes. */
function race(nodes: [PgCatalogRepo, PgCatalogRepo], n: number, write: (i: number) => NewRevision): Promise<AddRevisionResult[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => nodes[i % 2]!.addRevision(write(i))));
}

const reasons = (results: AddRevisionResult[]) => results.map((r) => (r.ok ? 'ok' : r.reason));
const count = (xs: string[], x: string) => xs.filter((y) => y === x).length;

describe('PostgreSQL catalog: concurrent writers on two nodes', pgTestOptions(), () => {
  let pg: Pg;
  let f: Nodes;
  before(async () => {
    pg = await sharedPostgres();
    f = await twoNodes(pg);
  });
  after(async () => {
    await f?.close();
  });

  test('50 concurrent writes to one key: revisions 1..50, each once, no gaps', async () => {
    const [a] = f.nodes;
    await a.putBucket('seq', settings());
    const results = await race(f.nodes, 50, (i) => rev('seq', 'k', 1000 + i, i + 1));
    assert.deepEqual(reasons(results), Array(50).fill('ok'));
    const numbers = results.map((r) => (r.ok ? r.object.revision : 0)).sort((x, y) => x - y);
    assert.deepEqual(numbers, Array.from({ length: 50 }, (_, i) => i + 1));
    const ids = new Set(results.map((r) => (r.ok ? r.object.id : '')));
    assert.equal(ids.size, 1, 'one object');
    const listed = await a.listRevisions('seq', 'k', 100);
    assert.deepEqual(listed?.map((r) => r.revision), Array.from({ length: 50 }, (_, i) => 50 - i));
    const bucket = await a.getBucket('seq');
    assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [1, (50 * 51) / 2]);
    assert.deepEqual(await f.recount('seq'), { objects: 1, bytes: (50 * 51) / 2 });
  });

  test('a quota that admits 10 of 25 concurrent writes admits exactly 10', async () => {
    const [a] = f.nodes;
    await a.putBucket('quota', settings({ quotaBytes: 100 }));
    const results = await race(f.nodes, 25, (i) => rev('quota', `k${i}`, 2000 + i, 10));
    const r = reasons(results);
    assert.deepEqual([count(r, 'ok'), count(r, 'quota_exceeded')], [10, 15]);
    const bucket = await a.getBucket('quota');
    assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [10, 100]);
    assert.deepEqual(await f.recount('quota'), { objects: 10, bytes: 100 });
  });

  test('concurrent If-None-Match: * creates of one key: exactly one succeeds', async () => {
    const [a] = f.nodes;
    await a.putBucket('create', settings());
    const results = await race(f.nodes, 20, (i) => rev('create', 'k', 3000 + i, 1, { ifNoneMatch: true }));
    const r = reasons(results);
    assert.deepEqual([count(r, 'ok'), count(r, 'precondition_failed')], [1, 19]);
    const winner = results.find((x) => x.ok);
    const object = await a.getObject('create', 'k');
    assert.ok(winner?.ok && object);
    assert.deepEqual([object.revision, object.digest], [1, winner.object.digest]);
    assert.deepEqual(await f.recount('create'), { objects: 1, bytes: 1 });
  });

  test('concurrent If-Match writes of one current digest: exactly one succeeds', async () => {
    const [a] = f.nodes;
    await a.putBucket('match', settings());
    const first = await a.addRevision(rev('match', 'k', 3500, 1));
    assert.ok(first.ok);
    const results = await race(f.nodes, 20, (i) => rev('match', 'k', 3501 + i, 1, { ifMatch: first.object.digest }));
    const r = reasons(results);
    assert.deepEqual([count(r, 'ok'), count(r, 'precondition_failed')], [1, 19]);
    assert.equal((await a.getObject('match', 'k'))?.revision, 2);
  });

  test('max_revisions=3 under 30 concurrent writes keeps the newest 3, and the counters follow', async () => {
    const [a] = f.nodes;
    await a.putBucket('prune', settings({ maxRevisions: 3 }));
    const results = await race(f.nodes, 30, (i) => rev('prune', 'k', 4000 + i, 100 + i));
    assert.deepEqual(reasons(results), Array(30).fill('ok'));
    const listed = await a.listRevisions('prune', 'k', 100);
    assert.deepEqual(listed?.map((r) => r.revision), [30, 29, 28]);
    const kept = listed!.reduce((sum, r) => sum + r.size, 0);
    const bucket = await a.getBucket('prune');
    assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [1, kept]);
    assert.deepEqual(await f.recount('prune'), { objects: 1, bytes: kept });
  });

  test('metadata callbacks of concurrent writes each see the one before: no tag is lost', async () => {
    const [a] = f.nodes;
    await a.putBucket('meta', settings());
    const tagged = (i: number) => rev('meta', 'k', 5000 + i, 1, { meta: (m) => ({ ...m, tags: [...m.tags, `w${i}`] }) });
    const results = await race(f.nodes, 20, tagged);
    assert.deepEqual(reasons(results), Array(20).fill('ok'));
    const object = await a.getObject('meta', 'k');
    assert.equal(object?.revision, 20);
    assert.equal(object?.tags.length, 20, 'every write added its tag to what the previous one left');
    assert.deepEqual([...object!.tags].sort(), Array.from({ length: 20 }, (_, i) => `w${i}`).sort());
    const revisions = await a.listRevisions('meta', 'k', 100);
    assert.deepEqual(revisions?.map((r) => r.metadata.tags.length), Array.from({ length: 20 }, (_, i) => 20 - i));
  });

  test('writes, deletes and a forced bucket delete racing on two nodes keep the counters equal to the rows', async () => {
    const [a, b] = f.nodes;
    await a.putBucket('churn', settings({ maxRevisions: 2 }));
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const node = i % 2 ? a : b;
      const key = `k${i % 7}`;
      if (i % 5 === 4) ops.push(node.deleteObject('churn', key));
      else if (i % 5 === 3) ops.push(node.deleteObject('churn', key, Math.floor(i / 7) + 1));
      else ops.push(node.addRevision(rev('churn', key, 6000 + i, i + 1)));
    }
    await Promise.all(ops);
    const bucket = await a.getBucket('churn');
    const rows = await f.recount('churn');
    assert.deepEqual([bucket?.objectCount, bucket?.storedBytes], [rows.objects, rows.bytes]);
    assert.ok(rows.objects > 0);
    // A forced delete racing with writes: either a write lands before (and goes with the bucket) or finds none.
    const late = await Promise.all([a.deleteBucket('churn', true), ...Array.from({ length: 6 }, (_, i) => b.addRevision(rev('churn', `z${i}`, 6100 + i, 1)))]);
    assert.equal(late[0], 'deleted');
    assert.equal(await a.getBucket('churn'), null);
    assert.deepEqual(await f.recount('churn'), { objects: 0, bytes: 0 });
  });
});

describe('PostgreSQL catalog: values as a request may give them', pgTestOptions(), () => {
  test('revision numbers and bucket limits up to what the API accepts (ten digits, safe integers)', async () => {
    const f = await twoNodes(await sharedPostgres());
    try {
      const [a] = f.nodes;
      const big = Number.MAX_SAFE_INTEGER;
      await a.putBucket('big', settings({ maxObjectSize: big, quotaBytes: big, maxRevisions: big }));
      assert.deepEqual([(await a.getBucket('big'))?.maxRevisions, (await a.getBucket('big'))?.quotaBytes], [big, big]);
      assert.ok((await a.addRevision(rev('big', 'k', 9000, 1))).ok);
      assert.equal(await a.getObject('big', 'k', 9_999_999_999), null);
      assert.equal(await a.deleteObject('big', 'k', 9_999_999_999), false);
      assert.deepEqual((await a.listRevisions('big', 'k', 10, 9_999_999_999))?.map((r) => r.revision), [1]);
    } finally {
      await f.close();
    }
  });

  test("properties keep the client's member order, in the object and in the revision snapshot", async () => {
    const f = await twoNodes(await sharedPostgres());
    try {
      const [a] = f.nodes;
      await a.putBucket('order', settings());
      const properties = { zeta: 1, a: { y: 1, x: 2 }, middle_name: 'm', b: [3, 1] };
      const meta = { contentType: null, filename: null, owner: null, tags: ['z', 'a'], properties, expiresAt: null };
      assert.ok((await a.addRevision(rev('order', 'k', 9100, 1, { meta: () => meta }))).ok);
      const object = await a.getObject('order', 'k');
      assert.equal(JSON.stringify(object?.properties), JSON.stringify(properties));
      assert.deepEqual(object?.tags, ['z', 'a']);
      const [snapshot] = (await a.listRevisions('order', 'k', 1))!;
      assert.equal(JSON.stringify(snapshot?.metadata.properties), JSON.stringify(properties));
    } finally {
      await f.close();
    }
  });
});

describe('PostgreSQL catalog: key order is byte order in any database collation', pgTestOptions(), () => {
  test('an en-US (ICU) database lists, pages and bounds prefixes as UTF-8 bytes', async () => {
    const pg = await sharedPostgres();
    const name = `blobd_icu_${process.pid}`;
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    let f: Nodes | undefined;
    try {
      await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`);
      f = await twoNodes(pg, pg.url.replace(/\/postgres$/, `/${name}`));
      const [a] = f.nodes;
      const keys = ['a', 'B', 'ab', 'a b', 'A', 'a\u00ff', 'é', 'z', '\u{1F600}', '\uFFFD', 'a\u{10FFFD}', '_', '~'];
      await a.putBucket('Zeta', settings());
      await a.putBucket('alpha', settings());
      await a.putBucket('Beta', settings());
      assert.deepEqual((await a.listBuckets(10, null)).map((b) => b.name), ['Beta', 'Zeta', 'alpha']);
      for (const [i, k] of keys.entries()) assert.ok((await a.addRevision(rev('alpha', k, 7000 + i, 1))).ok);
      const bytes = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const list = async (prefix: string, after: string | null, limit = 100) =>
        (await a.listObjects({ bucket: 'alpha', prefix, after, limit })).map((o) => o.key);
      assert.deepEqual(await list('', null), bytes);
      assert.deepEqual(await list('', bytes[4]!, 3), bytes.slice(5, 8), 'a page after a cursor');
      assert.deepEqual(await list('a', null), bytes.filter((k) => k.startsWith('a')));
      assert.deepEqual(await list('', 'a' + KEY_END), bytes.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from('b')) >= 0), 'past a whole prefix');
    } finally {
      await f?.close();
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await admin.end({ timeout: 5 });
    }
  });
});

describe('PostgreSQL catalog: listing answers as on SQLite', pgTestOptions(), () => {
  /** The same objects in a SQLite store and on PostgreSQL; `check` compares the keys each lists for a query. */
  async function bothStores(values: Record<string, unknown>, check: (keys: (q: Partial<ListObjectsQuery>) => Promise<[string[], string[]]>) => Promise<void>) {
    const f = await twoNodes(await sharedPostgres());
    const dir = mkdtempSync(path.join(tmpdir(), 'pgcat-'));
    const sqlite = SqliteMetadataStore.open(path.join(dir, 'meta.db'));
    try {
      const [pg] = f.nodes;
      for (const store of [pg, sqlite]) {
        await store.putBucket('b', settings());
        for (const [i, [k, v]] of Object.entries(values).entries()) {
          await store.addRevision(rev('b', k, 8000 + i, 1));
          await store.setObjectMeta('b', k, { contentType: null, filename: null, owner: 'o', tags: ['t'], properties: { v }, expiresAt: null });
        }
      }
      await check(async (q) => {
        const list = async (store: SqliteMetadataStore | PgCatalogRepo) =>
          (await store.listObjects({ bucket: 'b', prefix: '', after: null, limit: 1000, ...q })).map((o) => o.key);
        return [await list(pg), await list(sqlite)];
      });
    } finally {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
      await f.close();
    }
  }

  test('property filters over numbers, numeric text, odd numbers and other kinds', async () => {
    const samples = ['1e400', '-1e400', '1e-400', ' 12 ', '12', '0x10', 'Infinity', 'NaN', '-0', '', '9.0000000000000001', '9', '1.', '.5',
      '+5', '1E2', 'é', 'Z', 'a', 'true', 'null', '{"a":1}', '[1]', '10', '2'];
    const values: Record<string, unknown> = Object.fromEntries(samples.map((v, i) => [`s${i}`, v]));
    Object.assign(values, { n1: 12, n2: -0.5, n3: 1e21, n4: 9, n5: true, n6: false, n7: null, n8: { a: 1 }, n9: [1], n10: 'x' });
    await bothStores(values, async (keys) => {
      for (const value of samples) {
        for (const op of ['eq', 'ne', 'gt', 'gte', 'lt', 'lte'] as const) {
          const [pg, sqlite] = await keys({ properties: [{ name: 'v', op, value }] });
          assert.deepEqual(pg, sqlite, `v ${op} ${JSON.stringify(value)}`);
        }
      }
    });
  });

  test('a prefix, cursor, owner, tag or property value with U+0000 (PostgreSQL text cannot hold one)', async () => {
    await bothStores({ ab: 'ab', abc: 'abc', aa: 'aa', b: 'b', n: 5 }, async (keys) => {
      const queries: Partial<ListObjectsQuery>[] = [
        { prefix: 'a\0' },
        { after: 'ab\0x' },
        { owner: 'o\0' },
        { tag: 't\0' },
        ...(['eq', 'ne', 'gt', 'gte', 'lt', 'lte'] as const).map((op) => ({ properties: [{ name: 'v', op, value: 'ab\0c' }] })),
      ];
      for (const q of queries) {
        const [pg, sqlite] = await keys(q);
        assert.deepEqual(pg, sqlite, JSON.stringify(q));
      }
    });
  });
});
