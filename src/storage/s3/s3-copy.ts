// A download copied out of a GetObject body. What arrives while a write is pending is gathered and goes out
// as the next write, up to BATCH bytes — but only into room lent by a budget all downloads of the store
// share: without it the body is paused while the write is pending, as a copy of one chunk at a time would
// be. So a client that stops reading holds the write in flight and what its socket holds, and 200 stalled
// downloads together hold at most the budget besides.
import type { Readable } from 'node:stream';
import type { BlobCopy } from '../byte-store.ts';

/**
 * Most bytes gathered for one write. The body arrives in 64 KiB socket reads, and a write (a syscall, a
 * callback, a promise) for each cost as much CPU as the rest of the relay (npm run bench, S3 download row).
 */
const BATCH = 1024 * 1024;
/** Room lent at a time: a socket read's most. */
const CHUNK = 64 * 1024;

/** Bytes all downloads of a store may gather while their writes are pending, together: a few batches. */
export class CopyBudget {
  constructor(private free = 4 * BATCH) {}

  take(n: number): boolean {
    if (n > this.free) return false;
    this.free -= n;
    return true;
  }

  give(n: number): void {
    this.free += n;
  }
}

export class ObjectCopy implements BlobCopy {
  private closed = false;

  /** Takes over `body` (a GetObject response body). */
  constructor(
    private readonly body: Readable,
    private readonly budget: CopyBudget,
  ) {}

  pipeTo(write: (chunk: Buffer) => Promise<void>): Promise<number> {
    const body = this.body;
    return new Promise<number>((resolve, reject) => {
      let gathered: Buffer[] = [];
      let size = 0;
      let copied = 0;
      /** Room taken from the budget for what gathers while a write is pending (given back once written). */
      let borrowed = 0;
      let writing = false;
      let ended = false;
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        this.budget.give(borrowed);
        borrowed = 0;
        body.off('data', onData).off('end', onEnd).off('error', finish).off('close', onClose);
        void this.close().then(() => (err === undefined ? resolve(copied) : reject(err)));
      };
      // Read on while nothing is being written; while a write is pending, only into room the budget lends.
      const pump = () => {
        if (settled || ended) return;
        if (!writing) return void body.resume();
        const lent = size < BATCH && (borrowed > size || (this.budget.take(CHUNK) && (borrowed += CHUNK) > 0));
        if (lent) body.resume();
        else body.pause();
      };
      const flush = () => {
        if (writing || settled) return;
        if (size === 0) {
          if (ended) finish();
          else pump();
          return;
        }
        const batch = gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, size);
        const lent = borrowed;
        gathered = [];
        size = 0;
        borrowed = 0;
        writing = true;
        pump();
        write(batch).then(
          () => {
            copied += batch.length;
            this.budget.give(lent);
            writing = false;
            flush();
          },
          (err: unknown) => finish(err),
        );
      };
      const onData = (chunk: Buffer) => {
        gathered.push(chunk);
        size += chunk.length;
        if (writing) pump();
        else flush();
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
