// Write operations for load and crash tests, each a single request that either is acknowledged (2xx) or
// throws: `Unexpected` for any other answer, the fetch error when the daemon died under it. Read-backs hash
// what the daemon serves, so a test compares digests, never bytes it had to keep.
import { createHash, randomInt } from 'node:crypto';
import { spawn } from 'node:child_process';
import { randomData, sha256 } from './bytes.ts';
import { BLOBD, type Daemon } from './daemon.ts';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** An answer the workload did not expect from a live daemon (a bug, not a crash). */
export class Unexpected extends Error {
  override name = 'Unexpected';
}

/** Sizes spread evenly on a log scale between `min` and `max`, so most bodies are small and some are not. */
export function randomSize(min = KiB, max = 2 * MiB): number {
  return Math.round(Math.exp(Math.log(min) + Math.random() * (Math.log(max) - Math.log(min))));
}

export function randomBody(min = KiB, max = 2 * MiB): { data: Buffer<ArrayBuffer>; digest: string } {
  const data = randomData(randomSize(min, max));
  return { data, digest: sha256(data) };
}

/** Throws `Unexpected` unless `res.status` is one of `ok` (the body is read for the message). */
export async function expectStatus(res: Response, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return;
  throw new Unexpected(`${what} → ${res.status} ${await res.text().catch(() => '(body lost)')}`);
}

/** The sha256 of what a GET answered, or its status when that was not 200. */
export async function readDigest(res: Response): Promise<{ status: number; digest: string | null }> {
  if (res.status !== 200) {
    await res.arrayBuffer().catch(() => undefined);
    return { status: res.status, digest: null };
  }
  const hash = createHash('sha256');
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(piece);
  return { status: 200, digest: `sha256:${hash.digest('hex')}` };
}

export async function readBlob(d: Daemon, digest: string) {
  return readDigest(await d.api(`/api/blobs/${digest}`));
}

export async function readObject(d: Daemon, bucket: string, key: string) {
  return readDigest(await d.api(`/api/buckets/${bucket}/objects/${encodeURIComponent(key)}`));
}

/** A GET of the first byte only: 206 says the row and its file are there, without reading the rest. */
export async function probe(d: Daemon, pathname: string): Promise<number> {
  const res = await d.api(pathname, { headers: { range: 'bytes=0-0' } });
  await res.arrayBuffer();
  return res.status;
}

export async function createBucket(d: Daemon, name: string): Promise<void> {
  const res = await d.api(`/api/buckets/${name}`, {
    method: 'PUT',
    body: '{}',
    headers: { 'content-type': 'application/json' },
  });
  await expectStatus(res, [200, 201], `PUT /api/buckets/${name}`);
  await res.arrayBuffer();
}

/**
 * One-shot upload, `POST /api/blobs` or `PUT /api/blobs/{digest}`. Resolves once the 2xx arrived (the
 * acknowledgement); the answer's digest is checked when its body still arrives.
 */
export async function uploadBlob(d: Daemon, data: Buffer<ArrayBuffer>, digest: string, how: 'post' | 'put'): Promise<void> {
  const res =
    how === 'post'
      ? await d.api('/api/blobs', { method: 'POST', body: data })
      : await d.api(`/api/blobs/${digest}`, { method: 'PUT', body: data });
  await expectStatus(res, [201], `${how.toUpperCase()} blob of ${data.length} bytes`);
  const body = (await res.json().catch(() => null)) as { digest?: string } | null;
  if (body && body.digest !== digest) throw new Unexpected(`${how.toUpperCase()} blob answered ${body.digest}, sent ${digest}`);
}

/** `PUT /api/buckets/{bucket}/objects/{key}` with a raw body; resolves on the 2xx. */
export async function putObject(d: Daemon, bucket: string, key: string, data: Buffer<ArrayBuffer>, digest: string): Promise<void> {
  const res = await d.api(`/api/buckets/${bucket}/objects/${encodeURIComponent(key)}`, {
    method: 'PUT',
    body: data,
    headers: { 'content-type': 'application/octet-stream' },
  });
  await expectStatus(res, [200, 201], `PUT object ${key}`);
  const body = (await res.json().catch(() => null)) as { digest?: string } | null;
  if (body && body.digest !== digest) throw new Unexpected(`PUT object ${key} answered ${body.digest}, sent ${digest}`);
}

export async function deleteObject(d: Daemon, bucket: string, key: string): Promise<void> {
  const res = await d.api(`/api/buckets/${bucket}/objects/${encodeURIComponent(key)}`, { method: 'DELETE' });
  await expectStatus(res, [204], `DELETE object ${key}`);
}

/** The report of POST /api/admin/fsck and `blobd fsck`. */
export interface Fsck {
  checked: number;
  corrupt: string[];
  missing: string[];
  orphans: string[];
  quarantined: string[];
}

export async function adminPost<T>(d: Daemon, pathname: string): Promise<T> {
  const res = await d.api(pathname, { method: 'POST' });
  await expectStatus(res, [200], `POST ${pathname}`);
  return (await res.json()) as T;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `bin/blobd` with `args` and collects its output, asynchronously so that a load can run
 * meanwhile. Killed (and rejected) when it has not finished within `timeoutMs`.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BLOBD, ...args], {
      env: { ...(process.env as Record<string, string>), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`blobd ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A random pick from a non-empty list. */
export function pick<T>(items: readonly T[]): T {
  return items[randomInt(items.length)]!;
}
