// Flags > BLOBD_* environment variables > defaults, parsed once into one typed, validated Config.
// The only module that reads process.env.
import { homedir } from 'node:os';
import path from 'node:path';

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** One JSON object a line, or a human line (the default when stdout is a terminal). */
  readonly logFormat: 'json' | 'pretty';
  readonly maxBlobSize: number;
  /** Blobs up to this many bytes are stored in the metadata database instead of a file each (0: none). */
  readonly inlineMax: number;
  readonly temporaryTtlMs: number;
  readonly uploadTtlMs: number;
  readonly minFree: number;
  /** Disk held back in data/reserve so that deletes and GC can commit on a full disk; 0: none. */
  readonly diskReserve: number;
  readonly shutdownTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** A download whose socket takes no more bytes this long is cut; 0: never (the idle timeout still applies). */
  readonly sendTimeoutMs: number;
  /** How often GC runs on its own; 0: never (only POST /api/admin/gc). */
  readonly gcIntervalMs: number;
  /** No blob younger than this is removed by GC. */
  readonly gcGraceMs: number;
  /** Origins whose browsers may call the API (CORS); empty: none. */
  readonly corsOrigins: readonly string[];
  /** Anyone may read blobs by digest, without a token. */
  readonly publicBlobs: boolean;
  /** Serve GET /metrics and keep its counters. */
  readonly metrics: boolean;
  /** How often data/keys/ is read again: a new signing key signs, a removed one stops verifying. */
  readonly keyRefreshMs: number;
  /** Start (with a warning) even when other users can enter the data directory; else that is refused. */
  readonly insecureDataDir: boolean;
  /** From BLOBD_ADMIN_TOKEN only (a flag would show up in `ps`). */
  readonly adminToken: string | undefined;
  /** Where blob bytes live: the data directory (default) or an S3-compatible bucket. */
  readonly store: StoreConfig;
  /** Where metadata lives: SQLite in the data directory (default) or a PostgreSQL database N nodes share. */
  readonly metadata: MetadataConfig;
  /** How long a node's lease on an upload session or a maintenance task lasts unless renewed (shared metadata). */
  readonly leaseTtlMs: number;
  /** The S3-compatible API's own listener (on `host`); undefined: off. */
  readonly s3Api: S3ApiConfig | undefined;
}

export interface S3ApiConfig {
  /** 0: a free port (the default when --port is 0, as tests start daemons). */
  readonly port: number;
  /** Virtual-host style besides path style: `bucket.<domain>`. */
  readonly domain: string | undefined;
  /** The region GetBucketLocation answers (clients may sign for any). */
  readonly region: string;
}

export type MetadataConfig = { readonly kind: 'sqlite' } | { readonly kind: 'postgres'; readonly url: string };

/** --inline-max's default: the largest blob stored inside the metadata database. */
const INLINE_MAX_DEFAULT = '64KiB';

/** A database URL fit for logs and errors: the password replaced by ***. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}

export type StoreConfig = { readonly kind: 'fs' } | S3Config;

export interface S3Config {
  readonly kind: 's3';
  /** The S3 API's URL (RGW, MinIO); undefined: AWS S3 of the region. */
  readonly endpoint: string | undefined;
  readonly bucket: string;
  readonly region: string;
  /** Prepended to every key blobd writes: '' or ending in '/'. */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  /** Size of the parts of multipart uploads (at least the store's minimum, 5 MiB on AWS and RGW). */
  readonly partSize: number;
  /** A request to the store with no bytes moving this long fails (then 503 store_unavailable). */
  readonly timeoutMs: number;
  /** From BLOBD_S3_ACCESS_KEY_ID / BLOBD_S3_SECRET_ACCESS_KEY only; undefined: the AWS SDK's own chain. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/** `10MiB`, `5GiB`, `1.5GB`, `4096` → bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError(`not a size: ${JSON.stringify(text)} (try 10MiB, 5GiB)`);
  return Math.floor(Number(m[1]) * unit);
}

const DURATIONS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500ms`, `2s`, `10m`, `24h`, `7d` → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(text);
  if (!m) throw new ConfigError(`not a duration: ${JSON.stringify(text)} (try 500ms, 2s, 10m, 24h)`);
  return Math.round(Number(m[1]) * DURATIONS[m[2]!.toLowerCase()]!);
}

function parsePort(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n > 65535) throw new ConfigError(`not a port: ${JSON.stringify(text)}`);
  return n;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function parseLogLevel(text: string): Config['logLevel'] {
  const level = text.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`not a log level: ${JSON.stringify(text)} (one of ${LOG_LEVELS.join(', ')})`);
  }
  return level as Config['logLevel'];
}

function parseLogFormat(text: string, terminal: boolean): Config['logFormat'] {
  const format = text.trim().toLowerCase() || (terminal ? 'pretty' : 'json');
  if (format !== 'json' && format !== 'pretty') throw new ConfigError(`not a log format: ${JSON.stringify(text)} (json or pretty)`);
  return format;
}

/** One setting of `blobd serve`: its flag, its environment variable and its default, for --help too. */
export interface ServeOption {
  readonly key: string;
  readonly flag: string;
  readonly env: string;
  readonly defaultValue: string;
  readonly description: string;
  /** `list`: repeatable flag, comma-separated in the environment; `switch`: a flag without a value. */
  readonly kind?: 'list' | 'switch';
}

export const SERVE_OPTIONS: readonly ServeOption[] = [
  { key: 'host', flag: '--host <addr>', env: 'BLOBD_HOST', defaultValue: '127.0.0.1', description: 'address to listen on' },
  { key: 'port', flag: '--port <n>', env: 'BLOBD_PORT', defaultValue: '8887', description: 'port to listen on (0 picks a free one)' },
  { key: 'data', flag: '--data <dir>', env: 'BLOBD_DATA', defaultValue: './data', description: 'data directory' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'BLOBD_LOG_LEVEL', defaultValue: 'info', description: 'fatal|error|warn|info|debug|trace|silent' },
  { key: 'logFormat', flag: '--log-format <format>', env: 'BLOBD_LOG_FORMAT', defaultValue: '', description: 'json|pretty (default: pretty on a terminal, json otherwise)' },
  { key: 'maxBlobSize', flag: '--max-blob-size <size>', env: 'BLOBD_MAX_BLOB_SIZE', defaultValue: '10GiB', description: 'largest blob accepted' },
  { key: 'inlineMax', flag: '--inline-max <size>', env: 'BLOBD_INLINE_MAX', defaultValue: INLINE_MAX_DEFAULT, description: 'blobs up to this size are stored inside the metadata database, not as a file each (0: none; at most 1MiB)' },
  { key: 'temporaryTtl', flag: '--temporary-ttl <duration>', env: 'BLOBD_TEMPORARY_TTL', defaultValue: '24h', description: 'lifetime of temporary pins' },
  { key: 'uploadTtl', flag: '--upload-ttl <duration>', env: 'BLOBD_UPLOAD_TTL', defaultValue: '24h', description: 'idle time after which an upload session expires' },
  { key: 'minFree', flag: '--min-free <size>', env: 'BLOBD_MIN_FREE', defaultValue: '1GiB', description: 'free disk to keep; below it uploads get 507' },
  { key: 'diskReserve', flag: '--disk-reserve <size>', env: 'BLOBD_DISK_RESERVE', defaultValue: '4MiB', description: 'disk held back in data/reserve and given up on a full disk so that deletes and GC still run (0: none)' },
  { key: 'idleTimeout', flag: '--idle-timeout <duration>', env: 'BLOBD_IDLE_TIMEOUT', defaultValue: '2m', description: 'a connection silent this long mid-request is closed (an upload keeps what arrived)' },
  { key: 'sendTimeout', flag: '--send-timeout <duration>', env: 'BLOBD_SEND_TIMEOUT', defaultValue: '60s', description: 'a download whose socket takes no more bytes this long is cut: its client stopped reading, or reads far too slowly (0s: never)' },
  { key: 'gcInterval', flag: '--gc-interval <duration>', env: 'BLOBD_GC_INTERVAL', defaultValue: '10m', description: 'how often garbage collection runs (0s: only on POST /api/admin/gc)' },
  { key: 'gcGrace', flag: '--gc-grace <duration>', env: 'BLOBD_GC_GRACE', defaultValue: '1h', description: 'no blob younger than this is removed by garbage collection' },
  { key: 'corsOrigin', flag: '--cors-origin <origin>', env: 'BLOBD_CORS_ORIGIN', defaultValue: '', kind: 'list', description: 'an origin allowed to call the API from a browser (repeatable; env: comma-separated)' },
  { key: 'publicBlobs', flag: '--public-blobs', env: 'BLOBD_PUBLIC_BLOBS', defaultValue: 'false', kind: 'switch', description: 'anyone may GET blobs by digest without a token' },
  { key: 'metrics', flag: '--metrics <bool>', env: 'BLOBD_METRICS', defaultValue: 'true', description: 'serve GET /metrics (Prometheus); --metrics=false turns it off' },
  { key: 'keyRefresh', flag: '--key-refresh <duration>', env: 'BLOBD_KEY_REFRESH', defaultValue: '30s', description: 'how often signing keys are read again from data/keys/ (a new key signs, a removed key stops verifying)' },
  { key: 'insecureDataDir', flag: '--insecure-data-dir', env: 'BLOBD_INSECURE_DATA_DIR', defaultValue: 'false', kind: 'switch', description: 'start even when other users can enter the data directory (only warn; by default that is refused)' },
  { key: 'shutdownTimeout', flag: '--shutdown-timeout <duration>', env: 'BLOBD_SHUTDOWN_TIMEOUT', defaultValue: '10s', description: 'how long in-flight requests may finish after SIGTERM' },
  { key: 'metadata', flag: '--metadata <url>', env: 'BLOBD_DATABASE_URL', defaultValue: '', description: 'where metadata lives: empty for SQLite in the data directory, or postgres://user@host:port/db to share one PostgreSQL database among several blobd nodes (password from the URL or PGPASSWORD)' },
  { key: 'leaseTtl', flag: '--lease-ttl <duration>', env: 'BLOBD_LEASE_TTL', defaultValue: '30s', description: "with PostgreSQL metadata: how long a node's hold on an upload session or a maintenance task lasts unless renewed (a crashed node's sessions resume elsewhere after it)" },
  { key: 's3ApiPort', flag: '--s3-api-port <n>', env: 'BLOBD_S3_API_PORT', defaultValue: '8889', description: 'port of the S3-compatible API, on --host (0 or false: off; not given while --port is 0: a free port too)' },
  { key: 's3ApiDomain', flag: '--s3-api-domain <domain>', env: 'BLOBD_S3_API_DOMAIN', defaultValue: '', description: 'answer virtual-host style S3 requests (Host: BUCKET.DOMAIN) besides path style' },
  { key: 's3ApiRegion', flag: '--s3-api-region <region>', env: 'BLOBD_S3_API_REGION', defaultValue: 'us-east-1', description: 'the region the S3-compatible API says its buckets are in (requests signed for any region are accepted)' },
  { key: 'store', flag: '--store <kind>', env: 'BLOBD_STORE', defaultValue: 'fs', description: 'where blob bytes live: fs (the data directory) or s3 (an S3-compatible bucket; metadata stays in the data directory)' },
  { key: 's3Endpoint', flag: '--s3-endpoint <url>', env: 'BLOBD_S3_ENDPOINT', defaultValue: '', description: "the S3 API's URL, e.g. http://127.0.0.1:7480 for Ceph RGW (empty: AWS S3 in --s3-region)" },
  { key: 's3Bucket', flag: '--s3-bucket <name>', env: 'BLOBD_S3_BUCKET', defaultValue: '', description: 'the bucket blob bytes go to (it must exist); required with --store s3' },
  { key: 's3Region', flag: '--s3-region <region>', env: 'BLOBD_S3_REGION', defaultValue: 'us-east-1', description: 'the S3 region' },
  { key: 's3Prefix', flag: '--s3-prefix <prefix>', env: 'BLOBD_S3_PREFIX', defaultValue: '', description: 'a key prefix for everything blobd writes to the bucket, e.g. blobd/' },
  { key: 's3ForcePathStyle', flag: '--s3-force-path-style', env: 'BLOBD_S3_FORCE_PATH_STYLE', defaultValue: 'false', kind: 'switch', description: 'address the bucket as endpoint/bucket (RGW and MinIO need it) instead of bucket.endpoint' },
  { key: 's3PartSize', flag: '--s3-part-size <size>', env: 'BLOBD_S3_PART_SIZE', defaultValue: '8MiB', description: "size of multipart upload parts (at least the store's minimum, 5MiB on AWS and RGW)" },
  { key: 's3Timeout', flag: '--s3-timeout <duration>', env: 'BLOBD_S3_TIMEOUT', defaultValue: '60s', description: 'a request to the S3 store with no bytes moving this long fails (retried twice; then the client gets 503 store_unavailable)' },
];

/** What commander hands over: strings, repeated flags as arrays, switches as true. */
export type ServeFlags = Record<string, string | string[] | boolean | undefined>;

function parseOrigin(text: string): string {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.origin !== text.replace(/\/$/, '')) {
    throw new ConfigError(`not an origin: ${JSON.stringify(text)} (scheme://host[:port], e.g. https://app.example.com)`);
  }
  return url.origin;
}

function parseSwitch(text: string): boolean {
  if (/^(true|1|yes)$/i.test(text.trim())) return true;
  if (/^(false|0|no|)$/i.test(text.trim())) return false;
  throw new ConfigError(`not true or false: ${JSON.stringify(text)}`);
}

export function loadConfig(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): Config {
  const value = (key: string): string => {
    const opt = SERVE_OPTIONS.find((o) => o.key === key)!;
    const flag = flags[key];
    if (Array.isArray(flag)) return flag.join(',');
    if (typeof flag === 'boolean') return String(flag);
    return flag ?? env[opt.env] ?? opt.defaultValue;
  };
  const adminToken = env.BLOBD_ADMIN_TOKEN;
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('BLOBD_ADMIN_TOKEN must be at least 16 characters');
  }
  return {
    host: value('host'),
    port: parsePort(value('port')),
    dataDir: path.resolve(value('data')),
    logLevel: parseLogLevel(value('logLevel')),
    logFormat: parseLogFormat(value('logFormat'), process.stdout.isTTY === true),
    maxBlobSize: parseSize(value('maxBlobSize')),
    inlineMax: parseInlineMax(value('inlineMax')),
    temporaryTtlMs: parseDuration(value('temporaryTtl')),
    uploadTtlMs: parseDuration(value('uploadTtl')),
    minFree: parseSize(value('minFree')),
    diskReserve: parseSize(value('diskReserve')),
    shutdownTimeoutMs: parseDuration(value('shutdownTimeout')),
    idleTimeoutMs: parseDuration(value('idleTimeout')),
    sendTimeoutMs: parseDuration(value('sendTimeout')),
    gcIntervalMs: parseDuration(value('gcInterval')),
    gcGraceMs: parseDuration(value('gcGrace')),
    corsOrigins: [...new Set(value('corsOrigin').split(',').map((o) => o.trim()).filter(Boolean).map(parseOrigin))],
    publicBlobs: parseSwitch(value('publicBlobs')),
    keyRefreshMs: parseDuration(value('keyRefresh')),
    metrics: parseSwitch(value('metrics')),
    insecureDataDir: parseSwitch(value('insecureDataDir')),
    adminToken: adminToken || undefined,
    store: parseStore(value, env),
    metadata: parseMetadata(value('metadata')),
    leaseTtlMs: parseDuration(value('leaseTtl')),
    s3Api: parseS3Api(value, flags.s3ApiPort === undefined && env.BLOBD_S3_API_PORT === undefined, parsePort(value('port'))),
  };
}

/** `--s3-api-port` and friends: 0 or false turns the listener off; left unset with `--port 0`, it takes a free port too. */
function parseS3Api(value: (key: string) => string, portUnset: boolean, mainPort: number): S3ApiConfig | undefined {
  const text = value('s3ApiPort').trim().toLowerCase();
  let port: number;
  if (portUnset && mainPort === 0) port = 0;
  else if (text === 'false' || text === 'off') return undefined;
  else if ((port = parsePort(text)) === 0) return undefined;
  const domain = value('s3ApiDomain').trim().toLowerCase().replace(/^\.+|\.+$/g, '');
  if (domain && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d+)?$/.test(domain)) {
    throw new ConfigError(`not a domain: ${JSON.stringify(value('s3ApiDomain'))} (e.g. s3.example.com)`);
  }
  return { port, domain: domain || undefined, region: value('s3ApiRegion').trim() || 'us-east-1' };
}

/** `--metadata`: empty (or sqlite) for the data directory's SQLite, or a PostgreSQL URL. */
function parseMetadata(text: string): MetadataConfig {
  const url = text.trim();
  if (url === '' || url.toLowerCase() === 'sqlite') return { kind: 'sqlite' };
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new ConfigError(`not a metadata store: ${JSON.stringify(redactUrl(url))} (empty for SQLite, or postgres://user@host:port/database)`);
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`not a PostgreSQL URL: ${JSON.stringify(redactUrl(url))}`);
  }
  return { kind: 'postgres', url };
}

/** `--store` and its S3 settings; credentials only from the environment, never a flag (`ps` shows flags). */
function parseStore(value: (key: string) => string, env: NodeJS.ProcessEnv): StoreConfig {
  const kind = value('store').trim().toLowerCase();
  if (kind === 'fs') return { kind: 'fs' };
  if (kind !== 's3') throw new ConfigError(`not a store: ${JSON.stringify(value('store'))} (fs or s3)`);
  const bucket = value('s3Bucket').trim();
  if (!bucket) throw new ConfigError('--store s3 needs --s3-bucket (or BLOBD_S3_BUCKET)');
  const endpoint = value('s3Endpoint').trim();
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint)) throw new ConfigError(`not an S3 endpoint URL: ${JSON.stringify(endpoint)} (e.g. http://127.0.0.1:7480)`);
  let prefix = value('s3Prefix').trim().replace(/^\/+/, '');
  if (prefix && !prefix.endsWith('/')) prefix += '/';
  if (prefix.split('/').some((part, i, all) => part === '..' || part === '.' || (part === '' && i < all.length - 1))) {
    throw new ConfigError(`not a key prefix: ${JSON.stringify(value('s3Prefix'))} (e.g. blobd/)`);
  }
  const partSize = parseSize(value('s3PartSize'));
  if (partSize < 5 * 1024 * 1024 || partSize > 5 * 1024 ** 3) throw new ConfigError("--s3-part-size must be between 5MiB (S3's smallest part) and 5GiB");
  // blobd pins an AWS SDK release that supports this Node (package.json); the SDK's notice that later
  // releases will need Node 22 would print at every start and is not for blobd's users.
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const accessKeyId = env.BLOBD_S3_ACCESS_KEY_ID;
  const secretAccessKey = env.BLOBD_S3_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError('set both BLOBD_S3_ACCESS_KEY_ID and BLOBD_S3_SECRET_ACCESS_KEY, or neither (then the AWS environment and profile chain is used)');
  }
  return {
    kind: 's3',
    endpoint: endpoint || undefined,
    bucket,
    region: value('s3Region').trim() || 'us-east-1',
    prefix,
    forcePathStyle: parseSwitch(value('s3ForcePathStyle')),
    partSize,
    timeoutMs: parseDuration(value('s3Timeout')),
    credentials: accessKeyId !== undefined ? { accessKeyId, secretAccessKey: secretAccessKey! } : undefined,
  };
}

/** Where the client commands find the daemon and the data directory: flags > BLOBD_* > defaults. */
export interface ClientConfig {
  readonly url: string;
  readonly token: string | undefined;
  readonly dataDir: string;
  /** Where `blobd put` keeps resumable upload state: $XDG_STATE_HOME/blobd, else ~/.local/state/blobd. */
  readonly stateDir: string;
}

export function loadClientConfig(flags: { url?: string; token?: string; data?: string }, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const url = (flags.url ?? env.BLOBD_URL ?? 'http://127.0.0.1:8887').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(url)) throw new ConfigError(`not a URL: ${JSON.stringify(url)}`);
  return {
    url,
    token: flags.token ?? env.BLOBD_TOKEN ?? undefined,
    dataDir: path.resolve(flags.data ?? env.BLOBD_DATA ?? './data'),
    stateDir: path.join(env.XDG_STATE_HOME ? path.resolve(env.XDG_STATE_HOME) : path.join(homedir(), '.local', 'state'), 'blobd'),
  };
}

/**
 * The largest blob `blobd fsck --repack` moves into the database: `--inline-max` if given, else the daemon's
 * setting (BLOBD_INLINE_MAX, else its default), so that a repacked blob is one the daemon would store inline.
 */
export function repackInlineMax(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number {
  return parseInlineMax(flag ?? env.BLOBD_INLINE_MAX ?? INLINE_MAX_DEFAULT);
}

/** The largest --inline-max: an inline blob is held in memory whole while it is written and read. */
export const MAX_INLINE_BYTES = 1024 * 1024;

/** --inline-max: at most MAX_INLINE_BYTES. */
function parseInlineMax(v: string): number {
  const n = parseSize(v);
  if (n > MAX_INLINE_BYTES) throw new ConfigError(`--inline-max must be at most 1MiB (got ${v}): larger blobs are better as files`);
  return n;
}
