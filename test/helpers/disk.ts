// A filesystem of the test's own, for tests whose answers depend on free disk space: other test files
// running at the same time write and delete gigabytes on the shared temp filesystem, which would move the
// free space under such a test. As root (CI, the dev machines) a private tmpfs is mounted; elsewhere the
// shared temp filesystem is used, and the test's margins must absorb what others do. Also how the disk-full
// tests fill one: with uploads until they are refused, and with a file of another process.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { makeTempDir, removeDir, type Daemon } from './daemon.ts';
import { errorCode } from './http.ts';

const MiB = 1024 * 1024;

/** A 16 MiB tmpfs of the test's own; without root it skips, except under CI=true where that is a failure. */
export async function tmpfs(t: TestContext): Promise<PrivateDisk | null> {
  const disk = await privateDisk(16);
  if (disk.isolated) return disk;
  await disk.dispose();
  if (process.env.CI === 'true') assert.fail('could not mount a private tmpfs (needs root): the disk-full tests cannot run');
  t.skip('needs root to mount a private tmpfs');
  return null;
}

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

/** One-shot uploads of falling sizes, each size until it is refused with 507: the disk is then full. */
export async function fillWithUploads(d: Daemon): Promise<string[]> {
  const digests: string[] = [];
  for (const size of [MiB, 256 * 1024, 64 * 1024, 16 * 1024, 4096, 1]) {
    let refused = false;
    // Bounded: 16 MiB hold at most 16 blobs of the first size, and each later size fits a few times at most.
    for (let i = 0; i < 32 && !refused; i++) {
      const res = await d.api('/api/blobs', { method: 'POST', body: randomBytes(size) });
      if (res.status === 507) {
        assert.equal(await errorCode(res), 'insufficient_storage');
        refused = true;
      } else {
        assert.equal(res.status, 201, `upload of ${size} bytes: ${res.status} ${await res.clone().text()}`);
        digests.push(((await res.json()) as { digest: string }).digest);
      }
    }
    assert.ok(refused, `uploads of ${size} bytes were never refused`);
  }
  return digests;
}

/** Another process takes free bytes until only `leave` are left (0: all of them). Returns how to give them back. */
export async function takeSpace(disk: PrivateDisk, leave = 0): Promise<() => Promise<void>> {
  const file = path.join(path.dirname(disk.dataDir), `filler-${leave}`);
  const fh = await open(file, 'w');
  const free = async () => {
    const st = await statfs(file);
    return st.bavail * st.bsize;
  };
  try {
    // Bounded: each round writes a chunk (the filesystem holds 16 MiB) or halves the chunk.
    for (let chunk = MiB; chunk >= 4096; ) {
      const room = (await free()) - leave;
      if (room < chunk) {
        chunk /= 2;
        continue;
      }
      const wrote = await fh.write(Buffer.alloc(chunk)).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOSPC') throw err;
          return false;
        },
      );
      if (!wrote) chunk /= 2;
    }
    await fh.sync().catch(() => {});
  } finally {
    await fh.close();
  }
  return () => rm(file, { force: true });
}
