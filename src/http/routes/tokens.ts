// API tokens (SPEC §3.4): create (the token is in this answer and nowhere else, ever), list, revoke.
// Admin only. Translation only: the rules live in core/auth.
import { createRoute, z } from '@hono/zod-openapi';
import type { AccessControl } from '../../core/auth.ts';
import type { TokenRecord } from '../../storage/metadata-store.ts';
import { idempotent, jsonBody } from '../middleware/idempotency.ts';
import { principalOf, requires } from '../middleware/authenticate.ts';
import { limitJsonBody } from '../request-body.ts';
import { createRouter } from '../router.ts';
import { errors, ExpiresIn, jsonContent, isoTime, lifetimeMs, pageJson, PageQuery, pageRequest } from './schemas.ts';


const TokenInfo = z
  .object({
    id: z.string(),
    name: z.string(),
    scopes: z.array(z.string()),
    created_at: z.string(),
    expires_at: z.string().nullable(),
    last_used_at: z.string().nullable(),
  })
  .openapi('Token');

const NewToken = z
  .object({
    name: z.string().min(1).max(128),
    scopes: z.array(z.string().max(200)).min(1).max(100),
    expires_in: ExpiresIn.optional()
      .openapi({ description: 'seconds, or a duration such as "90s", "24h", "30d"; omitted: never expires' }),
  })
  .strict()
  .openapi('NewToken');

function tokenJson(t: TokenRecord) {
  return { id: t.id, name: t.name, scopes: [...t.scopes], created_at: isoTime(t.createdAt)!, expires_at: isoTime(t.expiresAt), last_used_at: isoTime(t.lastUsedAt) };
}

const create = createRoute({
  method: 'post',
  path: '/api/tokens',
  summary: 'Create an API token; the token is shown in this answer only',
  middleware: [requires({ action: 'admin' }, { signable: false }), limitJsonBody(64 * 1024), idempotent(jsonBody)] as const,
  request: { body: { content: { 'application/json': { schema: NewToken } }, required: true } },
  responses: {
    201: jsonContent(TokenInfo.extend({ token: z.string() }).openapi('CreatedToken'), 'created'),
    ...errors(400, 401, 403, 409, 415, 422),
  },
});

const list = createRoute({
  method: 'get',
  path: '/api/tokens',
  summary: 'List API tokens in creation order (never their values)',
  middleware: [requires({ action: 'admin' }, { signable: false })] as const,
  request: { query: z.object(PageQuery) },
  responses: { 200: jsonContent(pageJson(TokenInfo), 'a page of tokens'), ...errors(400, 401, 403) },
});

const remove = createRoute({
  method: 'delete',
  path: '/api/tokens/{id}',
  summary: 'Revoke an API token (and every URL it signed)',
  middleware: [requires({ action: 'admin' }, { signable: false })] as const,
  request: { params: z.object({ id: z.string().max(64).openapi({ param: { name: 'id', in: 'path' } }) }) },
  responses: { 204: { description: 'revoked' }, ...errors(401, 403, 404) },
});

export function tokenRoutes(access: AccessControl) {
  const app = createRouter();

  app.openapi(create, async (c) => {
    const body = c.req.valid('json');
    const { record, token } = await access.createToken(principalOf(c), {
      name: body.name,
      scopes: body.scopes,
      expiresInMs: body.expires_in === undefined ? undefined : lifetimeMs(body.expires_in),
    });
    c.header('Location', `/api/tokens/${record.id}`);
    c.header('Cache-Control', 'no-store');
    return c.json({ ...tokenJson(record), token }, 201);
  });

  app.openapi(list, async (c) => {
    const page = await access.listTokens(pageRequest(c.req.valid('query')));
    return c.json({ items: page.items.map(tokenJson), next_cursor: page.nextCursor }, 200);
  });

  app.openapi(remove, async (c) => {
    await access.deleteToken(c.req.valid('param').id);
    return c.body(null, 204);
  });

  return app;
}
