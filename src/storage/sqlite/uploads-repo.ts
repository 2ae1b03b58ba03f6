// Every SQL statement about upload sessions. Statements are prepared once, at construction.
import type { Statement } from 'better-sqlite3';
import type { NewUpload, UploadRecord, UploadState } from '../metadata-store.ts';
import type { Db } from './db.ts';

interface UploadRow {
  id: string;
  token_hash: string;
  principal: string;
  filename: string | null;
  content_type: string | null;
  temporary: number;
  declared_size: number | null;
  size_limit: number | null;
  expected_digest: string | null;
  bucket: string | null;
  key: string | null;
  client_metadata: string | null;
  upload_offset: number;
  state: UploadState;
  digest: string | null;
  result: string | null;
  cursor: string | null;
  location: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number;
}

function toRecord(r: UploadRow): UploadRecord {
  return {
    id: r.id,
    tokenHash: r.token_hash,
    principal: r.principal,
    filename: r.filename,
    contentType: r.content_type,
    temporary: r.temporary === 1,
    declaredSize: r.declared_size,
    sizeLimit: r.size_limit,
    expectedDigest: r.expected_digest,
    bucket: r.bucket,
    key: r.key,
    clientMetadata: r.client_metadata,
    offset: r.upload_offset,
    state: r.state,
    digest: r.digest,
    result: r.result,
    cursor: r.cursor,
    location: r.location,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    expiresAt: r.expires_at,
  };
}

export class UploadsRepo {
  private readonly insertStmt: Statement<Record<string, unknown>>;
  private readonly selectStmt: Statement<[string], UploadRow>;
  private readonly declareStmt: Statement<[number, number, string]>;
  private readonly advanceStmt: Statement<[number, string | null, number, number, string]>;
  private readonly completingStmt: Statement<[string, string, number, string]>;
  private readonly reopenStmt: Statement<[string | null, string | null, number, string]>;
  private readonly completedStmt: Statement<[string, string, number, number, string]>;
  private readonly deleteStmt: Statement<[string]>;
  private readonly unfinishedStmt: Statement<[], UploadRow>;
  private readonly byPrincipalStmt: Statement<[string, string, number, number], UploadRow>;
  private readonly expiredStmt: Statement<[number], { id: string; state: UploadState }>;
  private readonly reservedStmt: Statement<[number], { reserved: number | null }>;

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
      `UPDATE upload_sessions SET upload_offset = ?, cursor = ?, updated_at = ?, expires_at = ? WHERE id = ? AND state = 'open'`,
    );
    this.completingStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'completing', digest = ?, location = ?, updated_at = ? WHERE id = ? AND state = 'open'`,
    );
    this.reopenStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'open', digest = NULL, cursor = ?, location = ?, updated_at = ?
       WHERE id = ? AND state = 'completing'`,
    );
    // The location is let go: the blob row names it now, or it was queued for deletion as a duplicate's.
    this.completedStmt = db.prepare(
      `UPDATE upload_sessions SET state = 'completed', digest = ?, location = NULL, result = ?, updated_at = ?, expires_at = ?
       WHERE id = ? AND state IN ('open', 'completing')`,
    );
    this.deleteStmt = db.prepare('DELETE FROM upload_sessions WHERE id = ?');
    this.unfinishedStmt = db.prepare(`SELECT * FROM upload_sessions WHERE state IN ('open', 'completing')`);
    this.byPrincipalStmt = db.prepare(`SELECT * FROM upload_sessions WHERE principal = ? AND id < ? AND state = 'open'
      AND expires_at > ? ORDER BY id DESC LIMIT ?`);
    this.expiredStmt = db.prepare(
      `SELECT id, state FROM upload_sessions WHERE expires_at <= ? AND state IN ('open', 'completed')`,
    );
    this.reservedStmt = db.prepare(`
      SELECT sum(declared_size - upload_offset) AS reserved FROM upload_sessions
      WHERE state = 'open' AND declared_size IS NOT NULL AND expires_at > ?`);
  }

  insert(u: NewUpload): void {
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
    return row ? toRecord(row) : null;
  }

  declareSize(id: string, size: number, now: number): boolean {
    return this.declareStmt.run(size, now, id).changes === 1;
  }

  /** The offset and its cursor in one write: they never disagree. */
  advance(id: string, offset: number, cursor: string | null, now: number, expiresAt: number): boolean {
    return this.advanceStmt.run(offset, cursor, now, expiresAt, id).changes === 1;
  }

  markCompleting(id: string, digest: string, location: string, now: number): boolean {
    return this.completingStmt.run(digest, location, now, id).changes === 1;
  }

  reopen(id: string, cursor: string | null, location: string | null, now: number): void {
    this.reopenStmt.run(cursor, location, now, id);
  }

  markCompleted(id: string, digest: string, result: string, now: number, expiresAt: number): boolean {
    return this.completedStmt.run(digest, result, now, expiresAt, id).changes === 1;
  }

  delete(id: string): void {
    this.deleteStmt.run(id);
  }

  byPrincipal(principal: string, limit: number, before: string | null, now: number): UploadRecord[] {
    return this.byPrincipalStmt.all(principal, before ?? '\u{10FFFF}', now, limit).map(toRecord);
  }

  unfinished(): UploadRecord[] {
    return this.unfinishedStmt.all().map(toRecord);
  }

  expired(now: number): { id: string; state: UploadState }[] {
    return this.expiredStmt.all(now);
  }

  reserved(now: number): number {
    return this.reservedStmt.get(now)?.reserved ?? 0;
  }
}
