// S3 credentials: the core (a real SQLite store and the data directory's key file) and the admin routes and
// CLI of a real daemon. The secret access key is shown once and is found nowhere else: not in the database
// file, not in the daemon's output, not in a listing.
import assert from 'node:assert/strict';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobdError } from '../src/core/errors.ts';
import { S3Keys } from '../src/core/s3-keys.ts';
import { DataLayout } from '../src/storage/fs/layout.ts';
import { KeyFiles } from '../src/storage/fs/key-files.ts';
import { SqliteMetadataStore } from '../src/storage/sqlite/sqlite-metadata-store.ts';
import { cliEnv, runCli, type CliRun } from './helpers/cli.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';

const ADMIN = { id: 'admin', scopes: ['admin'] } as const;
const ACCESS_KEY_RE = /^BK[A-Z2-7]{18}$/;

const code = (c: string) => (err: unknown) => err instanceof BlobdError && err.code === c;

describe('S3 keys (core, real SQLite store)', () => {
  let dir: string;
  let layout: DataLayout;
  let meta: SqliteMetadataStore;
  let keys: S3Keys;

  before(async () => {
    dir = await makeTempDir('blobd-s3keys-');
    layout = new DataLayout(dir);
    meta = SqliteMetadataStore.open(layout.databaseFile);
    const files = new KeyFiles(layout);
    keys = new S3Keys(meta, () => files.s3KeysKey());
  });

  after(async () => {
    await meta?.close();
    await removeDir(dir);
  });

  test('create, lookup, list, delete; the principal carries the scopes', async () => {
    const { record, secretAccessKey } = await keys.create(ADMIN, { name: ' backups ', scopes: ['bucket:b:read', 'bucket:b:read', 'bucket:*:write'] });
    assert.match(record.accessKeyId, ACCESS_KEY_RE);
    assert.match(secretAccessKey, /^[A-Za-z0-9_-]{40}$/);
    assert.deepEqual([record.name, record.scopes, record.createdBy], ['backups', ['bucket:b:read', 'bucket:*:write'], 'admin']);

    assert.deepEqual(await keys.lookup(record.accessKeyId), {
      secret: secretAccessKey,
      principal: { id: `s3key:${record.accessKeyId}`, scopes: ['bucket:b:read', 'bucket:*:write'] },
    });
    // Another process on the same store and key file (no cache of its own yet) opens it too.
    const other = new S3Keys(meta, () => new KeyFiles(layout).s3KeysKey());
    assert.equal((await other.lookup(record.accessKeyId))?.secret, secretAccessKey);
    assert.deepEqual((await keys.list()).map((k) => k.accessKeyId), [record.accessKeyId]);

    await keys.delete(record.accessKeyId);
    // At once on this instance, cached or not.
    assert.equal(await keys.lookup(record.accessKeyId), null);
    assert.deepEqual(await keys.list(), []);
    await assert.rejects(keys.delete(record.accessKeyId), code('not_found'));
    await assert.rejects(keys.delete('not-an-id'), code('not_found'));
    assert.equal(await keys.lookup('BKAAAAAAAAAAAAAAAAAA'), null);
  });

  test('scopes and names are checked as for tokens', async () => {
    await assert.rejects(keys.create(ADMIN, { scopes: [] }), code('invalid_request'));
    await assert.rejects(keys.create(ADMIN, { scopes: ['bucket:a:admin'] }), code('invalid_request'));
    await assert.rejects(keys.create(ADMIN, { scopes: ['admin'], name: 'x'.repeat(129) }), code('invalid_request'));
    await assert.rejects(keys.create(ADMIN, { scopes: ['admin'], name: 'a\u0000b' }), code('invalid_request'));
    assert.equal((await keys.create(ADMIN, { scopes: ['blobs:read'] })).record.name, '');
  });

  test('the key file is 0600; a sealed row moved under another id, or opened with another key, is no key', async () => {
    assert.equal((await stat(path.join(layout.keysDir, 's3-keys.key'))).mode & 0o777, 0o600);
    const { record, secretAccessKey } = await keys.create(ADMIN, { scopes: ['admin'] });
    const sealed = (await meta.getSecret(`s3-key:${record.accessKeyId}`))!;
    assert.equal(sealed.includes(Buffer.from(secretAccessKey)), false);

    const moved = 'BKMOVEDMOVEDMOVEDMOV';
    await meta.ensureSecret(`s3-key:${moved}`, sealed);
    assert.equal(await keys.lookup(moved), null);

    const stranger = new S3Keys(meta, async () => Buffer.alloc(32, 7));
    assert.equal(await stranger.lookup(record.accessKeyId), null);
    // Listed all the same, so that an admin can remove it.
    assert.ok((await stranger.list()).some((k) => k.accessKeyId === record.accessKeyId && k.scopes.length === 0));
  });
});

describe('S3 keys (admin routes and CLI of a real daemon)', () => {
  let d: Daemon;
  let work: string;
  let env: Record<string, string>;
  const blobd = (args: string[]) => runCli(args, env);
  const ok = async (args: string[]) => {
    const r = await blobd(args);
    assert.equal(r.code, 0, `blobd ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    return r;
  };
  const text = (r: CliRun) => r.stdout.toString('utf8');
  const post = (body: unknown, token?: string) =>
    d.api('/api/s3-keys', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  const secrets: string[] = [];

  before(async () => {
    work = await makeTempDir('blobd-s3keys-d-');
    d = await startDaemon({ dataDir: path.join(work, 'data') });
    env = cliEnv(d, path.join(work, 'state'));
  });

  after(async () => {
    await d?.stop();
    await removeDir(work);
  });

  test('create answers the secret once; the listing never has it; delete is 204 then 404', async () => {
    const res = await post({ name: 'restic', scopes: ['bucket:restic:read', 'bucket:restic:write'] });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const created = (await res.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(created).sort(), ['access_key_id', 'created_at', 'created_by', 'name', 'scopes', 'secret_access_key']);
    assert.match(created.access_key_id as string, ACCESS_KEY_RE);
    assert.equal((created.secret_access_key as string).length, 40);
    assert.deepEqual([created.name, created.scopes, created.created_by], ['restic', ['bucket:restic:read', 'bucket:restic:write'], 'admin']);
    secrets.push(created.secret_access_key as string);

    const listed = await d.api('/api/s3-keys');
    assert.equal(listed.status, 200);
    const body = await listed.text();
    assert.equal(body.includes(created.secret_access_key as string), false);
    const items = (JSON.parse(body) as { items: Record<string, unknown>[] }).items;
    assert.deepEqual(items, [{ access_key_id: created.access_key_id, name: 'restic', scopes: created.scopes, created_at: created.created_at, created_by: 'admin' }]);

    assert.equal((await d.api(`/api/s3-keys/${created.access_key_id as string}`, { method: 'DELETE' })).status, 204);
    const again = await d.api(`/api/s3-keys/${created.access_key_id as string}`, { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'not_found');
    assert.equal((await d.api('/api/s3-keys/BKAAAAAAAAAAAAAAAAAA', { method: 'DELETE' })).status, 404);
  });

  test('invalid scopes are 400; a token without admin is 403', async () => {
    for (const scopes of [[], ['bucket:a:admin'], ['*']]) {
      const res = await post({ scopes });
      assert.equal(res.status, 400, JSON.stringify(scopes));
    }
    assert.equal((await post({ scopes: ['admin'], extra: 1 })).status, 400);
    const tokenRes = await d.api('/api/tokens', { method: 'POST', body: JSON.stringify({ name: 'rw', scopes: ['bucket:*:write', 'blobs:write'] }), headers: { 'content-type': 'application/json' } });
    const { token } = (await tokenRes.json()) as { token: string };
    assert.equal((await post({ scopes: ['bucket:a:read'] }, token)).status, 403);
    const auth = { headers: { authorization: `Bearer ${token}` } };
    assert.equal((await d.api('/api/s3-keys', auth)).status, 403);
    assert.equal((await d.api('/api/s3-keys/BKAAAAAAAAAAAAAAAAAA', { method: 'DELETE', ...auth })).status, 403);
  });

  test('blobd s3-key create, ls, rm (text and --json)', async () => {
    const made = text(await ok(['s3-key', 'create', '--scope', 'bucket:photos:read', '--scope', 'bucket:photos:write', '--name', 'phone']));
    const id = /^access key id:\s+(\S+)$/m.exec(made)?.[1];
    const secret = /^secret access key:\s+(\S+)$/m.exec(made)?.[1];
    assert.match(id ?? '', ACCESS_KEY_RE, made);
    assert.equal(secret?.length, 40);
    secrets.push(secret!);

    const made2 = JSON.parse(text(await ok(['--json', 's3-key', 'create', '--scope', 'admin']))) as { access_key_id: string; secret_access_key: string; name: string };
    assert.match(made2.access_key_id, ACCESS_KEY_RE);
    assert.equal(made2.secret_access_key.length, 40);
    secrets.push(made2.secret_access_key);

    const ls = text(await ok(['s3-key', 'ls']));
    assert.match(ls, new RegExp(`^${id!}\\s+phone\\s+bucket:photos:read,bucket:photos:write\\s`, 'm'));
    assert.match(ls, new RegExp(`^${made2.access_key_id}\\s+-\\s+admin\\s`, 'm'));
    for (const s of secrets) assert.equal(ls.includes(s), false);
    const lsJson = text(await ok(['--json', 's3-key', 'ls'])).trim().split('\n').map((l) => JSON.parse(l) as { access_key_id: string });
    assert.deepEqual(lsJson.map((k) => k.access_key_id).sort(), [id!, made2.access_key_id].sort());

    assert.equal(text(await ok(['s3-key', 'rm', id!])), '');
    assert.deepEqual(JSON.parse(text(await ok(['--json', 's3-key', 'rm', made2.access_key_id]))), { deleted: made2.access_key_id });
    assert.equal(text(await ok(['s3-key', 'ls'])), '');
    const gone = await blobd(['s3-key', 'rm', id!]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /not_found/);
    assert.equal((await blobd(['s3-key', 'create'])).code, 2);
  });

  test('no secret is in the daemon output or (SQLite) the database files', async () => {
    assert.ok(secrets.length >= 3);
    for (const s of secrets) assert.equal(d.output().includes(s), false);
    if (d.metadata !== 'sqlite') return;
    const files = (await readdir(d.dataDir)).filter((f) => f.startsWith('blobd.db'));
    assert.ok(files.includes('blobd.db'));
    for (const f of files) {
      const bytes = await readFile(path.join(d.dataDir, f));
      for (const s of secrets) assert.equal(bytes.includes(Buffer.from(s)), false, `a secret in ${f}`);
    }
  });
});
