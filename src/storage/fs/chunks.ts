// A byte stream's chunks as they arrived, for a consumer loop. `for await` over a Readable reads in paused
// mode, where read() returns everything buffered as one new Buffer: a copy of each chunk that waited while
// the loop was busy (a write in flight). Profiled on 1 GiB S3 multipart uploads, that concatenation (and the
// garbage it made) was ~4 % of the event loop. In flowing mode a stream hands its chunks over one by one,
// as they are: this reads in flowing mode, paused while a chunk waits for the loop.
import { finished, type Readable } from 'node:stream';

/**
 * Yields `source`'s chunks until its end; throws its error. When it has ended, failed or closed early is
 * stream.finished's judgement, as for `for await`; leaving early (a break, a throw) destroys the source,
 * as `for await` over a Readable does.
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
  source.on('data', onData);
  const stopWatching = finished(source, { writable: false }, (err) => {
    if (err) failure ??= { error: err };
    else ended = true;
    signal();
  });
  let done = false;
  try {
    for (;;) {
      const chunk = waiting.shift();
      if (chunk !== undefined) {
        yield chunk;
        continue;
      }
      if (failure) throw failure.error;
      if (ended) break;
      // Armed before resume(): a stream may hand over a chunk (or end) within the call.
      await new Promise<void>((resolve) => {
        wake = resolve;
        source.resume();
      });
    }
    done = true;
  } finally {
    source.off('data', onData);
    stopWatching();
    if (!done) {
      // An 'error' emitted after this must not go unhandled (nobody listens any more).
      source.on('error', () => {});
      source.destroy();
    }
  }
}
