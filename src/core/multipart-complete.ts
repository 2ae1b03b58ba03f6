// The complete of a multipart upload, past its change of state: the target object's write (handed to the
// assembly begun while the parts arrived, multipart-assembly.ts, or else the parts' blobs copied as one
// write) and which completes run in this process. The upload's records and states: multipart-uploads.ts.
import { createHash } from 'node:crypto';
import type { ObjectRecord } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { BlobService } from './blobs.ts';
import type { CatalogService, PutObjectOptions } from './catalog.ts';
import { concatContent, writingFrom } from './content-stream.ts';
import type { Digest } from './digest.ts';
import { BlobdError } from './errors.ts';
import { Assembly, type Decision } from './multipart-assembly.ts';

/** If-Match (a digest, or '*') / If-None-Match: * of the target's write. */
export interface WriteConditions {
  readonly ifMatch?: string;
  readonly ifNoneMatch?: boolean;
}
import { normEtag, partOf, partProblem, type CompletedPart, type MultipartUpload } from './multipart-records.ts';

/** Assemblies at once per process: each holds a write open (a staging file, a buffer) while parts arrive. */
const MAX_ASSEMBLIES = 4;
/** An assembly that got no part for this long is given up (the complete then copies the parts). */
const ASSEMBLY_IDLE_MS = 60_000;

/**
 * The target object's write: the upload's metadata, exactly, as a single write's (what the object had
 * before does not carry over). Who writes it and its ETag are read when the revision is recorded, after the
 * body ended: an assembly's write learns them only from the complete.
 */
function targetOptions(info: MultipartUpload, decided: () => Decision | undefined): PutObjectOptions {
  const decision = () => {
    const d = decided();
    if (!d) throw new BlobdError('internal_error', 'the multipart write ended before its complete');
    return d;
  };
  return {
    get principal() {
      return decision().principal;
    },
    // Read when the revision is recorded (in its transaction), once the complete decided; an assembly's
    // early look, before that, finds none.
    get ifMatch() {
      return decided()?.ifMatch;
    },
    get ifNoneMatch() {
      return decided()?.ifNoneMatch;
    },
    etag: () => decision().etag,
    ...(info.meta.contentType !== undefined ? { contentType: info.meta.contentType } : {}),
    ...(info.meta.filename !== undefined ? { filename: info.meta.filename } : {}),
    meta: { content_type: info.meta.contentType ?? null, filename: info.meta.filename ?? null },
    replaceProperties: info.meta.properties ?? {},
  };
}

export class Completions {
  /**
   * Completes running in this process, by upload id: each claims the upload just before its state change
   * and drops only its own claim, so a `completing` record none of them claims is a crashed run's. A
   * loser (its If-Match write failed) never unmarks the winner's upload.
   */
  private readonly completingHere = new Map<string, Set<symbol>>();
  /** Objects being written while their parts arrive (multipart-assembly.ts), by upload id. */
  private readonly assemblies = new Map<string, Assembly>();

  constructor(
    private readonly catalog: CatalogService,
    private readonly blobs: BlobService,
    private readonly minPartSize: number,
    /** Every part object of an upload, in part-number order. */
    private readonly partRows: (uploadId: string) => AsyncIterable<ObjectRecord>,
  ) {}

  /** Whether a complete of this process runs on the upload (its `completing` record is not a crashed run's). */
  runningHere(uploadId: string): boolean {
    return !!this.completingHere.get(uploadId)?.size;
  }

  /** This request completes the upload here (see completingHere); release() drops this claim only. */
  claimCompleting(uploadId: string): { release: () => void } {
    const token = Symbol(uploadId);
    const claims = this.completingHere.get(uploadId) ?? new Set<symbol>();
    claims.add(token);
    this.completingHere.set(uploadId, claims);
    return {
      release: () => {
        claims.delete(token);
        if (claims.size === 0 && this.completingHere.get(uploadId) === claims) this.completingHere.delete(uploadId);
      },
    };
  }

  /**
   * Check the parts the client lists against those stored (they exist with those ETags, all but the last at
   * least the minimum size), then write the target object from them. The ETag is S3's: the MD5 of the parts'
   * binary MD5s, `-N`.
   */
  async writeTarget(
    info: MultipartUpload,
    listed: readonly CompletedPart[],
    principal: Principal,
    conditions: WriteConditions = {},
  ): Promise<{ object: ObjectRecord; etag: string }> {
    const stored = new Map<number, ObjectRecord>();
    for await (const row of this.partRows(info.uploadId)) stored.set(Number(row.key.slice(row.key.lastIndexOf('/') + 1)), row);
    // Every part is checked to exist before any size is: a missing part is InvalidPart, as S3 answers.
    const parts = listed.map((p) => {
      const row = stored.get(p.partNumber);
      if (!row || row.etag === null || normEtag(row.etag) !== normEtag(p.etag)) {
        throw partProblem('invalid_part', `part ${p.partNumber} was not uploaded, or its ETag is not the one given`, { part_number: p.partNumber });
      }
      return row;
    });
    parts.forEach((row, i) => {
      const p = listed[i]!;
      if (i < listed.length - 1 && row.size < this.minPartSize) {
        throw partProblem('part_too_small', `part ${p.partNumber} is ${row.size} bytes; every part but the last is at least ${this.minPartSize}`, {
          part_number: p.partNumber,
          size: row.size,
          min_size: this.minPartSize,
        });
      }
    });
    const md5s = Buffer.concat(parts.map((p) => Buffer.from(p.etag!, 'hex')));
    const etag = `${createHash('md5').update(md5s).digest('hex')}-${parts.length}`;
    const decision: Decision = { principal, etag, ...conditions };
    const assembled = await this.takeAssembly(info.uploadId)?.finish(
      parts.map((p, i) => ({ partNumber: listed[i]!.partNumber, digest: p.digest, size: p.size })),
      decision,
    );
    if (assembled) return { object: assembled, etag };
    const { object } = await writingFrom(
      () => concatContent(parts.map((p) => ({ open: () => this.blobs.openContent(p.digest as Digest), size: p.size }))),
      (body) => this.catalog.putObject(info.bucket, info.key, body, { ...targetOptions(info, () => decision), declaredSize: parts.reduce((sum, p) => sum + p.size, 0) }),
    );
    return { object, etag };
  }

  /**
   * A part was stored here: an assembly of the upload's object takes it (one is started with the upload's
   * first part stored in this process, a few at a time per process).
   */
  assemble(info: MultipartUpload, part: ObjectRecord): void {
    let assembly = this.assemblies.get(info.uploadId);
    if (!assembly) {
      if (this.assemblies.size >= MAX_ASSEMBLIES) return;
      const started: Assembly = new Assembly(
        (digest) => this.blobs.openContent(digest),
        async (body, self) => (await this.catalog.putObject(info.bucket, info.key, body, targetOptions(info, () => self.decision))).object,
        ASSEMBLY_IDLE_MS,
        () => {
          if (this.assemblies.get(info.uploadId) === started) this.assemblies.delete(info.uploadId);
        },
      );
      this.assemblies.set(info.uploadId, (assembly = started));
    }
    assembly.partStored({ partNumber: partOf(part).partNumber, digest: part.digest, size: part.size });
  }

  /** The upload's assembly, no longer reachable by parts stored after this. */
  takeAssembly(uploadId: string): Assembly | undefined {
    const assembly = this.assemblies.get(uploadId);
    this.assemblies.delete(uploadId);
    return assembly;
  }
}
