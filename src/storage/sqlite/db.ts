// Opens the SQLite database with blobd's pragmas and brings its schema up to date. Migrations are the
// numbered .sql files beside this module, applied in order, each in its own transaction, and recorded in
// PRAGMA user_version. Nothing here knows about blobs or buckets.
import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePrivateFile } from '../fs/private-file.ts';
import { finiteNumber } from '../finite-number.ts';

export type Db = Database.Database;

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** SQLite's answers for a file that is not (or no longer) a database it can read. */
const DAMAGED = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT']);

export function openDatabase(file: string): Db {
  ensurePrivateFile(file);
  const db = new Database(file);
  try {
    configure(db);
  } catch (err) {
    db.close();
    if (!DAMAGED.has((err as { code?: string }).code ?? '')) throw err;
    throw new Error(`${file} is damaged (${(err as Error).message}): put it back from a \`blobd backup\` copy; nothing was changed`);
  }
  return db;
}

function configure(db: Db): void {
  db.pragma('journal_mode = WAL');
  // FULL: a commit is on disk when it returns, so a 2xx after it survives kill -9 and power loss (G1).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // Deterministic, so SQLite may use it in indexes and constant-fold it; see finiteNumber.
  db.function('blobd_number', { deterministic: true }, (v: unknown) => finiteNumber(v));
  migrate(db);
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{3}-[a-z0-9-]+\.sql$/.test(f))
    .sort();
  for (const f of files) {
    const version = Number(f.slice(0, 3));
    if (version <= current) continue;
    const sql = readFileSync(path.join(MIGRATIONS_DIR, f), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
    })();
  }
}
