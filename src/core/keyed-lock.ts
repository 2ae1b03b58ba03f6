// An in-process async mutex per key. blobd is one process per data directory (the data-dir lock makes
// sure of it), so this is enough to serialise work on one digest or one reservation.

/** Serialises async work per key; used so that commit-or-dedup of one digest happens one at a time. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn, fn);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
