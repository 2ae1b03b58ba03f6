// Progress of a transfer on stderr — only when stderr is a terminal, never with --quiet or --json — drawn
// by the `progress` package (zero dependencies). Rate and ETA are computed here over this run's bytes, so
// a resumed transfer does not count the bytes an earlier run sent as if they went by in no time.
import ProgressBar from 'progress';
import { humanSize, type GlobalOptions } from './output.ts';

export interface Progress {
  /** `bytes` more went by. */
  add(bytes: number): void;
  done(): void;
}

const NONE: Progress = { add() {}, done() {} };

/** A bar for `total` bytes (null: unknown, e.g. stdin) starting at `start` (a resumed offset). */
export function progressBar(g: GlobalOptions, label: string, total: number | null, start = 0): Progress {
  if (g.quiet || g.json || !process.stderr.isTTY) return NONE;
  const began = Date.now();
  let current = start;
  const bar = new ProgressBar(`${label} [:bar] :percent :moved :speed/s ETA :left`, {
    total: Math.max(total ?? 0, 1),
    curr: Math.min(start, Math.max(total ?? 0, 1)),
    width: 30,
    stream: process.stderr,
    clear: true,
    renderThrottle: 100,
  });
  const tokens = () => {
    const seconds = (Date.now() - began) / 1000;
    const rate = seconds > 0 ? (current - start) / seconds : 0;
    const left = total === null || rate <= 0 ? '?' : `${Math.ceil((total - current) / rate)}s`;
    return { moved: total === null ? humanSize(current) : `${humanSize(current)}/${humanSize(total)}`, speed: humanSize(Math.round(rate)), left };
  };
  return {
    add(bytes) {
      current += bytes;
      if (total !== null && !bar.complete) bar.tick(bytes, tokens());
      else if (total === null) bar.render(tokens(), false);
    },
    done() {
      if (!bar.complete) bar.terminate();
    },
  };
}
