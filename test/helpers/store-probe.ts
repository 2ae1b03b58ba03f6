// Looks at (and damages) a daemon's stored bytes from outside, the same way for both byte stores: blob files
// under data/blobs/ for the local store; for the S3 store, the object a blob row's location names (read from
// the daemon's SQLite database) in the daemon's bucket on the test RGW. Tests use it instead of poking paths.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { appendFile, chmod, mkdir, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import {
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { Daemon, S3Target } from './daemon.ts';

export interface StoreProbe {
  /** Whether bytes of the blob are stored: at its row's location, or (no row) anywhere a blob's bytes go. */
  exists(digest: string): Promise<boolean>;
  /** The bytes stored at the blob's row's location, or null when nothing is there. */
  read(digest: string): Promise<Buffer | null>;
  /** Replaces the stored bytes of the blob (a store damaged behind the daemon's back). */
  overwrite(digest: string, bytes: Uint8Array): Promise<void>;
  /** Flips one bit of the stored bytes at `at`. */
  corrupt(digest: string, at?: number): Promise<void>;
  /** Removes the blob's stored bytes. */
  remove(digest: string): Promise<void>;
  /** How many stored blob copies hold exactly these bytes (dedup: never more than one). */
  copies(digest: string): Promise<number>;
  /** Everything stored that holds blob bytes, committed or not, as names (compare before/after). */
  list(): Promise<string[]>;
  /** Blob bytes no row and no open session accounts for: staging leftovers (the fs store's tmp/). */
  leftovers(): Promise<string[]>;
  /** Leaves what a crash in the middle of a one-shot upload leaves (a staging file; an open multipart upload). */
  plantStaging(): Promise<void>;
  /** Stores `bytes` where blob bytes go, with no row: the name fsck reports it under as an orphan. */
  plantOrphan(bytes: Uint8Array): Promise<string>;
  /** Stores something that is not blob bytes at all, where blobs go: the name fsck reports. */
  plantStray(): Promise<string>;
  /** Whether what plantOrphan/plantStray made is still there, by the name they returned. */
  hasPlanted(name: string): Promise<boolean>;
  /** The bytes of what plantOrphan/plantStray made, or null when it is gone. */
  readPlanted(name: string): Promise<Buffer | null>;
  /** Removes what plantOrphan/plantStray made, by the name they returned. */
  removePlanted(name: string): Promise<void>;
  /** Every quarantined copy's bytes (fsck --repair moves them aside). */
  quarantined(): Promise<Buffer[]>;
  /** Every byte the store holds for session `id` (null: nothing), unrecorded ones included. */
  sessionStored(id: string): Promise<number | null>;
  /**
   * The bytes the store holds for session `id` that a completion can use (null: nothing). The same as
   * sessionStored on the local store; on S3 the parts of the recorded upload that its row's cursor does not
   * name are left out (by design they are overwritten by the next append, or left out at completion).
   */
  sessionKept(id: string): Promise<number | null>;
  /** Ids of every session the store holds bytes for (the names in data/uploads/ on the local store). */
  sessionIds(): Promise<string[]>;
  /** Adds bytes the daemon never acknowledged to session `id`'s stored bytes (as a crash mid-write leaves). */
  growSession(id: string, bytes: Uint8Array): Promise<void>;
  /** Stores session bytes that no session row owns; the made-up session id. */
  plantStraySession(): Promise<string>;
  /**
   * What process `pid` holds open to read stored bytes: descriptors of the blob's file on the local store;
   * on S3, connections to the store's endpoint with bytes waiting unread in the kernel (a GetObject body
   * the daemon stopped reading and never closed; idle keep-alive connections have none).
   */
  openHandles(pid: number, digest: string): Promise<number>;
  /** Releases the probe's clients. */
  close(): void;
}

const bare = (etag: string) => etag.replace(/^"|"$/g, '');
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function probeStore(d: Pick<Daemon, 'dataDir' | 'store' | 's3'>): StoreProbe {
  return d.store === 's3' ? s3Probe(d.dataDir, d.s3!) : fsProbe(d.dataDir);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out;
}

function fsProbe(dataDir: string): StoreProbe {
  const rel = (digest: string) => {
    const hex = digest.slice('sha256:'.length);
    return path.join('blobs', 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex);
  };
  const fileOf = (digest: string) => path.join(dataDir, rel(digest));
  const sessionFile = (id: string) => path.join(dataDir, 'uploads', id);
  /** Blob files are 0400: open them up for the change, then put the mode back. */
  const tamper = async (file: string, change: () => Promise<void>) => {
    await chmod(file, 0o600);
    await change();
    await chmod(file, 0o400);
  };
  const size = (file: string) => stat(file).then((s) => s.size, () => null);
  return {
    exists: (digest) => stat(fileOf(digest)).then(() => true, () => false),
    read: (digest) => readFile(fileOf(digest)).catch(() => null),
    overwrite: (digest, bytes) => tamper(fileOf(digest), () => writeFile(fileOf(digest), bytes)),
    async corrupt(digest, at = 0) {
      const bytes = await readFile(fileOf(digest));
      bytes[at] = bytes[at]! ^ 0x01;
      await tamper(fileOf(digest), () => writeFile(fileOf(digest), bytes));
    },
    remove: (digest) => rm(fileOf(digest)),
    async copies(digest) {
      const hex = digest.slice('sha256:'.length);
      return (await filesUnder(path.join(dataDir, 'blobs'))).filter((f) => path.basename(f) === hex).length;
    },
    list: async () => (await filesUnder(path.join(dataDir, 'blobs'))).map((f) => path.relative(dataDir, f)).sort(),
    leftovers: async () => (await readdir(path.join(dataDir, 'tmp')).catch(() => [] as string[])).sort(),
    async plantStaging() {
      await mkdir(path.join(dataDir, 'tmp'), { recursive: true });
      await writeFile(path.join(dataDir, 'tmp', '01a2b3c4-0000-7000-8000-000000000000'), 'torn');
    },
    async plantOrphan(bytes) {
      const file = fileOf(sha256(bytes));
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, bytes, { mode: 0o444 });
      return rel(sha256(bytes));
    },
    async plantStray() {
      const name = path.join('blobs', 'sha256', 'ab', 'stray.txt');
      await mkdir(path.join(dataDir, path.dirname(name)), { recursive: true });
      await writeFile(path.join(dataDir, name), 'not a blob\n');
      return name;
    },
    hasPlanted: (name) => stat(path.join(dataDir, name)).then(() => true, () => false),
    readPlanted: (name) => readFile(path.join(dataDir, name)).catch(() => null),
    removePlanted: (name) => rm(path.join(dataDir, name)),
    quarantined: async () => Promise.all((await filesUnder(path.join(dataDir, 'quarantine'))).map((f) => readFile(f))),
    sessionStored: (id) => size(sessionFile(id)),
    sessionKept: (id) => size(sessionFile(id)),
    sessionIds: async () => (await readdir(path.join(dataDir, 'uploads')).catch(() => [] as string[])).sort(),
    async openHandles(pid, digest) {
      let n = 0;
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
        if (target.endsWith(digest.slice('sha256:'.length))) n++;
      }
      return n;
    },
    growSession: (id, bytes) => appendFile(sessionFile(id), bytes),
    async plantStraySession() {
      const id = '01a2b3c4-0000-7000-8000-00000000beef';
      await writeFile(sessionFile(id), 'no row');
      return id;
    },
    close() {},
  };
}

interface Row {
  location: string;
  size: number;
}

function s3Probe(dataDir: string, target: S3Target): StoreProbe {
  const client = new S3Client({
    endpoint: target.endpoint,
    region: target.region,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const Bucket = target.bucket;
  const prefix = target.prefix;
  // Where each digest's bytes were seen: after GC drops a row, "is it gone" still asks the right key.
  const seen = new Map<string, Row>();

  const query = <T>(fn: (db: Database.Database) => T): T => {
    const db = new Database(path.join(dataDir, 'blobd.db'), { readonly: true, fileMustExist: true });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  /** The blob's row's location and size, or (no row) where it was last seen; null when never known. */
  const locate = (digest: string): Row | null => {
    const row = query((db) => db.prepare('SELECT coalesce(location, digest) AS location, size FROM blobs WHERE digest = ?').get(digest)) as Row | undefined;
    if (row) seen.set(digest, row);
    return row ?? seen.get(digest) ?? null;
  };
  const mustLocate = (digest: string): Row => {
    const row = locate(digest);
    if (!row) throw new Error(`store probe: ${digest} has no row and was never seen`);
    return row;
  };
  const keyOf = (location: string) => prefix + location;

  async function* objects(under: string): AsyncGenerator<{ key: string; size: number }> {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix + under, ContinuationToken: token }));
      for (const o of page.Contents ?? []) yield { key: o.Key!, size: o.Size ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }
  async function openUploads(): Promise<{ key: string; uploadId: string }[]> {
    const out: { key: string; uploadId: string }[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }));
      for (const u of page.Uploads ?? []) out.push({ key: u.Key!, uploadId: u.UploadId! });
      if (!page.IsTruncated) return out;
      keyMarker = page.NextKeyMarker;
      idMarker = page.NextUploadIdMarker;
    }
  }
  async function parts(key: string, uploadId: string): Promise<{ n: number; etag: string; size: number }[]> {
    const out: { n: number; etag: string; size: number }[] = [];
    let marker: string | undefined;
    for (;;) {
      const page = await client.send(new ListPartsCommand({ Bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker })).catch((err) => {
        // Listed a moment ago, completed or aborted since: it holds nothing now.
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
        throw err;
      });
      if (page === null) return out;
      for (const p of page.Parts ?? []) out.push({ n: p.PartNumber!, etag: p.ETag!, size: p.Size ?? 0 });
      if (!page.IsTruncated) return out;
      marker = page.NextPartNumberMarker;
    }
  }
  async function get(key: string): Promise<Buffer | null> {
    try {
      const res = await client.send(new GetObjectCommand({ Bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') return null;
      throw err;
    }
  }
  async function head(key: string): Promise<number | null> {
    try {
      return (await client.send(new HeadObjectCommand({ Bucket, Key: key }))).ContentLength ?? 0;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return null;
      throw err;
    }
  }
  const put = (key: string, bytes: Uint8Array) => client.send(new PutObjectCommand({ Bucket, Key: key, Body: bytes }));
  /** Keys under blobs/ whose bytes are `digest`'s (only objects of the right size are read). */
  async function holders(digest: string, size: number | null): Promise<string[]> {
    const out: string[] = [];
    for await (const o of objects('blobs/')) {
      if (size !== null && o.size !== size) continue;
      const bytes = await get(o.key);
      if (bytes && sha256(bytes) === digest) out.push(o.key);
    }
    return out;
  }
  /** The session's recorded cursor: { u: upload id, p: [[n, etag, size]…], t: [tail, size] }. */
  const cursorOf = (id: string) => {
    const row = query((db) => db.prepare('SELECT cursor FROM upload_sessions WHERE id = ?').get(id)) as { cursor: string | null } | undefined;
    return row?.cursor ? (JSON.parse(row.cursor) as { u: string | null; p: [number, string, number][] }) : null;
  };
  async function sessionBytes(id: string, keptOnly: boolean): Promise<number | null> {
    let total = 0;
    let any = false;
    for await (const o of objects(`uploads/${id}/`)) {
      total += o.size;
      any = true;
    }
    const key = keyOf(`blobs/${id}`);
    const cursor = keptOnly ? cursorOf(id) : null;
    for (const u of (await openUploads()).filter((x) => x.key === key)) {
      any = true;
      for (const p of await parts(key, u.uploadId)) {
        // A part of the recorded upload that the cursor does not name (or names with another ETag) is dead.
        // (ETags compared without their quotes: a copied part's is recorded as CopyPartResult gave it, bare.)
        const named = cursor?.u === u.uploadId && cursor.p.some(([n, etag, size]) => n === p.n && bare(etag) === bare(p.etag) && size === p.size);
        if (!keptOnly || named || cursor?.u !== u.uploadId) total += p.size;
      }
    }
    return any ? total : null;
  }

  return {
    async exists(digest) {
      const row = locate(digest);
      if (row && (await head(keyOf(row.location))) !== null) return true;
      // Not where its row (or its last row) said, or never seen: is a copy anywhere?
      return (await holders(digest, row?.size ?? null)).length > 0;
    },
    read: async (digest) => get(keyOf(mustLocate(digest).location)),
    overwrite: async (digest, bytes) => void (await put(keyOf(mustLocate(digest).location), bytes)),
    async corrupt(digest, at = 0) {
      const key = keyOf(mustLocate(digest).location);
      const bytes = await get(key);
      if (!bytes) throw new Error(`store probe: nothing at ${key} to corrupt`);
      bytes[at] = bytes[at]! ^ 0x01;
      await put(key, bytes);
    },
    remove: async (digest) => void (await client.send(new DeleteObjectCommand({ Bucket, Key: keyOf(mustLocate(digest).location) }))),
    copies: async (digest) => (await holders(digest, locate(digest)?.size ?? null)).length,
    async list() {
      const names: string[] = [];
      for await (const o of objects('')) if (!o.key.startsWith(`${prefix}probes/`)) names.push(o.key);
      for (const u of await openUploads()) names.push(`multipart upload ${u.uploadId} of ${u.key}`);
      return names.sort();
    },
    async leftovers() {
      const { rows, sessions } = query((db) => ({
        rows: new Set((db.prepare('SELECT coalesce(location, digest) AS l FROM blobs').all() as { l: string }[]).map((r) => keyOf(r.l))),
        sessions: new Set((db.prepare("SELECT id FROM upload_sessions WHERE state != 'completed'").all() as { id: string }[]).map((r) => r.id)),
      }));
      const out: string[] = [];
      for await (const o of objects('blobs/')) if (!rows.has(o.key)) out.push(o.key);
      for (const u of await openUploads()) {
        if (!sessions.has(u.key.slice(`${prefix}blobs/`.length))) out.push(`multipart upload ${u.uploadId} of ${u.key}`);
      }
      return out.sort();
    },
    async plantStaging() {
      const Key = keyOf(`blobs/${randomUUID()}`);
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
      await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: Buffer.from('torn') }));
    },
    async plantOrphan(bytes) {
      const key = keyOf(`blobs/${randomUUID()}`);
      await put(key, bytes);
      return key;
    },
    async plantStray() {
      const key = keyOf('blobs/stray.txt');
      await put(key, Buffer.from('not a blob\n'));
      return key;
    },
    hasPlanted: async (name) => (await head(name)) !== null,
    readPlanted: (name) => get(name),
    removePlanted: async (name) => void (await client.send(new DeleteObjectCommand({ Bucket, Key: name }))),
    async quarantined() {
      const out: Buffer[] = [];
      for await (const o of objects('quarantine/')) out.push((await get(o.key))!);
      return out;
    },
    sessionStored: (id) => sessionBytes(id, false),
    sessionKept: (id) => sessionBytes(id, true),
    async openHandles(pid) {
      // The process's sockets (their inodes), matched against the kernel's TCP table: state 01 is ESTABLISHED,
      // the 5th field tx_queue:rx_queue (hex).
      const inodes = new Set<string>();
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
        if (m) inodes.add(m[1]!);
      }
      const port = Number(new URL(target.endpoint).port).toString(16).toUpperCase().padStart(4, '0');
      let n = 0;
      for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
        for (const line of (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)) {
          const f = line.trim().split(/\s+/);
          const unread = parseInt(f[4]?.split(':')[1] ?? '0', 16) > 0;
          if (f.length > 9 && f[2]!.endsWith(`:${port}`) && f[3] === '01' && unread && inodes.has(f[9]!)) n++;
        }
      }
      return n;
    },
    async sessionIds() {
      const ids = new Set<string>();
      for await (const o of objects('uploads/')) ids.add(o.key.slice(`${prefix}uploads/`.length).split('/')[0]!);
      // Open uploads at blobs/<id>: a session's (one-shot uploads in flight have no session row; leftovers() shows those).
      const sessions = query((db) => new Set((db.prepare('SELECT id FROM upload_sessions').all() as { id: string }[]).map((r) => r.id)));
      for (const u of await openUploads()) {
        const id = u.key.slice(`${prefix}blobs/`.length);
        if (sessions.has(id)) ids.add(id);
      }
      return [...ids].sort();
    },
    async growSession(id, bytes) {
      // A tail object the session's cursor does not name: what a crash between its PUT and the row leaves.
      const stored = (await sessionBytes(id, true)) ?? 0;
      await put(keyOf(`uploads/${id}/${stored}-${randomBytes(8).toString('hex')}`), bytes);
    },
    async plantStraySession() {
      const id = randomUUID();
      await put(keyOf(`uploads/${id}/0-${randomBytes(8).toString('hex')}`), Buffer.from('no row'));
      return id;
    },
    close: () => client.destroy(),
  };
}
