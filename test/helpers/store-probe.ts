// Looks at (and damages) a daemon's stored bytes from outside, the same way for both byte stores: blob files
// under data/blobs/ for the local store; for the S3 store, the object a blob row's location names (read from
// the daemon's SQLite database) in the daemon's bucket on the test RGW (store-probe-s3.ts). Tests use it
// instead of poking paths.
import { createHash } from 'node:crypto';
import { appendFile, chmod, mkdir, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import type { Daemon } from './daemon.ts';
import { s3Probe } from './store-probe-s3.ts';

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

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function probeStore(d: Pick<Daemon, 'dataDir' | 'store' | 's3'> & Partial<Pick<Daemon, 'metadata' | 'databaseUrl'>>): StoreProbe {
  const probe = d.store === 's3' ? s3Probe(d.dataDir, d.s3!) : fsProbe(d.dataDir);
  // Small blobs' bytes are in the metadata database's inline tier (--inline-max): looked at there first.
  const table = d.metadata === 'postgres' ? pgInline(d.databaseUrl!) : sqliteInline(path.join(d.dataDir, 'blobd.db'));
  return inlineAware(probe, table);
}

/** The name list() gives a blob stored inline. */
export const inlineName = (digest: string) => `inline/${digest}`;

/** The inline tier's bytes as an admin with a database client sees them. */
interface InlineTable {
  get(digest: string): Promise<Buffer | null>;
  set(digest: string, bytes: Buffer): Promise<void>;
  remove(digest: string): Promise<void>;
  digests(): Promise<string[]>;
  quarantined(): Promise<Buffer[]>;
  close(): void;
}

/** SQLite's `inline_blobs` table, through a connection of the probe's own per call. */
function sqliteInline(dbFile: string): InlineTable {
  const withDb = <T>(fn: (db: Database.Database) => T, none: T): T => {
    if (!existsSync(dbFile)) return none;
    const db = new Database(dbFile, { fileMustExist: true, timeout: 10_000 });
    try {
      const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'inline_blobs'").get() !== undefined;
      return hasTable ? fn(db) : none;
    } finally {
      db.close();
    }
  };
  return {
    get: async (digest) => withDb((db) => (db.prepare('SELECT content FROM inline_blobs WHERE digest = ?').pluck().get(digest) as Buffer | undefined) ?? null, null),
    set: async (digest, bytes) => void withDb((db) => db.prepare('UPDATE inline_blobs SET content = ? WHERE digest = ?').run(bytes, digest), null),
    remove: async (digest) => void withDb((db) => db.prepare('DELETE FROM inline_blobs WHERE digest = ?').run(digest), null),
    digests: async () => withDb((db) => db.prepare('SELECT digest FROM inline_blobs').pluck().all() as string[], []),
    quarantined: async () => withDb((db) => db.prepare('SELECT content FROM inline_quarantine').pluck().all() as Buffer[], []),
    close() {},
  };
}

/** PostgreSQL's inline bytes: the `content` column of the blob rows. */
function pgInline(url: string): InlineTable {
  let sql: postgres.Sql | undefined;
  // idle_timeout: a probe a test never closes must not keep its process alive.
  const db = () => (sql ??= postgres(url, { max: 1, idle_timeout: 1, onnotice: () => {} }));
  return {
    async get(digest) {
      const [r] = await db()<{ content: Buffer }[]>`SELECT content FROM blobs WHERE digest = ${digest} AND content IS NOT NULL`;
      return r?.content ?? null;
    },
    set: async (digest, bytes) => void (await db()`UPDATE blobs SET content = ${bytes} WHERE digest = ${digest}`),
    remove: async (digest) => void (await db()`UPDATE blobs SET content = NULL WHERE digest = ${digest}`),
    digests: async () => (await db()<{ digest: string }[]>`SELECT digest FROM blobs WHERE content IS NOT NULL`).map((r) => r.digest),
    quarantined: async () => (await db()<{ content: Buffer }[]>`SELECT content FROM inline_quarantine`).map((r) => r.content),
    close: () => void sql?.end({ timeout: 1 }),
  };
}

/**
 * A probe that sees the inline tier: a blob whose bytes are there is read, damaged and removed there (as
 * an admin with a database client would), anything else by the probe of the byte store.
 */
function inlineAware(files: StoreProbe, table: InlineTable): StoreProbe {
  return {
    ...files,
    exists: async (digest) => (await table.get(digest)) !== null || files.exists(digest),
    read: async (digest) => (await table.get(digest)) ?? files.read(digest),
    async overwrite(digest, bytes) {
      if ((await table.get(digest)) === null) return files.overwrite(digest, bytes);
      await table.set(digest, Buffer.from(bytes));
    },
    async corrupt(digest, at = 0) {
      const bytes = await table.get(digest);
      if (bytes === null) return files.corrupt(digest, at);
      bytes[at] = bytes[at]! ^ 0x01;
      await table.set(digest, bytes);
    },
    async remove(digest) {
      if ((await table.get(digest)) === null) return files.remove(digest);
      await table.remove(digest);
    },
    copies: async (digest) => ((await table.get(digest)) !== null ? 1 : 0) + (await files.copies(digest)),
    list: async () => [...(await files.list()), ...(await table.digests()).map(inlineName)].sort(),
    quarantined: async () => [...(await files.quarantined()), ...(await table.quarantined())],
    close() {
      table.close();
      files.close();
    },
  };
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
