// Every SQL statement about API tokens and Idempotency-Key records on PostgreSQL. A claim is one upsert
// whose row lock orders concurrent claims of one key (on any node): exactly one of them wins.
import type { IdempotencyClaim, NewToken, TokenRecord } from '../metadata-store.ts';
import type { Queryable } from './db.ts';
import { toIdempotencyRecord, toToken, type IdempotencyRow, type TokenRow } from '../rows.ts';

export async function createToken(q: Queryable, t: NewToken): Promise<void> {
  await q`INSERT INTO api_tokens (id, name, token_hash, scopes, created_by, created_at, expires_at)
    VALUES (${t.id}, ${t.name}, ${t.tokenHash}, ${JSON.stringify(t.scopes)}, ${t.createdBy}, ${t.createdAt}, ${t.expiresAt})`;
}

export async function getToken(q: Queryable, id: string): Promise<TokenRecord | null> {
  const rows = await q<TokenRow[]>`SELECT * FROM api_tokens WHERE id = ${id}`;
  return rows[0] ? toToken(rows[0]) : null;
}

export async function listTokens(q: Queryable, limit: number, after: string | null): Promise<TokenRecord[]> {
  const rows = await q<TokenRow[]>`SELECT * FROM api_tokens WHERE id > ${after ?? ''} ORDER BY id LIMIT ${limit}`;
  return rows.map(toToken);
}

export async function deleteToken(q: Queryable, id: string): Promise<boolean> {
  return (await q`DELETE FROM api_tokens WHERE id = ${id}`).count === 1;
}

/** Records a use at `at` unless one was recorded after `notBefore` (bounds the writes per token). */
export async function touchToken(q: Queryable, id: string, at: number, notBefore: number): Promise<void> {
  await q`UPDATE api_tokens SET last_used_at = ${at} WHERE id = ${id} AND (last_used_at IS NULL OR last_used_at < ${notBefore})`;
}

/**
 * Claims (principal, key) unless a record created at or after `staleBefore` exists (returned instead). The
 * upsert replaces only a stale record; when it did not, the record is read in the same statement — unless it
 * was inserted by another claim that committed while this statement waited for it (this statement's snapshot
 * predates it): then it is read once more. Bounded: a record that vanishes again (released) is claimed anew.
 */
export async function claimIdempotencyKey(
  q: Queryable, principal: string, key: string, fingerprint: string, now: number, staleBefore: number, holder: string | null,
): Promise<IdempotencyClaim> {
  for (let attempt = 1; ; attempt++) {
    const rows = await q<(IdempotencyRow & { claimed: boolean })[]>`
      WITH c AS (
        INSERT INTO idempotency_records (principal, key, fingerprint, created_at, claimed_by)
        VALUES (${principal}, ${key}, ${fingerprint}, ${now}, ${holder})
        ON CONFLICT (principal, key) DO UPDATE SET
          fingerprint = excluded.fingerprint, body_hash = NULL, response = NULL, created_at = excluded.created_at,
          claimed_by = excluded.claimed_by
        WHERE idempotency_records.created_at < ${staleBefore}
        RETURNING 1
      )
      SELECT true AS claimed, NULL AS principal, NULL AS key, NULL AS fingerprint, NULL AS body_hash, NULL::bytea AS response,
        NULL::bigint AS created_at FROM c
      UNION ALL
      SELECT false, r.principal, r.key, r.fingerprint, r.body_hash, r.response, r.created_at
      FROM idempotency_records r WHERE r.principal = ${principal} AND r.key = ${key} AND NOT EXISTS (SELECT 1 FROM c)`;
    const r = rows[0];
    if (r?.claimed) return { claimed: true };
    if (r) return { claimed: false, record: toIdempotencyRecord(r) };
    const [fresh] = await q<IdempotencyRow[]>`SELECT * FROM idempotency_records WHERE principal = ${principal} AND key = ${key}`;
    if (fresh && fresh.created_at >= staleBefore) return { claimed: false, record: toIdempotencyRecord(fresh) };
    if (attempt >= 3) throw new Error('the idempotency key kept changing while being claimed');
  }
}

export async function saveIdempotentResponse(q: Queryable, principal: string, key: string, bodyHash: string | null, response: Buffer): Promise<void> {
  await q`UPDATE idempotency_records SET body_hash = ${bodyHash}, response = ${response}
    WHERE principal = ${principal} AND key = ${key} AND response IS NULL`;
}

export async function releaseIdempotencyKey(q: Queryable, principal: string, key: string): Promise<void> {
  await q`DELETE FROM idempotency_records WHERE principal = ${principal} AND key = ${key} AND response IS NULL`;
}

/** Pending claims, except those of the holders in `keep` (claims without a holder always go). */
export async function dropPendingIdempotencyKeys(q: Queryable, keep?: readonly string[]): Promise<number> {
  if (keep === undefined) return (await q`DELETE FROM idempotency_records WHERE response IS NULL`).count;
  const r = await q`DELETE FROM idempotency_records WHERE response IS NULL
    AND (claimed_by IS NULL OR NOT (claimed_by = ANY(${keep as string[]}::text[])))`;
  return r.count;
}

export async function deleteIdempotencyRecordsBefore(q: Queryable, before: number): Promise<number> {
  return (await q`DELETE FROM idempotency_records WHERE created_at < ${before} AND response IS NOT NULL`).count;
}
