// The Hono environment every router shares: Node bindings and per-request variables.
import type { HttpBindings } from '@hono/node-server';
import type { Hash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccessControl, Principal } from '../core/auth.ts';
import type { BlobdError } from '../core/errors.ts';
import type { IdempotencyService } from '../core/idempotency.ts';
import type { Grant } from '../core/signed-urls.ts';

export interface AppEnv {
  Bindings: HttpBindings & {
    /** Set only for the internal request that asks "may this principal do that?" before signing a URL. */
    dryRun?: { principal: Principal };
  };
  Variables: {
    requestId: string;
    log: Logger;
    /** The one authorization decision point, for `requires` (set by `authenticate`). */
    access: AccessControl;
    idempotency: IdempotencyService;
    /** Set by `authenticate` when the request proved a principal (a token, or a valid signed URL). */
    principal?: Principal;
    /** Set by `authenticate` when the request carried a token that is not valid. */
    credentialError?: BlobdError;
    /** What a signed URL allows beyond its signer's rights: limits the request body. */
    grant?: Grant;
    /** Where downloads count the bytes they sent and the ones cut by the send timeout (unset with --metrics=false). */
    metrics?: { sent(bytes: number): void; sendTimedOut(): void };
    /** A download whose client takes no bytes this long is cut (unset: never). */
    sendTimeoutMs?: number;
    /** Fed every chunk of the streamed request body (the Idempotency-Key fingerprint of a body). */
    bodyTap?: Hash;
  };
}
