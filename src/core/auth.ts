// Principals and the decision who may call the API. Until scoped tokens exist the admin token is the only
// credential. Tokens are compared as SHA-256 hashes in constant time; no token value is ever logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlobdError } from './errors.ts';

export interface Principal {
  /** Stable id used to own pins and records. */
  readonly id: string;
  readonly admin: boolean;
}

const ADMIN: Principal = { id: 'admin', admin: true };

function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class Authenticator {
  private readonly adminHash: Buffer;

  constructor(adminToken: string) {
    this.adminHash = tokenHash(adminToken);
  }

  /** The principal a presented credential stands for; `null` means none was presented. */
  authenticate(token: string | null): Principal {
    if (token === null || token === '') {
      throw new BlobdError('unauthorized', 'this route needs a token (Authorization: Bearer, X-API-Key or Basic)');
    }
    if (timingSafeEqual(tokenHash(token), this.adminHash)) return ADMIN;
    throw new BlobdError('unauthorized', 'the token is not valid');
  }
}
