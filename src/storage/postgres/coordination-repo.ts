// Named leases and shared secrets on PostgreSQL: what N blobd processes sharing the database coordinate
// through. Each operation is one statement; the row lock of an upsert decides between nodes.
import type { Queryable } from './db.ts';

/** Granted when nobody holds it, `holder` holds it (its end moves), or the holder's lease ended by `now`. */
export async function acquireLease(q: Queryable, name: string, holder: string, now: number, until: number): Promise<boolean> {
  const r = await q`
    INSERT INTO leases (name, holder, until) VALUES (${name}, ${holder}, ${until})
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
    WHERE leases.holder = excluded.holder OR leases.until <= ${now}`;
  return r.count === 1;
}

export async function releaseLease(q: Queryable, name: string, holder: string): Promise<void> {
  await q`DELETE FROM leases WHERE name = ${name} AND holder = ${holder}`;
}

export async function liveLeaseHolders(q: Queryable, prefix: string, now: number): Promise<{ name: string; holder: string }[]> {
  const rows = await q<{ name: string; holder: string }[]>`
    SELECT name, holder FROM leases WHERE starts_with(name, ${prefix}) AND until > ${now} ORDER BY name`;
  return rows.map((r) => ({ name: r.name, holder: r.holder }));
}

export async function getSecret(q: Queryable, name: string): Promise<Buffer | null> {
  const rows = await q<{ value: Buffer }[]>`SELECT value FROM secrets WHERE name = ${name}`;
  return rows[0]?.value ?? null;
}

/**
 * The first writer wins. The stored secret comes back in the same statement, unless another node inserted it
 * while this one waited (this statement's snapshot predates it): then it is read again.
 */
export async function ensureSecret(q: Queryable, name: string, value: Buffer, now: number): Promise<Buffer> {
  const rows = await q<{ value: Buffer }[]>`
    WITH ins AS (
      INSERT INTO secrets (name, value, created_at) VALUES (${name}, ${value}, ${now})
      ON CONFLICT (name) DO NOTHING RETURNING value
    )
    SELECT value FROM ins UNION ALL SELECT value FROM secrets WHERE name = ${name}`;
  if (rows[0]) return rows[0].value;
  const stored = await getSecret(q, name);
  if (!stored) throw new Error(`the secret ${name} vanished while being stored`);
  return stored;
}

export async function deleteSecret(q: Queryable, name: string): Promise<boolean> {
  return (await q`DELETE FROM secrets WHERE name = ${name}`).count === 1;
}

export async function listSecrets(q: Queryable, prefix: string): Promise<{ name: string; value: Buffer }[]> {
  const rows = await q<{ name: string; value: Buffer }[]>`
    SELECT name, value FROM secrets WHERE starts_with(name, ${prefix}) ORDER BY name`;
  return rows.map((r) => ({ name: r.name, value: r.value }));
}
