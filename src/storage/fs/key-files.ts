// Secret keys under data/keys/ (directory 0700, files 0600): HMAC keys for signed URLs — one file per key
// id, so a new key can be added while URLs signed with older ones still verify — and the key that seals
// stored idempotent answers, and the one that seals S3 secret access keys. Key ids are validated before
// they become file names (G6); nothing is logged.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { syncDir } from './durable-dirs.ts';
import { DIR_MODE, FILE_MODE, type DataLayout } from './layout.ts';
import { readPrivateFile } from './private-file.ts';

export interface SigningKey {
  /** A UUIDv7: newer keys sort after older ones. */
  readonly kid: string;
  readonly secret: Buffer;
}

const KID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SIGNING_FILE_RE = /^signing-([0-9a-f-]{36})\.key$/;

export class KeyFiles {
  constructor(private readonly layout: DataLayout) {}

  private async ensureDir(): Promise<void> {
    const created = await mkdir(this.layout.keysDir, { recursive: true, mode: DIR_MODE });
    if (created !== undefined) await syncDir(this.layout.root);
    await chmod(this.layout.keysDir, DIR_MODE);
  }

  private async writeSecret(name: string, secret: Buffer): Promise<void> {
    await this.ensureDir();
    const file = path.join(this.layout.keysDir, name);
    // 'wx': two writers never overwrite each other's key.
    await writeFile(file, `${secret.toString('base64url')}\n`, { mode: FILE_MODE, flag: 'wx', flush: true }).catch(async (err: NodeJS.ErrnoException) => {
      // Created but not written (a full disk): an empty key file would stay behind. EEXIST is another's.
      if (err.code !== 'EEXIST') await rm(file, { force: true }).catch(() => {});
      throw err;
    });
    await syncDir(this.layout.keysDir);
  }

  private async readSecret(name: string): Promise<Buffer | null> {
    try {
      // Made 0600 as it is read: a key file left readable to others (a restore, an older blobd) is tightened.
      const secret = Buffer.from((await readPrivateFile(path.join(this.layout.keysDir, name))).trim(), 'base64url');
      return secret.length >= 32 ? secret : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Every signing key, oldest first. */
  async signingKeys(): Promise<SigningKey[]> {
    await this.ensureDir();
    const kids = (await readdir(this.layout.keysDir))
      .map((f) => SIGNING_FILE_RE.exec(f)?.[1])
      .filter((kid): kid is string => kid !== undefined && KID_RE.test(kid))
      .sort();
    const keys: SigningKey[] = [];
    for (const kid of kids) {
      const secret = await this.readSecret(`signing-${kid}.key`);
      if (secret) keys.push({ kid, secret });
    }
    return keys;
  }

  /** One signing key by id, or null (also for an id that is not well formed). */
  async signingKey(kid: string): Promise<SigningKey | null> {
    if (!KID_RE.test(kid)) return null;
    const secret = await this.readSecret(`signing-${kid}.key`);
    return secret ? { kid, secret } : null;
  }

  /** A new signing key; it becomes the one new URLs are signed with (`blobd keys rotate`). */
  async createSigningKey(): Promise<SigningKey> {
    const key = { kid: uuidv7(), secret: randomBytes(32) };
    await this.writeSecret(`signing-${key.kid}.key`, key.secret);
    return key;
  }

  /** The key that seals stored idempotent answers, created on first use. */
  recordsKey(): Promise<Buffer> {
    return this.ensureKey('records.key');
  }

  /** The key that seals stored S3 secret access keys (core/s3-keys.ts), created on first use. */
  s3KeysKey(): Promise<Buffer> {
    return this.ensureKey('s3-keys.key');
  }

  private async ensureKey(name: string): Promise<Buffer> {
    const existing = await this.readSecret(name);
    if (existing) return existing;
    try {
      await this.writeSecret(name, randomBytes(32));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    return (await this.readSecret(name))!;
  }
}
