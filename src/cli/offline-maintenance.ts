// The CLI's second composition root, and the only CLI module that may build core and storage: maintenance
// of a data directory on this host, for the commands that work on files rather than through a running
// daemon — offline `blobd fsck --data`, and `blobd backup` (safe while a daemon runs). Like server.ts, it is
// the only place these commands' stores and services are created. Every other CLI module talks HTTP.
import { chmod, copyFile, link, mkdir, open, readdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { BlobService } from '../core/blobs.ts';
import { DiskBudget } from '../core/disk-budget.ts';
import { FsckService, type FsckReport } from '../core/fsck.ts';
import { syncDir } from '../storage/fs/durable-dirs.ts';
import { FsByteStore } from '../storage/fs/fs-byte-store.ts';
import { TieredByteStore } from '../storage/tiered-byte-store.ts';
import { BLOB_MODE, DataLayout, DIR_MODE, FILE_MODE } from '../storage/fs/layout.ts';
import { lockDataDir } from '../storage/sqlite/data-dir-lock.ts';
import { SqliteMetadataStore } from '../storage/sqlite/sqlite-metadata-store.ts';
import { describeStore, recordedStore } from '../storage/open-byte-store.ts';
import { recordedMetadataStore } from '../storage/open-metadata-store.ts';
import { repackSmallFiles, type RepackReport } from '../storage/repack.ts';

export class MaintenanceError extends Error {
  override name = 'MaintenanceError';
}

/** What to do instead when the data directory's rows are in PostgreSQL, by command. */
const ON_POSTGRES = {
  backup: "back it up with pg_dump (and the bucket with the store's own tools)",
  fsck: 'run blobd fsck against a running node (without --data)',
  repack: '--repack works on the SQLite database of a data directory only; small blobs stored as files stay readable where they are',
} as const;

async function requireDataDir(layout: DataLayout, command: keyof typeof ON_POSTGRES): Promise<void> {
  const recorded = await recordedMetadataStore(layout);
  if (recorded?.kind === 'postgres') {
    throw new MaintenanceError(`the metadata of ${layout.root} is in PostgreSQL (${recorded.database}): ${ON_POSTGRES[command]}`);
  }
  const found = await stat(layout.databaseFile).catch(() => null);
  if (!found) throw new MaintenanceError(`no blobd data directory at ${layout.root} (no blobd.db)`);
  // SQLite would take an empty file for a new database, and this directory for one that holds nothing.
  if (found.size === 0) throw new MaintenanceError(`${layout.databaseFile} is empty: put the database back from a \`blobd backup\` copy`);
}

/**
 * Runs `work` on a data directory whose blobs are files here (not in an object store) and that no daemon is
 * using: it takes the directory's lock, as a daemon would, and opens the database without a daemon's extras.
 */
async function withLocalDataDir<T>(dataDir: string, command: 'fsck' | 'repack', work: (meta: SqliteMetadataStore, files: FsByteStore) => Promise<T>): Promise<T> {
  const layout = new DataLayout(dataDir);
  await requireDataDir(layout, command);
  const store = await recordedStore(layout);
  if (store && store.kind !== 'fs') {
    throw new MaintenanceError(`the blobs of ${layout.root} are in ${describeStore(store)}: run blobd fsck against its daemon (without --data)`);
  }
  const lock = lockDataDir(layout.lockFile);
  const meta = SqliteMetadataStore.open(layout.databaseFile);
  try {
    return await work(meta, await FsByteStore.open(layout));
  } finally {
    await meta.close();
    lock.release();
  }
}

/** fsck of a data directory no daemon is using. */
export function fsckOffline(dataDir: string, repair: boolean): Promise<FsckReport> {
  return withLocalDataDir(dataDir, 'fsck', (meta, files) => {
    const bytes = new TieredByteStore(files, meta.inline, 0);
    // Only its digest lock is used here: nothing is ingested.
    const blobs = new BlobService(meta, bytes, new DiskBudget(meta, bytes, 0), { maxBlobSize: 0, temporaryTtlMs: 0 });
    return new FsckService(meta, bytes, blobs).run({ repair });
  });
}

/**
 * Small blobs stored as files moved into the database (see storage/repack.ts), in a data directory no daemon
 * is using: blobs of at most `max` bytes.
 */
export function repackOffline(dataDir: string, max: number): Promise<RepackReport> {
  return withLocalDataDir(dataDir, 'repack', (meta, files) => repackSmallFiles(meta.inline, files, max));
}

/** How long a backup's GC hold lasts without renewal: a crashed backup pauses GC no longer than this. */
const HOLD_MS = 10 * 60_000;
const PAGE = 1000;

/**
 * A consistent copy of `dataDir` into `dir`, while a daemon may be writing: a GC hold first (so no blob of
 * the snapshot is removed while its file is copied), SQLite's online backup of the database, then every
 * blob file of that snapshot hard-linked (blob files never change) or copied, and the admin token and keys.
 * Small blobs stored inline are in the snapshot itself.
 * Open upload sessions are not carried over (their rows go at the copy's first start).
 */
export async function backupDataDir(dataDir: string, dir: string): Promise<BackupResult> {
  const from = new DataLayout(dataDir);
  const to = new DataLayout(dir);
  await requireDataDir(from, 'backup');
  // Blobs in an object store stay there: the copy is the metadata (and secrets), pointing at the same bytes.
  const store = await recordedStore(from);
  const copyBytes = store === null || store.kind === 'fs';
  // Inside the data directory a copy would be swept (tmp/) or read as strays: refuse it.
  const [realFrom, realTarget] = [await realpath(from.root), await realParent(to.root)];
  if (realTarget === realFrom || realTarget.startsWith(`${realFrom}${path.sep}`)) {
    throw new MaintenanceError(`${to.root} is inside the data directory ${from.root}; back up somewhere else`);
  }
  const existing = await readdir(to.root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    if (err.code === 'ENOTDIR') throw new MaintenanceError(`${to.root} is not a directory`);
    throw err;
  });
  if (existing && existing.length > 0) throw new MaintenanceError(`${to.root} is not empty; back up into a new directory`);
  // Opened before the target is made: a database that cannot be opened leaves no empty copy behind.
  const source = SqliteMetadataStore.open(from.databaseFile);
  try {
    await mkdir(to.root, { recursive: true, mode: DIR_MODE });
  } catch (err) {
    await source.close();
    throw err;
  }
  const hold = uuidv7();
  let renew: NodeJS.Timeout | undefined;
  let snapshot: SqliteMetadataStore | undefined;
  let count = 0;
  let bytes = 0;
  try {
    await source.addGcHold(hold, Date.now() + HOLD_MS);
    renew = setInterval(() => void source.addGcHold(hold, Date.now() + HOLD_MS).catch(() => {}), HOLD_MS / 3);
    await source.backupTo(to.databaseFile);
    snapshot = SqliteMetadataStore.open(to.databaseFile);
    await snapshot.releaseGcHold(hold); // the copy must not start with GC paused
    const shards = new Set<string>();
    /**
     * A snapshot row whose file went after the snapshot: GC is held off, but an admin's purge or fsck's
     * quarantine may have acted meanwhile. The copy follows the source; only a file missing from a row the
     * source still has unmarked is damage.
     */
    const settleMissing = async (digest: string): Promise<false> => {
      const now = await source.getBlob(digest);
      if (!now) await snapshot!.purgeBlob(digest);
      else if (now.quarantined) await snapshot!.markQuarantined(digest);
      else throw new MaintenanceError(`blob ${digest} has no file in ${from.root} (run blobd fsck); nothing was backed up`);
      return false;
    };
    for (let page = await snapshot.listBlobsAfter('', PAGE); page.length > 0; page = await snapshot.listBlobsAfter(page.at(-1)!.digest, PAGE)) {
      for (const blob of page) {
        if (blob.quarantined) continue; // its bytes are in quarantine: the copy reads it as absent, like the original
        // Bytes in the object store: not copied.
        if (!copyBytes) {
          count++;
          bytes += blob.size;
          continue;
        }
        // Bytes in the database's inline tier are in the snapshot; a file of the same blob beside them (kept
        // under a smaller --inline-max) is linked too: it serves the blob should the inline copy be damaged.
        const inline = (await snapshot.inline.stat(blob.digest)) !== null;
        if (inline && !(await stat(from.blobFile(blob.digest)).catch(() => null))) {
          count++;
          bytes += blob.size;
          continue;
        }
        const target = to.blobFile(blob.digest);
        const shard = path.dirname(target);
        if (!shards.has(shard)) {
          await mkdir(shard, { recursive: true, mode: DIR_MODE });
          shards.add(shard);
        }
        const copied = await link(from.blobFile(blob.digest), target).then(
          async () => {
            // One inode with the original: a blob file an older blobd made 0444 is tightened in both.
            if (((await stat(target)).mode & 0o777) !== BLOB_MODE) await chmod(target, BLOB_MODE);
            return true;
          },
          async (err: NodeJS.ErrnoException) => {
            if (err.code === 'ENOENT') return inline || settleMissing(blob.digest);
            if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
            await copyFile(from.blobFile(blob.digest), target);
            await chmod(target, BLOB_MODE);
            await syncFile(target);
            return true;
          },
        );
        if (!copied) continue;
        count++;
        bytes += blob.size;
      }
    }
    await copySecrets(from, to);
    for (const shard of shards) await syncDir(shard);
    await syncFile(to.databaseFile);
    // A directory the user made for it keeps their umask's mode until now: the copy is a data directory,
    // which a daemon only starts on when other users cannot enter it.
    await chmod(to.root, DIR_MODE);
    await syncDir(to.root);
  } catch (err) {
    await snapshot?.close();
    snapshot = undefined;
    // Leave nothing half-made; a directory the user made stays (empty), one this run made goes.
    const made = existing === null ? [to.root] : (await readdir(to.root).catch(() => [] as string[])).map((f) => path.join(to.root, f));
    for (const f of made) await rm(f, { recursive: true, force: true }).catch(() => {});
    throw err;
  } finally {
    clearInterval(renew);
    await snapshot?.close();
    await source.releaseGcHold(hold).catch(() => {});
    await source.close();
  }
  return { dir: to.root, blobs: count, bytes, ...(copyBytes ? {} : { bytes_in: describeStore(store!) }) };
}

export interface BackupResult {
  readonly dir: string;
  readonly blobs: number;
  readonly bytes: number;
  /** Set when the blobs' bytes are in an object store: the backup holds their metadata, not their bytes. */
  readonly bytes_in?: string;
}

/** The admin token, the store records and every key file: the copy answers the same tokens, URLs and idempotent replays. */
async function copySecrets(from: DataLayout, to: DataLayout): Promise<void> {
  const files: [string, string][] = [
    [from.adminTokenFile, to.adminTokenFile],
    [from.byteStoreFile, to.byteStoreFile],
    [from.metadataStoreFile, to.metadataStoreFile],
  ];
  const keys = await readdir(from.keysDir).catch(() => [] as string[]);
  if (keys.length > 0) await mkdir(to.keysDir, { mode: DIR_MODE });
  for (const name of keys) files.push([path.join(from.keysDir, name), path.join(to.keysDir, name)]);
  for (const [src, dst] of files) {
    try {
      await copyFile(src, dst);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    await chmod(dst, FILE_MODE);
    await syncFile(dst);
  }
  if (keys.length > 0) await syncDir(to.keysDir);
}

async function syncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The real path of `p`, or of its nearest existing ancestor joined with the rest. */
async function realParent(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || path.dirname(p) === p) throw err;
    return path.join(await realParent(path.dirname(p)), path.basename(p));
  }
}
