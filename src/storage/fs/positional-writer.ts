// Writing into an open file at an explicit offset — an upload session's append (a Writable that reports
// each chunk once it is in the file) and a one-shot upload's staging file — with early writeback so the
// acknowledging fsync is short.
import { Writable } from 'node:stream';
import { fdatasyncFd, IO_CHUNK, writeFd, writevFd } from './fd.ts';

/**
 * Early writeback for appends: every 2 MiB written, an fdatasync of what is in the file so far starts
 * without being waited for, so the disk flushes while the next bytes arrive and the fdatasync that
 * acknowledges the append has only the tail left (Linux's sync_file_range, done with what Node has).
 * Measured on a 1 GiB session of 8 MiB appends: the acknowledging fdatasyncs took 720 ms in all before,
 * 185 ms after, and the session 3.5 s → 3.05 s.
 */
const EARLY_SYNC = 2 << 20;
/**
 * Writes buffers into an open file from a position on, one write in flight at a time, with early
 * writeback. `write` may be called again before the last one finished (it queues behind it); `settled`
 * resolves once no write and no early fdatasync is in flight, so the fd may be synced or closed.
 */
export class FileSink {
  /** Bytes of the batches written in full. */
  written = 0;
  private inflight: Promise<void> = Promise.resolve();
  private sinceSync = 0;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly fd: number,
    private position: number,
  ) {}

  /** Writes `buffers` after whatever is in flight; resolves once they are in the file. */
  write(buffers: Buffer[]): Promise<void> {
    const work = this.inflight.then(() => this.writeAll(buffers));
    // The chain goes on after a failure so that `settled` never hangs; the caller sees it on `work`.
    this.inflight = work.catch(() => {});
    return work;
  }

  async settled(): Promise<void> {
    await this.inflight;
    await this.syncing;
  }

  private async writeAll(buffers: Buffer[]): Promise<void> {
    let pending = buffers;
    while (pending.length > 0) {
      const n = (
        pending.length === 1
          ? await writeFd(this.fd, pending[0]!, 0, pending[0]!.length, this.position)
          : await writevFd(this.fd, pending, this.position)
      ).bytesWritten;
      this.position += n;
      pending = dropBytes(pending, n);
      this.sinceSync += n;
    }
    // Counted per whole batch, as the Writable reports its chunks: a batch cut short by an error counts nothing.
    for (const b of buffers) this.written += b.length;
    if (this.sinceSync >= EARLY_SYNC && this.syncing === undefined) {
      this.sinceSync = 0;
      // Not awaited here; a failure would show again in the fdatasync that acknowledges the bytes.
      this.syncing = fdatasyncFd(this.fd).then(
        () => (this.syncing = undefined),
        () => (this.syncing = undefined),
      );
    }
  }
}

/**
 * A FileSink as a Writable (for `pipeline`): reports each chunk only once it is in the file.
 */
export class PositionalWriter extends Writable {
  failure: unknown;
  private readonly sink: FileSink;

  constructor(
    fd: number,
    position: number,
    private readonly onWritten: (chunk: Buffer) => void,
  ) {
    super({ highWaterMark: IO_CHUNK });
    this.sink = new FileSink(fd, position);
  }

  get written(): number {
    return this.sink.written;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.track([chunk], done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.track(
      chunks.map((c) => c.chunk),
      done,
    );
  }

  /** Resolves when no write (and no early fdatasync) is in flight any more: the fd may be synced or closed. */
  settled(): Promise<void> {
    return this.sink.settled();
  }

  private track(buffers: Buffer[], done: (err?: Error | null) => void): void {
    this.sink.write(buffers).then(
      () => {
        for (const b of buffers) this.onWritten(b);
        done();
      },
      (err: Error) => {
        this.failure = err;
        done(err);
      },
    );
  }
}

/** What is left of `buffers` after the first `n` bytes were written (short writes are legal). */
function dropBytes(buffers: Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const b of buffers) {
    if (n >= b.length) n -= b.length;
    else {
      rest.push(n > 0 ? b.subarray(n) : b);
      n = 0;
    }
  }
  return rest;
}

