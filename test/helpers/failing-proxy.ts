// An HTTP proxy in front of a store (RGW) that answers 500 InternalError to the requests `fail` picks and
// forwards the rest untouched (the Host header too, so signatures hold): a store that fails one kind of
// request on demand, for tests of what blobd does then.
import { createServer, request, type Server } from 'node:http';

export async function failingProxy(target: string, fail: (method: string, url: string) => boolean): Promise<{ endpoint: string; server: Server }> {
  const to = new URL(target);
  const server = createServer((req, res) => {
    if (fail(req.method ?? '', req.url ?? '')) {
      req.resume();
      req.on('end', () => res.writeHead(500, { 'content-type': 'application/xml' }).end('<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>'));
      return;
    }
    const out = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}
