// Finds the credential a request carries (Bearer, X-API-Key, or Basic with the token as user name) and
// asks core who it is. It decides nothing itself beyond "which header holds the token".
import type { MiddlewareHandler } from 'hono';
import type { Authenticator } from '../../core/auth.ts';
import type { AppEnv } from '../env.ts';

export function presentedToken(authorization: string | undefined, apiKey: string | undefined): string | null {
  if (apiKey) return apiKey.trim();
  if (!authorization) return null;
  const space = authorization.indexOf(' ');
  const scheme = (space < 0 ? authorization : authorization.slice(0, space)).toLowerCase();
  const value = space < 0 ? '' : authorization.slice(space + 1).trim();
  if (scheme === 'bearer') return value;
  if (scheme === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? decoded : decoded.slice(0, colon);
  }
  return '';
}

export function authenticate(auth: Authenticator): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = presentedToken(c.req.header('authorization'), c.req.header('x-api-key'));
    c.set('principal', auth.authenticate(token));
    await next();
  };
}
