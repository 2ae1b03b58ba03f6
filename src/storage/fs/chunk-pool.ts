// The download buffers every FileCopy shares: IO_CHUNK-sized, reused, and never more of them than a cap, so
// that many downloads at once cost a bounded amount of memory however many of them stall.
import { IO_CHUNK } from './fd.ts';

/** 16 MiB: sixteen downloads at full speed at once; more run on their own small buffers (see FileCopy). */
export const DOWNLOAD_BUFFERS = 16;

export class ChunkPool {
  private readonly free: Buffer[] = [];
  private made = 0;

  constructor(private readonly cap = DOWNLOAD_BUFFERS) {}

  /** A buffer of IO_CHUNK bytes, or undefined when all `cap` of them are taken. */
  take(): Buffer | undefined {
    const buffer = this.free.pop();
    if (buffer) return buffer;
    if (this.made >= this.cap) return undefined;
    this.made++;
    // allocUnsafeSlow: outside Node's shared 8 KiB slab, and kept for reuse rather than left to the GC.
    return Buffer.allocUnsafeSlow(IO_CHUNK);
  }

  /** Hands a taken buffer back; nothing may still read or write it. */
  give(buffer: Buffer): void {
    this.free.push(buffer);
  }
}
