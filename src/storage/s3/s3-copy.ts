// A download copied out of a GetObject body: one chunk handed to the writer at a time, the next read only
// once its write settled, so a client that stops reading holds what the socket and one chunk hold.
import type { Readable } from 'node:stream';
import type { BlobCopy } from '../byte-store.ts';

export class ObjectCopy implements BlobCopy {
  private closed = false;

  /** Takes over `body` (a GetObject response body). */
  constructor(private readonly body: Readable) {}

  async pipeTo(write: (chunk: Buffer) => Promise<void>): Promise<number> {
    let copied = 0;
    try {
      // The async iterator reads a chunk only when asked: none is read while a write is pending.
      for await (const chunk of this.body as AsyncIterable<Buffer>) {
        copied += chunk.length;
        await write(chunk);
      }
    } finally {
      await this.close();
    }
    return copied;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A body read to its end leaves its socket to the keep-alive pool; one cut short closes it.
    this.body.destroy();
  }
}
