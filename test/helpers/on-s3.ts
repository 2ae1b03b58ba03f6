// Runs an existing test file again with the S3 byte store (test/s3/<name>.test.ts): the same tests, not a copy.
// Each daemon the file starts keeps its bytes in a fresh bucket of this process's Ceph RGW (helpers/daemon.ts).
import { describe, test } from 'node:test';
import { rgwTestOptions } from './rgw.ts';

/** Imports test/<name>.test.ts with BLOBD_TEST_STORE=s3; without Ceph one skipped test says why (CI fails). */
export async function runOnS3(name: string): Promise<void> {
  const opts = rgwTestOptions();
  if (opts.skip) {
    test(`test/${name}.test.ts on the S3 store`, opts, () => {});
    return;
  }
  process.env.BLOBD_TEST_STORE = 's3';
  // One suite around the file's tests, so that the report names the store (the tests keep their names).
  describe(`on S3 (Ceph RGW): test/${name}.test.ts`, async () => {
    await import(new URL(`../${name}.test.ts`, import.meta.url).href);
  });
}
