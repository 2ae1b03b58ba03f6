// An HTTP proxy in front of a server that answers the requests `fail` picks itself and forwards the rest
// untouched (the Host header too, so signatures hold). By default its answer is S3's 500 InternalError: a
// store (RGW) that fails one kind of request on demand, for tests of what blobd does then. With `answer`, it
// is a load balancer whose node went away (nginx's 502), for tests of what a client does then.
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';

export interface ProxyAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

const S3_INTERNAL_ERROR: ProxyAnswer = {
  status: 500,
  contentType: 'application/xml',
  body: '<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>',
};

export async function failingProxy(
  target: string,
  /** May look at the headers and act first (the answer is awaited; the body waits meanwhile). */
  fail: (method: string, url: string, headers: IncomingHttpHeaders) => boolean | Promise<boolean>,
  answer: ProxyAnswer = S3_INTERNAL_ERROR,
): Promise<{ endpoint: string; server: Server }> {
  const to = new URL(target);
  const server = createServer(async (req, res) => {
    if (await fail(req.method ?? '', req.url ?? '', req.headers)) {
      req.resume();
      req.on('end', () => res.writeHead(answer.status, { 'content-type': answer.contentType }).end(answer.body));
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
