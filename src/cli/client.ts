// The HTTP client every client command uses: the daemon's URL and token from flags, BLOBD_URL /
// BLOBD_TOKEN, or $BLOBD_DATA/admin-token; JSON in and out, listings followed page by page, and raw node:http
// requests for the byte streams (put, get). It never imports core or storage: the CLI is a daemon client.
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import path from 'node:path';
import { loadClientConfig } from '../config.ts';

export interface ClientOptions {
  url?: string;
  token?: string;
}

/** A blobd error answer (or a transport failure, status 0), as one line. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string | string[] | undefined> = {},
  ) {
    super(message);
  }
}

/** A usage error the commands find themselves (a malformed argument): exit code 2, like commander's. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface RawRequest {
  method: string;
  /** `/api/...` with its query. */
  path: string;
  headers?: OutgoingHttpHeaders;
  /** false: send no credential (upload-session routes take the session's token alone). */
  auth?: boolean;
}

/** One listing page, whichever shape the route answers (`{items, next_cursor}`, or a legacy `{tokens}`). */
interface Page<T> {
  items?: T[];
  next_cursor?: string | null;
  [legacy: string]: unknown;
}

/** Whole-body JSON of small answers only; byte streams go through `open`. */
const MAX_JSON = 64 * 1024 * 1024;

export class BlobdClient {
  private readonly agent: HttpAgent;
  readonly stateDir: string;

  private constructor(
    readonly url: string,
    private readonly token: string | undefined,
    stateDir: string,
    /** Where the admin token was looked for when neither --token nor BLOBD_TOKEN gave one. */
    private readonly tokenFile: string,
  ) {
    this.stateDir = stateDir;
    const Agent = url.startsWith('https:') ? HttpsAgent : HttpAgent;
    // Keep-alive: a put's appends and complete share one connection.
    this.agent = new Agent({ keepAlive: true, maxSockets: 4 });
  }

  static async connect(opts: ClientOptions): Promise<BlobdClient> {
    const config = loadClientConfig(opts);
    const tokenFile = path.join(config.dataDir, 'admin-token');
    const token = config.token ?? ((await readFile(tokenFile, 'utf8').catch(() => '')).trim() || undefined);
    return new BlobdClient(config.url, token, config.stateDir, tokenFile);
  }

  /**
   * The daemon's "this route needs a token" when the CLI found none says where the CLI looked: run
   * outside the folder that holds data/, the admin token is simply not found, and that is the news.
   */
  explain(err: unknown): unknown {
    if (this.token || !(err instanceof ApiError) || err.status !== 401 || err.code !== 'unauthorized') return err;
    // Exactly the file that was read ($BLOBD_DATA/admin-token, BLOBD_DATA defaulting to ./data).
    const message = `no token found: looked for --token, then BLOBD_TOKEN, then the file ${this.tokenFile}; give one with --token or BLOBD_TOKEN, or set BLOBD_DATA to the daemon's data directory`;
    return new ApiError(err.status, err.code, message, err.details, err.headers);
  }

  /** The token requests carry (download.ts writes its own requests). */
  credential(): string | undefined {
    return this.token;
  }

  /** The absolute URL of an /api path (what `sign` and error messages show). */
  href(pathname: string): string {
    // URL parsing resolves `.` and `..` segments away (encoded too), so the request would reach another
    // resource: `rm b/x/../../other` would delete the bucket other. Refused before anything is sent.
    if (pathname.split('?')[0]!.split('/').some(isDotSegment)) {
      throw new UsageError(`a path segment . or .. would reach another resource: ${JSON.stringify(pathname)}`);
    }
    return `${this.url}${pathname}`;
  }

  /**
   * Starts a request and resolves with the response once its headers arrive; `body` (if given) writes the
   * request body and must end it. Transport failures become ApiError with status 0.
   */
  open(req: RawRequest, body?: (out: import('node:http').ClientRequest) => Promise<void> | void): Promise<IncomingMessage> {
    const headers: OutgoingHttpHeaders = { ...req.headers };
    if (req.auth !== false && this.token) headers.authorization = `Bearer ${this.token}`;
    const send = this.url.startsWith('https:') ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const out = send(this.href(req.path), { method: req.method, headers, agent: this.agent }, resolve);
      out.on('error', (err) => reject(this.unreachable(err)));
      if (body) Promise.resolve(body(out)).catch((err: unknown) => out.destroy(err as Error));
      else out.end();
    });
  }

  /** A request with a small JSON (or empty) body; resolves with the parsed 2xx answer, throws ApiError. */
  async call<T>(method: string, pathname: string, init: { json?: unknown; headers?: OutgoingHttpHeaders; auth?: boolean } = {}): Promise<{ status: number; headers: IncomingMessage['headers']; body: T }> {
    const payload = init.json === undefined ? undefined : Buffer.from(JSON.stringify(init.json));
    const headers: OutgoingHttpHeaders = { ...init.headers };
    if (payload) Object.assign(headers, { 'content-type': 'application/json', 'content-length': payload.length });
    else if (method !== 'GET' && method !== 'HEAD') headers['content-length'] = 0;
    const res = await this.open({ method, path: pathname, headers, auth: init.auth }, (out) => void out.end(payload));
    const text = await readText(res);
    if (res.statusCode! >= 300) throw errorOf(res, text);
    let body: T;
    try {
      body = (text === '' ? null : JSON.parse(text)) as T;
    } catch {
      throw new ApiError(res.statusCode!, 'bad_answer', `${method} ${pathname}: the daemon's answer is not JSON`);
    }
    return { status: res.statusCode!, headers: res.headers, body };
  }

  async json<T>(method: string, pathname: string, json?: unknown): Promise<T> {
    return (await this.call<T>(method, pathname, { json })).body;
  }

  /**
   * Every item of a listing, page after page: `{items, next_cursor}` followed with `?cursor=`. Older
   * answers that name their array (`{tokens: […]}`) are one page.
   */
  async *list<T>(pathname: string, legacyKey?: string): AsyncGenerator<T> {
    let cursor: string | null = null;
    for (let pages = 0; pages < 1_000_000; pages++) {
      const sep = pathname.includes('?') ? '&' : '?';
      const page: Page<T> = await this.json<Page<T>>('GET', cursor === null ? pathname : `${pathname}${sep}cursor=${encodeURIComponent(cursor)}`);
      const items = page.items ?? (legacyKey ? (page[legacyKey] as T[] | undefined) : undefined) ?? [];
      yield* items;
      cursor = page.next_cursor ?? null;
      if (cursor === null) return;
    }
  }

  /** Lets the process exit: idle keep-alive sockets would hold it open. */
  close(): void {
    this.agent.destroy();
  }

  private unreachable(err: Error): ApiError {
    if (err instanceof ApiError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (this.url.startsWith('https:') && (code === 'EPROTO' || code.startsWith('ERR_SSL_'))) {
      // A plain-http server answers a TLS hello with an HTTP 400 page, which OpenSSL reports as EPROTO.
      const { host } = new URL(this.url);
      return new ApiError(0, 'tls_failed', `could not speak TLS to ${host}: is it plain http? Try --url http://${host}`);
    }
    return new ApiError(0, 'unreachable', `cannot reach blobd at ${this.url}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
  }
}

/** The body of an answer as text (error and JSON answers are small; larger ones are cut off). */
export async function readText(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON) {
      res.destroy();
      break;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** blobd's `{"error": {code, message, …}}` as an ApiError; anything else (a proxy's page) by its status. */
export function errorOf(res: IncomingMessage, text: string): ApiError {
  let error: { code?: string; message?: string; [k: string]: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  const status = res.statusCode ?? 0;
  const { code = `http_${status}`, message = res.statusMessage ?? 'request failed', ...details } = error ?? {};
  return new ApiError(status, code, inUserTerms(code, message, details), details, res.headers);
}

/**
 * The daemon names a missing object by its key alone (its details carry the bucket); the user typed
 * BUCKET/KEY, so that is what the message says.
 */
function inUserTerms(code: string, message: string, details: Record<string, unknown>): string {
  const { bucket, key, revision } = details;
  if (code !== 'object_not_found' || typeof bucket !== 'string' || typeof key !== 'string') return message;
  return typeof revision === 'number' ? `no revision ${revision} of ${bucket}/${key}` : `no object ${bucket}/${key}`;
}

/** Object routes take the key's segments percent-encoded, its slashes as they are. */
export function objectPath(bucket: string, key: string): string {
  return `/api/buckets/${encodeURIComponent(bucket)}/objects/${key.split('/').map(encodeURIComponent).join('/')}`;
}

const DIGEST_RE = /^(?:sha256:)?([0-9a-f]{64})$/;

/** A digest argument (`sha256:<hex>` or bare hex) in its prefixed form, or null when it is not one. */
export function asDigest(text: string): string | null {
  const m = DIGEST_RE.exec(text);
  return m ? `sha256:${m[1]}` : null;
}

export type Target = { kind: 'blob'; digest: string } | { kind: 'object'; bucket: string; key: string };

/** `.` or `..`, also percent-encoded: a segment URL parsing resolves away. */
const isDotSegment = (segment: string) => /^(?:\.|%2e){1,2}$/i.test(segment);

/** `DIGEST` or `BUCKET/KEY`: what get, stat and rm act on. */
export function parseTarget(text: string): Target {
  const digest = asDigest(text);
  if (digest) return { kind: 'blob', digest };
  const slash = text.indexOf('/');
  if (slash <= 0 || slash === text.length - 1) throw new UsageError(`not a digest or BUCKET/KEY: ${JSON.stringify(text)}`);
  // No key has such a segment (the daemon refuses them), and in a URL they would name another resource.
  if (text.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new UsageError(`a key has no . or .. segment: ${JSON.stringify(text)}`);
  }
  const key = text.slice(slash + 1);
  checkKeyLength(key);
  return { kind: 'object', bucket: text.slice(0, slash), key };
}

/** The daemon's limit on a key (core/catalog.ts parseKey). */
const MAX_KEY_BYTES = 1024;

/**
 * Refuses a key longer than any the daemon takes, before it goes into a URL: a key of some kilobytes made
 * a request line the daemon's HTTP parser refuses whole (431 headers_too_large), a message about headers.
 */
export function checkKeyLength(key: string): void {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw new UsageError(`a key is at most ${MAX_KEY_BYTES} bytes of UTF-8; this one has ${bytes}`);
}

/** The download path of a target. */
export function contentPath(t: Target): string {
  return t.kind === 'blob' ? `/api/blobs/${t.digest}` : objectPath(t.bucket, t.key);
}
