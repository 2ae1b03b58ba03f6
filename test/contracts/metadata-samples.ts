// Sample inputs shared by the MetadataStore conformance suites (metadata-store.ts and its location part).
import type { NewBlob, NewUpload } from '../../src/storage/metadata-store.ts';

export const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

/** A blob to record; by default at a content address (the digest itself), as the local byte store names it. */
export const blob = (n: number, size: number, location = digest(n)): NewBlob => ({ digest: digest(n), size, location });

/** An upload session of principal 'p', open for a minute. */
export const newUpload = (id: string, extra: Partial<NewUpload> = {}): NewUpload => ({
  id,
  tokenHash: 'ab'.repeat(32),
  principal: 'p',
  filename: 'f.bin',
  contentType: null,
  temporary: false,
  declaredSize: 100,
  sizeLimit: null,
  expectedDigest: null,
  bucket: null,
  key: null,
  clientMetadata: null,
  cursor: null,
  location: null,
  createdAt: Date.now(),
  expiresAt: Date.now() + 60_000,
  ...extra,
});
