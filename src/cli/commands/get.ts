// `blobd get DIGEST|BUCKET/KEY [-o FILE]`: download and verify the digest while writing. With -o the bytes
// go to FILE.blobd-part, which is renamed to FILE only once its digest is right; a rerun after
// an interruption continues the partial file with a Range request (If-Range: the digest it belongs to, so
// an object that changed meanwhile starts over). Without -o the bytes go to standard output.
import type { Command } from 'commander';
import { readSync, writeSync } from 'node:fs';
import { lstat, open, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ApiError, asDigest, contentPath, parseTarget, UsageError, type BlobdClient, type Target } from '../client.ts';
import { download, downloadError, type Download } from '../download.ts';
import { ParallelHasher, type Slab } from '../hasher.ts';
import { LocalState } from '../local-state.ts';
import { emit, exitInterrupted, note, withClient, type GlobalOptions } from '../output.ts';
import { cannotWrite, PartialFile, resumableLength } from '../partial-file.ts';
import { progressBar, type Progress } from '../progress.ts';

interface GetOptions {
  output?: string;
  revision?: string;
  fsync?: boolean;
}

/**
 * Bytes land in 128 KiB slabs, each written to the file at once with one write(2) on this thread (while
 * it is still in the CPU cache, no thread-pool round trip) and hashed on the worker. Measured on this
 * project's VM, 1 GiB into the page cache: 4 MiB writes cost 2.7-4.2 CPU-s of kernel time, 256 KiB
 * writes 0.32-0.35 (the kernel's large folios for big writes are slow to come by here), the thread pool
 * 0.2 CPU-s more than writing from here; 128 KiB slabs beat 256 and 512 KiB by ~0.1-0.2 CPU-s per GiB.
 * 64 slabs: 8 MiB in flight at most.
 */
const SLAB_SIZE = 128 << 10;
const SLABS = 64;

export function registerGet(program: Command): void {
  program
    .command('get')
    .description('download a blob by digest, or an object by BUCKET/KEY, verifying its digest')
    .argument('<target>', 'sha256:<hex> (or the bare hex), or BUCKET/KEY')
    .option('-o, --output <file>', 'write to FILE (atomically; an interrupted download resumes) instead of standard output (-o -: standard output, even binary bytes to a terminal)')
    .option('--revision <n>', 'an older revision of an object')
    .option('--fsync', 'with -o: flush FILE to disk before it is renamed into place (survives a power cut; slower)')
    .addHelpText('after', `
Exit code 1 when the bytes do not hash to the digest (with -o, FILE is then left untouched).
Binary bytes (a NUL byte in the first 128 KiB) are not written to a terminal unless -o - asks for it.
With -o, Ctrl-C keeps FILE.blobd-part (exit 130): rerun the same command to resume.

Examples:
  blobd get sha256:dcce…59e1 > hello.txt
  blobd get docs/2026/q1.pdf -o q1.pdf`)
    .action(async (text: string, opts: GetOptions, cmd: Command) => {
      const target = parseTarget(text);
      let pathname = contentPath(target);
      if (opts.revision !== undefined) {
        if (target.kind !== 'object') throw new UsageError('--revision N is for BUCKET/KEY');
        if (!/^[1-9]\d{0,9}$/.test(opts.revision)) throw new UsageError('--revision is a revision number');
        pathname += `?revision=${opts.revision}`;
      }
      await withClient(cmd, async (client, g) => {
        if (opts.output === undefined || opts.output === '-') return toStdout(client, g, target, pathname, opts.output === '-');
        // Ctrl-C keeps the partial file and its state: the same command resumes it.
        const onSigint = () => exitInterrupted(g);
        process.once('SIGINT', onSigint);
        try {
          const done = await toFile(client, g, target, pathname, path.resolve(opts.output), opts.fsync ?? false);
          emit(g, done, () => '');
        } finally {
          process.off('SIGINT', onSigint);
        }
      });
    });
}

/** The digest an answer carries in its ETag (`"sha256:…"`). */
function etagDigest(d: Download): string | null {
  return asDigest(String(d.headers.etag ?? '').replace(/^W\//, '').replace(/"/g, ''));
}

async function fetchContent(client: BlobdClient, pathname: string, headers: Record<string, string> = {}): Promise<Download> {
  const d = await download(client, pathname, headers);
  if (d.status >= 300 && d.status !== 416) throw await downloadError(d);
  return d;
}

function expectedDigest(target: Target, d: Download): string {
  const digest = etagDigest(d) ?? (target.kind === 'blob' ? target.digest : null);
  if (!digest) throw new ApiError(d.status, 'bad_answer', 'the daemon sent no digest (ETag) to verify against');
  if (target.kind === 'blob' && digest !== target.digest) throw new ApiError(d.status, 'bad_answer', `asked for ${target.digest}, got ${digest}`);
  return digest;
}

function verify(expected: string, actual: string): void {
  if (actual !== expected) throw new ApiError(0, 'digest_mismatch', `the downloaded bytes hash to ${actual}, not ${expected}`);
}

/** The whole body to `write` (a stream written once, never resumed), hashed on the way and verified at its end. */
async function receiveVerified(g: GlobalOptions, d: Download, expected: string, write: (piece: Buffer) => Promise<void>): Promise<void> {
  const hasher = new ParallelHasher(SLAB_SIZE, SLABS);
  const progress = progressBar(g, 'get', Number(d.headers['content-length'] ?? NaN) || null);
  try {
    await receive(d, hasher, progress, write);
    verify(expected, await hasher.digest());
  } finally {
    progress.done();
    await hasher.close();
  }
}

async function toStdout(client: BlobdClient, g: GlobalOptions, target: Target, pathname: string, anyway: boolean): Promise<void> {
  const d = await fetchContent(client, pathname);
  const expected = expectedDigest(target, d);
  // As curl does: binary bytes (a NUL in the first slab) are not sent to a terminal, where they would
  // garble the screen, unless `-o -` asked for them.
  let check = process.stdout.isTTY === true && !anyway;
  await receiveVerified(g, d, expected, (piece: Buffer) => {
    if (check && piece.includes(0)) {
      d.discard();
      throw new UsageError('binary output can mess up your terminal; use -o FILE to save it, or -o - to print it anyway');
    }
    check = false;
    return new Promise<void>((resolve, reject) => process.stdout.write(piece, (err) => (err ? reject(err) : resolve())));
  });
}

async function toFile(client: BlobdClient, g: GlobalOptions, target: Target, pathname: string, named: string, sync: boolean) {
  // As curl -o: through a symbolic link into the file it names (the partial file and the rename are beside
  // that file, so the link stays), and into a device or a FIFO as it is (/dev/null is never replaced).
  let file = named;
  if ((await lstat(named).catch(() => null))?.isSymbolicLink()) {
    file = await realpath(named).catch(() => {
      throw new ApiError(0, 'local_file', `cannot write ${named}: it is a symbolic link to a file that does not exist`);
    });
  }
  const existing = await stat(file).catch(() => null);
  if (existing?.isDirectory()) throw new UsageError(`${named} is a directory; -o names the file to write`);
  if (existing && !existing.isFile()) return toSpecialFile(client, g, target, pathname, file);
  // Said before any byte moves, and about FILE: the partial file beside it is ours, not the user's.
  const dir = path.dirname(file);
  const dirStat = await stat(dir).catch(() => null);
  if (!dirStat?.isDirectory()) throw new ApiError(0, 'local_file', `cannot write ${file}: ${dirStat ? `${dir} is not a directory` : `the directory ${dir} does not exist`}`);
  const partial = `${file}.blobd-part`;
  const local = new LocalState(client.stateDir);
  // Only a partial file that is safe to write into is resumed (partial-file.ts); anything else is replaced.
  const have = await resumableLength(partial);
  const belongsTo = have > 0 ? await local.partialDigest(partial) : null;
  const resumable = belongsTo !== null && (target.kind === 'object' || belongsTo === target.digest);
  let res = await fetchContent(client, pathname, resumable ? { range: `bytes=${have}-`, 'if-range': `"${belongsTo}"` } : {});
  let offset = 0;
  if (res.status === 416) {
    // The partial file is as long as the content (it was complete but not yet renamed), or longer.
    res.discard();
    const size = Number(/\/(\d+)$/.exec(String(res.headers['content-range']))?.[1] ?? -1);
    if (size === have) offset = have;
    else res = await fetchContent(client, pathname);
  } else if (res.status === 206) {
    const start = Number(/^bytes (\d+)-/.exec(String(res.headers['content-range']))?.[1] ?? -1);
    if (start !== have) throw new ApiError(206, 'bad_answer', `asked for bytes from ${have}, got ${String(res.headers['content-range'])}`);
    offset = have;
  }
  const expected = offset === have && res.status === 416 ? belongsTo! : expectedDigest(target, res);
  if (offset > 0) note(g, `resuming at ${offset} bytes`);
  else await local.setPartialDigest(partial, expected);

  const part = offset > 0 ? await PartialFile.reopen(file, partial, offset) : await PartialFile.create(file, partial);
  const fh = part.fh;
  const hasher = new ParallelHasher(SLAB_SIZE, SLABS);
  const total = res.status === 416 ? offset : offset + Number(res.headers['content-length'] ?? 0);
  const progress = progressBar(g, 'get', total, offset);
  let actual: string;
  try {
    await hashPrefix(fh, offset, hasher);
    let position = offset;
    const write = async (piece: Buffer) => {
      try {
        for (let done = 0; done < piece.length; ) done += writeSync(fh.fd, piece, done, piece.length - done, position + done);
      } catch (err) {
        throw cannotWrite(file, err); // a full disk (ENOSPC), a quota (EDQUOT), an I/O error
      }
      position += piece.length;
    };
    if (res.status !== 416) await receive(res, hasher, progress, write);
    if (sync) {
      await fh.sync().catch((err: unknown) => {
        throw cannotWrite(file, err);
      });
    }
    actual = await hasher.digest();
  } finally {
    progress.done();
    await fh.close();
    await hasher.close();
  }
  try {
    verify(expected, actual);
  } catch (err) {
    await part.discard();
    await local.clearPartial(partial);
    throw err;
  }
  await part.commit();
  await local.clearPartial(partial);
  const st = await stat(file);
  await local.rememberDigest(file, st, expected);
  return { digest: expected, size: st.size, path: file, resumed_from: offset };
}

/**
 * Into a device, a FIFO or a socket as it is: opened for writing, never replaced, not resumable. A digest
 * mismatch is still exit 1, though the bytes went out.
 */
async function toSpecialFile(client: BlobdClient, g: GlobalOptions, target: Target, pathname: string, file: string) {
  const d = await fetchContent(client, pathname);
  const expected = expectedDigest(target, d);
  const fh = await open(file, 'w').catch((err: unknown) => {
    d.discard();
    throw cannotWrite(file, err);
  });
  let size = 0;
  try {
    await receiveVerified(g, d, expected, async (piece) => {
      try {
        for (let done = 0; done < piece.length; ) done += (await fh.write(piece, done, piece.length - done)).bytesWritten;
      } catch (err) {
        throw cannotWrite(file, err);
      }
      size += piece.length;
    });
  } finally {
    await fh.close();
  }
  return { digest: expected, size, path: file, resumed_from: 0 };
}

/**
 * The body in slabs, each handed to `write` and to the hashing worker at the same time; at most SLABS are
 * in flight. A cut-off keeps what arrived (written) and then throws.
 */
async function receive(d: Download, hasher: ParallelHasher, progress: Progress, write: (piece: Buffer) => Promise<void>): Promise<void> {
  let failed: unknown = null;
  let writes: Promise<void> = Promise.resolve();
  const full = (slab: Slab, length: number) => {
    // Writes stay in order (one after the other); hashing runs beside them.
    writes = writes.then(() => write(slab.buffer.subarray(0, length))).catch((err: unknown) => void (failed ??= err));
    void Promise.all([hasher.update(slab, length), writes]).then(() => hasher.give(slab), () => undefined);
  };
  let cut: unknown = null;
  await d.pump(hasher, full, (n) => progress.add(n)).catch((err: unknown) => (cut = err));
  await writes;
  if (failed) throw failed;
  if (cut) throw cut;
}

/** Feeds the first `length` bytes of the partial file to the hasher. */
async function hashPrefix(fh: FileHandle, length: number, hasher: ParallelHasher): Promise<void> {
  for (let pos = 0; pos < length; ) {
    const slab = await hasher.take();
    // Read here, not through the thread pool: a round trip per small slab would cost more than the read.
    const bytesRead = readSync(fh.fd, slab.buffer, 0, Math.min(slab.buffer.length, length - pos), pos);
    if (bytesRead === 0) throw new ApiError(0, 'local_file', 'the partial file became shorter');
    pos += bytesRead;
    void hasher.update(slab, bytesRead).then(() => hasher.give(slab), () => undefined);
  }
}
