// The one place that picks the metadata store: SQLite in the data directory, or a PostgreSQL database that
// several nodes share. A data directory remembers which one holds its rows (data/metadata-store.json), so a
// daemon started with the other is refused with one clear line instead of starting on an empty catalogue
// (whose GC would then take the directory's blob files for strays).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { redactUrl, type MetadataConfig } from '../config.ts';
import { FILE_MODE, type DataLayout } from './fs/layout.ts';
import { readRecordFile } from './fs/record-file.ts';
import type { MetadataStore } from './metadata-store.ts';
import type { SpaceReserve } from './storage-full.ts';
import { SqliteMetadataStore } from './sqlite/sqlite-metadata-store.ts';

/** Which database, as recorded: enough to recognise it, never a password. */
interface MetadataIdentity {
  readonly kind: 'sqlite' | 'postgres';
  /** host:port/database for PostgreSQL. */
  readonly database?: string;
}

export class MetadataStoreError extends Error {
  override name = 'MetadataStoreError';
}

function identityOf(config: MetadataConfig): MetadataIdentity {
  if (config.kind === 'sqlite') return { kind: 'sqlite' };
  const u = new URL(config.url);
  return { kind: 'postgres', database: `${u.hostname}:${u.port || '5432'}${u.pathname || '/'}` };
}

const describe = (id: MetadataIdentity) =>
  id.kind === 'sqlite' ? 'SQLite in the data directory (no --metadata)' : `PostgreSQL database ${id.database} (--metadata)`;

/** Which database holds this data directory's rows, as recorded; null for a new directory. */
export async function recordedMetadataStore(layout: DataLayout): Promise<MetadataIdentity | null> {
  const found = await readRecordFile<MetadataIdentity>(
    layout.metadataStoreFile,
    ['sqlite', 'postgres'],
    'delete it and start with the same --metadata as before (none for blobd.db here): it is written again',
  );
  // A directory with a database but no record predates the choice: its rows are in SQLite.
  return found ?? (existsSync(layout.databaseFile) ? { kind: 'sqlite' } : null);
}

/**
 * A data directory that was in use — it says its rows are in SQLite, or it holds blob files — but has no
 * blobd.db lost its database (a restore or a mount gone wrong). Starting would make an empty one, and the
 * first GC pass would delete every blob file as a stray: refused, with what to do.
 */
function refuseLostDatabase(layout: DataLayout, recordedBefore: boolean): void {
  // An empty file is what SQLite takes for a new database: as good as lost (a truncation, a bad restore).
  const size = existsSync(layout.databaseFile) ? statSync(layout.databaseFile).size : null;
  if (size !== null && size > 0) return;
  let blobDirs: string[] = [];
  try {
    blobDirs = readdirSync(layout.blobsDir);
  } catch {
    // No blobs directory: nothing was stored here.
  }
  if (!recordedBefore && blobDirs.length === 0) return;
  throw new MetadataStoreError(
    `${layout.databaseFile} is ${size === null ? 'missing' : 'empty'}, but this data directory was in use (${blobDirs.length > 0 ? 'it holds blob files' : 'metadata-store.json names SQLite'}): ` +
      'put the database back (from a `blobd backup` copy), or start with an empty --data',
  );
}

/**
 * The metadata store the settings name, checked against the data directory's record, proven reachable
 * (a wrong host, database or password is one line at start), and only then recorded.
 */
export async function openMetadataStore(config: MetadataConfig, layout: DataLayout, reserve: SpaceReserve): Promise<MetadataStore> {
  const wanted = identityOf(config);
  const before = await recordedMetadataStore(layout);
  if (before && (before.kind !== wanted.kind || before.database !== wanted.database)) {
    throw new MetadataStoreError(
      `this data directory's metadata is in ${describe(before)}, not in ${describe(wanted)}: start with the same --metadata`,
    );
  }
  let store: MetadataStore;
  if (config.kind === 'sqlite') {
    // The record itself, not what an existing (perhaps empty) blobd.db lets recordedMetadataStore infer.
    refuseLostDatabase(layout, existsSync(layout.metadataStoreFile));
    store = SqliteMetadataStore.open(layout.databaseFile, { reserve, checkpointThread: true });
  } else {
    // Loaded only for this store, like the S3 byte store.
    const { PostgresMetadataStore } = await import('./postgres/pg-metadata-store.ts');
    try {
      store = await PostgresMetadataStore.open(config.url);
    } catch (err) {
      // The client's messages name host and user, never the password; the URL is shown redacted anyway.
      const why = (err instanceof Error ? err.message : String(err)).split(config.url).join(redactUrl(config.url));
      throw new MetadataStoreError(why.includes(redactUrl(config.url)) ? why : `cannot use PostgreSQL at ${redactUrl(config.url)}: ${why}`);
    }
  }
  if (!existsSync(layout.metadataStoreFile)) {
    await writeFile(layout.metadataStoreFile, `${JSON.stringify(wanted)}\n`, { mode: FILE_MODE, flush: true });
  }
  return store;
}
