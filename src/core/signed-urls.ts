// Signed URLs: HMAC-SHA256 over the method, the path and every query parameter (the constraints and the
// expiry among them), with a key named by id so keys can rotate. A signed URL acts as its signer does now
// — never more: the signer must be allowed the request when signing, and still when it is used.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SigningKey } from '../storage/fs/key-files.ts';
import type { KeySource } from './shared-keys.ts';
import type { AccessControl, Principal } from './auth.ts';
import { BlobdError } from './errors.ts';

export const MAX_SIGNED_LIFETIME_S = 7 * 24 * 3600;
/** The largest max_size a URL can carry (15 digits, exact in a JS number). */
export const MAX_SIGNED_SIZE = 10 ** 15 - 1;
const PARAM = {
  expires: 'blobd-expires',
  principal: 'blobd-principal',
  key: 'blobd-key',
  maxSize: 'blobd-max-size',
  contentType: 'blobd-content-type',
  signature: 'blobd-signature',
} as const;
const KNOWN = new Set<string>(Object.values(PARAM));
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** What a signed request may carry beyond what its signer may do. */
export interface Grant {
  readonly maxSize?: number;
  readonly contentType?: string;
}

export interface SignInput {
  readonly method: string;
  /** `/api/...`, optionally with a query that becomes part of what is signed. */
  readonly path: string;
  readonly expiresInS: number;
  readonly maxSize?: number;
  readonly contentType?: string;
}

/** The signer's own right to `method path?query`: throws (forbidden, invalid_request) when it has none. */
export type CheckTarget = (principal: Principal, method: string, pathWithQuery: string) => Promise<void>;

function invalid(message: string): BlobdError {
  return new BlobdError('signature_invalid', message);
}

/** Every parameter except the signature, encoded and sorted: the canonical form both sides sign. */
function canonicalQuery(query: URLSearchParams): string {
  return [...query]
    .filter(([name]) => name !== PARAM.signature)
    .map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`)
    .sort()
    .join('&');
}

function mac(key: SigningKey, method: string, pathname: string, query: URLSearchParams): string {
  return createHmac('sha256', key.secret).update(`blobd-url-v1\n${method}\n${pathname}\n${canonicalQuery(query)}`).digest('base64url');
}

export class SignedUrls {
  private current: { key: SigningKey; at: number } | undefined;
  /** Keys read from data/keys/, each with when it was read: older than `refreshMs`, it is read again. */
  private readonly known = new Map<string, { key: SigningKey; at: number }>();

  /**
   * `refreshMs`: how long a key read from data/keys/ is trusted without looking again. Within that time a
   * new key file becomes the signing key, and a removed one stops verifying, without a restart.
   */
  constructor(
    private readonly keys: KeySource,
    private readonly access: AccessControl,
    private readonly refreshMs = 30_000,
  ) {}

  /** True when a request carries any signature parameter: it is then judged by its signature alone. */
  static isSigned(query: URLSearchParams): boolean {
    for (const name of query.keys()) if (KNOWN.has(name)) return true;
    return false;
  }

  async sign(signer: Principal, input: SignInput, checkTarget: CheckTarget): Promise<{ pathWithQuery: string; expiresAt: number }> {
    const method = input.method.toUpperCase();
    if (!METHODS.includes(method)) throw new BlobdError('invalid_request', `method is one of ${METHODS.join(', ')}`);
    if (!Number.isInteger(input.expiresInS) || input.expiresInS < 1 || input.expiresInS > MAX_SIGNED_LIFETIME_S) {
      throw new BlobdError('invalid_request', `expires_in is 1 to ${MAX_SIGNED_LIFETIME_S} seconds (7 days)`);
    }
    const [rawPath = ''] = input.path.split('?');
    if (!rawPath.startsWith('/api/') || /[#\s]/.test(input.path)) throw new BlobdError('invalid_request', 'path is an /api/… path (with an optional query)');
    if (rawPath.split('/').some((seg) => /^(?:\.|%2e){1,2}$/i.test(seg))) throw new BlobdError('invalid_request', 'path has no . or .. segment');
    const url = new URL(input.path, 'http://blobd.invalid');
    if ([...url.searchParams.keys()].some((n) => n.startsWith('blobd-'))) throw new BlobdError('invalid_request', 'blobd-* query parameters are reserved for the signature');
    if (input.maxSize !== undefined && (!Number.isInteger(input.maxSize) || input.maxSize < 0 || input.maxSize > MAX_SIGNED_SIZE)) {
      throw new BlobdError('invalid_request', `max_size is 0 to ${MAX_SIGNED_SIZE} bytes`);
    }
    if (input.contentType !== undefined && !/^[\x21-\x7e][\x20-\x7e]{0,254}$/.test(input.contentType)) {
      throw new BlobdError('invalid_request', 'content_type is a media type of at most 255 characters');
    }
    await checkTarget(signer, method, url.pathname + url.search);

    const key = await this.signingKey();
    const expiresAt = Math.floor(Date.now() / 1000) + input.expiresInS;
    const query = url.searchParams;
    query.append(PARAM.expires, String(expiresAt));
    query.append(PARAM.principal, signer.id);
    query.append(PARAM.key, key.kid);
    if (input.maxSize !== undefined) query.append(PARAM.maxSize, String(input.maxSize));
    if (input.contentType !== undefined) query.append(PARAM.contentType, input.contentType);
    query.append(PARAM.signature, mac(key, method, url.pathname, query));
    return { pathWithQuery: `${url.pathname}?${query.toString()}`, expiresAt: expiresAt * 1000 };
  }

  /**
   * The signer and the grant of a signed request. Any change to method, path or query is
   * `signature_invalid`; a genuine but old one is `signature_expired`; a signer whose token is gone or
   * expired invalidates every URL it signed.
   */
  async verify(method: string, pathname: string, query: URLSearchParams): Promise<{ principal: Principal; grant: Grant }> {
    const one = (name: string): string | undefined => {
      const all = query.getAll(name);
      if (all.length > 1) throw invalid(`${name} appears more than once`);
      return all[0];
    };
    for (const name of query.keys()) {
      if (name.startsWith('blobd-') && !KNOWN.has(name)) throw invalid(`unknown signature parameter ${name.slice(0, 64)}`);
    }
    const signature = one(PARAM.signature);
    const expires = one(PARAM.expires);
    const principalId = one(PARAM.principal);
    const kid = one(PARAM.key);
    const maxSize = one(PARAM.maxSize);
    const contentType = one(PARAM.contentType);
    if (!signature || !expires || !principalId || !kid) throw invalid('a signed URL carries blobd-expires, blobd-principal, blobd-key and blobd-signature');
    const key = await this.keyById(kid);
    const expected = key ? Buffer.from(mac(key, method, pathname, query)) : Buffer.alloc(43);
    const given = Buffer.from(signature);
    if (!key || given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid('the signature does not match this request');
    // Signed values: well formed unless the key itself was misused.
    if (!/^\d{1,12}$/.test(expires) || (maxSize !== undefined && !/^\d{1,15}$/.test(maxSize))) throw invalid('malformed signed parameters');
    const expiresAt = Number(expires) * 1000;
    if (expiresAt <= Date.now()) {
      throw new BlobdError('signature_expired', 'the signed URL has expired', { expired_at: new Date(expiresAt).toISOString() });
    }
    const principal = await this.access.principalById(principalId);
    if (!principal) throw invalid('the token that signed this URL is no longer valid');
    return {
      principal,
      grant: {
        ...(maxSize !== undefined ? { maxSize: Number(maxSize) } : {}),
        ...(contentType !== undefined ? { contentType } : {}),
      },
    };
  }

  /** Makes sure a signing key exists (the first start creates one). */
  async ready(): Promise<void> {
    await this.signingKey();
  }

  /** A new signing key, used for every URL signed from now on; older keys still verify (`blobd keys rotate`). */
  async rotate(): Promise<{ kid: string }> {
    const key = await this.keys.createSigningKey();
    const now = Date.now();
    this.current = { key, at: now };
    this.known.set(key.kid, { key, at: now });
    return { kid: key.kid };
  }

  private async signingKey(): Promise<SigningKey> {
    const now = Date.now();
    if (this.current && now - this.current.at < this.refreshMs && this.known.has(this.current.key.kid)) return this.current.key;
    const all = await this.keys.signingKeys();
    const key = all.at(-1) ?? (await this.keys.createSigningKey());
    this.current = { key, at: now };
    this.known.set(key.kid, { key, at: now });
    return key;
  }

  /** The key a URL names, read again once its entry is older than `refreshMs`: a removed file stops it. */
  private async keyById(kid: string): Promise<SigningKey | null> {
    const now = Date.now();
    const cached = this.known.get(kid);
    if (cached && now - cached.at < this.refreshMs) return cached.key;
    const key = await this.keys.signingKey(kid);
    if (key) this.known.set(kid, { key, at: now });
    else this.known.delete(kid);
    return key;
  }
}
