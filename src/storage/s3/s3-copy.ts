// A download copied out of a GetObject body. What arrives while a write is pending is gathered, up to BATCH
// bytes (then the body is paused), and goes out as the next write: a client that stops reading holds what
// the socket, the write in flight and one batch hold, never more.
import type { Readable } from 'node:stream';
import type { BlobCopy } from '../byte-store.ts';

/**
 * Most bytes gathered for one write. The body arrives in 64 KiB socket reads, and a write (a syscall, a
 * callback, a promise) for each cost as much CPU as the rest of the relay (npm run bench, S3 download row).
 */
const BATCH = 1024 * 1024;

export class ObjectCopy implements BlobCopy {
  private closed = false;

  /** Takes over `body` (a GetObject response body). */
  constructor(private readonly body: Readable) {}

  pipeTo(write: (chunk: Buffer) => Promise<void>): Promise<number> {
    const body = this.body;
    return new Promise<number>((resolve, reject) => {
      let gathered: Buffer[] = [];
      let size = 0;
      let copied = 0;
      let writing = false;
      let ended = false;
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        body.off('data', onData).off('end', onEnd).off('error', finish).off('close', onClose);
        void this.close().then(() => (err === undefined ? resolve(copied) : reject(err)));
      };
      const flush = () => {
        if (writing || settled) return;
        if (size === 0) {
          if (ended) finish();
          return;
        }
        const batch = gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, size);
        gathered = [];
        size = 0;
        writing = true;
        if (!ended) body.resume();
        write(batch).then(
          () => {
            copied += batch.length;
            writing = false;
            flush();
          },
          (err: unknown) => finish(err),
        );
      };
      const onData = (chunk: Buffer) => {
        gathered.push(chunk);
        size += chunk.length;
        if (size >= BATCH) body.pause();
        flush();
      };
      const onEnd = () => {
        ended = true;
        flush();
      };
      // Destroyed without an end (the store's connection cut): the caller sees fewer bytes than promised.
      const onClose = () => {
        if (!ended) finish(new Error('the S3 store closed the download early'));
      };
      body.on('data', onData).on('end', onEnd).on('error', finish).on('close', onClose);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A body read to its end leaves its socket to the keep-alive pool; one cut short closes it.
    this.body.destroy();
  }
}
