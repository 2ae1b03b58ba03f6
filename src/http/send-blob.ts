// The one download path for blob bytes: ETag, If-Match / If-Unmodified-Since (412), If-None-Match /
// If-Modified-Since (304), a single Range (206/416), HEAD without opening the file, Cache-Control and
// Content-Disposition. Object downloads reuse it; the S3 front decides its own headers and conditions and
// reuses the streaming part (streamContent).
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { BlobCopy, ByteRange } from '../core/blobs.ts';
import { BlobdError } from '../core/errors.ts';
import type { AppEnv } from './env.ts';
import { renderError } from './errors.ts';

export interface SendableBlob {
  readonly digest: string;
  readonly size: number;
  readonly open: (range?: ByteRange) => Promise<BlobCopy>;
  readonly contentType?: string;
  readonly filename?: string;
  readonly lastModified?: Date;
  /** Default: immutable for a year (content addressed by digest never changes). */
  readonly cacheControl?: string;
}

export type RangeRequest = { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

/**
 * Interprets a Range header against a representation of `size` bytes (RFC 9110 §14). Anything we do not
 * serve as one range — another unit, bad syntax, several ranges — is ignored and the whole blob is sent,
 * which the RFC allows; a well-formed single range that cannot be satisfied is 416.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (!header) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: 'full' };
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: 'partial', range: { start, end } };
}

/** True when an If-None-Match list names this entity tag (weak comparison, RFC 9110 §13.1.2). */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/** True when an If-Match list names this entity tag (strong comparison, RFC 9110 §13.1.1). */
function matches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim() === etag);
}

/**
 * An If-Match header as core takes it: '*', or the digests its strong entity tags name (a weak tag never
 * matches: RFC 9110 §13.1.1), possibly none. Undefined when there is no header.
 */
export function ifMatchOf(header: string | undefined): string | string[] | undefined {
  if (header === undefined) return undefined;
  if (header.trim() === '*') return '*';
  return header
    .split(',')
    .map((t) => t.trim())
    .filter((t) => !t.startsWith('W/'))
    .map((t) => t.replace(/^"(.*)"$/, '$1'));
}

/** An HTTP date in ms (whole seconds), or undefined when it is not one (then the condition is ignored). */
function httpDate(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const ms = Date.parse(header);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000) * 1000;
}

/** RFC 6266 / 8187: an ASCII fallback plus the exact UTF-8 name in filename*. */
export function contentDisposition(filename: string, disposition: 'attachment' | 'inline' = 'attachment'): string {
  const cleaned = filename.replace(/[\u0000-\u001f\u007f]/g, '');
  const fallback = cleaned.replace(/[^\x20-\x7e]|["\\/%]/g, '_');
  const encoded = encodeURIComponent(cleaned).replace(/['()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${disposition}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

export async function sendBlob(c: Context<AppEnv>, blob: SendableBlob): Promise<Response> {
  const etag = `"${blob.digest}"`;
  const headers: Record<string, string> = {
    ETag: etag,
    'Accept-Ranges': 'bytes',
    'Cache-Control': blob.cacheControl ?? 'private, max-age=31536000, immutable',
    'X-Content-Type-Options': 'nosniff',
  };
  if (blob.lastModified) headers['Last-Modified'] = blob.lastModified.toUTCString();
  const ifMatch = c.req.header('if-match');
  if (ifMatch !== undefined && !matches(ifMatch, etag)) {
    return renderError(c, new BlobdError('precondition_failed', 'If-Match does not name this content', { etag: blob.digest }), { ETag: etag });
  }
  // Last-Modified in whole seconds, as the header carries it.
  const modified = blob.lastModified ? Math.floor(blob.lastModified.getTime() / 1000) * 1000 : undefined;
  // If-Unmodified-Since only without If-Match, If-Modified-Since only without If-None-Match (RFC 9110 §13.2.2).
  const unmodifiedSince = ifMatch === undefined ? httpDate(c.req.header('if-unmodified-since')) : undefined;
  if (modified !== undefined && unmodifiedSince !== undefined && modified > unmodifiedSince) {
    return renderError(c, new BlobdError('precondition_failed', 'the content changed after If-Unmodified-Since', { etag: blob.digest }), { ETag: etag });
  }
  const inm = c.req.header('if-none-match');
  if (inm !== undefined && noneMatch(inm, etag)) return c.body(null, 304, headers);
  const modifiedSince = inm === undefined ? httpDate(c.req.header('if-modified-since')) : undefined;
  if (modified !== undefined && modifiedSince !== undefined && modified <= modifiedSince) return c.body(null, 304, headers);

  // A stored type that cannot be a header value (any text can be written natively) is not sent as one.
  headers['Content-Type'] = blob.contentType && /^[\t\x20-\x7e]*$/.test(blob.contentType) ? blob.contentType : 'application/octet-stream';
  if (blob.filename) headers['Content-Disposition'] = contentDisposition(blob.filename);

  const ifRange = c.req.header('if-range');
  const rangeHeader = ifRange === undefined || ifRange.trim() === etag ? c.req.header('range') : undefined;
  const want = parseRange(rangeHeader, blob.size);
  if (want.kind === 'unsatisfiable') {
    return renderError(
      c,
      new BlobdError('range_not_satisfiable', `the range lies outside the ${blob.size} bytes`, { size: blob.size }),
      { 'Content-Range': `bytes */${blob.size}` },
    );
  }
  const range = want.kind === 'partial' ? want.range : undefined;
  const status = range ? 206 : 200;
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${blob.size}`;
  headers['Content-Length'] = String(range ? range.end - range.start + 1 : blob.size);

  // HEAD: say everything, open nothing — a stream that nobody reads would leak its descriptor.
  if (c.req.method === 'HEAD' || blob.size === 0) return c.body(null, status, headers);
  return streamContent(c, status, headers, () => blob.open(range));
}

/**
 * Sends content whose status and headers (Content-Length included) the caller decided: the S3 front's
 * GetObject uses it after its own conditions and ranges. Not for HEAD or empty content (nothing to open).
 */
export async function streamContent(
  c: Context<AppEnv>,
  status: 200 | 206,
  headers: Record<string, string>,
  open: () => Promise<BlobCopy>,
): Promise<Response> {
  const copy = await open();
  const outgoing = c.env?.outgoing;
  if (!outgoing) return c.body(webStream(copy), status, headers);
  // Hot path: write the file straight to the socket, through buffers the byte store reuses (see BlobCopy: no
  // buffer allocated per chunk, so no GC storm on a 1 GiB download). Each chunk's buffer goes back to the
  // store once the socket has taken it, which is also the backpressure: one chunk in flight.
  const prepared = c.body(null, status, headers);
  outgoing.writeHead(prepared.status, Object.fromEntries(prepared.headers));
  const promised = Number(headers['Content-Length']);
  let sent = 0;
  // A write to a connection the client has just reset is dropped without its callback ever running, and
  // the response only says `destroyed` once its 'close' comes: so every write still waiting is failed on
  // 'close', or the copy would wait forever holding its file and buffers.
  const waiting = new Set<(err: Error) => void>();
  let gone = false;
  // A download whose socket takes no more bytes for the send timeout is cut: its chunk and its file are held
  // until then. Progress is seen a chunk at a time (Node tells only when a whole write is in the kernel, and
  // the kernel wakes a writer only once about a third of the socket's buffer has drained), so a client must
  // take about that much, ~1.5 MiB on Linux, within the timeout: like nginx's send_timeout.
  const sendTimeoutMs = c.get('sendTimeoutMs');
  const stalled = sendTimeoutMs
    ? setTimeout(() => {
        gone = true;
        c.get('log').info({ sent, size: promised, send_timeout_ms: sendTimeoutMs }, 'download cut: its socket took no more bytes for the send timeout');
        c.get('metrics')?.sendTimedOut();
        outgoing.destroy();
      }, sendTimeoutMs)
    : undefined;
  outgoing.once('close', () => {
    clearTimeout(stalled);
    gone = true;
    for (const fail of waiting) fail(new Error('the client went away'));
    waiting.clear();
  });
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (gone || outgoing.destroyed || outgoing.socket?.destroyed) return reject(new Error('the client went away'));
      waiting.add(reject);
      outgoing.write(chunk, (err) => {
        waiting.delete(reject);
        if (err) return reject(err);
        sent += chunk.length;
        if (!gone) stalled?.refresh(); // never re-armed once it fired or the connection went
        resolve();
      });
    });
  copy.pipeTo(write).then(
    () => {
      clearTimeout(stalled);
      c.get('metrics')?.sent(sent);
      // A blob file shorter than its row says (damage fsck will report): never leave the client waiting
      // for bytes that will not come — cut the connection so it sees a truncated response.
      if (sent < promised) outgoing.destroy();
      else outgoing.end();
    },
    () => {
      // The client went away mid-download (or the file could not be read, or the send timeout cut it): the
      // file is closed; the access log records complete: false.
      clearTimeout(stalled);
      c.get('metrics')?.sent(sent);
      outgoing.destroy();
    },
  );
  return RESPONSE_ALREADY_SENT;
}

/** A Web stream of the copy's bytes, for a caller that is not on node:http (each chunk is copied out). */
function webStream(copy: BlobCopy): ReadableStream<Uint8Array> {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  copy
    .pipeTo((chunk) => writer.write(new Uint8Array(chunk)))
    .then(
      () => writer.close(),
      (err: unknown) => writer.abort(err),
    )
    .catch(() => {}); // the reader went away: nothing left to tell
  return readable;
}
