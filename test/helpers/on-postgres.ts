// Runs an existing test file again with the PostgreSQL metadata store (test/pg/<name>.test.ts): the same tests,
// not a copy. Each daemon the file starts keeps its rows in a fresh database of this process's PostgreSQL
// (helpers/daemon.ts) and its bytes in its data directory.
import { describe, test } from 'node:test';
import { pgTestOptions } from './postgres.ts';

/** Imports test/<name>.test.ts with BLOBD_TEST_METADATA=postgres; without PostgreSQL one skipped test says why (CI fails). */
export async function runOnPostgres(name: string): Promise<void> {
  const opts = pgTestOptions();
  if (opts.skip) {
    test(`test/${name}.test.ts on PostgreSQL`, opts, () => {});
    return;
  }
  process.env.BLOBD_TEST_METADATA = 'postgres';
  // One suite around the file's tests, so that the report names the metadata store (the tests keep their names).
  describe(`on PostgreSQL: test/${name}.test.ts`, async () => {
    await import(new URL(`../${name}.test.ts`, import.meta.url).href);
  });
}
