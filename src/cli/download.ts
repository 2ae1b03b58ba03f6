// The body of a download, delivered in slabs (hasher.ts) that go to the file and to the hashing worker.
// For http: URLs it is a GET over a bare TCP connection whose reads land straight in the slabs (`onread`):
// node:http allocates a fresh 64 KiB buffer for every read and passes each through its parser and a
// stream. Measured beside the daemon on 2 cores (where the client's CPU is the download's speed), a 1 GiB
// `blobd get -o` took 3.3–4.8 CPU-seconds through node:http and 2.2–2.7 this way. https: uses node:https.
import { connect, type NetConnectOpts, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { ApiError, errorOf, readText, UsageError, type BlobdClient } from './client.ts';
import type { ParallelHasher, Slab } from './hasher.ts';

export interface Download {
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Record<string, string>;
  /** The body into slabs, each handed to `full` once filled (the last one partly); throws when cut off. */
  pump(hasher: ParallelHasher, full: (slab: Slab, length: number) => void, progress: (bytes: number) => void): Promise<void>;
  /** A small body (an error answer) as text. */
  text(): Promise<string>;
  /** Drops the connection (the body is not wanted). */
  discard(): void;
}

const HEAD_MAX = 64 * 1024;
const cutOff = () => new ApiError(0, 'unreachable', 'the download was cut off; rerun the same command to resume (with -o)');

/** GET `pathname` with `headers`; resolves once the answer's status and headers are in. */
export async function download(client: BlobdClient, pathname: string, headers: Record<string, string>): Promise<Download> {
  const url = new URL(client.href(pathname));
  if (url.protocol !== 'http:') return viaNodeHttp(await client.open({ method: 'GET', path: pathname, headers }));
  const all: Record<string, string> = { host: url.host, connection: 'close', ...headers };
  const token = client.credential();
  if (token) all.authorization = `Bearer ${token}`;
  for (const [k, v] of Object.entries(all)) {
    if (/[\r\n]/.test(k + v)) throw new UsageError(`a header (${k}) may not contain a line break`);
  }
  const request = `GET ${url.pathname}${url.search} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return new RawDownload(url, request).ready;
}

/** One GET over its own TCP connection (Connection: close), read into slabs. */
class RawDownload implements Download {
  status = 0;
  headers: Record<string, string> = {};
  readonly ready: Promise<Download>;
  private readonly socket: Socket;
  private head: Buffer | null = Buffer.allocUnsafe(HEAD_MAX);
  private headLength = 0;
  /** Body bytes that arrived with the head. */
  private early: Buffer = Buffer.alloc(0);
  private slab: Slab | null = null;
  private filled = 0;
  private received = 0;
  private length = -1;
  private sink: { hasher: ParallelHasher; full: (slab: Slab, length: number) => void; progress: (n: number) => void; done: (err?: Error) => void } | null = null;
  private ended = false;
  private readonly parking = Buffer.allocUnsafe(HEAD_MAX);
  private parked = false;
  private onHead!: { resolve: (d: Download) => void; reject: (err: Error) => void };

  constructor(url: URL, request: string) {
    this.ready = new Promise((resolve, reject) => (this.onHead = { resolve, reject }));
    this.socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      onread: { buffer: () => this.target(), callback: (n: number) => this.arrived(n) },
    } as NetConnectOpts);
    this.socket.on('connect', () => this.socket.write(request));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.stop(new ApiError(0, 'unreachable', `cannot reach blobd at ${url.origin}: ${err.code ?? err.message}`)));
    this.socket.on('close', () => this.stop(cutOff()));
  }

  /**
   * Where the next read lands: the head buffer, then the free part of the current slab. Node asks right
   * after each read, so while no slab is free (reading is paused then) the answer is a small parking
   * buffer, whose bytes are moved into the next slab when reading resumes.
   */
  private target(): Uint8Array {
    if (this.head) return this.head.subarray(this.headLength);
    this.parked = this.slab === null;
    const room = this.length - this.received;
    if (this.parked) return this.parking.subarray(0, Math.max(1, Math.min(this.parking.length, room)));
    return this.slab!.buffer.subarray(this.filled, this.filled + Math.min(this.slab!.buffer.length - this.filled, room));
  }

  private arrived(n: number): boolean {
    if (this.head) {
      this.headLength += n;
      this.parseHead();
      return true;
    }
    if (this.parked) {
      // Read while no slab was set: reading resumes only once there is one.
      this.parking.copy(this.slab!.buffer, this.filled, 0, n);
    }
    this.filled += n;
    this.received += n;
    this.sink!.progress(n);
    if (this.filled === this.slab!.buffer.length || this.received === this.length) this.hand();
    return true;
  }

  private parseHead(): void {
    const head = this.head!;
    const end = head.subarray(0, this.headLength).indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headLength === HEAD_MAX) this.stop(new ApiError(0, 'bad_answer', 'the answer has no end of headers'));
      return;
    }
    const lines = head.toString('latin1', 0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) return this.stop(new ApiError(0, 'bad_answer', 'not an HTTP/1.1 answer'));
    this.status = Number(m[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) this.headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    this.early = Buffer.from(head.subarray(end + 4, this.headLength));
    this.head = null;
    this.length = this.headers['transfer-encoding'] === undefined && /^\d+$/.test(this.headers['content-length'] ?? '') ? Number(this.headers['content-length']) : -1;
    this.socket.pause(); // the body waits until someone wants it
    this.onHead.resolve(this);
  }

  pump(hasher: ParallelHasher, full: (slab: Slab, length: number) => void, progress: (bytes: number) => void): Promise<void> {
    if (this.length < 0) return Promise.reject(new ApiError(this.status, 'bad_answer', 'the download has no Content-Length'));
    return new Promise<void>((resolve, reject) => {
      this.sink = { hasher, full, progress, done: (err) => (err ? reject(err) : resolve()) };
      void (async () => {
        this.slab = await hasher.take();
        const early = this.early.subarray(0, this.length);
        early.copy(this.slab.buffer);
        this.filled = early.length;
        this.received = early.length;
        progress(early.length);
        if (this.received === this.length || this.filled === this.slab.buffer.length) this.hand();
        else this.socket.resume();
      })().catch((err: Error) => this.stop(err));
    });
  }

  /** The filled slab goes to the sink; reading goes on into the next one (waiting for one if need be). */
  private hand(): void {
    const { hasher, full } = this.sink!;
    full(this.slab!, this.filled);
    this.slab = null;
    this.filled = 0;
    if (this.received === this.length) return this.stop();
    const next = hasher.tryTake();
    if (next) {
      this.slab = next;
      this.socket.resume();
      return;
    }
    this.socket.pause();
    hasher.take().then(
      (slab) => {
        this.slab = slab;
        this.socket.resume();
      },
      (err: Error) => this.stop(err),
    );
  }

  /** The end: complete (no error), or cut off / failed — a partly filled slab is still handed on. */
  private stop(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.destroy();
    if (!this.sink) {
      this.onHead.reject(err ?? cutOff());
      return;
    }
    if (err && this.slab && this.filled > 0) this.sink.full(this.slab, this.filled);
    this.sink.done(err);
  }

  async text(): Promise<string> {
    const parts: Buffer[] = [this.early];
    let size = this.early.length;
    const want = this.length;
    if (want < 0 || size < want) {
      // Small answers only: read the rest through ordinary buffers.
      this.head = null;
      const scratch = Buffer.allocUnsafe(HEAD_MAX);
      await new Promise<void>((resolve) => {
        this.target = () => scratch;
        this.arrived = (n: number) => {
          parts.push(Buffer.from(scratch.subarray(0, n)));
          size += n;
          if ((want >= 0 && size >= want) || size > HEAD_MAX * 16) resolve();
          return true;
        };
        this.socket.once('close', () => resolve());
        this.socket.resume();
      });
    }
    this.discard();
    return Buffer.concat(parts).toString('utf8');
  }

  discard(): void {
    // During a pump, the pump ends too (cut off), or its promise would never settle.
    if (this.sink) return this.stop(cutOff());
    this.ended = true;
    this.socket.destroy();
  }
}

/** The same over node:http(s) (https URLs): each piece is copied into the slabs. */
function viaNodeHttp(res: IncomingMessage): Download {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  return {
    status: res.statusCode!,
    headers,
    text: () => readText(res),
    discard: () => res.destroy(),
    async pump(hasher, full, progress) {
      let slab: Slab | null = null;
      let filled = 0;
      let cut = false;
      try {
        for await (const piece of res as AsyncIterable<Buffer>) {
          progress(piece.length);
          for (let from = 0; from < piece.length; ) {
            slab ??= await hasher.take();
            const n = piece.copy(slab.buffer, filled, from);
            filled += n;
            from += n;
            if (filled === slab.buffer.length) {
              full(slab, filled);
              slab = null;
              filled = 0;
            }
          }
        }
      } catch {
        cut = true;
      }
      if (slab && filled > 0) full(slab, filled);
      if (cut || !res.complete) throw cutOff();
    },
  };
}

/** An error answer as the ApiError it carries. */
export async function downloadError(d: Download): Promise<ApiError> {
  const text = await d.text();
  return errorOf({ statusCode: d.status, statusMessage: '', headers: d.headers } as unknown as IncomingMessage, text);
}
