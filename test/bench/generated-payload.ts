// Deterministic bench payloads made on the fly: the bytes of (seed, size) are the same in every run and
// process, any byte range of them can be streamed, and nothing is ever held whole (1 MiB at a time).
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const MiB = 1024 * 1024;

export interface Payload {
  readonly seed: string;
  readonly size: number;
  /** The bytes [start, end) (default: all) as a stream of fresh ≤ 1 MiB buffers (consumers may keep them). */
  stream(start?: number, end?: number): Readable;
  /** `sha256:<hex>` of all `size` bytes (computed once by streaming them, then remembered). */
  digest(): Promise<string>;
}

/**
 * `size` bytes for `seed`: MiB i is one AES-CTR keystream block (keyed by the seed, so different seeds never
 * share bytes and nothing dedups) with i stamped into its first 8 bytes (so no two MiB of a payload repeat).
 */
export function payload(seed: string, size: number): Payload {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const block = createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(MiB));
  const mib = (i: number) => {
    const b = Buffer.from(block);
    b.writeBigUInt64BE(BigInt(i), 0);
    return b;
  };
  let known: Promise<string> | undefined;
  const self: Payload = {
    seed,
    size,
    stream(start = 0, end = size) {
      if (start < 0 || end > size || start > end) throw new RangeError(`[${start}, ${end}) is not within ${size} bytes`);
      let at = start;
      return new Readable({
        highWaterMark: 2 * MiB,
        read() {
          if (at >= end) return void this.push(null);
          const i = Math.floor(at / MiB);
          const from = at - i * MiB;
          const to = Math.min(MiB, end - i * MiB);
          at += to - from;
          this.push(mib(i).subarray(from, to));
        },
      });
    },
    digest() {
      known ??= (async () => {
        const h = createHash('sha256');
        for await (const c of self.stream()) h.update(c as Buffer);
        return `sha256:${h.digest('hex')}`;
      })();
      return known;
    },
  };
  return self;
}
