// test/inline.test.ts again, with every daemon's rows in a database of a real PostgreSQL (BLOBD_TEST_METADATA=postgres).
import { runOnPostgres } from '../helpers/on-postgres.ts';

await runOnPostgres('inline');
