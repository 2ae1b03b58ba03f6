// Principals, scopes and the one authorization decision (`authorize`): who may do what. Also API tokens —
// created here, shown once, stored only as SHA-256 hashes, looked up by the id they carry and compared in
// constant time. No token value is ever logged or stored.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { MetadataStore, TokenRecord } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';
import { decodeCursor, isString, pageOf, type Page, type PageRequest } from './paging.ts';
import { refuseNul } from './text.ts';

/** `admin`; `blobs:read|write|delete`; `bucket:NAME|*:read|write|delete`. */
export type Scope = string;

export interface Principal {
  /** Stable id that owns pins, sessions and idempotency records: `admin` or `token:<id>`. */
  readonly id: string;
  readonly scopes: readonly Scope[];
}

/** What a route needs of its caller. `object:read` is reading one object: public_read buckets allow it to anyone. */
export type Need =
  | { readonly action: 'admin' | 'authenticated' | 'blobs:read' | 'blobs:write' | 'blobs:delete' }
  | { readonly action: 'bucket:read' | 'bucket:write' | 'bucket:delete' | 'object:read'; readonly bucket: string };

const ADMIN: Principal = { id: 'admin', scopes: ['admin'] };
const SCOPE_RE = /^(?:admin|blobs:(?:read|write|delete)|bucket:(?:[a-z0-9][a-z0-9._-]{0,62}|\*):(?:read|write|delete))$/;
const TOKEN_RE = /^bdt_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_[A-Za-z0-9_-]{43}$/;
/** The longest lifetime a token can be given (100 years). */
export const MAX_TOKEN_LIFETIME_MS = 100 * 365 * 86_400_000;
/** A token's last use is written at most this often: a write per request would cost an fsync each. */
const TOUCH_EVERY_MS = 60_000;

/** Hex SHA-256 of a token: how tokens are stored and compared, never the token itself. */
export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

/**
 * Constant-time comparison of a presented token with a stored hex hash. One-shot crypto.hash: half the
 * cost of a Hash object and a hex round trip, and every authenticated request pays it.
 */
export function tokenMatches(token: string, storedHash: string): boolean {
  const stored = Buffer.from(storedHash, 'hex');
  const given = hash('sha256', token, 'buffer');
  return stored.length === given.length && timingSafeEqual(given, stored);
}

export function parseScopes(scopes: readonly string[]): Scope[] {
  if (scopes.length === 0) throw new BlobdError('invalid_request', 'a token needs at least one scope');
  const bad = scopes.find((s) => !SCOPE_RE.test(s));
  if (bad !== undefined) {
    throw new BlobdError('invalid_request', `not a scope: ${JSON.stringify(bad.slice(0, 100))} (admin, blobs:read|write|delete, bucket:NAME|*:read|write|delete)`);
  }
  return [...new Set(scopes)];
}

/** Does the principal's own scope grant this? (Public access is decided by `AccessControl.authorize`.) */
export function can(principal: Principal, need: Need): boolean {
  const has = (s: string) => principal.scopes.includes(s);
  if (has('admin') || need.action === 'authenticated') return true;
  if (need.action === 'admin') return false;
  if (!('bucket' in need)) return has(need.action);
  const verb = need.action === 'object:read' ? 'read' : need.action.slice('bucket:'.length);
  return has(`bucket:${need.bucket}:${verb}`) || has(`bucket:*:${verb}`);
}

function describe(need: Need): string {
  return 'bucket' in need ? `${need.action.replace('object:', 'bucket:')} on bucket ${need.bucket}` : need.action;
}

export interface NewTokenInput {
  readonly name: string;
  readonly scopes: readonly string[];
  /** Lifetime in milliseconds; none → the token never expires. */
  readonly expiresInMs?: number;
}

export interface AccessOptions {
  /** Anyone may read blobs by digest (`--public-blobs`). */
  readonly publicBlobs: boolean;
  readonly isPublicBucket: (bucket: string) => Promise<boolean>;
}

export class AccessControl {
  private readonly adminHash: string;

  constructor(
    private readonly meta: MetadataStore,
    adminToken: string,
    private readonly options: AccessOptions,
  ) {
    this.adminHash = hashToken(adminToken);
  }

  /** The principal a presented token stands for: `unauthorized` for an unknown one, `token_expired` for an expired one. */
  async authenticate(token: string): Promise<Principal> {
    if (tokenMatches(token, this.adminHash)) return ADMIN;
    const id = TOKEN_RE.exec(token)?.[1];
    const row = id === undefined ? null : await this.meta.getToken(id);
    if (!row || !tokenMatches(token, row.tokenHash)) throw new BlobdError('unauthorized', 'the token is not valid');
    const now = Date.now();
    if (row.expiresAt !== null && row.expiresAt <= now) throw new BlobdError('token_expired', 'the token has expired', { expired_at: new Date(row.expiresAt).toISOString() });
    if (row.lastUsedAt === null || row.lastUsedAt < now - TOUCH_EVERY_MS) await this.meta.touchToken(row.id, now, now - TOUCH_EVERY_MS);
    return { id: `token:${row.id}`, scopes: row.scopes };
  }

  /** The principal behind a principal id as it is now (a signed URL's signer), or null if it is gone or expired. */
  async principalById(id: string): Promise<Principal | null> {
    if (id === ADMIN.id) return ADMIN;
    const row = id.startsWith('token:') ? await this.meta.getToken(id.slice('token:'.length)) : null;
    if (!row || (row.expiresAt !== null && row.expiresAt <= Date.now())) return null;
    return { id, scopes: row.scopes };
  }

  /**
   * The single authorization decision. `principal` is who the request proved to be (if anyone);
   * `credentialError` why a presented credential failed. Public resources are open to everyone who did
   * not present a broken credential.
   */
  async authorize(principal: Principal | undefined, credentialError: BlobdError | undefined, need: Need): Promise<void> {
    if (principal && can(principal, need)) return;
    if (!credentialError && (await this.isPublic(need))) return;
    if (principal) throw new BlobdError('forbidden', `this token may not ${describe(need)}`);
    throw credentialError ?? new BlobdError('unauthorized', 'this route needs a token (Authorization: Bearer, X-API-Key or Basic) or a signed URL');
  }

  private async isPublic(need: Need): Promise<boolean> {
    if (need.action === 'blobs:read') return this.options.publicBlobs;
    if (need.action === 'object:read') return this.options.isPublicBucket(need.bucket);
    return false;
  }

  /** A new API token: the returned `token` is the only time its value exists outside the client. */
  async createToken(by: Principal, input: NewTokenInput): Promise<{ record: TokenRecord; token: string }> {
    const name = refuseNul(input.name, 'the token name').trim();
    if (name.length === 0 || name.length > 128) throw new BlobdError('invalid_request', 'a token name is 1 to 128 characters');
    const scopes = parseScopes(input.scopes);
    const life = input.expiresInMs;
    if (life !== undefined && (!Number.isInteger(life) || life < 1000 || life > MAX_TOKEN_LIFETIME_MS)) {
      throw new BlobdError('invalid_request', 'expires_in is one second to 100 years');
    }
    const id = uuidv7();
    const token = `bdt_${id}_${randomBytes(32).toString('base64url')}`;
    const now = Date.now();
    const record: TokenRecord = {
      id,
      name,
      tokenHash: hashToken(token),
      scopes,
      createdBy: by.id,
      createdAt: now,
      expiresAt: input.expiresInMs === undefined ? null : now + input.expiresInMs,
      lastUsedAt: null,
    };
    await this.meta.createToken(record);
    return { record, token };
  }

  /** Tokens in creation order (ids are UUIDv7). */
  async listTokens(page: PageRequest): Promise<Page<TokenRecord>> {
    // Token ids are UUIDs: a cursor holding a NUL is none this server gave out (and PostgreSQL cannot compare it).
    const after = page.cursor === undefined ? null : decodeCursor(page.cursor, (v): v is string => isString(v) && !v.includes('\u0000'));
    return pageOf(await this.meta.listTokens(page.limit + 1, after), page.limit, (t) => t.id);
  }

  async deleteToken(id: string): Promise<void> {
    refuseNul(id, 'the token id');
    if (!(await this.meta.deleteToken(id))) throw new BlobdError('token_not_found', `no token ${id}`, { id });
  }
}
