// A byte stream's chunks as they arrived, for a consumer loop. `for await` over a Readable reads in paused
// mode, where read() returns everything buffered as one new Buffer: a copy of each chunk that waited while
// the loop was busy (a write in flight). Profiled on 1 GiB S3 multipart uploads, that concatenation (and the
// garbage it made) was ~4 % of the event loop. In flowing mode a stream hands its chunks over one by one,
// as they are: this reads in flowing mode, paused while a chunk waits for the loop.
import type { Readable } from 'node:stream';

/**
 * Yields `source`'s chunks until its end; throws its error. Leaving early (a break, a throw) destroys the
 * source, as `for await` over a Readable does.
 */
export async function* chunksOf(source: Readable): AsyncGenerator<Buffer, void, undefined> {
  const waiting: Buffer[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer) => {
    waiting.push(chunk);
    source.pause();
    signal();
  };
  const onEnd = () => {
    ended = true;
    signal();
  };
  const onError = (error: unknown) => {
    failure ??= { error };
    signal();
  };
  // A stream destroyed without an error (the peer went away) closes without 'end': a premature close.
  const onClose = () => {
    if (!ended) failure ??= { error: Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }) };
    signal();
  };
  source.on('data', onData);
  source.on('end', onEnd);
  source.on('error', onError);
  source.on('close', onClose);
  let finished = false;
  try {
    if (source.readableEnded) ended = true;
    for (;;) {
      const chunk = waiting.shift();
      if (chunk !== undefined) {
        yield chunk;
        continue;
      }
      if (failure) throw failure.error;
      if (ended) break;
      if (source.destroyed && !source.readableEnded) {
        failure ??= { error: source.errored ?? Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }) };
        continue;
      }
      source.resume();
      await new Promise<void>((resolve) => (wake = resolve));
    }
    finished = true;
  } finally {
    source.off('data', onData);
    source.off('end', onEnd);
    source.off('error', onError);
    source.off('close', onClose);
    // Keep an 'error' emitted after this from being unhandled (the caller stopped listening).
    if (!finished) {
      source.on('error', () => {});
      source.destroy();
    }
  }
}
