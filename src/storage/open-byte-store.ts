// The one place that picks the byte store: the data directory itself, or an S3-compatible bucket. A data
// directory remembers which one holds its blobs (data/byte-store.json), so a daemon started with the other
// is refused with one clear line instead of answering every download with "not found".
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import type { StoreConfig } from '../config.ts';
import type { ByteStore } from './byte-store.ts';
import type { MetadataStore } from './metadata-store.ts';
import { localFreeSpace, type DiskReserve } from './fs/disk-reserve.ts';
import { FsByteStore } from './fs/fs-byte-store.ts';
import { FILE_MODE, type DataLayout } from './fs/layout.ts';
import { readRecordFile } from './fs/record-file.ts';

export interface OpenedByteStore {
  readonly bytes: ByteStore;
  /** Free bytes where the database grows (the data directory's disk), when the bytes are elsewhere. */
  readonly rowsFree?: () => Promise<number>;
}

/** Where the blobs are, as the data directory records it: enough to recognise the store, no secrets. */
export interface StoreIdentity {
  readonly kind: 'fs' | 's3';
  readonly endpoint?: string;
  readonly bucket?: string;
  readonly prefix?: string;
}

export class ByteStoreMismatchError extends Error {
  override name = 'ByteStoreMismatchError';
}

function identityOf(store: StoreConfig): StoreIdentity {
  return store.kind === 'fs' ? { kind: 'fs' } : { kind: 's3', endpoint: store.endpoint ?? 'aws', bucket: store.bucket, prefix: store.prefix };
}

const sameStore = (a: StoreIdentity, b: StoreIdentity) =>
  a.kind === b.kind && a.endpoint === b.endpoint && a.bucket === b.bucket && a.prefix === b.prefix;

export const describeStore = (id: StoreIdentity) =>
  id.kind === 'fs' ? 'the data directory (--store fs)' : `S3 bucket ${id.bucket}${id.prefix ? ` prefix ${id.prefix}` : ''} at ${id.endpoint} (--store s3)`;

/**
 * Which store this data directory's blobs are in, as recorded; null for a new directory. A directory that
 * has a database but no record predates the choice: its blobs are in the data directory.
 */
export async function recordedStore(layout: DataLayout): Promise<StoreIdentity | null> {
  const found = await readRecordFile<StoreIdentity>(
    layout.byteStoreFile,
    ['fs', 's3'],
    'put it back from a `blobd backup` copy of this data directory, or write {"kind":"fs"} into it when the blobs are files here (docs/operations.md shows the S3 form)',
  );
  return found ?? (existsSync(layout.databaseFile) ? { kind: 'fs' } : null);
}

/** The secret under which a shared metadata store records where its nodes keep blobs. */
const SHARED_STORE_RECORD = 'byte-store';

/**
 * With a metadata store several nodes share: the first node's store is recorded in the database, and a node
 * whose settings name another bucket or prefix (or another kind of store) is refused — it would read every
 * other node's blob as missing, and its uploads would move their rows to bytes only it can read. Another
 * endpoint is allowed (nodes may reach one store by different names) and said in a warning.
 */
export async function checkSharedStore(meta: MetadataStore, store: StoreConfig, warn: (message: string) => void): Promise<void> {
  const wanted = identityOf(store);
  let recorded: StoreIdentity;
  try {
    recorded = JSON.parse((await meta.ensureSecret(SHARED_STORE_RECORD, Buffer.from(JSON.stringify(wanted)))).toString('utf8')) as StoreIdentity;
  } catch (err) {
    if (err instanceof SyntaxError) throw new ByteStoreMismatchError(`the database's record of the nodes' byte store (secret ${SHARED_STORE_RECORD}) is damaged`);
    throw err;
  }
  if (recorded.kind !== wanted.kind || recorded.bucket !== wanted.bucket || recorded.prefix !== wanted.prefix) {
    throw new ByteStoreMismatchError(
      `the nodes on this database keep their blobs in ${describeStore(recorded)}, not in ${describeStore(wanted)}: give every node the same --store s3 settings`,
    );
  }
  if (recorded.endpoint !== wanted.endpoint) {
    warn(`the first node on this database named the byte store's endpoint ${recorded.endpoint}, this one ${wanted.endpoint}: fine if both reach the same store`);
  }
}

/** Refuses settings that name another store than the one this data directory's blobs are in. */
async function checkIdentity(layout: DataLayout, store: StoreConfig): Promise<void> {
  const wanted = identityOf(store);
  const recorded = await recordedStore(layout);
  if (recorded && !sameStore(recorded, wanted)) {
    throw new ByteStoreMismatchError(`this data directory's blobs are in ${describeStore(recorded)}, not in ${describeStore(wanted)}: start with the same store settings`);
  }
}

/** The first time the store answered: from now on, this data directory's blobs are there. */
async function recordIdentity(layout: DataLayout, store: StoreConfig): Promise<void> {
  if (existsSync(layout.byteStoreFile)) return;
  await writeFile(layout.byteStoreFile, `${JSON.stringify(identityOf(store))}\n`, { mode: FILE_MODE, flush: true });
}

/**
 * The byte store the settings name, checked against the data directory's record, proven reachable and
 * writable (ping: a wrong endpoint, bucket or credential is one line at start, not a 503 on the first
 * upload), and only then recorded — so a mistyped first start records nothing.
 */
export async function openByteStore(store: StoreConfig, layout: DataLayout, reserve: DiskReserve): Promise<OpenedByteStore> {
  await checkIdentity(layout, store);
  const opened = await open(store, layout, reserve);
  await opened.bytes.ping();
  await recordIdentity(layout, store);
  return opened;
}

async function open(store: StoreConfig, layout: DataLayout, reserve: DiskReserve): Promise<OpenedByteStore> {
  if (store.kind === 'fs') {
    return { bytes: await FsByteStore.open(layout, reserve) };
  }
  // Loaded only for this store: the S3 client costs an idle daemon on files ~5 MB of heap and more of RSS.
  const { S3ByteStore } = await import('./s3/s3-byte-store.ts');
  const bytes = await S3ByteStore.open({
    endpoint: store.endpoint,
    bucket: store.bucket,
    region: store.region,
    prefix: store.prefix,
    forcePathStyle: store.forcePathStyle,
    credentials: store.credentials,
    partSize: store.partSize,
    socketTimeoutMs: store.timeoutMs,
  });
  return { bytes, rowsFree: () => localFreeSpace(layout, reserve) };
}
