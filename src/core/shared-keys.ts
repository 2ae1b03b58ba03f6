// Secret keys kept in the shared metadata store instead of data/keys/, so that every node signs and verifies
// with the same ones (a URL signed via one node verifies on another; a key rotated on one is used by all
// within the refresh interval) and seals idempotent answers any node can open. Same shape as KeyFiles.
import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { SigningKey } from '../storage/fs/key-files.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';

const KID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SIGNING = 'signing:';

/** Where signing keys and the records key come from: data/keys/ (KeyFiles) or the shared store (SharedKeys). */
export interface KeySource {
  /** Every signing key, oldest first. */
  signingKeys(): Promise<SigningKey[]>;
  signingKey(kid: string): Promise<SigningKey | null>;
  createSigningKey(): Promise<SigningKey>;
  recordsKey(): Promise<Buffer>;
  /** The key that seals stored S3 secret access keys (core/s3-keys.ts). */
  s3KeysKey(): Promise<Buffer>;
}

export class SharedKeys implements KeySource {
  constructor(private readonly meta: MetadataStore) {}

  async signingKeys(): Promise<SigningKey[]> {
    return (await this.meta.listSecrets(SIGNING))
      .map((s) => ({ kid: s.name.slice(SIGNING.length), secret: s.value }))
      .filter((k) => KID_RE.test(k.kid) && k.secret.length >= 32);
  }

  async signingKey(kid: string): Promise<SigningKey | null> {
    if (!KID_RE.test(kid)) return null;
    const secret = await this.meta.getSecret(`${SIGNING}${kid}`);
    return secret && secret.length >= 32 ? { kid, secret } : null;
  }

  async createSigningKey(): Promise<SigningKey> {
    const kid = uuidv7();
    return { kid, secret: await this.meta.ensureSecret(`${SIGNING}${kid}`, randomBytes(32)) };
  }

  /** Created by the first node that needs it; every other node reads the same one. */
  recordsKey(): Promise<Buffer> {
    return this.meta.ensureSecret('records', randomBytes(32));
  }

  /**
   * Every node must open every S3 key, so this key lives in the same database as the sealed keys: it guards
   * them against a leaked backup of one table, not against a reader of the whole database.
   */
  s3KeysKey(): Promise<Buffer> {
    return this.meta.ensureSecret('s3-keys-key', randomBytes(32));
  }

  /** The admin token all nodes accept, created by the first node to start. */
  async adminToken(): Promise<string> {
    const fresh = Buffer.from(`blobd_${randomBytes(32).toString('base64url')}`);
    return (await this.meta.ensureSecret('admin-token', fresh)).toString();
  }
}
