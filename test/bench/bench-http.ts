// The bench's HTTP client on node:http (the same one for blobd and every rival, so the client's cost is
// the same for all): send a buffer, a byte range of a file or nothing; read a body as text or hash it.
// Every request has a deadline, so a stuck server fails the bench instead of hanging it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const TIMEOUT_MS = 300_000;

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as text, or with `hash: true` its digest as `sha256:<hex>` (empty with `discard: true`). */
  body: string;
  bytes: number;
}

export interface Send {
  method?: string;
  headers?: Record<string, string>;
  /** A buffer, an inclusive byte range of a file (streamed, 1 MiB reads), or a stream of `length` bytes. */
  body?: Buffer | { file: string; start: number; end: number } | { stream: Readable; length: number };
  /** Hash the response body instead of keeping it (downloads). */
  hash?: boolean;
  /** Only count the response body's bytes. */
  discard?: boolean;
}

export function send(url: string, opts: Send = {}): Promise<Reply> {
  const { method = 'POST', headers = {}, body, hash = false, discard = false } = opts;
  const length = body === undefined ? 0 : Buffer.isBuffer(body) ? body.length : 'stream' in body ? body.length : body.end - body.start + 1;
  const all = method === 'GET' || method === 'HEAD' || method === 'DELETE' ? headers : { ...headers, 'content-length': String(length) };
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: all, timeout: TIMEOUT_MS }, (res) => {
      const h = hash ? createHash('sha256') : null;
      let text = '';
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (h) h.update(c);
        else if (!discard) text += c.toString('utf8');
      });
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: h ? `sha256:${h.digest('hex')}` : text, bytes }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else if ('stream' in body) pipeline(body.stream, req).catch(reject);
    else pipeline(createReadStream(body.file, { start: body.start, end: body.end, highWaterMark: 1 << 20 }), req).catch(reject);
  });
}

/** `send`, then throw unless the status is `want`. */
export async function expect(want: number, url: string, opts: Send = {}): Promise<Reply> {
  const res = await send(url, opts);
  if (res.status !== want) throw new Error(`${opts.method ?? 'POST'} ${url}: ${res.status} (wanted ${want}) ${res.body.slice(0, 300)}`);
  return res;
}
