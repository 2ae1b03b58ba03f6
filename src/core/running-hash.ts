// A session's running SHA-256, in one of two forms. Fast: node:crypto (~1.5 GB per CPU-second here), whose
// state cannot leave the process. Portable: hash-wasm (~0.15 GB/s), whose state (116 bytes) is saved in the
// session's row with every acknowledged offset, so any node goes on from it without reading the bytes back.
// A session starts fast; it turns portable only once it has had to be read back on a store that several
// nodes share (a node restarted, or a load balancer sent its next request to another node). From then on
// each node that serves it loads the state instead: a session whose requests alternate between nodes costs
// one read-back in all, not one per request (docs/design.md, "The running hash").
import { createHash, type Hash } from 'node:crypto';
import type { IHasher } from 'hash-wasm';

export interface RunningHash {
  update(chunk: Uint8Array): void;
  /** A mark to come back to with `restore` (a rolled-back append). */
  mark(): unknown;
  restore(mark: unknown): void;
  /** Hex digest of what was hashed so far; the hash goes on unchanged. */
  hex(): string;
  /** The state as the row keeps it (covering `offset` bytes), or undefined for a fast hash. */
  exportState(offset: number): string | undefined;
}

class FastHash implements RunningHash {
  constructor(private hash: Hash = createHash('sha256')) {}
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
  }
  mark(): unknown {
    return this.hash.copy();
  }
  restore(mark: unknown): void {
    this.hash = mark as Hash;
  }
  hex(): string {
    return this.hash.copy().digest('hex');
  }
  exportState(): undefined {
    return undefined;
  }
}

class PortableHash implements RunningHash {
  constructor(private readonly hasher: IHasher) {}
  update(chunk: Uint8Array): void {
    this.hasher.update(chunk);
  }
  mark(): unknown {
    return this.hasher.save();
  }
  restore(mark: unknown): void {
    this.hasher.load(mark as Uint8Array);
  }
  hex(): string {
    const state = this.hasher.save();
    const hex = this.hasher.digest('hex');
    this.hasher.load(state);
    return hex;
  }
  exportState(offset: number): string {
    return `${offset}:${Buffer.from(this.hasher.save()).toString('base64')}`;
  }
}

/** hash-wasm, loaded on first use: most daemons never need a portable hash, and its WebAssembly memory is RSS. */
async function newSha256(): Promise<IHasher> {
  const { createSHA256 } = await import('hash-wasm');
  return createSHA256();
}

export function fastHash(): RunningHash {
  return new FastHash();
}

export async function portableHash(): Promise<RunningHash> {
  const hasher = await newSha256();
  hasher.init();
  return new PortableHash(hasher);
}

/**
 * The hash a row's state describes, if it covers exactly `offset` bytes and this build can load it (a state
 * saved by another hash-wasm build is refused: then the bytes are read back, as without a state).
 */
export async function loadHash(state: string | null, offset: number): Promise<RunningHash | null> {
  const m = state === null ? null : /^(\d+):([A-Za-z0-9+/=]+)$/.exec(state);
  if (!m || Number(m[1]) !== offset) return null;
  const hasher = await newSha256();
  try {
    hasher.load(Buffer.from(m[2]!, 'base64'));
  } catch {
    return null;
  }
  return new PortableHash(hasher);
}
