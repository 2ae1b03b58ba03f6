// Principals and the one decision who may do what. Until scoped tokens exist the admin token is the only
// principal credential. Tokens are compared as SHA-256 hashes in constant time; no token value is logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlobdError } from './errors.ts';

export interface Principal {
  /** Stable id used to own pins and records. */
  readonly id: string;
  readonly admin: boolean;
}

/** What a route may require of its caller. */
export type Action =
  | 'admin'
  | 'blobs:read'
  | 'blobs:write'
  | 'blobs:delete'
  | 'buckets:read'
  | 'buckets:write'
  | 'buckets:delete'
  /** Reading one object's content or metadata: the only thing a public_read bucket lets anyone do. */
  | 'objects:read';

const ADMIN: Principal = { id: 'admin', admin: true };

/** Hex SHA-256 of a token: how tokens are stored and compared, never the token itself. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function tokenHash(token: string): Buffer {
  return Buffer.from(hashToken(token), 'hex');
}

/** The single authorization decision: may this principal perform this action? */
export function can(principal: Principal, _action: Action): boolean {
  return principal.admin;
}

export class Authenticator {
  private readonly adminHash: Buffer;

  constructor(adminToken: string) {
    this.adminHash = tokenHash(adminToken);
  }

  /** The principal a presented token stands for; throws `unauthorized` for an unknown token. */
  authenticate(token: string): Principal {
    if (timingSafeEqual(tokenHash(token), this.adminHash)) return ADMIN;
    throw new BlobdError('unauthorized', 'the token is not valid');
  }
}
