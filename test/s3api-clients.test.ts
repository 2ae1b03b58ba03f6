// The S3 front with the real clients people already run: Debian's awscli, rclone, s3cmd and restic (installed
// by .ci/run; absent: skipped here, failed under CI=true), each round-tripping bytes through one daemon's S3
// listener; and cross-front: what aws cli wrote reads back through the native API with the same digest,
// stored once with identical native uploads.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { randomData, sha256, writeRandomFile } from './helpers/bytes.ts';
import { makeTempDir, removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { startRgw } from './helpers/rgw.ts';
import { createBucket, putObject } from './helpers/workload.ts';
import { s3ApiUrl, s3ClientOptions, s3Clients, succeeded, type S3Clients, type S3Endpoint } from './helpers/s3-clients.ts';

const MiB = 1024 * 1024;
/**
 * BLOBD_TEST_S3_CLIENTS=rgw runs the client tests against Ceph RGW instead of blobd (cross-front skips): when a
 * client fails on blobd, this tells a gap in blobd's front from one in the harness.
 */
const ON_RGW = process.env.BLOBD_TEST_S3_CLIENTS === 'rgw';

/** Every regular file under `dir` (relative path → sha256), the shape two trees are compared in. */
async function treeDigests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out.set(r, sha256(await readFile(path.join(dir, r))));
    }
  };
  await walk('');
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** A small tree with what trips clients up: nesting, a space, non-ASCII names, an empty file. */
async function writeTree(dir: string, extra: Record<string, number> = {}): Promise<void> {
  const files: Record<string, number> = {
    'a.txt': 1000,
    'with space.txt': 300,
    'ünïcødé-日本.bin': 2048,
    empty: 0,
    'nested/b.bin': 100 * 1024,
    'nested/deeper/c.txt': 5,
    ...extra,
  };
  for (const [rel, size] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), randomData(size));
  }
}

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');
/** S3's multipart ETag: the MD5 of the parts' binary MD5s, then `-N`. */
function multipartEtag(data: Buffer, partSize: number): string {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += partSize) parts.push(createHash('md5').update(data.subarray(at, at + partSize)).digest());
  return `"${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}"`;
}

describe('S3 front with aws cli, rclone, s3cmd and restic', () => {
  let d: Daemon;
  /** The clients with a key scoped as users hand one out: read, write and delete in buckets, no admin. */
  let clients: S3Clients;
  /** The clients with an admin key: creating a bucket is admin, through S3 as natively. */
  let adminClients: S3Clients;
  /** A bucket made by its administrator, for the clients of the scoped key. */
  let makeBucket: (name: string) => Promise<void>;
  let work: string;
  const dir = (name: string) => path.join(work, name);

  before(async () => {
    work = await makeTempDir('blobd-s3-clients-work-');
    if (ON_RGW) {
      const rgw = await startRgw();
      clients = adminClients = await s3Clients({ url: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey });
      makeBucket = async (name) => {
        const s3 = rgw.client();
        await s3.send(new CreateBucketCommand({ Bucket: name })).finally(() => s3.destroy());
      };
      return;
    }
    d = await startDaemon();
    const url = await s3ApiUrl(() => d.output());
    const newKey = async (scopes: string[]): Promise<S3Endpoint> => {
      const res = await d.api('/api/s3-keys', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ scopes }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const key = (await res.json()) as { access_key_id: string; secret_access_key: string };
      return { url, accessKeyId: key.access_key_id, secretAccessKey: key.secret_access_key };
    };
    clients = await s3Clients(await newKey(['bucket:*:read', 'bucket:*:write', 'bucket:*:delete']));
    adminClients = await s3Clients(await newKey(['admin']));
    makeBucket = (name) => createBucket(d, name);
  });
  after(async () => {
    await clients?.dispose();
    if (adminClients !== clients) await adminClients?.dispose();
    await d?.stop();
    if (d) await removeDir(path.dirname(d.dataDir));
    await removeDir(work);
  });

  test('aws s3: mb, cp up and down (one PUT, and 20 MiB in 8 MiB parts), sync a tree both ways, ls, head-object, rm', s3ClientOptions('aws'), async () => {
    const aws = async (...args: string[]) => succeeded(`aws ${args.join(' ')}`, await clients.aws(args));
    succeeded('aws s3 mb', await adminClients.aws(['s3', 'mb', 's3://aws-cli']));
    // Independent runs go side by side: each aws start is about a second of Python imports, most of this test.

    // One cp of a directory: the small file in one PUT, the 20 MiB one in 8 MiB parts (aws's default
    // multipart_threshold and chunksize), both with the same Content-Type and x-amz-meta-color; and a tree.
    const small = randomData(1000);
    const big = randomData(20 * MiB);
    await mkdir(dir('one'));
    await writeFile(dir('one/small.bin'), small);
    await writeFile(dir('one/big.bin'), big);
    await writeTree(dir('tree'));
    await Promise.all([
      aws('s3', 'cp', '--recursive', dir('one'), 's3://aws-cli/one/', '--content-type', 'text/plain', '--metadata', 'color=blue'),
      aws('s3', 'sync', dir('tree'), 's3://aws-cli/tree'),
    ]);
    await Promise.all([
      aws('s3', 'cp', '--recursive', 's3://aws-cli/one/', dir('one.back')),
      aws('s3', 'sync', 's3://aws-cli/tree', dir('tree.back')),
    ]);
    assert.ok(small.equals(await readFile(dir('one.back/small.bin'))));
    assert.ok(big.equals(await readFile(dir('one.back/big.bin'))));
    const tree = await treeDigests(dir('tree'));
    assert.deepEqual(await treeDigests(dir('tree.back')), tree);

    const headObject = async (key: string) =>
      JSON.parse((await aws('s3api', 'head-object', '--bucket', 'aws-cli', '--key', key)).stdout) as Record<string, unknown>;
    const [head, bigHead, ls, lsRecursive] = await Promise.all([
      headObject('one/small.bin'),
      headObject('one/big.bin'),
      aws('s3', 'ls', 's3://aws-cli/tree/'),
      aws('s3', 'ls', '--recursive', 's3://aws-cli/'),
    ]);
    assert.equal(head.ContentLength, 1000);
    assert.equal(head.ContentType, 'text/plain');
    assert.deepEqual(head.Metadata, { color: 'blue' });
    assert.equal(head.ETag, `"${md5(small)}"`);
    assert.equal(bigHead.ContentLength, 20 * MiB);
    assert.equal(bigHead.ContentType, 'text/plain');
    assert.deepEqual(bigHead.Metadata, { color: 'blue' });
    assert.equal(bigHead.ETag, multipartEtag(big, 8 * MiB), 'aws s3 cp uploads 20 MiB in 8 MiB parts');
    // `2026-12-03 16:30:00       1000 a.txt`, `                           PRE nested/`
    const names = (out: string) => out.split('\n').filter(Boolean).map((l) => l.slice(19).trim()).sort();
    assert.deepEqual(names(ls.stdout), ['0 empty', '1000 a.txt', '2048 ünïcødé-日本.bin', '300 with space.txt', 'PRE nested/'].sort());
    const keys = (out: string) => out.split('\n').filter(Boolean).map((l) => l.slice(31)).sort();
    assert.deepEqual(keys(lsRecursive.stdout), ['one/big.bin', 'one/small.bin', ...[...tree.keys()].map((k) => `tree/${k}`)].sort());

    await aws('s3', 'rm', '--recursive', 's3://aws-cli/tree/');
    assert.deepEqual(keys((await aws('s3', 'ls', '--recursive', 's3://aws-cli/')).stdout), ['one/big.bin', 'one/small.bin']);
  });

  test('rclone: sync a tree up (6 MiB in 5 MiB parts), check compares every MD5 (0 differences), sync it down', s3ClientOptions('rclone'), async () => {
    const rclone = async (...args: string[]) => succeeded(`rclone ${args.join(' ')}`, await clients.rclone(args));
    await makeBucket('rclone');
    await writeTree(dir('rc'), { 'nested/six-mib.bin': 6 * MiB });
    const local = await treeDigests(dir('rc'));
    // One file before any listing: rclone sends CreateBucket first, which a key that is not admin may do
    // for a bucket that exists (no no_check_bucket needed).
    await rclone('copyto', path.join(dir('rc'), 'a.txt'), ':s3:rclone/single/a.txt');
    await rclone('copyto', ':s3:rclone/single/a.txt', dir('single.back'));
    assert.equal(sha256(await readFile(dir('single.back'))), local.get('a.txt'));
    // Above the cutoff rclone uploads in parts and keeps the MD5 in x-amz-meta-md5chksum (the ETag is not one).
    await rclone('sync', '--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M', dir('rc'), ':s3:rclone/rc');

    const check = await rclone('check', '-v', '--one-way', dir('rc'), ':s3:rclone/rc');
    assert.match(check.stderr, /Using md5 for hash comparisons/);
    assert.match(check.stderr, /: 0 differences found/);
    assert.match(check.stderr, new RegExp(`: ${local.size} matching files`));
    // What rclone compared: the server's MD5 of every object against the local files' MD5s.
    const remote = (await rclone('md5sum', ':s3:rclone/rc')).stdout;
    const want = await Promise.all([...local.keys()].map(async (k) => `${md5(await readFile(path.join(dir('rc'), k)))}  ${k}`));
    assert.deepEqual(remote.split('\n').filter(Boolean).sort(), want.sort());

    await rclone('sync', ':s3:rclone/rc', dir('rc.back'));
    assert.deepEqual(await treeDigests(dir('rc.back')), local);
  });

  test('s3cmd: put (one PUT, and 6 MiB in 5 MiB parts), ls, get', s3ClientOptions('s3cmd'), async () => {
    const s3cmd = async (...args: string[]) => succeeded(`s3cmd ${args.join(' ')}`, await clients.s3cmd(args));
    await makeBucket('s3cmd');
    const small = randomData(4000);
    await writeFile(dir('s3cmd-small'), small);
    const six = await writeRandomFile(dir('s3cmd-six'), 6 * MiB);
    await s3cmd('put', dir('s3cmd-small'), 's3://s3cmd/dir/small');
    await s3cmd('put', '--multipart-chunk-size-mb=5', dir('s3cmd-six'), 's3://s3cmd/dir/six');
    const listed = (await s3cmd('ls', 's3://s3cmd/dir/')).stdout.split('\n').filter(Boolean);
    assert.deepEqual(listed.map((l) => l.trim().split(/\s+/).slice(2)).sort(), [['4000', 's3://s3cmd/dir/small'], [String(6 * MiB), 's3://s3cmd/dir/six']].sort());
    // s3cmd compares the MD5 it stored (the ETag, or x-amz-meta-s3cmd-attrs for parts) and warns when it differs.
    for (const name of ['small', 'six']) {
      const get = await s3cmd('get', `s3://s3cmd/dir/${name}`, dir(`s3cmd-${name}.back`));
      assert.doesNotMatch(get.stderr, /WARNING/);
    }
    assert.ok(small.equals(await readFile(dir('s3cmd-small.back'))));
    assert.equal(sha256(await readFile(dir('s3cmd-six.back'))), six);
  });

  test('restic: init, backup a tree, check --read-data, restore it byte for byte', s3ClientOptions('restic'), async () => {
    const restic = async (...args: string[]) => succeeded(`restic ${args.join(' ')}`, await clients.restic('restic/repo', args, { cwd: work }));
    await writeTree(dir('backup'), { 'big/five-mib.bin': 5 * MiB, 'big/one-mib.bin': MiB });
    await makeBucket('restic');
    await restic('init');
    await restic('backup', '--host', 'test', 'backup');
    assert.match((await restic('check', '--read-data')).stdout, /no errors were found/);
    await restic('restore', 'latest', '--target', dir('restored'));
    assert.deepEqual(await treeDigests(path.join(dir('restored'), 'backup')), await treeDigests(dir('backup')));
  });

  test('cross-front: what aws cli wrote in parts reads back natively with the same digest, stored once with a native upload and an S3 copy', ON_RGW ? { skip: 'blobd only' } : s3ClientOptions('aws'), async () => {
    const aws = async (...args: string[]) => succeeded(`aws ${args.join(' ')}`, await clients.aws(args));
    await createBucket(d, 'cross');
    const data = randomData(9 * MiB); // above aws's 8 MiB threshold: two parts, one blob
    await writeFile(dir('cross.bin'), data);
    await aws('s3', 'cp', dir('cross.bin'), 's3://cross/from-s3.bin');

    const got = await d.api('/api/buckets/cross/objects/from-s3.bin');
    assert.equal(got.status, 200);
    assert.ok(data.equals(Buffer.from(await got.arrayBuffer())));
    const meta = (await (await d.api('/api/buckets/cross/objects/from-s3.bin?metadata')).json()) as { digest: string };
    assert.equal(meta.digest, sha256(data));

    const stats = async () => (await (await d.api('/api/admin/stats')).json()) as { blobs: number; objects: number };
    const before = await stats();
    await putObject(d, 'cross', 'native.bin', data, sha256(data));
    const nativeMeta = (await (await d.api('/api/buckets/cross/objects/native.bin?metadata')).json()) as { digest: string };
    assert.equal(nativeMeta.digest, meta.digest);
    const afterPut = await stats();
    assert.equal(afterPut.blobs, before.blobs, 'the native upload of the same bytes adds no blob');
    assert.equal(afterPut.objects, before.objects + 1);

    // The reverse: the native object reads through S3. And a copy inside S3 (above 8 MiB aws reads the
    // source's tags, then copies with UploadPartCopy) shares the blob: no new one.
    await Promise.all([
      aws('s3', 'cp', 's3://cross/native.bin', dir('native.back')),
      aws('s3', 'cp', 's3://cross/from-s3.bin', 's3://cross/copied.bin'),
    ]);
    assert.ok(data.equals(await readFile(dir('native.back'))));
    const copied = (await (await d.api('/api/buckets/cross/objects/copied.bin?metadata')).json()) as { digest: string };
    assert.equal(copied.digest, meta.digest);
    assert.equal((await stats()).blobs, before.blobs, 'the S3 copy adds no blob');
  });
});
