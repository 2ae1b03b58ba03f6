// The checksums S3 clients send with a body (x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1, -sha256),
// computed while the body streams, in the base64 form of S3's headers. MD5 (the ETag) too. No body buffered.
import { Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc';
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const CHECKSUM_ALGORITHMS = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** A checksum fed chunk by chunk; digest() once, at the end: base64, as in S3's x-amz-checksum-* headers. */
export interface StreamingChecksum {
  readonly algorithm: ChecksumAlgorithm;
  update(data: Uint8Array): void;
  digest(): Promise<string>;
}

/** `x-amz-checksum-crc32` → `crc32`; undefined for anything that is not one of S3's checksum headers. */
export function checksumAlgorithmOfHeader(name: string): ChecksumAlgorithm | undefined {
  const lower = name.trim().toLowerCase();
  if (!lower.startsWith('x-amz-checksum-')) return undefined;
  return asAlgorithm(lower.slice('x-amz-checksum-'.length));
}

/** `CRC32` / `crc64nvme` (x-amz-sdk-checksum-algorithm, x-amz-checksum-algorithm) → the algorithm, if S3 has it. */
export function asAlgorithm(name: string): ChecksumAlgorithm | undefined {
  const lower = name.trim().toLowerCase();
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(lower) ? (lower as ChecksumAlgorithm) : undefined;
}

/** The header a checksum travels in. */
export function checksumHeader(algorithm: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algorithm}`;
}

/** The length in bytes each algorithm's digest has (a base64 value of another length is malformed). */
export const DIGEST_BYTES: Readonly<Record<ChecksumAlgorithm, number>> = { crc32: 4, crc32c: 4, crc64nvme: 8, sha1: 20, sha256: 32 };

export function createChecksum(algorithm: ChecksumAlgorithm): StreamingChecksum {
  switch (algorithm) {
    case 'crc32':
      return new Crc32Checksum();
    case 'sha1':
    case 'sha256':
      return new HashChecksum(algorithm, createHash(algorithm));
    case 'crc32c':
      return new SdkChecksum(algorithm, new Crc32c());
    case 'crc64nvme':
      return new SdkChecksum(algorithm, new Crc64Nvme());
  }
}

/** MD5 of a body: the ETag S3 clients compare. */
export function createMd5(): Hash {
  return createHash('md5');
}

/** Node's own zlib.crc32 (native, Node ≥ 20.15): the default checksum of current SDKs, so the fast one. */
class Crc32Checksum implements StreamingChecksum {
  readonly algorithm = 'crc32';
  private value = 0;
  update(data: Uint8Array): void {
    this.value = crc32(data, this.value);
  }
  async digest(): Promise<string> {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.value >>> 0);
    return out.toString('base64');
  }
}

class HashChecksum implements StreamingChecksum {
  constructor(
    readonly algorithm: ChecksumAlgorithm,
    private readonly hash: Hash,
  ) {}
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<string> {
    return this.hash.digest('base64');
  }
}

/** CRC32C and CRC64NVME: node has neither, the SDK's own implementations are what clients compute with. */
class SdkChecksum implements StreamingChecksum {
  constructor(
    readonly algorithm: ChecksumAlgorithm,
    private readonly impl: { update(data: Uint8Array): void; digest(): Promise<Uint8Array> },
  ) {}
  update(data: Uint8Array): void {
    this.impl.update(data);
  }
  async digest(): Promise<string> {
    return Buffer.from(await this.impl.digest()).toString('base64');
  }
}
