// The HTTP client every client command uses: the daemon's URL and token from flags, BLOBD_URL /
// BLOBD_TOKEN, or data/admin-token; JSON in and out; a blobd error becomes one line.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadClientConfig } from '../config.ts';

export interface ClientOptions {
  url?: string;
  token?: string;
  data?: string;
}

export class ApiError extends Error {
  override name = 'ApiError';
}

/** One JSON request to the daemon; resolves with the parsed 2xx body. */
export async function callApi<T>(opts: ClientOptions, method: string, pathname: string): Promise<T> {
  const config = loadClientConfig(opts);
  const token = config.token ?? (await readFile(path.join(config.dataDir, 'admin-token'), 'utf8').catch(() => '')).trim();
  let res: Response;
  try {
    res = await fetch(`${config.url}${pathname}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    throw new ApiError(`cannot reach blobd at ${config.url}: ${(err as Error).message}`);
  }
  const body = (await res.json().catch(() => null)) as (T & { error?: { code: string; message: string } }) | null;
  if (!res.ok || body === null) {
    throw new ApiError(`${method} ${pathname}: ${res.status} ${body?.error?.code ?? ''} ${body?.error?.message ?? ''}`.trim());
  }
  return body;
}
