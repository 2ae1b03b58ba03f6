// Brings a PostgreSQL database's schema up to date: the numbered .sql files beside this module, applied in
// name order, each in its own transaction, recorded in schema_version. Several nodes starting at once take
// turns on an advisory lock, so each migration runs exactly once; a schema newer than this code is refused.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgDb } from './db.ts';

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
/** pg_advisory_lock key of schema changes ('blobd' in ASCII): the same in every blobd process. */
const MIGRATION_LOCK = 0x626c6f6264;

interface Migration {
  version: number;
  file: string;
}

function migrations(): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{3}-[a-z0-9-]+\.sql$/.test(f))
    .sort()
    .map((file) => ({ version: Number(file.slice(0, 3)), file }));
}

/** The newest schema version this code knows. */
export function knownSchemaVersion(): number {
  return migrations().at(-1)?.version ?? 0;
}

/** Thrown when the database was migrated by a newer blobd: nothing is changed. */
export class SchemaTooNew extends Error {
  override name = 'SchemaTooNew';
  constructor(readonly found: number, readonly known: number) {
    super(`the database schema is version ${found}; this blobd knows up to ${known}: upgrade blobd`);
  }
}

/** Applies the migrations the database lacks; returns the versions applied (none when it was up to date). */
export async function migrate(db: PgDb): Promise<number[]> {
  const all = migrations();
  const known = all.at(-1)?.version ?? 0;
  // A session-level lock lives on one connection: reserve it for the whole run.
  const conn = await db.sql.reserve();
  try {
    // Other nodes may be migrating: wait for them however long it takes (no lock_timeout for this wait).
    await conn`SET lock_timeout = 0`;
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
    try {
      await conn`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`;
      const rows = await conn<{ version: number }[]>`SELECT version FROM schema_version`;
      const current = rows[0]?.version ?? 0;
      if (current > known) throw new SchemaTooNew(current, known);
      const applied: number[] = [];
      for (const m of all) {
        if (m.version <= current) continue;
        const script = readFileSync(path.join(MIGRATIONS_DIR, m.file), 'utf8');
        // One simple-protocol query runs a multi-statement script; BEGIN/COMMIT make it one transaction.
        await conn.unsafe(`BEGIN;\n${script}\n;DELETE FROM schema_version; INSERT INTO schema_version VALUES (${m.version}); COMMIT;`).simple();
        applied.push(m.version);
      }
      return applied;
    } catch (err) {
      await conn.unsafe('ROLLBACK').simple().catch(() => {});
      throw err;
    } finally {
      await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {});
    }
  } finally {
    await conn`RESET lock_timeout`.catch(() => {});
    conn.release();
  }
}
