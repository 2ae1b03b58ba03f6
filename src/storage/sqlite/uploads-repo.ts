// Every SQL statement about upload sessions. Statements are prepared once, at construction.
import type { Statement } from 'better-sqlite3';
import { UploadLeaseLost, type LeaseOutcome, type NewUpload, type UploadRecord, type UploadState } from '../metadata-store.ts';
import type { Db } from './db.ts';
import { toUploadRecord, type UploadRow } from '../rows.ts';

export class UploadsRepo {
  private readonly insertStmt: Statement<Record<string, unknown>>;
  private readonly selectStmt: Statement<[string], UploadRow>;
  private readonly declareStmt: Statement<[number, number, string]>;
  private readonly advanceStmt: Statement<[number, string | null, number, number, number, string | null, string, string | null, string | null]>;
  private readonly completingStmt: Statement<[string, string, number, string, string | null, string | null]>;
  private readonly reopenStmt: Statement<[string | null, string | null, number, string, string | null, string | null]>;
  private readonly completedStmt: Statement<[string, string, number, number, string, string | null, string | null]>;
  private readonly deleteStmt: Statement<[string]>;
  private readonly unfinishedStmt: Statement<[], UploadRow>;
  private readonly byPrincipalStmt: Statement<[string, string, number, number], UploadRow>;
  private readonly expiredStmt: Statement<[number, number], { id: string; state: UploadState }>;
  private readonly reservedStmt: Statement<[number], { reserved: number | null; until: number | null }>;
  /** Bumped by every write that can change what open sessions reserve (see `reserved`). */
  private version = 0;
  private lastReserved: { version: number; bytes: number; from: number; until: number } | null = null;
  private readonly leaseStmt: Statement<[string, number, string, string, number], UploadRow>;
  private readonly renewStmt: Statement<[number, string, string]>;
  private readonly releaseStmt: Statement<[string, string]>;
  private readonly holderStmt: Statement<[string], { lease_holder: string | null }>;

  constructor(db: Db) {
    this.insertStmt = db.prepare(`
      INSERT INTO upload_sessions (id, token_hash, principal, filename, content_type, temporary, declared_size,
        size_limit, expected_digest, bucket, key, client_metadata, cursor, location, created_at, updated_at, expires_at)
      VALUES (@id, @token_hash, @principal, @filename, @content_type, @temporary, @declared_size,
        @size_limit, @expected_digest, @bucket, @key, @client_metadata, @cursor, @location, @created_at, @created_at, @expires_at)`);
    this.selectStmt = db.prepare('SELECT * FROM upload_sessions WHERE id = ?');
    this.declareStmt = db.prepare(
      `UPDATE upload_sessions SET declared_size = ?, updated_at = ? WHERE id = ? AND state = 'open' AND declared_size IS NULL`,
    );
    this.advanceStmt = db.prepare(
      `UPDATE upload_sessions SET upload_offset = ?, cursor = ?, updated_at = ?, expires_at = ?,
         hash_state = CASE WHEN ? THEN ? ELSE hash_state END
       WHERE id = ? AND state = 'open' AND (? IS NULL OR lease_holder = ?)`,
    );
    this.completingStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'completing', digest = ?, location = ?, updated_at = ?
       WHERE id = ? AND state = 'open' AND (? IS NULL OR lease_holder = ?)`,
    );
    this.reopenStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'open', digest = NULL, cursor = ?, location = ?, updated_at = ?
       WHERE id = ? AND state = 'completing' AND (? IS NULL OR lease_holder = ?)`,
    );
    // The location is let go: the blob row names it now, or it was queued for deletion as a duplicate's.
    this.completedStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'completed', digest = ?, location = NULL, result = ?, updated_at = ?, expires_at = ?
       WHERE id = ? AND state IN ('open', 'completing') AND (? IS NULL OR (state = 'completing' AND lease_holder = ?))`,
    );
    this.deleteStmt = db.prepare('DELETE FROM upload_sessions WHERE id = ?');
    this.unfinishedStmt = db.prepare(`SELECT * FROM upload_sessions WHERE state IN ('open', 'completing')`);
    this.byPrincipalStmt = db.prepare(`SELECT * FROM upload_sessions WHERE principal = ? AND id < ? AND state = 'open'
      AND expires_at > ? ORDER BY id DESC LIMIT ?`);
    this.expiredStmt = db.prepare(
      `SELECT id, state FROM upload_sessions WHERE expires_at <= ? AND state IN ('open', 'completed')
       AND (lease_until IS NULL OR lease_until <= ?)`,
    );
    this.leaseStmt = db.prepare(
      `UPDATE upload_sessions SET lease_holder = ?, lease_until = ?
       WHERE id = ? AND (lease_holder IS NULL OR lease_holder = ? OR lease_until <= ?) RETURNING *`,
    );
    this.renewStmt = db.prepare('UPDATE upload_sessions SET lease_until = ? WHERE id = ? AND lease_holder = ?');
    this.releaseStmt = db.prepare('UPDATE upload_sessions SET lease_holder = NULL, lease_until = NULL WHERE id = ? AND lease_holder = ?');
    this.holderStmt = db.prepare('SELECT lease_holder FROM upload_sessions WHERE id = ?');
    this.reservedStmt = db.prepare(`
      SELECT sum(declared_size - upload_offset) AS reserved, min(expires_at) AS until FROM upload_sessions
      WHERE state = 'open' AND declared_size IS NOT NULL AND expires_at > ?`);
  }

  insert(u: NewUpload): void {
    this.version++;
    this.insertStmt.run({
      id: u.id,
      token_hash: u.tokenHash,
      principal: u.principal,
      filename: u.filename,
      content_type: u.contentType,
      temporary: u.temporary ? 1 : 0,
      declared_size: u.declaredSize,
      size_limit: u.sizeLimit,
      expected_digest: u.expectedDigest,
      bucket: u.bucket,
      key: u.key,
      client_metadata: u.clientMetadata,
      cursor: u.cursor,
      location: u.location,
      created_at: u.createdAt,
      expires_at: u.expiresAt,
    });
  }

  get(id: string): UploadRecord | null {
    const row = this.selectStmt.get(id);
    return row ? toUploadRecord(row) : null;
  }

  declareSize(id: string, size: number, now: number): boolean {
    this.version++;
    return this.declareStmt.run(size, now, id).changes === 1;
  }

  /** The offset and its cursor in one write: they never disagree. */
  advance(id: string, offset: number, cursor: string | null, now: number, expiresAt: number, holder?: string, hashState?: string | null): boolean {
    this.version++;
    const h = holder ?? null;
    const setState = hashState === undefined ? 0 : 1;
    if (this.advanceStmt.run(offset, cursor, now, expiresAt, setState, hashState ?? null, id, h, h).changes === 1) return true;
    this.checkFence(id, holder);
    return false;
  }

  markCompleting(id: string, digest: string, location: string, now: number, holder?: string): boolean {
    this.version++;
    const h = holder ?? null;
    if (this.completingStmt.run(digest, location, now, id, h, h).changes === 1) return true;
    this.checkFence(id, holder);
    return false;
  }

  reopen(id: string, cursor: string | null, location: string | null, now: number, holder?: string): void {
    this.version++;
    const h = holder ?? null;
    if (this.reopenStmt.run(cursor, location, now, id, h, h).changes === 0) this.checkFence(id, holder);
  }

  markCompleted(id: string, digest: string, result: string, now: number, expiresAt: number, holder?: string): boolean {
    this.version++;
    const h = holder ?? null;
    if (this.completedStmt.run(digest, result, now, expiresAt, id, h, h).changes === 1) return true;
    this.checkFence(id, holder);
    return false;
  }

  delete(id: string): void {
    this.version++;
    this.deleteStmt.run(id);
  }

  byPrincipal(principal: string, limit: number, before: string | null, now: number): UploadRecord[] {
    return this.byPrincipalStmt.all(principal, before ?? '\u{10FFFF}', now, limit).map(toUploadRecord);
  }

  unfinished(): UploadRecord[] {
    return this.unfinishedStmt.all().map(toUploadRecord);
  }

  expired(now: number): { id: string; state: UploadState }[] {
    return this.expiredStmt.all(now, now);
  }

  /** Run inside a transaction: the look at the old holder and the take must not interleave. */
  acquireLease(id: string, holder: string, now: number, until: number): { outcome: LeaseOutcome; row: UploadRecord } | null {
    const before = this.selectStmt.get(id);
    if (!before) return null;
    const row = this.leaseStmt.get(holder, until, id, holder, now);
    if (!row) return { outcome: 'busy', row: toUploadRecord(before) };
    const takenOver = before.lease_holder !== null && before.lease_holder !== holder;
    return { outcome: takenOver ? 'taken_over' : 'acquired', row: toUploadRecord(row) };
  }

  renewLease(id: string, holder: string, until: number): boolean {
    return this.renewStmt.run(until, id, holder).changes === 1;
  }

  releaseLease(id: string, holder: string): void {
    this.releaseStmt.run(id, holder);
  }

  /** For a fenced write that changed nothing: throws UploadLeaseLost when the row is there and another holds it. */
  checkFence(id: string, holder: string | undefined): void {
    if (holder === undefined) return;
    const row = this.holderStmt.get(id);
    if (row && row.lease_holder !== holder) throw new UploadLeaseLost(id);
  }

  /**
   * Bytes open sessions were promised and have not received. Asked before every upload, so the answer is
   * kept until a write to the sessions or the first of their expiries changes it: this database has one
   * writer (one daemon per data directory), and every statement that can change the sum is one of this
   * repository's writes above, which bump `version` (a rolled-back one too, harmlessly).
   */
  reserved(now: number): number {
    const last = this.lastReserved;
    if (last && last.version === this.version && now >= last.from && now < last.until) return last.bytes;
    const row = this.reservedStmt.get(now);
    const bytes = row?.reserved ?? 0;
    this.lastReserved = { version: this.version, bytes, from: now, until: row?.until ?? Infinity };
    return bytes;
  }
}
