// The S3 client the S3 byte store talks through (keep-alive, bounded timeouts, checksums only when the API
// requires them) and how its errors are told apart: absent key, gone multipart upload, and what a failed
// ping says to an operator. Credentials never reach a message.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { StoreUnavailableError } from '../store-unavailable.ts';
import type { KeyLayout } from './keys.ts';
import { SignedPut } from './signed-put.ts';
import type { PartBuffers } from './part-writer.ts';

const MiB = 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * MiB;
/** S3's (and RGW's default `rgw_multipart_min_part_size`) smallest part but the last. */
export const DEFAULT_MIN_PART_SIZE = 5 * MiB;
/** S3's largest part, and the largest single CopyObject. */
export const MAX_PART_SIZE = 5 * 1024 * MiB;
/** S3's most parts in one multipart upload. */
export const MAX_PARTS = 10_000;
export const DEFAULT_PARTS_IN_FLIGHT = 4;

export interface S3StoreOptions {
  /** e.g. `http://127.0.0.1:7480` for RGW or MinIO; absent for AWS S3 itself. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** Every key blobd writes starts with it ('' or segments ending in '/'; a missing final '/' is added). */
  prefix: string;
  /** Path-style URLs (`endpoint/bucket/key`): RGW and MinIO usually need it. */
  forcePathStyle: boolean;
  /** Absent: the SDK's default chain (environment, shared files, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Bytes per multipart part (default 8 MiB); never below minPartSize. A request holds at most partSize × (partsInFlight + 1). */
  partSize?: number;
  /** The smallest part the store accepts but the last (default 5 MiB: S3's and RGW's default). */
  minPartSize?: number;
  /** Parts of one request uploading at once (default 4). */
  partsInFlight?: number;
  /** A request with no bytes moving for this long fails (default 60 s): a hung store gives an error, not a hang. */
  socketTimeoutMs?: number;
}

/** What every part of the S3 store shares: the client, where, and how big. */
export interface S3Context {
  readonly client: S3Client;
  readonly bucket: string;
  readonly layout: KeyLayout;
  readonly partSize: number;
  readonly minPartSize: number;
  readonly partsInFlight: number;
  /** Part buffers shared by every request of the store. */
  readonly buffers: PartBuffers;
  /** The endpoint as a name for messages (no user info), or AWS's region. */
  readonly endpointName: string;
  /** PUT of a small object whose bytes are in one buffer (see makePut). */
  readonly put: (key: string, body: Buffer) => Promise<void>;
  /**
   * Asked right before a session's object is rewritten in place (a repair of an interrupted seal or
   * completion): false when this process no longer holds the session (another node took it over and may
   * have committed a blob at that key). Set by ByteStore.guardSessionWrites; by default always true.
   */
  stillHolds: (id: string) => Promise<boolean>;
}

/**
 * Sockets per protocol. Each download holds one for as long as its client takes, so the SDK's default of
 * 50 would let 50 slow readers queue every other request behind them.
 */
const MAX_SOCKETS = 512;

export function checkOptions(opts: S3StoreOptions): { partSize: number; minPartSize: number; partsInFlight: number } {
  const partSize = opts.partSize ?? DEFAULT_PART_SIZE;
  const minPartSize = opts.minPartSize ?? DEFAULT_MIN_PART_SIZE;
  const partsInFlight = opts.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT;
  if (!opts.bucket) throw new Error('the S3 store needs a bucket');
  if (!opts.region) throw new Error('the S3 store needs a region');
  if (!Number.isSafeInteger(minPartSize) || minPartSize < 1) throw new Error('the S3 minimum part size must be a positive whole number of bytes');
  if (!Number.isSafeInteger(partSize) || partSize < minPartSize || partSize > MAX_PART_SIZE) {
    throw new Error(`the S3 part size must be between ${minPartSize} bytes (the store's minimum part size) and 5 GiB, not ${partSize}`);
  }
  if (!Number.isSafeInteger(partsInFlight) || partsInFlight < 1) throw new Error('the S3 parts in flight must be a positive whole number');
  return { partSize, minPartSize, partsInFlight };
}

/**
 * Fields AWS puts in a signature error (the access key id, what was signed): stripped from every error so
 * that a logged error never carries them. RGW sends none of them; AWS does.
 */
const SIGNING_FIELDS = ['AWSAccessKeyId', 'StringToSign', 'StringToSignBytes', 'CanonicalRequest', 'CanonicalRequestBytes', 'SignatureProvided'];

export function makeClient(opts: S3StoreOptions): S3Client {
  const agent = { keepAlive: true, maxSockets: MAX_SOCKETS };
  const client = new S3Client({
    endpoint: opts.endpoint,
    region: opts.region,
    forcePathStyle: opts.forcePathStyle,
    credentials: opts.credentials,
    // RGW (and most S3-compatible stores) reject or ignore the flexible checksums newer SDKs add by default.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      httpAgent: new HttpAgent(agent),
      httpsAgent: new HttpsAgent(agent),
      connectionTimeout: 5_000,
      // Inactivity, not total time: a 5 GiB part may take minutes while bytes move.
      socketTimeout: opts.socketTimeoutMs ?? 60_000,
    },
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        if (typeof err === 'object' && err !== null) for (const f of SIGNING_FIELDS) delete (err as Record<string, unknown>)[f];
        throw asStoreError(err);
      }
    },
    { step: 'initialize', name: 'blobdStripSigningFields' },
  );
  return client;
}

/**
 * PUT of an object whose bytes are in one buffer (a blob smaller than a part, a tail): signed and sent
 * directly where the store's URL is given (SignedPut: a fifth of the SDK's CPU per small object), through
 * the SDK for AWS's own endpoints, which the SDK resolves. Errors as from the client: 503 material wrapped.
 */
export function makePut(opts: S3StoreOptions, client: S3Client): (key: string, body: Buffer) => Promise<void> {
  if (opts.endpoint === undefined) {
    return async (key, body) => {
      await client.send(new PutObjectCommand({ Bucket: opts.bucket, Key: key, Body: body }));
    };
  }
  const direct = new SignedPut({
    endpoint: opts.endpoint,
    bucket: opts.bucket,
    region: opts.region,
    forcePathStyle: opts.forcePathStyle,
    credentials: () => client.config.credentials(),
    socketTimeoutMs: opts.socketTimeoutMs ?? 60_000,
    retryable: isUnavailable,
  });
  return async (key, body) => {
    try {
      await direct.put(key, body);
    } catch (err) {
      throw asStoreError(err);
    }
  };
}

/** The endpoint to name in messages: its origin and path, never user info. */
export function endpointName(opts: S3StoreOptions): string {
  if (opts.endpoint === undefined) return `AWS S3 (${opts.region})`;
  try {
    const url = new URL(opts.endpoint);
    url.username = '';
    url.password = '';
    return url.toString().replace(/\/$/, '');
  } catch {
    return 'the configured S3 endpoint';
  }
}

/** The S3 error code (NoSuchKey, InvalidAccessKeyId, …) or the network one (ECONNREFUSED, …). */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof StoreUnavailableError) return errorCode(err.cause);
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; Code?: unknown; name?: unknown; errors?: unknown[] };
  if (typeof e.code === 'string') return e.code;
  // Node's happy-eyeballs connect gives an AggregateError whose parts carry the code.
  if (Array.isArray(e.errors) && e.errors.length > 0) return errorCode(e.errors[0]);
  if (typeof e.Code === 'string') return e.Code;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  return undefined;
}

export function httpStatus(err: unknown): number | undefined {
  if (err instanceof StoreUnavailableError) return httpStatus(err.cause);
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** No object at the key (a HEAD's bare 404 included; a missing bucket is not this). */
export function isNotFound(err: unknown): boolean {
  const code = errorCode(err);
  if (code === 'NoSuchBucket') return false;
  return code === 'NoSuchKey' || code === 'NotFound' || (httpStatus(err) === 404 && code !== 'NoSuchUpload');
}

/**
 * The multipart upload is no longer open (completed or aborted). AWS says NoSuchUpload; RGW answers a
 * completed upload's ListParts with NoSuchKey (measured, ceph 16.2).
 */
export function isUploadGone(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'NoSuchUpload' || code === 'NoSuchKey' || code === 'NotFound';
}

const CREDENTIAL_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'TimeoutError']);
/** S3's own "try again later" answers. */
const BUSY_CODES = new Set(['RequestTimeout', 'SlowDown', 'ServiceUnavailable', 'InternalError']);

/** The store is out of room for this bucket (its quota, its capacity): blobd's 507, like a full disk. */
const FULL_CODES = new Set(['QuotaExceeded', 'InsufficientCapacity', 'XMinioStorageFull', 'StorageFull']);

/**
 * An error of the store as blobd's storage layer says it (after the SDK's own retries): unreachable or
 * failing → StoreUnavailableError (503); out of room → an error with code STORE_FULL (507); else as it came.
 */
export function asStoreError(err: unknown): unknown {
  const code = errorCode(err);
  if ((code !== undefined && FULL_CODES.has(code)) || httpStatus(err) === 507) {
    return Object.assign(new Error(`the S3 store has no room for this (${code ?? 507})`, { cause: err }), { code: 'STORE_FULL' });
  }
  if (isUnavailable(err)) return new StoreUnavailableError(`the S3 store could not be reached or failed (${code ?? httpStatus(err) ?? 'unknown'})`, { cause: err });
  return err;
}

/** The store is unreachable, too slow, or failing (a 5xx): nothing about the request itself was wrong. */
function isUnavailable(err: unknown): boolean {
  const code = errorCode(err);
  const status = httpStatus(err);
  return (code !== undefined && (NETWORK_CODES.has(code) || BUSY_CODES.has(code))) || (status !== undefined && status >= 500);
}

/** What a failed test write means, in words an operator can act on. */
export function describeFailure(err: unknown, ctx: Pick<S3Context, 'bucket' | 'endpointName'>): string {
  const code = errorCode(err) ?? 'unknown error';
  if (CREDENTIAL_CODES.has(code) || httpStatus(err) === 403) {
    return `the S3 store refused the credentials (${code}) for bucket "${ctx.bucket}" at ${ctx.endpointName}`;
  }
  if (code === 'NoSuchBucket') return `the S3 bucket "${ctx.bucket}" does not exist at ${ctx.endpointName}`;
  if (NETWORK_CODES.has(code)) return `cannot reach the S3 endpoint ${ctx.endpointName}: ${code}`;
  const message = err instanceof Error && err.message && err.message !== code ? `: ${err.message}` : '';
  return `the S3 store failed a test write to bucket "${ctx.bucket}" at ${ctx.endpointName} (${code}${message})`;
}
