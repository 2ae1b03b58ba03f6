// Streaming a body into multipart parts: chunks gather into parts of exactly partSize bytes, and up to
// partsInFlight parts upload while the body goes on being read. Memory per request is bounded by
// partSize × (partsInFlight + 1) (G5); the body is never held whole.
import type { Readable } from 'node:stream';
import { UploadPartCommand } from '@aws-sdk/client-s3';
import type { Part } from './cursor.ts';
import { abortUpload, createUpload } from './s3-objects.ts';
import { MAX_PARTS, type S3Context } from './s3-client.ts';

/**
 * Part buffers, reused: a part is gathered into one, uploaded, and the buffer goes back. Without reuse every
 * part is a fresh partSize allocation that lingers until a GC, and RSS runs well ahead of what is in use.
 * Keeps at most `idle` buffers between requests.
 */
export class PartBuffers {
  private readonly free: Buffer[] = [];

  constructor(
    readonly partSize: number,
    private readonly idle: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.partSize);
  }

  give(buffer: Buffer): void {
    if (this.free.length < this.idle) this.free.push(buffer);
  }
}

/** Chunks gathered until they make a part; parts come out as one pooled buffer of exactly partSize bytes. */
export class PartGatherer {
  private chunks: Buffer[] = [];
  length = 0;
  private readonly partSize: number;

  constructor(private readonly buffers: PartBuffers) {
    this.partSize = buffers.partSize;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next whole part, or undefined while fewer than partSize bytes have gathered. */
  takePart(): Buffer | undefined {
    if (this.length < this.partSize) return undefined;
    const part = this.buffers.take();
    let at = 0;
    while (at < this.partSize) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length, this.partSize - at);
      c.copy(part, at, 0, n);
      at += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    this.length -= this.partSize;
    return part;
  }

  /** Whatever gathered short of a part (fewer than partSize bytes), in one buffer. */
  rest(): Buffer {
    const out = Buffer.concat(this.chunks, this.length);
    this.chunks = [];
    this.length = 0;
    return out;
  }
}

/**
 * The parts of one multipart upload at `key`, uploaded up to partsInFlight at a time. The upload is created
 * at the first part unless one is given (an S3 session's, from its cursor). A failed part fails the next
 * add() and settle().
 */
export class PartUploader {
  /** Parts uploaded by this uploader, in order once settled. */
  readonly parts: Part[] = [];
  /** True when this uploader created the upload (so only it may abort it on failure). */
  created = false;
  private readonly inflight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly ctx: S3Context,
    private readonly key: string,
    public uploadId: string | null,
    private nextPart: number,
  ) {}

  /**
   * Starts uploading `body` as the next part once fewer than partsInFlight are uploading. A pooled body
   * (`pooled`) goes back to the pool once its upload settled, whatever happened to it.
   */
  async add(body: Buffer, pooled = false): Promise<void> {
    try {
      while (this.inflight.size >= this.ctx.partsInFlight) await Promise.race(this.inflight);
      if (this.failure) throw this.failure.error;
      if (this.nextPart > MAX_PARTS) throw new Error(`a multipart upload of more than ${MAX_PARTS} parts (raise the part size)`);
      if (this.uploadId === null) {
        this.uploadId = await createUpload(this.ctx, this.key);
        this.created = true;
      }
    } catch (err) {
      if (pooled) this.ctx.buffers.give(body);
      throw err;
    }
    const n = this.nextPart++;
    const send = this.ctx.client.send(new UploadPartCommand({ Bucket: this.ctx.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: n, Body: body }));
    const work: Promise<void> = send.then(
      (res) => {
        if (!res.ETag) throw new Error(`the S3 store gave no ETag for part ${n} of ${this.key}`);
        this.parts.push([n, res.ETag, body.length]);
      },
    ).catch((error: unknown) => {
      this.failure ??= { error };
    }).finally(() => {
      this.inflight.delete(work);
      if (pooled) this.ctx.buffers.give(body);
    });
    this.inflight.add(work);
  }

  /** Waits for every part in flight; throws the first failure. The parts are then in order. */
  async settle(): Promise<void> {
    await Promise.all(this.inflight);
    this.parts.sort((a, b) => a[0] - b[0]);
    if (this.failure) throw this.failure.error;
  }

  /** After a failure: waits out the parts in flight, and aborts the upload if this uploader created it. */
  async discard(): Promise<void> {
    await Promise.all(this.inflight);
    if (this.created && this.uploadId !== null) await abortUpload(this.ctx, this.key, this.uploadId).catch(() => {});
  }
}

/**
 * Reads `source` to its end or to its error: each chunk goes to `onChunk`, then into `gatherer`, and every
 * whole part to `uploader` (reading waits while partsInFlight parts upload: that is the backpressure). A
 * source error is returned, after which the chunks `onChunk` saw are all in the gatherer or the uploader;
 * an upload error is thrown (the source is destroyed).
 */
export async function ingest(source: Readable, gatherer: PartGatherer, uploader: PartUploader, onChunk: (chunk: Buffer) => void): Promise<{ sourceError?: unknown }> {
  const it = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await it.next();
      } catch (sourceError) {
        return { sourceError };
      }
      if (next.done) return {};
      onChunk(next.value);
      gatherer.push(next.value);
      for (let part = gatherer.takePart(); part !== undefined; part = gatherer.takePart()) await uploader.add(part, true);
    }
  } catch (err) {
    source.destroy();
    throw err;
  }
}
