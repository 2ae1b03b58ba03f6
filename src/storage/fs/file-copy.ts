// Copying an open blob file (or one range of it) out chunk by chunk through reused buffers, instead of a read
// stream that allocates a fresh 1 MiB buffer per chunk; and holding little while a client does not read.
import type { BlobCopy } from '../byte-store.ts';
import type { ChunkPool } from './chunk-pool.ts';
import { closeFd, IO_CHUNK, readFd } from './fd.ts';

/** The chunk of a download that copies through its own buffer rather than a pooled one. */
export const SMALL_CHUNK = 64 * 1024;

/**
 * A download copies through pooled 1 MiB buffers only once its client has taken this much: a client that
 * connects and never reads takes its first window (tens to hundreds of KiB over a network) and then holds
 * 64 KiB of its own, not a pooled buffer. (On loopback the socket buffers take a few MiB before it stalls;
 * the pool's cap bounds those.) Not more: 1 MiB downloads sent as 16 × 64 KiB cost ~15% more CPU.
 */
const PROVEN_READER = 256 * 1024;

/**
 * A pooled chunk that takes longer than this to go out (a client slower than ~5 MiB/s) sends the download
 * back to its own 64 KiB buffer for good: a slow client gains nothing from 1 MiB writes, and must not keep
 * the pool from the fast ones.
 */
const SLOW_CHUNK_MS = 200;

/**
 * Why reused buffers: a 1 GiB download through fs.createReadStream allocates 1024 external buffers; when
 * they outlive a scavenge, V8 runs a full mark-compact every ~64 MiB of them. Measured with curl on a cached
 * 1 GiB blob, downloads flipped between ~0.65 s and ~1.3 s from one daemon start to the next, the slow ones
 * spending 12% of the process in GC (118 mark-compacts against 12).
 *
 * Why one chunk at a time, and pooled buffers only while the client keeps up: the write of a client that
 * has stopped reading never completes and holds its chunk until the connection goes. Reading ahead into a
 * second buffer meanwhile held 2 MiB per paused download (200 of them: +380 MiB RSS). Now a paused download
 * holds one chunk: 64 KiB of its own, or one of the pool's 1 MiB buffers, of which there are few. The
 * socket's own buffer keeps a fast client busy while the next chunk is read. 1 MiB rather than 64 KiB
 * chunks halve the daemon's CPU on a 1 GiB download (measured with curl), hence the pool at all.
 */
export class FileCopy implements BlobCopy {
  private closed = false;

  /** Takes over `fd`; copies the inclusive range [start, end] (nothing when end < start). */
  constructor(
    private readonly fd: number,
    private readonly start: number,
    private readonly end: number,
    private readonly pool: ChunkPool,
  ) {}

  async pipeTo(write: (chunk: Buffer) => Promise<void>, opts?: { keep?: boolean }): Promise<number> {
    let own: Buffer | undefined;
    let position = this.start;
    let copied = 0;
    let slow = false;
    try {
      while (position <= this.end) {
        // A writer that keeps its chunks gets new ones (else it would copy each): 1 MiB reads, no pool.
        const kept = opts?.keep ? Buffer.allocUnsafeSlow(Math.min(IO_CHUNK, this.end - position + 1)) : undefined;
        const pooled = !kept && copied >= PROVEN_READER && !slow ? this.pool.take() : undefined;
        const buffer = kept ?? pooled ?? (own ??= Buffer.allocUnsafeSlow(Math.min(SMALL_CHUNK, this.end - this.start + 1)));
        try {
          const { bytesRead } = await readFd(this.fd, buffer, 0, Math.min(buffer.length, this.end - position + 1), position);
          if (bytesRead === 0) break; // the file is shorter than it should be: the caller sees `copied`
          position += bytesRead;
          copied += bytesRead;
          // Settled only once the socket is done with the chunk (written, or the connection gone).
          const started = pooled ? performance.now() : 0;
          await write(buffer.subarray(0, bytesRead));
          if (pooled && performance.now() - started > SLOW_CHUNK_MS) slow = true;
        } finally {
          if (pooled) this.pool.give(pooled);
        }
      }
    } finally {
      await this.close();
    }
    return copied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeFd(this.fd);
  }
}
