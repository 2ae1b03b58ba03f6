// The PostgreSQL connection pool (porsager's `postgres` client) and the one way blobd runs a transaction on
// it. Times are stored as BIGINT milliseconds and come back as numbers; every statement sent is counted
// (round trips per request are a figure the bench reports).
import postgres from 'postgres';

export type Sql = postgres.Sql<Record<string, never>>;
export type Tx = postgres.TransactionSql<Record<string, never>>;
/** Either the pool or a transaction: repo functions that need no transaction of their own take this. */
export type Queryable = Sql | Tx;

export interface PgOptions {
  /** Connections in the pool (default 10). */
  readonly max?: number;
  /** Shown in pg_stat_activity. */
  readonly applicationName?: string;
  /**
   * How long a statement waits for a lock before it fails (default 5000 ms, as SQLite's busy_timeout): a
   * row lock held by a stuck session (an admin's open transaction) fails the request instead of hanging it.
   */
  readonly lockTimeoutMs?: number;
}

const DEADLOCK_ATTEMPTS = 3;

/** What postgres.js attaches to an error about the statement that failed. */
const STATEMENT_FIELDS = new Set(['query', 'parameters', 'args', 'types']);

/**
 * The error without the failed statement's text and bound parameters. postgres.js makes those enumerable
 * when `debug` is set (the round-trip counter), and non-configurable, so a logger would print them (token
 * hashes, secrets): a copy keeps name, message, code and the server's other fields, and leaves them out.
 */
export function withoutStatement(err: unknown): unknown {
  if (!(err instanceof Error) || ![...STATEMENT_FIELDS].some((f) => Object.prototype.propertyIsEnumerable.call(err, f))) return err;
  const clean = new Error(err.message) as Error & Record<string, unknown>;
  for (const [key, value] of Object.entries(err)) if (!STATEMENT_FIELDS.has(key)) clean[key] = value;
  clean.name = err.name;
  clean.stack = err.stack;
  return clean;
}

export class PgDb {
  /** Statements sent since the pool opened (each is one round trip). */
  queries = 0;
  readonly sql: Sql;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing = false;

  constructor(url: string, options: PgOptions = {}) {
    this.sql = postgres(url, {
      max: options.max ?? 10,
      onnotice: () => {},
      // A database that cannot be reached fails a request within seconds (postgres.js waits 30 s by default).
      connect_timeout: 10,
      connection: { application_name: options.applicationName ?? 'blobd', lock_timeout: options.lockTimeoutMs ?? 5000 },
      // BIGINT (int8) columns hold milliseconds and byte counts, all below 2^53: numbers, not strings.
      types: {
        bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
      },
      debug: () => {
        this.queries++;
      },
    }) as unknown as Sql;
  }

  /**
   * Run `fn` in one READ COMMITTED transaction (rolled back if it throws). Concurrent writers are ordered
   * by explicit row locks (SELECT … FOR UPDATE on the bucket or blob row), not by SERIALIZABLE retries.
   */
  async tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    // Two writers that lock the same rows in opposite orders (a purge: blob row, then bucket rows; a
    // revision: bucket row, then blob row) may deadlock; PostgreSQL aborts one, which runs again. `fn` must
    // have no effect outside the transaction.
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.sql.begin(fn as never)) as T;
      } catch (err) {
        if (attempt >= DEADLOCK_ATTEMPTS || (err as { code?: string }).code !== '40P01') throw err;
      }
    }
  }

  /**
   * Counts `op` as in flight until it settles, so that close() lets it finish instead of cutting its
   * connection; once closing, new operations are refused.
   */
  track<T>(op: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new Error('the metadata store is closed'));
    const p = op().catch((err: unknown) => {
      throw withoutStatement(err);
    });
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Waits for the operations in flight (each bounded by the server's answers), then closes the pool. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.inFlight]);
    await this.sql.end({ timeout: 5 });
  }
}
