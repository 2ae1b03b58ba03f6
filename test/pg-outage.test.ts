// The metadata database goes away and comes back (a restart or a failover, as a client sees one: every
// connection cut, none accepted for a while): requests answer 503 database_unavailable with Retry-After,
// nothing acknowledged is lost, and the daemon goes on by itself once the database takes connections again.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { randomData, sha256 } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { pgTestOptions } from './helpers/postgres.ts';
import { append, complete, initiate, status } from './helpers/sessions.ts';
import { waitFor } from './helpers/wait.ts';

const MiB = 1024 * 1024;

describe('the metadata database goes away and comes back', pgTestOptions(), () => {
  let d: Daemon;
  let admin: postgres.Sql;
  let name: string;

  before(async () => {
    d = await startDaemon({ metadata: 'postgres' });
    const url = new URL(d.databaseUrl!);
    name = url.pathname.slice(1);
    url.pathname = '/postgres';
    admin = postgres(url.toString(), { max: 1, onnotice: () => {} });
  });
  after(async () => {
    await admin?.unsafe(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`).catch(() => {});
    await admin?.end({ timeout: 1 });
    await d?.stop();
    await removeDir(d.dataDir);
  });

  /** Cut every connection to the daemon's database and accept none until `back()`. */
  async function outage(): Promise<() => Promise<void>> {
    await admin.unsafe(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`;
    return async () => {
      await admin.unsafe(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
    };
  }

  test('503 database_unavailable (Retry-After) while it is away; the session resumes at its acknowledged offset afterwards', async () => {
    const data = randomData(3 * MiB);
    const s = await initiate(d);
    assert.equal((await append(d, s, data.subarray(0, 2 * MiB))).status, 203);
    const back = await outage();
    try {
      const put = await d.api('/api/blobs', { method: 'POST', body: 'while the database is away' });
      assert.equal(put.status, 503, await put.clone().text());
      assert.equal(await errorCode(put), 'database_unavailable');
      assert.equal(put.headers.get('retry-after'), '5');
      const more = await append(d, s, data.subarray(2 * MiB));
      assert.equal(more.status, 503, await more.clone().text());
      assert.equal((await d.api('/readyz', { auth: false })).status, 503);
    } finally {
      await back();
    }
    await waitFor(async () => (await d.api('/readyz', { auth: false })).status === 200, 'the daemon to be ready again', 30_000);
    assert.equal((await status(d, s)).offset, 2 * MiB, 'the acknowledged offset stands');
    assert.equal((await append(d, s, data.subarray(2 * MiB))).status, 203);
    const done = await complete(d, s);
    assert.equal(done.status, 201, await done.clone().text());
    assert.equal(((await done.json()) as { digest: string }).digest, sha256(data));
    const put = await d.api('/api/blobs', { method: 'POST', body: 'after it came back' });
    assert.equal(put.status, 201);
  });

  test('a read-only database (a failover half done: the name still points at a replica) is 503 for writes, reads go on', async () => {
    const stored = await d.api('/api/blobs', { method: 'POST', body: 'stored before' });
    const { digest } = (await stored.json()) as { digest: string };
    await admin.unsafe(`ALTER DATABASE "${name}" SET default_transaction_read_only = on`);
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`;
    try {
      const put = await waitFor(async () => {
        const r = await d.api('/api/blobs', { method: 'POST', body: 'while read-only' });
        return r.status === 503 ? r : null; // the first may meet a connection being cut
      }, 'writes to answer 503', 30_000);
      assert.equal(await errorCode(put!), 'database_unavailable');
      const read = await d.api(`/api/blobs/${digest}`);
      assert.equal(await read.text(), 'stored before');
    } finally {
      await admin.unsafe(`ALTER DATABASE "${name}" RESET default_transaction_read_only`);
      await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`;
    }
    await waitFor(async () => (await d.api('/api/blobs', { method: 'POST', body: 'writable again' })).status === 201, 'writes again', 30_000);
  });
});
