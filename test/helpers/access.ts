// Helpers for access-control tests: API tokens, requests as a given token, held-open raw requests, and
// reading every file of a data dir as bytes (to look for secrets that must not be there).
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest, type ClientRequest } from 'node:http';
import path from 'node:path';
import type { Daemon } from './daemon.ts';

export interface TokenJson {
  id: string;
  name: string;
  scopes: string[];
  token: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export type TokenInfo = Omit<TokenJson, 'token'>;

/** `bdt_<uuid>_<43 base64url chars>` */
export const TOKEN_FORMAT = /^bdt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/;

let counter = 0;

/** POST /api/tokens as admin; asserts the 201. */
export async function createToken(
  d: Daemon,
  scopes: string[],
  extra: { name?: string; expires_in?: number | string } = {},
): Promise<TokenJson> {
  const res = await d.api('/api/tokens', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: extra.name ?? `t${++counter}`, scopes, ...extra }),
  });
  assert.equal(res.status, 201, `POST /api/tokens ${JSON.stringify(scopes)} → ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as TokenJson;
}

/** fetch against the daemon as `token` (Bearer). */
export function as(d: Daemon, token: string, pathname: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return d.api(pathname, { ...init, headers });
}

export async function listTokens(d: Daemon): Promise<TokenInfo[]> {
  const res = await d.api('/api/tokens');
  assert.equal(res.status, 200);
  return ((await res.json()) as { items: TokenInfo[] }).items;
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * A request through node:http whose body is written by the caller piece by piece, so that it can be held
 * open. `write` resolves once node handed the piece to the kernel; `end` finishes the body and resolves
 * with the answer. `destroy` ends it early (harmless after the answer).
 */
export function openRequest(url: string, method: string, headers: Record<string, string>) {
  // A connection of its own (agent: false): reusing a kept-alive socket the server is closing would fail.
  const req: ClientRequest = httpRequest(url, { method, headers, agent: false });
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  // Keeps an early failure from being an unhandled rejection; callers await `answer` themselves.
  answer.catch(() => undefined);
  return {
    write: (piece: Uint8Array) => new Promise<void>((resolve, reject) => req.write(piece, (err) => (err ? reject(err) : resolve()))),
    end: (piece?: Uint8Array) => {
      req.end(piece);
      return answer;
    },
    /** Sends the headers alone (no body yet) and resolves with the answer, for requests refused early. */
    headersOnly: () => {
      req.flushHeaders();
      return answer;
    },
    answer,
    destroy: () => req.destroy(),
  };
}

/** Every regular file under `dir`, recursively, as absolute paths. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** Which of `secrets` occur (as UTF-8 bytes) in which of `files`: `["file: secret-label", …]`. */
export async function secretsInFiles(files: string[], secrets: Record<string, string>): Promise<string[]> {
  const found: string[] = [];
  for (const file of files) {
    const bytes = await readFile(file);
    for (const [label, secret] of Object.entries(secrets)) {
      if (bytes.indexOf(Buffer.from(secret, 'utf8')) >= 0) found.push(`${file}: ${label}`);
    }
  }
  return found;
}
