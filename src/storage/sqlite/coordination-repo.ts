// Named leases and shared secrets: what N processes sharing a metadata store coordinate through. SQLite
// serves one process, but keeps them so that core has one code path (and one contract suite) for both.
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.ts';

export class CoordinationRepo {
  private readonly takeLease: Statement<[string, string, number, string, number]>;
  private readonly dropLease: Statement<[string, string]>;
  private readonly liveLeases: Statement<[string, string, number], { name: string; holder: string }>;
  private readonly selectSecret: Statement<[string], { value: Buffer }>;
  private readonly insertSecret: Statement<[string, Buffer, number]>;
  private readonly secretsByPrefix: Statement<[string, string], { name: string; value: Buffer }>;
  private readonly removeSecret: Statement<[string]>;

  constructor(db: Db) {
    this.takeLease = db.prepare(`
      INSERT INTO leases (name, holder, until) VALUES (?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
      WHERE leases.holder = ? OR leases.until <= ?`);
    this.dropLease = db.prepare('DELETE FROM leases WHERE name = ? AND holder = ?');
    this.liveLeases = db.prepare(`SELECT name, holder FROM leases WHERE substr(name, 1, length(?)) = ? AND until > ? ORDER BY name`);
    this.selectSecret = db.prepare('SELECT value FROM secrets WHERE name = ?');
    this.insertSecret = db.prepare('INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING');
    this.secretsByPrefix = db.prepare('SELECT name, value FROM secrets WHERE substr(name, 1, length(?)) = ? ORDER BY name');
    this.removeSecret = db.prepare('DELETE FROM secrets WHERE name = ?');
  }

  acquire(name: string, holder: string, now: number, until: number): boolean {
    return this.takeLease.run(name, holder, until, holder, now).changes === 1;
  }

  release(name: string, holder: string): void {
    this.dropLease.run(name, holder);
  }

  live(prefix: string, now: number): { name: string; holder: string }[] {
    return this.liveLeases.all(prefix, prefix, now);
  }

  secret(name: string): Buffer | null {
    return this.selectSecret.get(name)?.value ?? null;
  }

  ensureSecret(name: string, value: Buffer, now: number): Buffer {
    this.insertSecret.run(name, value, now);
    return this.selectSecret.get(name)!.value;
  }

  secrets(prefix: string): { name: string; value: Buffer }[] {
    return this.secretsByPrefix.all(prefix, prefix);
  }

  deleteSecret(name: string): boolean {
    return this.removeSecret.run(name).changes === 1;
  }
}
