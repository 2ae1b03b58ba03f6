// The bar blobd's hot path is measured against: a bare node:http server that does the same work for a
// one-shot upload (hash + write + fsync + rename + dir fsync) and a download (stream the file), and
// nothing else, with the same 1 MiB buffers blobd uses. Prints "baseline listening on URL". Bench-only; never part of npm test.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const dir = process.argv[2]!;
await mkdir(path.join(dir, 'tmp'), { recursive: true });
await mkdir(path.join(dir, 'blobs'), { recursive: true });
let n = 0;

async function syncDir(d: string) {
  const fh = await open(d, 'r');
  await fh.sync();
  await fh.close();
}

const server = createServer(async (req, res) => {
  try {
    if (req.method === 'POST') {
      const tmp = path.join(dir, 'tmp', String(n++));
      const hash = createHash('sha256');
      let size = 0;
      const tap = new Transform({
        highWaterMark: 1 << 20,
        transform(chunk: Buffer, _e, done) {
          hash.update(chunk);
          size += chunk.length;
          done(null, chunk);
        },
      });
      await pipeline(req, tap, createWriteStream(tmp, { flush: true, highWaterMark: 1 << 20 }));
      const hex = hash.digest('hex');
      await rename(tmp, path.join(dir, 'blobs', hex));
      await syncDir(path.join(dir, 'blobs'));
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ digest: `sha256:${hex}`, size }));
    } else {
      const hex = (req.url ?? '').split('/').pop()!.replace(/^sha256:/, '');
      const file = path.join(dir, 'blobs', hex);
      const st = await stat(file);
      res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
      await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), res);
    }
  } catch (err) {
    if (!res.headersSent) res.writeHead(500).end(String(err));
    else res.destroy();
  }
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`baseline listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
