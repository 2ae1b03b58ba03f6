// Rows as both metadata stores (SQLite, PostgreSQL) return them — same columns, same names — and their
// records. Booleans come back as 0/1 from SQLite and as booleans from PostgreSQL.
import type { IdempotencyRecord, TokenRecord, UploadRecord, UploadState } from './metadata-store.ts';

export interface TokenRow {
  id: string;
  name: string;
  token_hash: string;
  scopes: string;
  created_by: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
}

export interface IdempotencyRow {
  principal: string;
  key: string;
  fingerprint: string;
  body_hash: string | null;
  response: Buffer | null;
  created_at: number;
}

export interface UploadRow {
  id: string;
  token_hash: string;
  principal: string;
  filename: string | null;
  content_type: string | null;
  temporary: number | boolean;
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
  lease_holder: string | null;
  hash_state: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number;
}

export function toToken(r: TokenRow): TokenRecord {
  return {
    id: r.id,
    name: r.name,
    tokenHash: r.token_hash,
    scopes: JSON.parse(r.scopes) as string[],
    createdBy: r.created_by,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at,
  };
}

export function toIdempotencyRecord(r: IdempotencyRow): IdempotencyRecord {
  return {
    principal: r.principal,
    key: r.key,
    fingerprint: r.fingerprint,
    bodyHash: r.body_hash,
    response: r.response,
    createdAt: r.created_at,
  };
}

export function toUploadRecord(r: UploadRow): UploadRecord {
  return {
    id: r.id,
    tokenHash: r.token_hash,
    principal: r.principal,
    filename: r.filename,
    contentType: r.content_type,
    temporary: r.temporary === true || r.temporary === 1,
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
    hashState: r.hash_state ?? null,
    leaseHolder: r.lease_holder ?? null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    expiresAt: r.expires_at,
  };
}
