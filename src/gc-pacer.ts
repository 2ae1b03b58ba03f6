// Young-generation GCs paced by the buffers the process allocates, so that bodies streaming through do
// not set off a storm of full mark-compacts.
import { getHeapStatistics } from 'node:v8';
type Gc = (options: { type: 'minor' | 'major'; execution: 'sync' | 'async' }) => void | Promise<void>;

/**
 * Every socket read allocates a fresh 64 KiB ArrayBuffer outside V8's heap; dead ones are freed only by
 * a GC, so a fast upload piles up tens of MB of them between scavenges (seen: 35 MB). A scavenge each
 * time ~8 MB more buffer memory is held frees them young and cheaply (~1 ms each). Measured over three
 * 1 GiB sessions with curl (with bin/blobd's other V8 flags): peak RSS 155-157 MB → 141-147 MB, session
 * times unchanged (3.2-3.6 s).
 */
export interface GcPacer {
  /** A request began: pacing runs while any request is in flight. Call the function returned when it ended. */
  request(): () => void;
  stop(): void;
}

/**
 * Memory held outside V8's heap: ArrayBuffers' backing stores and what native modules report. Read from
 * V8's own counters: process.memoryUsage() also reads the RSS from /proc (~15 µs against ~0.8 here, and
 * 0.8-2.2 % of the event loop in profiles of 4 KiB uploads and of 1 GiB multipart uploads).
 */
const externalBytes = () => getHeapStatistics().external_memory;

/**
 * Paces only while requests are in flight: a look at the counters 40 times a second is not free, and
 * several idle nodes on one machine would pay for nothing.
 */
export function paceYoungGc(everyBytes = 8 * 1024 * 1024, checkMs = 25): GcPacer {
  // Exposed by node --expose-gc (bin/blobd's #! line); without it there is nothing to pace with.
  const gc = (globalThis as { gc?: Gc }).gc;
  if (typeof gc !== 'function') return { request: () => () => {}, stop: () => {} };
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  const tick = () => {
    const now = externalBytes();
    if (now - last >= everyBytes) {
      gc({ type: 'minor', execution: 'sync' });
      last = externalBytes();
    } else if (now < last) last = now;
    if (inFlight === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  let stopped = false;
  return {
    request() {
      inFlight++;
      if (!timer && !stopped) {
        last = externalBytes();
        timer = setInterval(tick, checkMs);
        timer.unref();
      }
      let done = false;
      return () => {
        if (!done) inFlight--;
        done = true;
      };
    },
    stop() {
      stopped = true;
      clearInterval(timer);
      timer = undefined;
    },
  };
}
