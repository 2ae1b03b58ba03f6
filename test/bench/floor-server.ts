// The G1 floor for one-shot uploads: a bare node:http server that does the least SPEC's G1 asks of a
// one-shot upload and nothing else — hash, write, fdatasync, rename into blobs/sha256/ab/cd (each new shard
// made durable in its parent once), fsync the shard, and a synchronous=FULL commit of the blob and pin rows
// in blobd's own schema, rows arriving together sharing one transaction (a group waits, at most 2 ms,
// for the uploads already past their fdatasync, as blobd's does). No routing, auth, validation,
// disk budget or log. What no implementation of the spec can beat on this machine; blobd ÷ floor is its
// own overhead. Prints "floor listening on URL". Bench-only; never part of npm test.
import { createHash } from 'node:crypto';
import { lstat, mkdir, rename } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { syncDir } from '../../src/storage/fs/durable-dirs.ts';
import { closeFd, fdatasyncFd, openFd, writeFd } from '../../src/storage/fs/fd.ts';
import { openDatabase } from '../../src/storage/sqlite/db.ts';

const dir = process.argv[2]!;
const blobsDir = path.join(dir, 'blobs', 'sha256');
await mkdir(path.join(dir, 'tmp'), { recursive: true });
await mkdir(blobsDir, { recursive: true });
const db = openDatabase(path.join(dir, 'blobd.db')); // WAL, synchronous=FULL, blobd's migrations
const insertBlob = db.prepare('INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)');
const insertPin = db.prepare('INSERT OR IGNORE INTO pins (principal, digest, temporary, created_at) VALUES (?, ?, 0, ?)');
const commitRows = db.transaction((rows: { digest: string; size: number }[]) => {
  const now = Date.now();
  for (const r of rows) insertBlob.run(r.digest, r.size, now), insertPin.run('floor', r.digest, now);
}).immediate;
// The group waits for the uploads already past their fdatasync (at most 2 ms), as blobd's does.
let waiting: { digest: string; size: number; done: () => void }[] = [];
let coming = 0;
let openedAt = 0;
let timer: NodeJS.Timeout | undefined;
function flushWhenGathered() {
  clearTimeout(timer);
  if (waiting.length === 0) return;
  const waited = performance.now() - openedAt;
  if (coming > 0 && waited < 2) {
    timer = setTimeout(flushWhenGathered, 2 - waited);
    return;
  }
  const rows = waiting;
  waiting = [];
  commitRows(rows);
  for (const r of rows) r.done();
}
function commit(digest: string, size: number): Promise<void> {
  coming--;
  return new Promise((done) => {
    if (waiting.length === 0) openedAt = performance.now();
    waiting.push({ digest, size, done });
    setImmediate(flushWhenGathered);
  });
}

const shards = new Map<string, Promise<void>>();
function durableShard(d: string): Promise<void> {
  let made = shards.get(d);
  if (!made) {
    made = (async () => {
      const parent = path.dirname(d);
      if (parent !== blobsDir) await durableShard(parent);
      await mkdir(d, { recursive: true });
      await lstat(d);
      await syncDir(parent);
    })();
    shards.set(d, made);
  }
  return made;
}

let n = 0;
const server = createServer(async (req, res) => {
  try {
    const tmp = path.join(dir, 'tmp', String(n++));
    const hash = createHash('sha256');
    let size = 0;
    const fd = await openFd(tmp, 'wx');
    for await (const chunk of req as AsyncIterable<Buffer>) {
      hash.update(chunk);
      await writeFd(fd, chunk, 0, chunk.length, size);
      size += chunk.length;
    }
    await fdatasyncFd(fd);
    await closeFd(fd);
    coming++;
    const hex = hash.digest('hex');
    const shard = path.join(blobsDir, hex.slice(0, 2), hex.slice(2, 4));
    await durableShard(shard);
    await rename(tmp, path.join(shard, hex));
    await syncDir(shard);
    await commit(`sha256:${hex}`, size);
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ digest: `sha256:${hex}`, size }));
  } catch (err) {
    if (!res.headersSent) res.writeHead(500).end(String(err));
    else res.destroy();
  }
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`floor listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => (db.close(), process.exit(0))));
