// The verified body of an S3 request: aws-chunked decoded when it is, and checked in the same pass against
// everything the client said about it (signed SHA-256, Content-MD5, x-amz-checksum-*, trailers). Every
// failure is the stream's error before its end, so a consumer that commits on 'end' never commits a bad body.
import { createHash, type Hash } from 'node:crypto';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Digest } from '../../core/digest.ts';
import { BlobdError } from '../../core/errors.ts';
import { AwsChunkedDecoder, type AwsChunkedOptions } from './aws-chunked.ts';
import { asAlgorithm, checksumAlgorithmOfHeader, checksumHeader, CHECKSUM_ALGORITHMS, createChecksum, createMd5, DIGEST_BYTES, type StreamingChecksum } from './checksums.ts';
import { S3Error } from './errors.ts';
import { checkWorker, onWorker, WORKER_MIN_BYTES, type WorkerBodyChecks } from './check-worker.ts';
import { anonymousPayloadMode, type PayloadMode, type SigV4Request, type VerifiedRequest } from './sigv4.ts';

export interface VerifiedBody {
  /** The content. Fails (before 'end') on any mismatch. */
  readonly body: Readable;
  /** After body ended: the hex MD5 of the content. */
  md5Hex(): string;
  /** After body ended: the checksum the client sent or asked for, to echo in the answer. */
  checksum(): { readonly header: string; readonly value: string } | undefined;
  /** x-amz-decoded-content-length for aws-chunked bodies, else Content-Length. */
  readonly declaredSize: number | undefined;
}

type Headers = SigV4Request['headers'];

/**
 * Wraps a request body. `raw` is never destroyed here: when the body fails, the request is left to node,
 * which drains it after the error answer went out, so the client reads the S3 error instead of a reset.
 * One Transform per body (the aws-chunked decoder, or a pass-through) and no stream.pipeline: at 4 KiB
 * PutObjects a second stream hop and pipeline's own bookkeeping cost more than the hashing.
 */
export function verifiedBody(
  raw: Readable,
  verified: VerifiedRequest | null,
  headers: Headers,
  /** The reader stores the content and compares its own SHA-256 with signedSha256(): not hashed here again. */
  opts: { signedSha256ByReader?: boolean } = {},
): VerifiedBody {
  let plan: Plan;
  try {
    plan = planOf(verified, headers, opts.signedSha256ByReader ?? false);
  } catch (err) {
    const failed = new PassThrough();
    process.nextTick(() => failed.destroy(err instanceof S3Error ? err : new S3Error('InvalidRequest', 400, String(err))));
    return { body: failed, md5Hex: notYet, checksum: () => undefined, declaredSize: undefined };
  }
  const checks = new BodyChecks(plan);
  const body: Transform = plan.chunked ? new AwsChunkedDecoder({ ...plan.chunkedOptions, inspect: checks }) : new CheckedBody(checks);
  // Not stream.pipeline from raw: that destroys the request (and with it the socket) on any failure.
  let ended = false;
  raw.on('end', () => (ended = true));
  raw.on('error', (err) => body.destroy(err instanceof BlobdError || err instanceof S3Error ? err : aborted()));
  raw.on('close', () => {
    if (!ended) body.destroy(aborted());
  });
  body.on('close', () => {
    if (body.readableEnded) return;
    raw.unpipe(body);
    checks.drop();
  });
  raw.pipe(body);
  return {
    body,
    md5Hex: () => checks.md5Hex ?? notYet(),
    checksum: () => checks.answer,
    declaredSize: plan.declaredSize,
  };
}

/**
 * Every hash the body is held to, fed each piece of content once; finish() compares at the end. A large
 * body's hashes run on the check worker (check-worker.ts) when it can compute them all.
 */
class BodyChecks {
  private readonly md5: Hash | undefined;
  private readonly worker: WorkerBodyChecks | undefined;
  md5Hex: string | undefined;
  answer: { header: string; value: string } | undefined;

  constructor(private readonly plan: Plan) {
    const algorithm = plan.checksum?.algorithm;
    if (plan.declaredSize !== undefined && plan.declaredSize >= WORKER_MIN_BYTES && onWorker(algorithm)) {
      this.worker = checkWorker().start(plan.sha256 !== undefined, algorithm ?? null);
    } else {
      this.md5 = createMd5();
    }
  }

  update(data: Buffer): void {
    if (this.worker) return this.worker.update(data);
    this.md5!.update(data);
    this.plan.sha256?.update(data);
    this.plan.checksum?.update(data);
  }

  /** When the worker is behind: a promise to wait for before feeding more. */
  ready(): Promise<void> | undefined {
    return this.worker?.ready();
  }

  /** The body failed: nothing to finish. */
  drop(): void {
    this.worker?.drop();
  }

  /** Throws the S3Error of the first mismatch, in S3's order of precedence. */
  async finish(trailers: ReadonlyMap<string, string> | undefined): Promise<void> {
    let computed: Computed;
    if (this.worker) {
      const r = await this.worker.finish();
      computed = { md5: Buffer.from(r.md5Hex, 'hex'), sha256Hex: r.sha256Hex ?? undefined, checksum: r.checksum ?? undefined };
    } else {
      computed = {
        md5: this.md5!.digest(),
        sha256Hex: this.plan.sha256?.hash.digest('hex'),
        checksum: this.plan.checksum === undefined ? undefined : await this.plan.checksum.digest(),
      };
    }
    this.answer = finish(this.plan, trailers, computed);
    this.md5Hex = computed.md5.toString('hex');
  }
}

/** What the checks computed of the body. */
interface Computed {
  readonly md5: Buffer;
  readonly sha256Hex: string | undefined;
  readonly checksum: string | undefined;
}

/** A plain body: content passed through as it comes, the checks fed on the way. */
class CheckedBody extends Transform {
  constructor(private readonly checks: BodyChecks) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.checks.update(chunk);
    const behind = this.checks.ready();
    if (behind === undefined) callback(null, chunk);
    else behind.then(() => callback(null, chunk), callback);
  }
  override _flush(callback: TransformCallback): void {
    this.checks.finish(undefined).then(() => callback(), callback);
  }
}

interface Plan {
  readonly chunked: boolean;
  readonly chunkedOptions: AwsChunkedOptions;
  readonly declaredSize: number | undefined;
  /** Signed payload hash to compare with. */
  readonly sha256?: { readonly hash: Hash; readonly expected: string; update(data: Buffer): void };
  readonly contentMd5?: string;
  /** The checksum computed, and where its expected value comes from. */
  readonly checksum?: StreamingChecksum;
  readonly checksumSource?: { readonly from: 'header'; readonly value: string } | { readonly from: 'trailer'; readonly name: string } | { readonly from: 'none' };
}

function planOf(verified: VerifiedRequest | null, headers: Headers, signedSha256ByReader: boolean): Plan {
  const mode: PayloadMode = verified?.payload ?? anonymousPayloadMode(headers);
  const encoding = (one(headers, 'content-encoding') ?? '').toLowerCase();
  const chunked = mode.kind === 'chunked-signed' || mode.kind === 'chunked-unsigned-trailer' || encoding.split(',').some((e) => e.trim() === 'aws-chunked');
  const decodedLength = sizeHeader(headers, 'x-amz-decoded-content-length');
  if (chunked && decodedLength === undefined && mode.kind === 'chunked-signed') {
    throw new S3Error('MissingContentLength', 411, 'You must provide the x-amz-decoded-content-length HTTP header.');
  }
  const declaredSize = chunked ? decodedLength : sizeHeader(headers, 'content-length');

  // Which checksum: a trailer (x-amz-trailer), else a header x-amz-checksum-<algo>, else the one the SDK named.
  const trailerNames = (one(headers, 'x-amz-trailer') ?? '')
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '');
  if (trailerNames.length > 0 && !chunked) throw new S3Error('InvalidRequest', 400, 'x-amz-trailer needs an aws-chunked body.');
  const trailerAlgorithms = trailerNames.map((n) => checksumAlgorithmOfHeader(n));
  if (trailerNames.length > 1 || trailerAlgorithms.some((a) => a === undefined)) {
    throw new S3Error('InvalidRequest', 400, `Unsupported x-amz-trailer "${trailerNames.join(',').slice(0, 100)}": expecting one of ${CHECKSUM_ALGORITHMS.map(checksumHeader).join(', ')}.`);
  }
  const headerChecksums = CHECKSUM_ALGORITHMS.filter((a) => one(headers, checksumHeader(a)) !== undefined);
  if (headerChecksums.length + trailerNames.length > 1) throw new S3Error('InvalidRequest', 400, 'Expecting a single x-amz-checksum- header. Multiple checksum types are not allowed.');
  let checksum: StreamingChecksum | undefined;
  let checksumSource: Plan['checksumSource'];
  if (trailerAlgorithms[0] !== undefined) {
    checksum = createChecksum(trailerAlgorithms[0]);
    checksumSource = { from: 'trailer', name: trailerNames[0]! };
  } else if (headerChecksums[0] !== undefined) {
    const algorithm = headerChecksums[0];
    const value = one(headers, checksumHeader(algorithm))!.trim();
    if (!isBase64Of(value, DIGEST_BYTES[algorithm])) throw new S3Error('InvalidRequest', 400, `Value for ${checksumHeader(algorithm)} header is invalid.`);
    checksum = createChecksum(algorithm);
    checksumSource = { from: 'header', value };
  } else {
    const named = one(headers, 'x-amz-sdk-checksum-algorithm') ?? one(headers, 'x-amz-checksum-algorithm');
    const algorithm = named === undefined ? undefined : asAlgorithm(named);
    if (named !== undefined && algorithm === undefined) throw new S3Error('InvalidRequest', 400, `Checksum algorithm "${named.slice(0, 32)}" is not supported.`);
    if (algorithm !== undefined) {
      checksum = createChecksum(algorithm);
      checksumSource = { from: 'none' };
    }
  }

  const contentMd5 = one(headers, 'content-md5');
  if (contentMd5 !== undefined && !isBase64Of(contentMd5.trim(), 16)) throw new S3Error('InvalidDigest', 400, 'The Content-MD5 you specified was invalid.');
  const signing = verified !== null && mode.kind === 'chunked-signed' ? verified : undefined;
  return {
    chunked,
    chunkedOptions: {
      ...(signing === undefined
        ? {}
        : { signing: { signingKey: signing.signingKey, seedSignature: signing.seedSignature, amzDate: signing.amzDate, scope: signing.scope } }),
      signedTrailer: mode.kind === 'chunked-signed' && mode.trailer,
      trailerNames,
      ...(decodedLength === undefined ? {} : { decodedLength }),
    },
    declaredSize,
    ...(mode.kind === 'sha256' && !signedSha256ByReader ? { sha256: sha256Check(mode.hex) } : {}),
    ...(contentMd5 === undefined ? {} : { contentMd5: contentMd5.trim() }),
    ...(checksum === undefined ? {} : { checksum, checksumSource }),
  };
}

/** At the end of the body: every comparison, in S3's order of precedence. */
function finish(plan: Plan, trailers: ReadonlyMap<string, string> | undefined, computed: Computed): { header: string; value: string } | undefined {
  if (plan.sha256 !== undefined && computed.sha256Hex !== plan.sha256.expected) throw sha256Mismatch();
  if (plan.contentMd5 !== undefined && plan.contentMd5 !== computed.md5.toString('base64')) {
    throw new S3Error('BadDigest', 400, 'The Content-MD5 you specified did not match what we received.');
  }
  if (plan.checksum === undefined || plan.checksumSource === undefined) return undefined;
  const value = computed.checksum;
  const header = checksumHeader(plan.checksum.algorithm);
  const source = plan.checksumSource;
  const expected = source.from === 'header' ? source.value : source.from === 'trailer' ? trailers?.get(source.name) : value;
  if (value === undefined || expected !== value) throw new S3Error('BadDigest', 400, `The ${header} you specified did not match the calculated checksum.`);
  return { header, value };
}

/** The payload hash a request signed (x-amz-content-sha256 as a hex SHA-256), as a digest; else undefined. */
export function signedSha256(verified: VerifiedRequest | null): Digest | undefined {
  return verified?.payload.kind === 'sha256' ? (`sha256:${verified.payload.hex}` as Digest) : undefined;
}

/** A store's digest_mismatch against signedSha256() is S3's XAmzContentSHA256Mismatch. */
export function signedHashMismatch(err: unknown): unknown {
  return err instanceof BlobdError && err.code === 'digest_mismatch' ? sha256Mismatch() : err;
}

function sha256Mismatch(): S3Error {
  return new S3Error('XAmzContentSHA256Mismatch', 400, "The provided 'x-amz-content-sha256' header does not match what was computed.");
}

function sha256Check(expected: string): NonNullable<Plan['sha256']> {
  const hash = createHash('sha256');
  return { hash, expected, update: (data) => hash.update(data) };
}

function one(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function sizeHeader(headers: Headers, name: string): number | undefined {
  const value = one(headers, name);
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value.trim())) throw new S3Error('InvalidArgument', 400, `${name} must be a non-negative integer.`, { ArgumentName: name });
  return Number(value.trim());
}

function isBase64Of(value: string, bytes: number): boolean {
  return /^[A-Za-z0-9+/]+={0,2}$/.test(value) && value.length % 4 === 0 && Buffer.from(value, 'base64').length === bytes;
}

function aborted(): BlobdError {
  return new BlobdError('request_aborted', 'the client closed the connection before the body ended');
}

function notYet(): never {
  throw new Error('md5Hex() is known only after the body ended');
}
