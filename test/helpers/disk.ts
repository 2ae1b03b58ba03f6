// A filesystem of the test's own, for tests whose answers depend on free disk space: other test files
// running at the same time write and delete gigabytes on the shared temp filesystem, which would move the
// free space under such a test. As root (CI, the dev machines) a private tmpfs is mounted; elsewhere the
// shared temp filesystem is used, and the test's margins must absorb what others do.
import { execFileSync } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, removeDir } from './daemon.ts';

export interface PrivateDisk {
  /** A data directory path on that filesystem (not yet created). */
  readonly dataDir: string;
  /** True when it is a filesystem of its own. */
  readonly isolated: boolean;
  /** A --min-free that leaves about `room` bytes of this filesystem's free space to write. */
  minFreeLeaving(room: number): Promise<number>;
  dispose(): Promise<void>;
}

export async function privateDisk(sizeMiB: number): Promise<PrivateDisk> {
  const root = await makeTempDir('blobd-disk-');
  let isolated = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', root], { stdio: 'ignore' });
    isolated = true;
  } catch {
    // not root, or no mount here: the shared temp filesystem it is
  }
  return {
    dataDir: path.join(root, 'data'),
    isolated,
    async minFreeLeaving(room) {
      const fs = await statfs(root);
      return Math.max(0, fs.bavail * fs.bsize - room);
    },
    async dispose() {
      if (isolated) execFileSync('umount', ['-l', root], { stdio: 'ignore' });
      await removeDir(root);
    },
  };
}
