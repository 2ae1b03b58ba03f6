// tus from a real browser: headless Chromium (Debian's /usr/bin/chromium, or CHROMIUM_PATH) driven by
// playwright-core loads a page from a second origin, builds a File of pseudo-random bytes and uploads it with
// tus-js-client through a signed URL, so CORS (preflights, exposed headers) is exercised by a browser and not
// by us. The page then reads Blobd-Digest from a HEAD of the upload URL. Skipped, with the reason, where no
// Chromium is installed (`apt-get install chromium`).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createToken } from './helpers/access.ts';
import { sha256 } from './helpers/bytes.ts';
import { makeTempDir, removeDir, ROOT, startDaemon, type Daemon } from './helpers/daemon.ts';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;

/** Root, no network: no sandbox, and nothing that phones home or updates itself. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * The same bytes in Node and in the page: one xorshift32 source text, run in both. Plain JavaScript in a
 * string, because a function's toString() after tsx may call helpers the page does not have.
 */
const GENERATOR = `function pseudoRandomBytes(size, seed) {
  const out = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}`;
const pseudoRandomBytes = new Function(`${GENERATOR}; return pseudoRandomBytes;`)() as (size: number, seed: number) => Uint8Array;

/** The page: tus-js-client from node_modules, the generator, and one upload function for the test to call. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>blobd tus browser test</title>
<script src="/tus.min.js"></script>
<script>
${GENERATOR}
window.runUpload = (endpoint, size, seed) => new Promise((resolve, reject) => {
  const file = new File([pseudoRandomBytes(size, seed)], 'browser.bin', { type: 'application/octet-stream' });
  const upload = new tus.Upload(file, {
    endpoint,
    chunkSize: 1024 * 1024,
    retryDelays: [],
    metadata: { filename: file.name, filetype: file.type, relativePath: 'album/' + file.name },
    onError: (err) => reject(new Error('tus: ' + err.message)),
    onSuccess: async () => {
      try {
        const res = await fetch(upload.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
        resolve({
          uploadUrl: upload.url,
          status: res.status,
          digest: res.headers.get('Blobd-Digest'),
          offset: res.headers.get('Upload-Offset'),
          metadata: res.headers.get('Upload-Metadata'),
        });
      } catch (err) {
        reject(new Error('HEAD: ' + err.message));
      }
    },
  });
  upload.start();
});
// parallelUploads splits the file into partial uploads (Upload-Concat), which blobd refuses with a 400:
// the page must see that status, not a failed preflight (status 0, "a network error").
window.runParallel = (endpoint, size, seed) => new Promise((resolve) => {
  const file = new File([pseudoRandomBytes(size, seed)], 'parallel.bin', { type: 'application/octet-stream' });
  const upload = new tus.Upload(file, {
    endpoint,
    parallelUploads: 2,
    retryDelays: [],
    metadata: { filename: file.name, filetype: file.type },
    onError: (err) => resolve({
      outcome: 'error',
      status: err.originalResponse ? err.originalResponse.getStatus() : 0,
      body: err.originalResponse ? err.originalResponse.getBody() : null,
      message: String(err.message),
    }),
    onSuccess: () => resolve({ outcome: 'success' }),
  });
  upload.start();
});
</script>
<p>blobd tus browser test</p>
`;

/** Serves the page and tus.min.js on 127.0.0.1, a port of its own: another origin than the daemon. */
async function startPageServer(): Promise<{ server: Server; origin: string }> {
  const tusJs = await readFile(path.join(ROOT, 'node_modules/tus-js-client/dist/tus.min.js'));
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://page').pathname;
    if (pathname === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    else if (pathname === '/tus.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(tusJs);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('tus from headless Chromium (tus-js-client, CORS, signed URL)', { skip: SKIP }, () => {
  let d: Daemon;
  let pages: { server: Server; origin: string };
  let profile: string;
  let context: BrowserContext;
  let page: Page;
  const browserLog: string[] = [];

  before(async () => {
    pages = await startPageServer();
    d = await startDaemon({ args: ['--cors-origin', pages.origin] });
    profile = await makeTempDir('blobd-chromium-');
    // A persistent context on our own fresh profile dir (playwright refuses --user-data-dir in args).
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: 60_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => browserLog.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => browserLog.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => browserLog.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(`${pages.origin}/`, { timeout: 30_000 });
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (pages) await new Promise((resolve) => pages.server.close(resolve));
    if (d) {
      await d.stop();
      await removeDir(path.dirname(d.dataDir)); // the daemon's temp dir, data/ and all
    }
    if (profile) await removeDir(profile);
  });

  test('a page on another origin uploads a File with tus-js-client and reads Blobd-Digest through CORS', { timeout: 120_000 }, async () => {
    assert.notEqual(new URL(d.url).origin, pages.origin, 'the page and the daemon are different origins');
    const writer = await createToken(d, ['blobs:write']);
    const signed = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { authorization: `Bearer ${writer.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'POST', path: '/api/tus/', expires_in: 600 }),
    });
    assert.equal(signed.status, 201, await signed.clone().text());
    const { url } = (await signed.json()) as { url: string };

    // Three full 1 MiB chunks and a partial one.
    const size = 3 * 1024 * 1024 + 12_345;
    const seed = 0x5eed1234;
    const expected = sha256(pseudoRandomBytes(size, seed));

    const call = `runUpload(${JSON.stringify(url)}, ${size}, ${seed})`;
    const result = (await page.evaluate(call).catch((err: Error) => {
      throw new Error(`${err.message}\nbrowser log:\n${browserLog.join('\n')}\ndaemon output:\n${d.output()}`);
    })) as { uploadUrl: string; status: number; digest: string | null; offset: string | null; metadata: string | null };

    assert.equal(new URL(result.uploadUrl).origin, new URL(d.url).origin, 'the upload URL is on the daemon');
    assert.equal(result.status, 200);
    assert.equal(result.offset, String(size), 'Upload-Offset is readable from the page and says all of it');
    assert.equal(result.digest, expected, 'Blobd-Digest is exposed to the page and is the SHA-256 of the bytes');
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    assert.equal(
      result.metadata,
      `filename ${b64('browser.bin')},filetype ${b64('application/octet-stream')},relativePath ${b64('album/browser.bin')}`,
      "Upload-Metadata is exposed to the page and is what tus-js-client sent, the client's own keys included",
    );

    const res = await d.api(`/api/blobs/${expected}`);
    assert.equal(res.status, 200);
    const stored = Buffer.from(await res.arrayBuffer());
    assert.equal(stored.length, size);
    assert.ok(stored.equals(pseudoRandomBytes(size, seed)), 'the blob holds exactly the bytes the page built');
  });

  test('parallelUploads: 2 from another origin gets the documented 400 (Upload-Concat refused), not a network error', { timeout: 120_000 }, async () => {
    const writer = await createToken(d, ['blobs:write']);
    const signed = await d.api('/api/signed-urls', {
      method: 'POST',
      headers: { authorization: `Bearer ${writer.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'POST', path: '/api/tus/', expires_in: 600 }),
    });
    assert.equal(signed.status, 201, await signed.clone().text());
    const { url } = (await signed.json()) as { url: string };
    const before = ((await (await d.api('/api/blobs/uploads', { headers: { authorization: `Bearer ${writer.token}` } })).json()) as { items: unknown[] }).items.length;

    const result = (await page.evaluate(`runParallel(${JSON.stringify(url)}, ${256 * 1024}, 7)`)) as {
      outcome: string;
      status?: number;
      body?: string | null;
      message?: string;
    };
    const context = `${JSON.stringify(result)}\nbrowser log:\n${browserLog.join('\n')}`;
    assert.equal(result.outcome, 'error', context);
    assert.equal(result.status, 400, context);
    assert.equal((JSON.parse(result.body!) as { error: { code: string } }).error.code, 'invalid_request', context);
    const after = ((await (await d.api('/api/blobs/uploads', { headers: { authorization: `Bearer ${writer.token}` } })).json()) as { items: unknown[] }).items.length;
    assert.equal(after, before, 'no partial upload was created');
  });
});
