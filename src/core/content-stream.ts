// Stored content as one stream for a write: blobs one after another (a multipart upload's parts, or one
// range of a blob), read with backpressure and never buffered whole.
import { Readable } from 'node:stream';
import type { BlobCopy } from './blobs.ts';
import type { BodySource } from './byte-limit.ts';
import { BlobdError } from './errors.ts';

/**
 * Stored content streamed into a write, destroyed when the write ends: a write refused midway (a size limit,
 * the quota) only unpipes its source, which would otherwise wait for a reader forever, holding a blob open.
 */
export async function writingFrom<T>(make: () => Readable, write: (body: BodySource) => Promise<T>): Promise<T> {
  let stream: Readable | undefined;
  try {
    return await write(() => (stream = make()));
  } finally {
    stream?.destroy();
  }
}

/**
 * Blobs' content one after another as one stream, each opened only when the previous one ended. Each chunk
 * is read into a buffer the stream keeps (no copy out of a reused one), and the next one only when the reader
 * wants more (backpressure): at most about one chunk and the stream's 1 MiB buffer are held, whatever the sizes.
 */
export interface ContentPart {
  readonly open: () => Promise<BlobCopy>;
  readonly size: number;
}

/** `parts` may be an async iterable that yields each part when it exists (a speculative assembly's). */
export function concatContent(parts: Iterable<ContentPart> | AsyncIterable<ContentPart>, onChunk?: (chunk: Buffer) => void): Readable {
  let resume: (() => void) | undefined;
  let stopped = false;
  const wake = () => {
    const r = resume;
    resume = undefined;
    r?.();
  };
  const out = new Readable({
    highWaterMark: 1 << 20,
    read: wake,
    destroy(err, cb) {
      stopped = true;
      wake();
      cb(err);
    },
  });
  void (async () => {
    for await (const part of parts) {
      if (stopped) return;
      const copy = await part.open();
      const copied = await copy.pipeTo(
        async (chunk) => {
          if (stopped) throw new Error('the reader went away');
          onChunk?.(chunk);
          if (!out.push(chunk)) await new Promise<void>((r) => (resume = r));
        },
        { keep: true },
      );
      if (copied !== part.size) throw new BlobdError('internal_error', `a part's stored bytes are ${copied}, not ${part.size}`);
    }
    out.push(null);
  })().catch((err: unknown) => {
    if (!stopped) out.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  return out;
}
