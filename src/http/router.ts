// Every router is an OpenAPIHono with the same validation hook, so a bad param, query, header or JSON
// body anywhere becomes our JSON 400 `invalid_request` — the hook does not inherit across app.route().
import { OpenAPIHono } from '@hono/zod-openapi';
import { BlobdError } from '../core/errors.ts';
import type { AppEnv } from './env.ts';

function validationHook(result: { success: boolean; error?: unknown }): void {
  if (result.success) return;
  const issues = (result.error as { issues?: { path: PropertyKey[]; message: string }[] }).issues ?? [];
  const first = issues[0];
  const where = first && first.path.length > 0 ? `${first.path.map(String).join('.')}: ` : '';
  throw new BlobdError('invalid_request', `${where}${first?.message ?? 'invalid request'}`, {
    issues: issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
  });
}

export function createRouter() {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}
