// Signed URLs (SPEC §3.4): a principal signs one method + path (+ query) it may use itself, for at most
// 7 days. Whether it may is asked of the very route declarations that guard the path (a dry run).
import { createRoute, z } from '@hono/zod-openapi';
import type { CheckTarget, SignedUrls } from '../../core/signed-urls.ts';
import { MAX_SIGNED_LIFETIME_S, MAX_SIGNED_SIZE } from '../../core/signed-urls.ts';
import { idempotent, jsonBody } from '../middleware/idempotency.ts';
import { principalOf, requires } from '../middleware/authenticate.ts';
import { limitJsonBody } from '../request-body.ts';
import { createRouter } from '../router.ts';
import { errors, ExpiresIn, jsonContent, lifetimeMs } from './schemas.ts';

const SignRequest = z
  .object({
    method: z.string().max(10),
    path: z.string().min(1).max(4096).openapi({ description: '/api/… path, optionally with a query (signed too)' }),
    expires_in: ExpiresIn.openapi({ description: `seconds, or a duration such as "90s", "1h", "7d"; 1 s to ${MAX_SIGNED_LIFETIME_S} s` }),
    max_size: z.number().int().min(0).max(MAX_SIGNED_SIZE).optional().openapi({ description: 'largest request body (a session: its total size)' }),
    content_type: z.string().max(255).optional().openapi({ description: 'the only Content-Type a request body may have' }),
  })
  .strict()
  .openapi('SignRequest');

const SignedUrl = z
  .object({ url: z.string(), path: z.string(), method: z.string(), expires_at: z.string() })
  .openapi('SignedUrl');

const sign = createRoute({
  method: 'post',
  path: '/api/signed-urls',
  summary: 'Sign a URL for one request the caller may make itself; it needs no other credential',
  middleware: [requires({ action: 'authenticated' }, { signable: false }), limitJsonBody(64 * 1024), idempotent(jsonBody)] as const,
  request: { body: { content: { 'application/json': { schema: SignRequest } }, required: true } },
  responses: { 201: jsonContent(SignedUrl, 'signed'), ...errors(400, 401, 403, 409, 415, 422) },
});

export function signedUrlRoutes(signedUrls: SignedUrls, checkTarget: CheckTarget) {
  const app = createRouter();
  app.openapi(sign, async (c) => {
    const body = c.req.valid('json');
    // Whole seconds, rounded up ("1500ms": 2 s).
    const expiresInS = Math.ceil(lifetimeMs(body.expires_in) / 1000);
    const signed = await signedUrls.sign(
      principalOf(c),
      { method: body.method, path: body.path, expiresInS, maxSize: body.max_size, contentType: body.content_type },
      checkTarget,
    );
    const method = body.method.toUpperCase();
    c.header('Cache-Control', 'no-store');
    const url = new URL(signed.pathWithQuery, new URL(c.req.url).origin).toString();
    return c.json({ url, path: signed.pathWithQuery, method, expires_at: new Date(signed.expiresAt).toISOString() }, 201);
  });
  return app;
}
