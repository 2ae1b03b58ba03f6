// Checkpoints of the daemon's WAL on a thread of their own, with a connection of their own, so that the
// event loop does not copy WAL frames into the database file and wait for its two fsyncs. SQLite's own
// automatic checkpoint runs inside the commit that crosses its threshold (1000 pages), on the thread that
// committed: with 4 KiB uploads at concurrency 16 that was one commit in ~13 taking ~7.5 ms, 12% of the
// event loop's time (test/bench/small-writes.ts, timing each group commit).
//
// Only PASSIVE checkpoints run here: they never wait for, nor hold up, the daemon's readers and writers.
// A passive checkpoint cannot restart the WAL while writes keep coming (frames committed during it are
// not yet copied when it ends), so the daemon's connection keeps an automatic checkpoint of its own at a
// larger threshold (BACKSTOP_PAGES): under sustained writes it copies only the frames since this thread's
// last pass, and lets the WAL start over. Durability is unchanged: a checkpoint syncs the WAL before it
// copies frames and the database after, whichever connection runs it. If the thread fails, the daemon's
// connection goes back to SQLite's default threshold.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Db } from './db.ts';

/** Plain CommonJS, evaluated by the worker: no TypeScript loader needed there. */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
db.pragma('wal_autocheckpoint = 0');
parentPort.on('message', (m) => {
  if (m === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // a failed pass (a full disk, say) is tried again after a later commit
  }
  parentPort.postMessage('done');
});
`;

/** SQLite's default automatic checkpoint threshold, in pages. */
const DEFAULT_PAGES = 1000;
/** The daemon connection's own threshold while this thread checkpoints: 4000 pages (16 MiB of 4 KiB pages). */
const BACKSTOP_PAGES = 4000;
/**
 * At most one checkpoint started per this many milliseconds, and only when commits came since the last one
 * started (the last commits of a burst get theirs when the interval is over): an idle daemon does nothing.
 */
const MIN_INTERVAL_MS = 250;

export class WalCheckpointer {
  private worker: Worker | null;
  private running = false;
  private lastStart = 0;
  /** Commits came since the last checkpoint started. */
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: Db) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER, { eval: true, workerData: { driver, file: db.name } });
    this.worker.unref();
    this.worker.on('message', () => {
      this.running = false; // done, or failed (the backstop covers meanwhile)
      this.schedule();
    });
    this.worker.on('error', () => this.fallBack());
    this.worker.on('exit', () => this.fallBack());
    db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  }

  /** After a commit: a checkpoint now, or once the one running ends or MIN_INTERVAL_MS since the last is over. */
  committed(): void {
    this.dirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (!this.worker || this.running || this.timer || !this.dirty) return;
    const wait = MIN_INTERVAL_MS - (performance.now() - this.lastStart);
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, wait);
      this.timer.unref();
      return;
    }
    this.dirty = false;
    this.lastStart = performance.now();
    this.running = true;
    this.worker.postMessage('checkpoint');
  }

  /** Closes the thread's connection (after a checkpoint in progress ends) and the thread. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const worker = this.worker;
    if (!worker) return;
    this.worker = null;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref(); // else an event loop with nothing else to do ends before the thread does
    worker.postMessage('close');
    await exited;
  }

  /** The thread is gone: the daemon's connection checkpoints as SQLite does by default. */
  private fallBack(): void {
    if (!this.worker) return;
    this.worker = null;
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${DEFAULT_PAGES}`);
  }
}
