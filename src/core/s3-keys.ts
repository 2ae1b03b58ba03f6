// S3 credentials: an access key id and a secret access key, with the same scopes as API tokens. SigV4 signs
// with the secret itself, so the server must hold it in plaintext at verification time: each key is a row of
// the shared secrets table (`s3-key:<id>`) sealed with AES-256-GCM under a key from the data directory (or,
// on a shared store, from the same database — see shared-keys.ts), the access key id bound as associated
// data so a sealed row cannot be moved under another id. The secret leaves this module only in create's
// answer (once) and in lookup's (to the signature check); it is never logged.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { parseScopes, type Principal } from './auth.ts';
import { BlobdError } from './errors.ts';
import { refuseNul } from './text.ts';

export interface S3KeyRecord {
  /** `BK` + 18 characters of base32: the shape AWS's own ids have (20 upper-case characters). */
  readonly accessKeyId: string;
  readonly name: string;
  readonly scopes: readonly string[];
  /** The principal id that created it. */
  readonly createdBy: string;
  readonly createdAt: number;
}

interface Sealed {
  readonly secret: string;
  readonly name: string;
  readonly scopes: string[];
  readonly createdBy: string;
  readonly createdAt: number;
}

const PREFIX = 's3-key:';
const ACCESS_KEY_RE = /^BK[A-Z2-7]{18}$/;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** How long a decrypted key is trusted without reading its row again; also how late another node sees a delete. */
const CACHE_TTL_MS = 10_000;
const CACHE_MAX = 1000;

function newAccessKeyId(): string {
  // 18 base32 characters = 90 random bits; 32 divides 256, so taking a byte mod 32 is unbiased.
  return `BK${[...randomBytes(18)].map((b) => BASE32[b % 32]).join('')}`;
}

export class S3Keys {
  private key: Promise<Buffer> | undefined;
  /** Decrypted keys by access key id, oldest first (a Map keeps insertion order): lookup runs on every S3 request. */
  private readonly cache = new Map<string, { secret: string; principal: Principal; until: number }>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly encryptionKey: () => Promise<Buffer>,
  ) {}

  /** A new key: the returned secret is the only time it exists outside the sealed row. */
  async create(by: Principal, input: { name?: string; scopes: string[] }): Promise<{ record: S3KeyRecord; secretAccessKey: string }> {
    const name = refuseNul(input.name ?? '', 'the key name').trim();
    if (name.length > 128) throw new BlobdError('invalid_request', 'an S3 key name is at most 128 characters');
    const scopes = parseScopes(input.scopes);
    const secretAccessKey = randomBytes(30).toString('base64url');
    const createdAt = Date.now();
    // A collision of 90 random bits will not happen; should it, the first writer keeps its row and we draw again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const accessKeyId = newAccessKeyId();
      const sealed = await this.seal(accessKeyId, { secret: secretAccessKey, name, scopes, createdBy: by.id, createdAt });
      const stored = await this.meta.ensureSecret(`${PREFIX}${accessKeyId}`, sealed);
      if (stored.equals(sealed)) return { record: { accessKeyId, name, scopes, createdBy: by.id, createdAt }, secretAccessKey };
    }
    throw new BlobdError('internal_error', 'could not draw an unused access key id');
  }

  /** Every key, by access key id (never their secrets). A row this node cannot open is listed unnamed, so it can be removed. */
  async list(): Promise<S3KeyRecord[]> {
    const rows = await this.meta.listSecrets(PREFIX);
    const records: S3KeyRecord[] = [];
    for (const row of rows) {
      const accessKeyId = row.name.slice(PREFIX.length);
      if (!ACCESS_KEY_RE.test(accessKeyId)) continue;
      const open = await this.open(accessKeyId, row.value);
      records.push(
        open
          ? { accessKeyId, name: open.name, scopes: open.scopes, createdBy: open.createdBy, createdAt: open.createdAt }
          : { accessKeyId, name: '(cannot be decrypted with this node\'s key)', scopes: [], createdBy: '', createdAt: 0 },
      );
    }
    return records;
  }

  async delete(accessKeyId: string): Promise<void> {
    refuseNul(accessKeyId, 'the access key id');
    // Dropped from this node's cache at once; another node sees the delete within CACHE_TTL_MS.
    this.cache.delete(accessKeyId);
    if (!ACCESS_KEY_RE.test(accessKeyId) || !(await this.meta.deleteSecret(`${PREFIX}${accessKeyId}`))) {
      throw new BlobdError('not_found', `no S3 key ${accessKeyId.slice(0, 64)}`, { id: accessKeyId.slice(0, 64) });
    }
    this.cache.delete(accessKeyId);
  }

  /** The secret and principal behind an access key id, or null for one that does not exist (or cannot be opened). */
  async lookup(accessKeyId: string): Promise<{ secret: string; principal: Principal } | null> {
    if (!ACCESS_KEY_RE.test(accessKeyId)) return null;
    const now = Date.now();
    const hit = this.cache.get(accessKeyId);
    if (hit && hit.until > now) return { secret: hit.secret, principal: hit.principal };
    this.cache.delete(accessKeyId);
    const row = await this.meta.getSecret(`${PREFIX}${accessKeyId}`);
    const open = row && (await this.open(accessKeyId, row));
    if (!open) return null;
    const principal: Principal = { id: `s3key:${accessKeyId}`, scopes: open.scopes };
    while (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(accessKeyId, { secret: open.secret, principal, until: now + CACHE_TTL_MS });
    return { secret: open.secret, principal };
  }

  private keyOnce(): Promise<Buffer> {
    // A failed read is not kept: the next call tries again.
    this.key ??= this.encryptionKey().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  /** iv (12) | tag (16) | ciphertext. */
  private async seal(accessKeyId: string, value: Sealed): Promise<Buffer> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', await this.keyOnce(), iv).setAAD(Buffer.from(accessKeyId));
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  private async open(accessKeyId: string, sealed: Buffer): Promise<Sealed | null> {
    const key = await this.keyOnce();
    if (sealed.length < 28) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12))
        .setAAD(Buffer.from(accessKeyId))
        .setAuthTag(sealed.subarray(12, 28));
      const value = JSON.parse(Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8')) as Sealed;
      return typeof value.secret === 'string' && Array.isArray(value.scopes) ? value : null;
    } catch {
      // Sealed under another key (a data directory's keys lost or swapped) or tampered with: as if absent.
      return null;
    }
  }
}
