// The body checks of large S3 bodies (the ETag's MD5, a signed payload's SHA-256, the x-amz-checksum-* the
// SDKs send by default) on a worker thread, beside the event loop that reads the socket and writes the
// blob. Profiled on 1 GiB multipart uploads through the AWS SDK, these hashes were the event loop's largest
// cost (MD5 ~2.7, SHA-256 ~1, CRC32 ~0.5 CPU-seconds per GiB); the event loop now only copies each chunk
// once into memory it shares with the worker. One worker serves every body; the bytes sent to it and not yet hashed
// are bounded (a body whose checks fall behind waits: ready()), so no body is held whole (G5).
import { Worker } from 'node:worker_threads';
import { S3Error } from './errors.ts';

/** Plain CommonJS, evaluated by the worker: no TypeScript loader needed there. */
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const bodies = new Map();
let ring;
parentPort.on('message', (m) => {
  if (m.op === 'open') {
    bodies.set(m.id, {
      md5: createHash('md5'),
      sha256: m.sha256 ? createHash('sha256') : null,
      checksum: m.checksum === 'crc32' ? { crc: 0 } : m.checksum ? { hash: createHash(m.checksum) } : null,
    });
  } else if (m.op === 'ring') {
    ring = new Uint8Array(m.ring);
  } else if (m.op === 'update') {
    const b = bodies.get(m.id);
    const data = m.data === undefined ? ring.subarray(m.at, m.at + m.length) : new Uint8Array(m.data);
    if (b) {
      b.md5.update(data);
      if (b.sha256) b.sha256.update(data);
      if (b.checksum && b.checksum.hash) b.checksum.hash.update(data);
      else if (b.checksum) b.checksum.crc = crc32(data, b.checksum.crc);
    }
    parentPort.postMessage({ op: 'hashed', bytes: data.length, ring: m.data === undefined });
  } else if (m.op === 'finish') {
    const b = bodies.get(m.id);
    bodies.delete(m.id);
    if (!b) return;
    let checksum = null;
    if (b.checksum && b.checksum.hash) checksum = b.checksum.hash.digest('base64');
    else if (b.checksum) { const out = Buffer.alloc(4); out.writeUInt32BE(b.checksum.crc >>> 0); checksum = out.toString('base64'); }
    parentPort.postMessage({ op: 'done', id: m.id, md5: b.md5.digest('hex'), sha256: b.sha256 ? b.sha256.digest('hex') : null, checksum });
  } else if (m.op === 'drop') {
    bodies.delete(m.id);
  }
});
`;

/** Bodies at least this big are checked on the worker; a small one costs less on the event loop. */
export const WORKER_MIN_BYTES = 1024 * 1024;
/** Bytes handed to the worker and not hashed yet, across all bodies, before bodies wait for it. */
const MAX_IN_FLIGHT = 16 * 1024 * 1024;
/**
 * Chunks are copied into this much memory shared with the worker, a ring reused for good. A buffer of its
 * own per chunk, handed over, cost more than the copy: each was fresh memory to fault in and to collect
 * (~0.6 CPU-s of the event loop per GiB, profiled on 1 GiB multipart uploads). A chunk that finds the ring
 * full (the one that crosses MAX_IN_FLIGHT) goes the old way.
 */
const RING_BYTES = MAX_IN_FLIGHT;

/** The checksums the worker computes besides MD5 (crc32c and crc64nvme stay on the event loop). */
const WORKER_CHECKSUMS = ['crc32', 'sha1', 'sha256'] as const;
export type WorkerChecksum = (typeof WORKER_CHECKSUMS)[number];

/** True when the worker can compute this checksum (or none is asked for). */
export function onWorker(algorithm: string | undefined): algorithm is WorkerChecksum | undefined {
  return algorithm === undefined || (WORKER_CHECKSUMS as readonly string[]).includes(algorithm);
}

export interface WorkerResults {
  readonly md5Hex: string;
  readonly sha256Hex: string | null;
  /** base64, as in S3's x-amz-checksum-* headers. */
  readonly checksum: string | null;
}

class CheckWorker {
  private readonly worker: Worker;
  private nextId = 1;
  private inFlight = 0;
  private readonly ring = new Uint8Array(new SharedArrayBuffer(RING_BYTES));
  /** Where the next chunk goes in the ring, and how many bytes of it the worker has yet to hash. */
  private ringHead = 0;
  private ringUsed = 0;
  private readonly results = new Map<number, { resolve: (r: WorkerResults) => void; reject: (err: Error) => void }>();
  private readonly roomWaiters: (() => void)[] = [];
  private failure: Error | null = null;
  /** Bodies started and not yet finished or dropped: the worker keeps the process alive while there are any. */
  private openBodies = 0;

  constructor() {
    this.worker = new Worker(WORKER, { eval: true });
    this.worker.postMessage({ op: 'ring', ring: this.ring.buffer });
    this.worker.on('message', (m: { op: string; id?: number; bytes?: number; ring?: boolean; md5?: string; sha256?: string | null; checksum?: string | null }) => {
      if (m.op === 'hashed') {
        this.inFlight -= m.bytes!;
        // The worker hashes in the order chunks were sent: ring bytes free up from the oldest on.
        if (m.ring) this.ringUsed -= m.bytes!;
        if (this.inFlight <= MAX_IN_FLIGHT) for (const w of this.roomWaiters.splice(0)) w();
      } else if (m.op === 'done') {
        const r = this.results.get(m.id!);
        this.results.delete(m.id!);
        r?.resolve({ md5Hex: m.md5!, sha256Hex: m.sha256 ?? null, checksum: m.checksum ?? null });
      }
    });
    // Bodies checked by a worker that died fail with a 503 (retry: the next body gets a new worker).
    const fail = (err: Error) => {
      this.failure ??= new S3Error('ServiceUnavailable', 503, `The body could not be checked (${err.message.slice(0, 100)}); please retry.`);
      for (const r of this.results.values()) r.reject(this.failure);
      this.results.clear();
      for (const w of this.roomWaiters.splice(0)) w();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the body-check worker stopped')));
    // Keeps the process alive only while a body's checks are open (after the listeners: adding one refs).
    this.worker.unref();
  }

  /** The worker stopped: bodies it had fail, and checkWorker() starts another for the next ones. */
  get failed(): boolean {
    return this.failure !== null;
  }

  private opened(): void {
    if (this.openBodies++ === 0) this.worker.ref();
  }
  private closed(): void {
    if (--this.openBodies === 0) this.worker.unref();
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }

  start(sha256: boolean, checksum: WorkerChecksum | null): WorkerBodyChecks {
    const id = this.nextId++;
    this.worker.postMessage({ op: 'open', id, sha256, checksum });
    this.opened();
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      this.closed();
      return true;
    };
    return {
      update: (data) => {
        if (this.failure) return;
        this.inFlight += data.length;
        if (this.ringUsed + data.length <= RING_BYTES) {
          // One copy into the ring; a chunk that reaches its end goes on at its start.
          for (let from = 0; from < data.length; ) {
            const n = Math.min(data.length - from, RING_BYTES - this.ringHead);
            this.ring.set(data.subarray(from, from + n), this.ringHead);
            this.worker.postMessage({ op: 'update', id, at: this.ringHead, length: n });
            this.ringHead = (this.ringHead + n) % RING_BYTES;
            this.ringUsed += n;
            from += n;
          }
          return;
        }
        // One copy into a buffer of its own, handed over (transferred, not cloned again).
        const own = new Uint8Array(data.length);
        own.set(data);
        this.worker.postMessage({ op: 'update', id, data: own.buffer }, [own.buffer]);
      },
      ready: () => (this.inFlight <= MAX_IN_FLIGHT || this.failure ? undefined : new Promise<void>((resolve) => this.roomWaiters.push(resolve))),
      finish: () => {
        if (this.failure) {
          settle();
          return Promise.reject(this.failure);
        }
        const done = new Promise<WorkerResults>((resolve, reject) => {
          this.results.set(id, { resolve, reject });
          this.worker.postMessage({ op: 'finish', id });
        });
        void done.then(settle, settle);
        return done;
      },
      drop: () => {
        if (settle()) this.worker.postMessage({ op: 'drop', id });
      },
    };
  }
}

/** One body's checks on the worker. */
export interface WorkerBodyChecks {
  update(data: Buffer): void;
  /** A promise to wait for when the worker is behind (too many bytes handed over), else undefined. */
  ready(): Promise<void> | undefined;
  /** The results of everything updated; once. */
  finish(): Promise<WorkerResults>;
  /** The body will not finish (it failed): forget its state. */
  drop(): void;
}

let shared: CheckWorker | undefined;

/** The process's check worker (started on first use, and again after one stopped). */
export function checkWorker(): CheckWorker {
  if (shared === undefined || shared.failed) shared = new CheckWorker();
  return shared;
}

/** For tests: stop the current worker as a crash would. */
export async function stopCheckWorkerForTests(): Promise<void> {
  await shared?.terminate();
}
