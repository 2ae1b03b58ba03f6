// Looks at (and gets in the way of) a daemon's rows from outside, the same way for both metadata stores: the
// SQLite file data/blobd.db, or the daemon's database on the test PostgreSQL (helpers/daemon.ts). Tests use it
// instead of opening blobd.db, so that they mean the same on either store. Reads only; never writes a row.
import path from 'node:path';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import type { Daemon } from './daemon.ts';

export interface MetaProbe {
  /** The state of upload session `id` ('open', 'completing', 'completed'), or null when it has no row. */
  sessionState(id: string): Promise<string | null>;
  /**
   * Takes the database's write lock from another connection, as another process would (SQLite: BEGIN
   * IMMEDIATE; PostgreSQL: every table locked EXCLUSIVE, reads still pass) and holds it until the returned
   * function is called, or `atMostMs` passed: a daemon that waits for the lock for ever then answers late
   * (and fails the test's assertions) instead of hanging the test.
   */
  holdWriteLock(atMostMs?: number): Promise<() => Promise<void>>;
  /** Every row of every table, one line each as JSON: to search for what must never be stored. */
  rows(): Promise<string[]>;
  /** Releases the probe's connections. */
  close(): Promise<void>;
}

export function metaProbe(d: Pick<Daemon, 'dataDir' | 'metadata' | 'databaseUrl'>): MetaProbe {
  return d.metadata === 'postgres' ? pgProbe(d.databaseUrl!) : sqliteProbe(path.join(d.dataDir, 'blobd.db'));
}

const LOCK_DEADLINE_MS = 60_000;

/** `release`, run once: by the caller, or by a timer after `atMostMs`, whichever comes first. */
function releaseOnce(atMostMs: number, release: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  const once = () => (done ??= release());
  const timer = setTimeout(() => void once(), atMostMs);
  return async () => {
    clearTimeout(timer);
    await once();
  };
}

function sqliteProbe(file: string): MetaProbe {
  // A connection per question: the daemon may be stopped, restarted or not yet have made the file in between.
  const query = <T>(fn: (db: Database.Database) => T): T => {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    async sessionState(id) {
      const row = query((db) => db.prepare('SELECT state FROM upload_sessions WHERE id = ?').get(id)) as { state: string } | undefined;
      return row?.state ?? null;
    },
    async holdWriteLock(atMostMs = LOCK_DEADLINE_MS) {
      const db = new Database(file, { fileMustExist: true });
      db.exec('BEGIN IMMEDIATE');
      return releaseOnce(atMostMs, async () => {
        db.exec('ROLLBACK');
        db.close();
      });
    },
    async rows() {
      return query((db) => {
        const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
        return tables.flatMap((t) => (db.prepare(`SELECT * FROM "${t}"`).all() as unknown[]).map((r) => `${t}: ${JSON.stringify(r, bytesAsText)}`));
      });
    },
    async close() {},
  };
}

/** BLOBs as UTF-8 text, so that a secret stored in one is found by a search of the text. */
function bytesAsText(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer') return Buffer.from((value as { data: number[] }).data).toString('utf8');
  return value;
}

function pgProbe(url: string): MetaProbe {
  const sql = postgres(url, { max: 2, onnotice: () => {}, connection: { application_name: 'blobd-test-probe' } });
  const tables = async () => (await sql<{ name: string }[]>`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`).map((t) => t.name);
  return {
    async sessionState(id) {
      const [row] = await sql<{ state: string }[]>`SELECT state FROM upload_sessions WHERE id::text = ${id}`;
      return row?.state ?? null;
    },
    async holdWriteLock(atMostMs = LOCK_DEADLINE_MS) {
      const conn = await sql.reserve();
      const names = await tables();
      await conn`BEGIN`;
      await conn.unsafe(`LOCK TABLE ${names.map((n) => `"${n}"`).join(', ')} IN EXCLUSIVE MODE`);
      return releaseOnce(atMostMs, async () => {
        await conn`ROLLBACK`;
        conn.release();
      });
    },
    async rows() {
      const out: string[] = [];
      for (const t of await tables()) {
        // Each row as the server renders it (bytea as \x hex, so it is decoded back to text here as well).
        for (const r of await sql.unsafe<{ row: string }[]>(`SELECT row_to_json(x)::text AS row FROM "${t}" x`)) {
          out.push(`${t}: ${r.row.replace(/\\\\x([0-9a-f]+)/g, (_m, hex: string) => Buffer.from(hex, 'hex').toString('utf8'))}`);
        }
      }
      return out;
    },
    close: () => sql.end({ timeout: 5 }),
  };
}
