// Digests as blobd speaks them: `sha256:<64 lowercase hex>` once parsed; the bare hex form is accepted on
// input. Everything else is `invalid_digest`, before it gets anywhere near storage.
import { BlobdError } from './errors.ts';

export type Digest = string & { readonly __brand: 'Digest' };

const PREFIXED = /^sha256:[0-9a-f]{64}$/;
const BARE = /^[0-9a-f]{64}$/;

export function parseDigest(input: string): Digest {
  if (PREFIXED.test(input)) return input as Digest;
  if (BARE.test(input)) return `sha256:${input}` as Digest;
  throw new BlobdError('invalid_digest', 'a digest is sha256:<64 lowercase hex> or the bare 64 hex', {
    digest: input.length > 100 ? `${input.slice(0, 100)}…` : input,
  });
}
