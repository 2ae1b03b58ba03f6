// The Hono environment every router shares: Node bindings and per-request variables.
import type { HttpBindings } from '@hono/node-server';
import type { Logger } from 'pino';
import type { Principal } from '../core/auth.ts';

export interface AppEnv {
  Bindings: HttpBindings;
  Variables: {
    requestId: string;
    log: Logger;
    principal: Principal;
  };
}
