// The byte-deletion queue: bytes that no row points to any more (a blob GC or a purge removed, a duplicate
// whose row kept its own location) are queued by the transaction that let go of them, and deleted here.
// It must never delete bytes a row names again: each deletion re-checks that under the digest's lock.
import type { ByteStore } from '../storage/byte-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';

/** Deletions taken from the queue per round: bounds memory on a long queue. */
const BATCH = 100;

export class ByteDeletions {
  private running: Promise<number> | undefined;
  private again = false;

  constructor(
    private readonly meta: MetadataStore,
    private readonly bytes: ByteStore,
    /** Runs `fn` under the digest's lock (BlobService.lockDigest): no commit of the digest is in between. */
    private readonly lockDigest: <T>(digest: string, fn: () => Promise<T>) => Promise<T>,
  ) {}

  /**
   * Delete what is queued; resolves with how many deletions were done. One drain at a time: a call while
   * one runs makes it go round once more and waits for it. A deletion that fails stays queued for the next.
   *
   * Why the re-check: a store of content addresses (the local one) gives one digest one location, so after
   * GC removed a row and queued its file, a new upload of the same content may have put the file back and
   * written a new row before the drain comes. Under the digest lock no commit is between the check and the
   * delete. A store of unique locations never names one twice, so the check never finds a claim there.
   */
  drain(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.rounds().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Drain in the background, soon; failures stay queued (the next drain, or GC's, retries them). */
  soon(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    setImmediate(() => void this.drain().catch(() => {}));
  }

  private async rounds(): Promise<number> {
    let done = 0;
    do {
      this.again = false;
      // Each location is tried once a round. One that failed stays queued (the next drain retries it) and
      // each listing asks for that many more, so failures at the head never hide the entries behind them.
      const tried = new Set<string>();
      let failed = 0;
      for (;;) {
        const batch = (await this.meta.listByteDeletions(BATCH + failed)).filter((d) => !tried.has(d.location));
        if (batch.length === 0) break;
        for (const d of batch) {
          tried.add(d.location);
          const ok = await this.lockDigest(d.digest, async () => {
            if (!(await this.meta.isLocationClaimed(d.location))) await this.bytes.delete(d.location);
            await this.meta.finishByteDeletion(d.location);
          }).then(() => true, () => false);
          if (ok) done++;
          else failed++;
        }
      }
    } while (this.again);
    return done;
  }
}
