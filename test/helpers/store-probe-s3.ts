// The store probe (store-probe.ts) for the S3 byte store: a blob's bytes are the object its row's location
// names (read from the daemon's SQLite database), in the daemon's bucket and prefix on the test RGW.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
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
import type { S3Target } from './daemon.ts';
import type { StoreProbe } from './store-probe.ts';

const bare = (etag: string) => etag.replace(/^"|"$/g, '');
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Row {
  location: string;
  size: number;
}

export function s3Probe(dataDir: string, target: S3Target): StoreProbe {
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
