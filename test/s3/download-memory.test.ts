// test/download-memory.test.ts again, with every daemon's bytes in a bucket of a real Ceph RGW (BLOBD_TEST_STORE=s3).
import { runOnS3 } from '../helpers/on-s3.ts';

await runOnS3('download-memory');
