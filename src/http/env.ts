// The Hono environment every router shares: Node bindings and per-request variables.
import type { HttpBindings } from '@hono/node-server';
import type { Logger } from 'pino';
import type { Principal } from '../core/auth.ts';
import type { BlobdError } from '../core/errors.ts';

export interface AppEnv {
  Bindings: HttpBindings;
  Variables: {
    requestId: string;
    log: Logger;
    /** Set by `authenticate` when the request carried a valid token. */
    principal?: Principal;
    /** Set by `authenticate` when the request carried a token that is not valid. */
    credentialError?: BlobdError;
    /** Whether a bucket lets anyone read its objects (set by `authenticate`). */
    isPublicBucket: (bucket: string) => Promise<boolean>;
  };
}
