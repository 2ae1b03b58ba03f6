// A byte budget on a request body: the stream fails with `too_large` once the budget is crossed.
import { finished, Transform, type Readable } from 'node:stream';
import { BlobdError } from './errors.ts';

/**
 * A request body, opened only when core is ready to read it: every check that can refuse the request runs
 * first, so a client waiting on `Expect: 100-continue` is refused without sending a byte.
 */
export type BodySource = () => Readable;

/**
 * `source` as a stream that fails with `tooLarge()` once more than `max` bytes went by, and with the
 * source's own error when the client goes away. The source is only unpiped, never destroyed, on a limit
 * failure, so the transport can still answer 413 before it closes the connection.
 */
export function limitBytes(source: Readable, max: number, tooLarge: () => BlobdError): Readable {
  let seen = 0;
  const limited = new Transform({
    // As large as the store's own buffers: the 16 KiB default forced a backpressure turn per socket chunk.
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) done(tooLarge());
      else done(null, chunk);
    },
  });
  // Bytes start flowing at once, and the limit can trip before the consumer has attached its pipeline;
  // the error stays on the stream (`errored`) for that pipeline to see, instead of crashing the process.
  limited.on('error', () => {});
  finished(source, (err) => {
    if (err && !limited.destroyed) {
      // The transport failing (a reset, a premature close) is the client leaving; any other error is the
      // answer itself: a limit tripped further up (a signed URL's max_size), or a front's check of the body
      // (a chunk signature, a checksum), which must reach the client as what it is, not as a retryable abort.
      limited.destroy(isTransportError(err) ? new BlobdError('request_aborted', 'the client closed the connection before the body ended') : err);
    }
  });
  return source.pipe(limited);
}

/** An error of the connection itself (node's ECONNRESET, ERR_STREAM_PREMATURE_CLOSE, 'aborted'), not one of a check. */
function isTransportError(err: Error): boolean {
  if (err instanceof BlobdError) return false;
  const code = (err as { code?: unknown }).code;
  return (typeof code === 'string' && /^(?:E[A-Z0-9]+|ERR_[A-Z0-9_]+)$/.test(code)) || err.message === 'aborted' || code === undefined;
}

export function tooLarge(max: number, limitName = 'limit'): BlobdError {
  return new BlobdError('too_large', `the body exceeds the ${limitName} of ${max} bytes`, { limit: max });
}
