// `blobd put FILE|-`: upload through an upload session, hashing locally while sending, and complete with
// the digest so the daemon verifies what it stored. A file's session is remembered (local-state.ts): a
// rerun after Ctrl-C, a lost connection or a daemon restart asks the session's status and continues from
// the daemon's acknowledged offset. A file whose digest is already known is offered by digest first, and
// the daemon that has it answers at once: nothing is sent.
import { Option, type Command } from 'commander';
import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { ClientRequest } from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { parseSize } from '../../config.ts';
import { ApiError, checkKeyLength, errorOf, readText, UsageError, type BlobdClient } from '../client.ts';
import { ParallelHasher } from '../hasher.ts';
import { LocalState, sameFile, type UploadPart, type UploadTarget } from '../local-state.ts';
import { emit, exitInterrupted, note, withClient, type GlobalOptions } from '../output.ts';
import { progressBar, type Progress } from '../progress.ts';

interface PutOptions {
  bucket?: string;
  key?: string;
  temporary?: boolean;
  chunkSize: string;
  filename?: string;
  contentType?: string;
}

interface Completed {
  id: string;
  digest: string;
  size: number;
  filename: string | null;
  deduplicated: boolean;
  bucket?: string;
  key?: string;
  revision?: number;
}

/** 4 MiB reads, 8 in flight: large enough that per-read costs vanish next to the copies (measured). */
const SLAB_SIZE = 4 << 20;
const SLABS = 8;
/**
 * How often an append is retried after a busy session (409 upload_locked: the daemon still finishing an
 * interrupted request) or a gateway's 502/503/504 (a load balancer whose node went away, as in a restart:
 * the next request may reach another node, or the same one back).
 */
const LOCK_RETRIES = 40;
/** A proxy's "the node behind me did not answer", or a daemon's own 503 (its store or database): transient. */
const TRANSIENT = new Set([502, 503, 504]);
const transient = (err: unknown) => err instanceof ApiError && (err.status === 0 || TRANSIENT.has(err.status));

export function registerPut(program: Command): void {
  program
    .command('put')
    .description('upload FILE (or - for standard input) and print its digest; rerun the same command to resume an interrupted upload')
    .argument('<file>', 'a file, or - to read standard input (not resumable)')
    .option('--bucket <bucket>', 'store it as an object in BUCKET (default: pin the blob for your token)')
    .option('--key <key>', 'the object key with --bucket (default: the file name)')
    .option('--temporary', "a temporary pin: it expires after the daemon's --temporary-ttl")
    .option('--filename <name>', 'the file name the daemon records (default: the name of FILE)')
    .option('--content-type <type>', 'the content type the daemon records')
    .addOption(new Option('--chunk-size <size>', 'bytes per request; the daemon makes each durable before it answers').default('64MiB'))
    .addHelpText('after', `
Upload state (session id and token, per file) lives in $XDG_STATE_HOME/blobd, else ~/.local/state/blobd.
A file changed since the interrupted run (size, mtime, ctime, inode) is uploaded afresh. An interrupted upload
holds its bytes on the daemon until the session expires: blobd uploads lists such sessions,
blobd uploads rm ID cancels one.
With --json: {digest, size, deduplicated}, plus {bucket, key, revision} with --bucket.

Examples:
  blobd put photo.jpg                          # prints sha256:…
  blobd put report.pdf --bucket docs --key 2026/q1.pdf
  tar c dir | blobd put - --temporary`)
    .action(async (file: string, opts: PutOptions, cmd: Command) => {
      const chunkSize = parseSize(opts.chunkSize);
      if (chunkSize < 1) throw new UsageError('--chunk-size must be at least 1 byte');
      if (opts.key !== undefined && opts.bucket === undefined) throw new UsageError('--key needs --bucket');
      if (opts.key !== undefined) checkKeyLength(opts.key);
      if (opts.bucket !== undefined && opts.temporary) throw new UsageError('--temporary is for blobs, not objects in a bucket');
      if (file === '-' && opts.bucket !== undefined && opts.key === undefined) throw new UsageError('put - --bucket needs --key');
      await withClient(cmd, async (client, g) => {
        const done = file === '-' ? await putStdin(client, g, opts, chunkSize) : await putFile(client, g, file, opts, chunkSize);
        emit(g, putResult(done), () => done.digest);
        if (done.bucket !== undefined) note(g, `stored as ${done.bucket}/${done.key} revision ${done.revision}`);
      });
    });
}

/**
 * What put prints with --json: the blob's digest and size, whether the daemon had it already, and for an
 * object where it now is. The API's `id` (a digest or an object id, by target) stays out: one shape.
 */
function putResult(c: Completed) {
  const object = c.bucket !== undefined ? { bucket: c.bucket, key: c.key, revision: c.revision } : {};
  return { digest: c.digest, size: c.size, deduplicated: c.deduplicated, ...object };
}

function initiateQuery(opts: PutOptions, extra: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  const add = (k: string, v: string | undefined) => v !== undefined && q.set(k, v);
  add('bucket', opts.bucket);
  add('key', opts.key);
  add('temporary', opts.temporary ? 'true' : undefined);
  add('content_type', opts.contentType);
  for (const [k, v] of Object.entries(extra)) add(k, v);
  return q.toString();
}

/**
 * A session that vanishes while this put sends into it — another `put` of the same file that resumed it and
 * completed it first, a `blobd uploads cancel`, its expiry — means starting afresh, once: by then the other
 * put may have stored the file (then nothing is sent), else it is sent whole.
 */
async function putFile(client: BlobdClient, g: GlobalOptions, file: string, opts: PutOptions, chunkSize: number): Promise<Completed> {
  try {
    return await putFileOnce(client, g, file, opts, chunkSize);
  } catch (err) {
    if (!(err instanceof SessionVanished)) throw err;
    note(g, 'the upload session was completed or cancelled elsewhere meanwhile: starting afresh');
    return putFileOnce(client, g, file, opts, chunkSize).catch((again: unknown) => {
      throw again instanceof SessionVanished ? again.cause : again;
    });
  }
}

/** The session this put was sending into is gone (404 upload_not_found after it began). */
class SessionVanished extends Error {
  constructor(override readonly cause: ApiError) {
    super(cause.message);
  }
}

const vanished = (err: unknown) => (err instanceof ApiError && err.code === 'upload_not_found' ? new SessionVanished(err) : err);

async function putFileOnce(client: BlobdClient, g: GlobalOptions, file: string, opts: PutOptions, chunkSize: number): Promise<Completed> {
  const abs = path.resolve(file);
  const st = await stat(abs).catch((err: NodeJS.ErrnoException) => {
    throw new ApiError(0, 'local_file', `cannot read ${file}: ${err.code ?? err.message}`);
  });
  if (!st.isFile()) throw new ApiError(0, 'local_file', `${file} is not a regular file (use - for a pipe)`);
  const key = opts.bucket !== undefined ? (opts.key ?? path.basename(abs)) : undefined;
  const target: UploadTarget = { url: client.url, bucket: opts.bucket ?? null, key: key ?? null, temporary: opts.temporary ?? false };
  const local = new LocalState(client.stateDir);

  let state = await local.readUpload(abs, target);
  let offset = 0;
  if (state && !sameFile(state, st)) {
    note(g, `${file} changed since the interrupted upload: starting afresh`);
    await destroy(client, state.parts[0]!);
    await local.removeUpload(state);
    state = null;
  }
  if (state) {
    const status = await sessionStatus(client, state.parts[0]!);
    if (status === null) {
      note(g, 'the interrupted upload session is gone (expired or destroyed): starting afresh');
      await local.removeUpload(state);
      state = null;
    } else {
      offset = status.offset;
      note(g, `resuming at ${offset} bytes`);
    }
  }
  if (!state) {
    const known = await local.knownDigest(abs, st);
    const query = initiateQuery({ ...opts, key }, { size: String(st.size), filename: opts.filename ?? path.basename(abs), digest: known ?? undefined });
    const started = await client.call<Completed | { id: string; token: string }>('POST', `/api/blobs/uploads?${query}`);
    if (started.status === 201) {
      note(g, `already stored (${st.size} bytes): nothing sent`);
      return started.body as Completed;
    }
    const { id, token } = started.body as { id: string; token: string };
    state = { version: 1, ...target, path: abs, size: st.size, mtime_ms: st.mtimeMs, ctime_ms: st.ctimeMs, ino: st.ino, parts: [{ start: 0, end: st.size, id, token }], created_at: new Date().toISOString() };
    await local.writeUpload(state);
  }

  const part = state.parts[0]!;
  const hasher = new ParallelHasher(SLAB_SIZE, SLABS);
  const fh = await open(abs, 'r');
  const progress = progressBar(g, 'put', st.size, offset);
  const onSigint = () => {
    progress.done();
    exitInterrupted(g);
  };
  process.once('SIGINT', onSigint);
  try {
    await hashRange(fh, 0, offset, hasher);
    await sendFile(client, part, fh, offset, hasher, chunkSize, progress).catch((err: unknown) => Promise.reject(vanished(err)));
    const digest = await hasher.digest();
    const done = await complete(client, part, st.size, digest).catch(async (err: unknown) => {
      if (err instanceof ApiError && err.code === 'digest_mismatch') {
        await destroy(client, part);
        await local.removeUpload(state!);
        throw new ApiError(400, 'digest_mismatch', `the daemon's bytes do not hash to ${file}'s (${digest}); did it change during the upload? Run put again to start afresh`);
      }
      throw vanished(err);
    });
    await local.removeUpload(state);
    await local.rememberDigest(abs, st, done.digest);
    return done;
  } catch (err) {
    if (err instanceof ApiError && transient(err)) throw new ApiError(err.status, err.code, `${err.message}; rerun the same command to resume`);
    if (err instanceof SessionVanished) {
      // Forgotten here unless another put remembers a session of its own for the file by now.
      const remembered = await local.readUpload(abs, target).catch(() => null);
      if (remembered?.parts[0]?.id === part.id) await local.removeUpload(remembered);
    }
    throw err;
  } finally {
    progress.done();
    process.off('SIGINT', onSigint);
    await fh.close();
    await hasher.close();
  }
}

/**
 * Appends [offset, end) of the file in requests of `chunkSize` bytes, hashing on the way. The hash is set
 * back to the last acknowledged offset when a request fails, so it always describes exactly the bytes
 * the daemon holds.
 */
async function sendFile(client: BlobdClient, part: UploadPart, fh: FileHandle, offset: number, hasher: ParallelHasher, chunkSize: number, progress: Progress): Promise<void> {
  for (let retries = 0; offset < part.end; ) {
    const length = Math.min(chunkSize, part.end - offset);
    hasher.save();
    try {
      const from = offset;
      offset = await append(client, part, offset, length, (out) => pump(fh, out, from, length, hasher, progress));
      retries = 0;
    } catch (err) {
      hasher.restore();
      const gateway = err instanceof ApiError && TRANSIENT.has(err.status);
      if (!(err instanceof ApiError) || !(gateway || ['upload_locked', 'offset_mismatch'].includes(err.code)) || ++retries > LOCK_RETRIES) throw err;
      // The daemon is finishing an earlier, interrupted request, or kept part of ours, or the node behind a
      // load balancer went away meanwhile: wait, then go on from what the daemon holds now (hashing locally
      // up to there).
      if (err.code === 'upload_locked') await new Promise((r) => setTimeout(r, 250));
      if (gateway) await new Promise((r) => setTimeout(r, 500));
      const status = await sessionStatus(client, part);
      if (status === null) throw new ApiError(404, 'upload_not_found', 'the upload session is gone (expired or destroyed); run put again to start afresh');
      if (status.offset < offset) throw new ApiError(409, 'offset_mismatch', `the daemon went back to offset ${status.offset} from ${offset}`);
      await hashRange(fh, offset, status.offset, hasher);
      progress.add(status.offset - offset);
      offset = status.offset;
    }
  }
}

/**
 * One request body: bytes [start, start + length) of the file, read into slabs that go to the socket and
 * to the hashing worker at once. The slab pool bounds what is in flight (backpressure).
 */
async function pump(fh: FileHandle, out: ClientRequest, start: number, length: number, hasher: ParallelHasher, progress: Progress): Promise<void> {
  const end = start + length;
  for (let pos = start; pos < end && !out.destroyed; ) {
    const slab = await hasher.take();
    const { bytesRead } = await fh.read(slab.buffer, 0, Math.min(slab.buffer.length, end - pos), pos);
    if (bytesRead === 0) {
      hasher.give(slab);
      throw new ApiError(0, 'local_file', 'the file became shorter during the upload');
    }
    pos += bytesRead;
    const written = new Promise<void>((resolve) => out.write(slab.buffer.subarray(0, bytesRead), () => resolve()));
    // A failed hash surfaces at digest() or take(); nothing is left unhandled here.
    void Promise.all([hasher.update(slab, bytesRead), written]).then(() => hasher.give(slab), () => undefined);
    progress.add(bytesRead);
  }
  out.end();
}

/** `put -`: standard input in requests of `chunkSize` bytes (chunked transfer encoding), then complete. */
async function putStdin(client: BlobdClient, g: GlobalOptions, opts: PutOptions, chunkSize: number): Promise<Completed> {
  const query = initiateQuery(opts, { filename: opts.filename });
  const started = await client.call<{ id: string; token: string }>('POST', `/api/blobs/uploads?${query}`);
  const part: UploadPart = { start: 0, end: Infinity, id: started.body.id, token: started.body.token };
  const hash = createHash('sha256');
  const progress = progressBar(g, 'put', null);
  const input = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let pending: Buffer | null = null;
  const next = async (): Promise<Buffer | null> => {
    if (pending) {
      const p = pending;
      pending = null;
      return p;
    }
    const r = await input.next();
    return r.done ? null : r.value;
  };
  let offset = 0;
  // Ctrl-C: standard input cannot be resumed, so the session goes now (its bytes would wait for
  // --upload-ttl otherwise), and the message says so. The append in flight is cut first: until the daemon
  // sees it end, the session is locked (409) and cannot be cancelled. Two seconds at most.
  let interrupted: Promise<never> | undefined;
  const onSigint = () => {
    progress.done();
    const bye = () => exitInterrupted(g, 'interrupted; standard input cannot be resumed, nothing was stored');
    setTimeout(bye, 2000);
    client.close();
    interrupted = destroy(client, part, 11).then(bye, bye);
  };
  process.once('SIGINT', onSigint);
  try {
    for (let first = await next(); first !== null; first = await next()) {
      pending = first;
      offset = await append(client, part, offset, undefined, async (out) => {
        for (let sent = 0; sent < chunkSize; ) {
          let piece = await next();
          if (piece === null) break;
          if (piece.length > chunkSize - sent) {
            pending = piece.subarray(chunkSize - sent);
            piece = piece.subarray(0, chunkSize - sent);
          }
          hash.update(piece);
          progress.add(piece.length);
          sent += piece.length;
          if (!out.write(piece)) await once(out, 'drain');
        }
        out.end();
      });
    }
    return await complete(client, part, offset, `sha256:${hash.digest('hex')}`);
  } catch (err) {
    if (interrupted) await interrupted; // the append cut by Ctrl-C: the interruption says what happened
    await destroy(client, part);
    if (err instanceof ApiError) throw new ApiError(err.status, err.code, `${err.message} (standard input cannot be resumed)`);
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
}

/** One append request; resolves with the daemon's new offset. */
async function append(client: BlobdClient, part: UploadPart, offset: number, length: number | undefined, body: (out: ClientRequest) => Promise<void>): Promise<number> {
  const headers: Record<string, string> = { 'upload-token': part.token, 'upload-offset': String(offset), 'content-type': 'application/octet-stream' };
  if (length !== undefined) headers['content-length'] = String(length);
  const res = await client.open({ method: 'POST', path: `/api/blobs/uploads/${part.id}/append`, headers, auth: false }, body);
  const text = await readText(res);
  if (res.statusCode !== 203) throw errorOf(res, text);
  return Number(res.headers['upload-offset']);
}

async function complete(client: BlobdClient, part: UploadPart, size: number, digest: string): Promise<Completed> {
  const res = await client.call<Completed>('POST', `/api/blobs/uploads/${part.id}/complete?digest=${digest}`, {
    headers: { 'upload-token': part.token, 'upload-offset': String(size) },
    auth: false,
  });
  return res.body;
}

/** Where the session is, or null when the daemon no longer has it. */
async function sessionStatus(client: BlobdClient, part: UploadPart): Promise<{ offset: number; state: string } | null> {
  try {
    return (await client.call<{ offset: number; state: string }>('GET', `/api/blobs/uploads/${part.id}`, { headers: { 'upload-token': part.token }, auth: false })).body;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'upload_not_found') return null;
    throw err;
  }
}

/**
 * Best effort: a session we give up on frees its bytes now rather than at --upload-ttl. `lockedRetries`:
 * how often to try again (150 ms apart) while the daemon still holds the session for a request it has not
 * seen end yet (409 upload_locked).
 */
async function destroy(client: BlobdClient, part: UploadPart, lockedRetries = 0): Promise<void> {
  for (let tries = 0; ; tries++) {
    const locked = await client
      .call('DELETE', `/api/blobs/uploads/${part.id}`, { headers: { 'upload-token': part.token }, auth: false })
      .then(() => false, (err: unknown) => err instanceof ApiError && err.code === 'upload_locked');
    if (!locked || tries >= lockedRetries) return;
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Feeds bytes [from, to) of the file to the hasher (the part an earlier run already sent). */
async function hashRange(fh: FileHandle, from: number, to: number, hasher: ParallelHasher): Promise<void> {
  for (let pos = from; pos < to; ) {
    const slab = await hasher.take();
    const { bytesRead } = await fh.read(slab.buffer, 0, Math.min(slab.buffer.length, to - pos), pos);
    if (bytesRead === 0) throw new ApiError(0, 'local_file', 'the file became shorter during the upload');
    pos += bytesRead;
    void hasher.update(slab, bytesRead).then(() => hasher.give(slab), () => undefined);
  }
}
