// SHA-256 on a worker thread, so that hashing (0.6 CPU-seconds per GiB here) runs beside the socket and
// disk work of put and get rather than in the same thread. Bytes travel in slabs over SharedArrayBuffers,
// shared with the worker once (no copy, no buffer per message); a slab is free for reuse once the worker
// has hashed it and its writer is done with it. On this 2-core machine the daemon takes the other core,
// so the gain measured small; with more cores the client's thread no longer has to hash at all.
import { Worker } from 'node:worker_threads';

/** Plain CommonJS, evaluated by the worker: no TypeScript loader needed there. */
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = createHash('sha256');
let saved = null;
const slabs = [];
parentPort.on('message', (m) => {
  if (m.op === 'slabs') {
    for (const sab of m.sabs) slabs.push(new Uint8Array(sab));
  } else if (m.op === 'update') {
    hash.update(slabs[m.id].subarray(0, m.length));
    parentPort.postMessage({ op: 'hashed', id: m.id });
  } else if (m.op === 'save') {
    saved = hash.copy();
  } else if (m.op === 'restore') {
    hash = saved.copy();
  } else if (m.op === 'digest') {
    parentPort.postMessage({ op: 'digest', hex: hash.copy().digest('hex') });
  }
});
`;

/** A buffer the worker can read without a copy. */
export interface Slab {
  readonly id: number;
  readonly sab: SharedArrayBuffer;
  readonly buffer: Buffer;
}

export class ParallelHasher {
  private readonly worker = new Worker(WORKER, { eval: true });
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private digestWaiter: { resolve: (hex: string) => void; reject: (err: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly free: Slab[] = [];
  private readonly slabWaiters: { resolve: (slab: Slab) => void; reject: (err: Error) => void }[] = [];

  constructor(slabSize: number, slabs: number) {
    for (let id = 0; id < slabs; id++) {
      const sab = new SharedArrayBuffer(slabSize);
      this.free.push({ id, sab, buffer: Buffer.from(sab) });
    }
    // Shared once: a message per slab then carries two numbers (sending the buffer each time cost
    // more than half a second per GiB in postMessage).
    this.worker.postMessage({ op: 'slabs', sabs: this.free.map((s) => s.sab) });
    this.worker.on('message', (m: { op: string; id?: number; hex?: string }) => {
      if (m.op === 'hashed') {
        const done = this.waiting.get(m.id!);
        this.waiting.delete(m.id!);
        done?.resolve();
      } else if (m.op === 'digest') {
        this.digestWaiter?.resolve(m.hex!);
        this.digestWaiter = null;
      }
    });
    // A worker that dies fails everything that waits on it, rather than leaving it waiting forever.
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const w of this.waiting.values()) w.reject(this.failure);
      this.waiting.clear();
      this.digestWaiter?.reject(this.failure);
      this.digestWaiter = null;
      for (const w of this.slabWaiters.splice(0)) w.reject(this.failure);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the hashing worker stopped')));
  }

  /** A free slab (waits until one is returned). */
  async take(): Promise<Slab> {
    if (this.failure) throw this.failure;
    const slab = this.free.pop();
    if (slab) return slab;
    return new Promise((resolve, reject) => this.slabWaiters.push({ resolve, reject }));
  }

  /** A free slab now, or null. */
  tryTake(): Slab | null {
    if (this.failure) throw this.failure;
    return this.free.pop() ?? null;
  }

  /** Gives a slab back for reuse. */
  give(slab: Slab): void {
    const waiter = this.slabWaiters.shift();
    if (waiter) waiter.resolve(slab);
    else this.free.push(slab);
  }

  /** Hashes the first `length` bytes of the slab; resolves once the worker is done reading it. */
  update(slab: Slab, length: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.set(slab.id, { resolve, reject });
      this.worker.postMessage({ op: 'update', id: slab.id, length });
    });
  }

  /** Remembers the state after everything sent so far (an acknowledged offset). */
  save(): void {
    this.worker.postMessage({ op: 'save' });
  }

  /** Goes back to the last saved state (bytes sent but not acknowledged are forgotten). */
  restore(): void {
    this.worker.postMessage({ op: 'restore' });
  }

  /** The digest of everything hashed so far, as `sha256:<hex>`; hashing may go on afterwards. */
  digest(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.digestWaiter = { resolve: (hex) => resolve(`sha256:${hex}`), reject };
      this.worker.postMessage({ op: 'digest' });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
