// What every S3 operation handler gets: the request as S3 sees it (bucket, key, query), who made it, and the
// verified body. The dispatcher (app.ts) builds one per request after SigV4 verification.
import type { Context } from 'hono';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { AccessControl, Need, Principal } from '../../core/auth.ts';
import type { BlobService } from '../../core/blobs.ts';
import type { CatalogService } from '../../core/catalog.ts';
import type { MultipartUploads } from '../../core/multipart-uploads.ts';
import type { Digest } from '../../core/digest.ts';
import type { AppEnv } from '../env.ts';

/** The core services the S3 front translates to (it owns no rule of its own). */
export interface S3Deps {
  readonly logger: Logger;
  readonly access: AccessControl;
  readonly catalog: CatalogService;
  readonly blobs: BlobService;
  /** Credentials: access key id → secret and principal (src/core/s3-keys.ts). */
  readonly s3Keys: { lookup(accessKeyId: string): Promise<{ secret: string; principal: Principal } | null> };
  /** Multipart uploads (src/core/multipart-uploads.ts), for src/http/s3api/multipart.ts. */
  readonly multipart: MultipartUploads;
  /** Region answered by GetBucketLocation and accepted in credential scopes (any region is accepted). */
  readonly region: string;
  /** --s3-api-domain: virtual-host style (`bucket.domain`) besides path style. */
  readonly domain?: string;
  readonly maxBlobSize: number;
  readonly sendTimeoutMs?: number;
  readonly metrics?: { sent(bytes: number): void; sendTimedOut(): void };
}

export interface S3Call {
  readonly c: Context<AppEnv>;
  readonly deps: S3Deps;
  readonly requestId: string;
  /** Decoded bucket name (path style: first segment; virtual host: from Host), or null for the service. */
  readonly bucket: string | null;
  /** Decoded object key, or null when the request names a bucket or the service. */
  readonly key: string | null;
  /** Decoded query parameters (subresources such as `uploads`, `partNumber`, `list-type` are keys here). */
  readonly query: URLSearchParams;
  /** Who signed the request; undefined for an anonymous one (only public_read buckets answer it). */
  readonly principal: Principal | undefined;
  /**
   * The request body as plain content: aws-chunked decoded, and failing (before its end, so nothing commits)
   * when a chunk signature, a signed payload hash, Content-MD5 or an x-amz-checksum-* does not match.
   * Open it only once every check that can refuse the request has passed.
   */
  body(): Readable;
  /**
   * The body for a write that stores it: as body(), except that a signed payload hash is not checked here:
   * pass `signedSha256` to core as the expected digest (the store hashes the content anyway), and map its
   * digest_mismatch with signedHashMismatch.
   */
  contentBody(): Readable;
  /** The payload SHA-256 the request signed (`sha256:<hex>`), if it signed one. */
  readonly signedSha256: Digest | undefined;
  /** After body() ended: the hex MD5 of the content (the ETag of a PutObject / UploadPart). */
  bodyMd5(): string;
  /** After body() ended: the checksum the client sent or asked for (`x-amz-checksum-crc32` → base64), to echo. */
  bodyChecksum(): { readonly header: string; readonly value: string } | undefined;
  /** The content's length as the client declared it (x-amz-decoded-content-length or Content-Length). */
  readonly declaredSize: number | undefined;
  /** The decoded path as S3 names the resource in error bodies (`/bucket/key`). */
  readonly resource: string;
  /** A request header (lower-case name), as sent. */
  header(name: string): string | undefined;
  /**
   * Asks core's one authorization decision (AccessControl.authorize) whether the caller may do `need`;
   * throws (AccessDenied once translated) when not. Every operation calls it before touching anything.
   */
  authorize(need: Need): Promise<void>;
}
