// What core reports to the operator's metrics, as plain events: a store that received bytes it already had,
// a GC pass. Core never knows how they are counted or exposed (src/http/metrics.ts does, with prom-client).
export interface StoreEvents {
  /** Bytes of blob content received and made durable (one-shot uploads, object writes, session appends). */
  received(bytes: number): void;
  /** Bytes arrived (one-shot, object write or completed session) for a blob that existed already. */
  dedupHit(): void;
  /** A GC pass (not a dry run) finished. */
  gcPass(removedBlobs: number, freedBytes: number): void;
}

/** For stores built without metrics (offline maintenance, tests of core). */
export const NO_EVENTS: StoreEvents = { received() {}, dedupHit() {}, gcPass() {} };
