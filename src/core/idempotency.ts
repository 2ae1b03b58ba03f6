// Idempotency-Key: the first successful answer to a creating request is kept for 24 h, per principal and
// key, and replayed to a retry of the same request. Answers are sealed (AES-256-GCM) before they are stored:
// some carry secrets — a new API token, an upload session's token — that must never sit in the database.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { IdempotencyRecord, MetadataStore } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
/** Larger answers are not kept (none of blobd's creating routes comes close). */
export const MAX_STORED_RESPONSE = 64 * 1024;
const KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** An answer as replayed: status, the headers that matter, and the body text. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
}

/** What identifies a request apart from its body. */
export interface RequestShape {
  readonly method: string;
  readonly path: string;
  readonly query: readonly (readonly [string, string])[];
  readonly contentType: string;
  readonly contentLength: string;
  /** Headers that say what is created (a tus creation's Upload-Length, Upload-Metadata, …), lower-case names. */
  readonly headers?: readonly (readonly [string, string])[];
}

export type Begun = { readonly kind: 'run' } | { readonly kind: 'replay'; readonly record: IdempotencyRecord };

export function parseIdempotencyKey(key: string): string {
  if (!KEY_RE.test(key)) throw new BlobdError('invalid_request', 'Idempotency-Key is 1 to 255 visible ASCII characters');
  return key;
}

export function fingerprint(shape: RequestShape): string {
  const query = shape.query.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).sort().join('&');
  const parts = [shape.method, shape.path, query, shape.contentType.toLowerCase(), shape.contentLength];
  // JSON of the pairs: no value can pass for another's boundary. Absent for routes without such headers.
  if (shape.headers && shape.headers.length > 0) parts.push(JSON.stringify([...shape.headers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}

export class IdempotencyService {
  constructor(
    private readonly meta: MetadataStore,
    private readonly sealKey: Buffer,
    /** This node, recorded on claims in a shared store (its live claims are spared by other nodes' starts). */
    private readonly holder?: string,
  ) {}

  /**
   * Claim the key for this request, or hand back the record of the first one. A record of another
   * request shape is `idempotency_key_reused`; one still running is `idempotency_key_in_use`.
   */
  async begin(principal: string, key: string, requestFingerprint: string): Promise<Begun> {
    const now = Date.now();
    const claim = await this.meta.claimIdempotencyKey(principal, key, requestFingerprint, now, now - IDEMPOTENCY_TTL_MS, this.holder);
    if (claim.claimed) return { kind: 'run' };
    const { record } = claim;
    if (record.fingerprint !== requestFingerprint) throw reused();
    if (record.response === null) {
      throw new BlobdError('idempotency_key_in_use', 'a request with this Idempotency-Key is still running; retry when it is done');
    }
    return { kind: 'replay', record };
  }

  /** The stored answer of a replay whose body hashed to `bodyHash`; another body is `idempotency_key_reused`. */
  replay(record: IdempotencyRecord, bodyHash: string): StoredResponse {
    if (record.bodyHash !== bodyHash) throw reused();
    return JSON.parse(this.open(record).toString('utf8')) as StoredResponse;
  }

  /** Keep a successful answer; one too large to keep releases the key instead. */
  async finish(principal: string, key: string, bodyHash: string, response: StoredResponse): Promise<void> {
    const plain = Buffer.from(JSON.stringify(response), 'utf8');
    if (plain.length > MAX_STORED_RESPONSE) return this.abandon(principal, key);
    await this.meta.saveIdempotentResponse(principal, key, bodyHash, this.seal(principal, key, plain));
  }

  /** The request failed: a retry with the same key runs again. */
  abandon(principal: string, key: string): Promise<void> {
    return this.meta.releaseIdempotencyKey(principal, key);
  }

  /** Drop records past the replay window (and, at start, claims no running request holds). */
  async sweep(now = Date.now()): Promise<number> {
    return this.meta.deleteIdempotencyRecordsBefore(now - IDEMPOTENCY_TTL_MS);
  }

  private seal(principal: string, key: string, plain: Buffer): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.sealKey, iv).setAAD(Buffer.from(`${principal}\0${key}`));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  private open(record: IdempotencyRecord): Buffer {
    const sealed = record.response!;
    const decipher = createDecipheriv('aes-256-gcm', this.sealKey, sealed.subarray(0, 12))
      .setAAD(Buffer.from(`${record.principal}\0${record.key}`))
      .setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
  }
}

function reused(): BlobdError {
  return new BlobdError('idempotency_key_reused', 'this Idempotency-Key was used for a different request');
}
