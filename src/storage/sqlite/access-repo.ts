// Every SQL statement about API tokens and Idempotency-Key records. Statements are prepared once.
import type { Statement } from 'better-sqlite3';
import type { IdempotencyClaim, TokenRecord } from '../metadata-store.ts';
import type { Db } from './db.ts';
import { toIdempotencyRecord, toToken, type IdempotencyRow, type TokenRow } from '../rows.ts';

export class AccessRepo {
  private readonly insertToken: Statement<Record<string, unknown>>;
  private readonly selectToken: Statement<[string], TokenRow>;
  private readonly selectTokens: Statement<[string, number], TokenRow>;
  private readonly deleteTokenStmt: Statement<[string]>;
  private readonly touchTokenStmt: Statement<[number, string, number]>;
  private readonly selectRecord: Statement<[string, string], IdempotencyRow>;
  private readonly upsertClaim: Statement<[string, string, string, number, string | null]>;
  private readonly saveResponse: Statement<[string | null, Buffer, string, string]>;
  private readonly deletePending: Statement<[string, string]>;
  private readonly deleteAllPending: Statement<[]>;
  private readonly deleteOld: Statement<[number]>;

  constructor(private readonly db: Db) {
    this.insertToken = db.prepare(`
      INSERT INTO api_tokens (id, name, token_hash, scopes, created_by, created_at, expires_at)
      VALUES (@id, @name, @token_hash, @scopes, @created_by, @created_at, @expires_at)`);
    this.selectToken = db.prepare('SELECT * FROM api_tokens WHERE id = ?');
    this.selectTokens = db.prepare('SELECT * FROM api_tokens WHERE id > ? ORDER BY id LIMIT ?');
    this.deleteTokenStmt = db.prepare('DELETE FROM api_tokens WHERE id = ?');
    this.touchTokenStmt = db.prepare(
      'UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
    );
    this.selectRecord = db.prepare('SELECT * FROM idempotency_records WHERE principal = ? AND key = ?');
    this.upsertClaim = db.prepare(`
      INSERT INTO idempotency_records (principal, key, fingerprint, created_at, claimed_by) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (principal, key) DO UPDATE SET
        fingerprint = excluded.fingerprint, body_hash = NULL, response = NULL, created_at = excluded.created_at,
        claimed_by = excluded.claimed_by`);
    this.saveResponse = db.prepare(
      'UPDATE idempotency_records SET body_hash = ?, response = ? WHERE principal = ? AND key = ? AND response IS NULL',
    );
    this.deletePending = db.prepare('DELETE FROM idempotency_records WHERE principal = ? AND key = ? AND response IS NULL');
    this.deleteAllPending = db.prepare('DELETE FROM idempotency_records WHERE response IS NULL');
    this.deleteOld = db.prepare('DELETE FROM idempotency_records WHERE created_at < ? AND response IS NOT NULL');
  }

  createToken(t: TokenRecord): void {
    this.insertToken.run({
      id: t.id,
      name: t.name,
      token_hash: t.tokenHash,
      scopes: JSON.stringify(t.scopes),
      created_by: t.createdBy,
      created_at: t.createdAt,
      expires_at: t.expiresAt,
    });
  }

  getToken(id: string): TokenRecord | null {
    const row = this.selectToken.get(id);
    return row ? toToken(row) : null;
  }

  listTokens(limit: number, after: string | null): TokenRecord[] {
    return this.selectTokens.all(after ?? '', limit).map(toToken);
  }

  deleteToken(id: string): boolean {
    return this.deleteTokenStmt.run(id).changes === 1;
  }

  /** Records a use at `at` unless one was recorded after `notBefore` (bounds the writes per token). */
  touchToken(id: string, at: number, notBefore: number): void {
    this.touchTokenStmt.run(at, id, notBefore);
  }

  /** Run inside a transaction: the read and the claim must not interleave with another claim. */
  claim(principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder: string | null): IdempotencyClaim {
    const row = this.selectRecord.get(principal, key);
    if (row && row.created_at >= staleBefore) return { claimed: false, record: toIdempotencyRecord(row) };
    this.upsertClaim.run(principal, key, fingerprint, now, holder);
    return { claimed: true };
  }

  save(principal: string, key: string, bodyHash: string | null, response: Buffer): void {
    this.saveResponse.run(bodyHash, response, principal, key);
  }

  release(principal: string, key: string): void {
    this.deletePending.run(principal, key);
  }

  /** Pending claims, except those of the holders in `keep` (claims without a holder always go). */
  dropPending(keep?: readonly string[]): number {
    if (keep === undefined) return this.deleteAllPending.run().changes;
    const placeholders = keep.map(() => '?').join(', ');
    return this.db
      .prepare(`DELETE FROM idempotency_records WHERE response IS NULL AND (claimed_by IS NULL OR claimed_by NOT IN (${placeholders || 'NULL'}))`)
      .run(...keep).changes;
  }

  deleteBefore(before: number): number {
    return this.deleteOld.run(before).changes;
  }
}
