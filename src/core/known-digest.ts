// Initiate with the digest of a blob that exists: the upload is finished before it starts — a pin, or the
// object's next revision — with no session and no bytes. Only for a caller who may read blobs by digest
// (blobs:read or admin): to anyone else a digest's existence must not show, so they upload as usual.
import { can, type Principal } from './auth.ts';
import type { BlobService } from './blobs.ts';
import type { CatalogService } from './catalog.ts';
import type { Digest } from './digest.ts';
import { tooLarge } from './byte-limit.ts';
import { BlobdError } from './errors.ts';
import type { CompletedUpload } from './upload-completion.ts';

export interface KnownDigestUpload {
  readonly principal: Principal;
  readonly digest: Digest;
  /** The size declared at initiate: a blob of another size is not the one this upload names. */
  readonly size: number | null;
  readonly filename?: string;
  readonly contentType?: string;
  readonly temporary?: boolean;
  readonly bucket?: string;
  readonly key?: string;
  /** A signed URL's max_size. */
  readonly sizeLimit?: number;
}

/**
 * The complete body, as if a session had sent the blob's bytes and completed, or null when the upload
 * must go the usual way (no such blob, another size, or a caller who may not know). For a bucket target
 * the revision meets the rules a complete would: max_object_size, quota and max_revisions (refusals are
 * thrown as at complete).
 */
export async function completeKnownDigest(blobs: BlobService, catalog: CatalogService, u: KnownDigestUpload): Promise<CompletedUpload | null> {
  if (!can(u.principal, { action: 'blobs:read' })) return null;
  const filename = u.filename ?? null;
  if (u.bucket === undefined) {
    // A size cap (a signed URL's max_size) holds for a pin as for a revision: a larger blob is refused.
    if (u.sizeLimit !== undefined) {
      const found = await blobs.find(u.digest);
      if (found && found.size > u.sizeLimit) throw tooLarge(u.sizeLimit, "signed URL's max_size");
    }
    const pinned = await blobs.pinExisting(u.digest, u.principal.id, u.temporary ?? false, u.size ?? undefined);
    return pinned && { id: pinned.digest, digest: pinned.digest, size: pinned.size, filename, deduplicated: true };
  }
  // A digest's size never changes, so this look (outside the digest lock) settles the size question; the
  // revision itself is written under the lock, where a blob removed meanwhile is blob_not_found.
  const found = await blobs.find(u.digest);
  if (!found || (u.size !== null && found.size !== u.size)) return null;
  try {
    const { object } = await catalog.putObjectByDigest(u.bucket, u.key!, u.digest, {
      principal: u.principal,
      filename: u.filename,
      contentType: u.contentType,
      sizeLimit: u.sizeLimit,
    });
    return { id: object.id, digest: object.digest, size: object.size, filename, deduplicated: true, bucket: object.bucket, key: object.key, revision: object.revision };
  } catch (err) {
    if (err instanceof BlobdError && err.code === 'blob_not_found') return null; // gone since the look: upload it
    throw err;
  }
}
