// A rival for the bench: @tus/server with @tus/file-store on 127.0.0.1, port 0, uploads under /files in
// the directory given as argv[2]. Prints "tus listening on URL". Bench-only; never part of npm test.
// Note for a fair reading: @tus/file-store neither hashes nor fsyncs (data or its .json info files).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const tus = new Server({ path: '/files', relativeLocation: true, datastore: new FileStore({ directory: process.argv[2]! }) });
const server = createServer((req, res) => {
  tus.handle(req, res).catch(() => res.destroy());
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`tus listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
