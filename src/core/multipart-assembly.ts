// A multipart upload's object written while its parts still arrive, so that a complete has little left to
// do: from part 1 on, each part is streamed (in part-number order, as soon as it and all before it are
// stored) into an ordinary write of the target object, which waits for the next part. The complete ends that
// write when the parts it lists are exactly those fed, in order (the usual case: lib-storage, aws cli,
// rclone number parts 1..N); anything else abandons it and the complete copies the parts as usual. Nothing
// here decides what is stored: the write commits only through the complete, after its checks.
import type { Readable } from 'node:stream';
import type { ObjectRecord } from '../storage/metadata-store.ts';
import type { Principal } from './auth.ts';
import type { BlobCopy } from './blobs.ts';
import type { BodySource } from './byte-limit.ts';
import { concatContent, type ContentPart } from './content-stream.ts';
import type { Digest } from './digest.ts';

/** A part as the assembly knows it: where its bytes are. */
export interface AssemblyPart {
  readonly partNumber: number;
  readonly digest: string;
  readonly size: number;
}

/** What the write is told once the complete decided: who completes it and the object's ETag. */
export interface Decision {
  readonly principal: Principal;
  readonly etag: string;
  /** The complete's write conditions (S3's If-Match / If-None-Match on CompleteMultipartUpload). */
  readonly ifMatch?: string;
  readonly ifNoneMatch?: boolean;
}

class Abandoned extends Error {
  override name = 'Abandoned';
}

export class Assembly {
  /** Parts stored in this process (or named by the complete), not fed yet. */
  private readonly waiting = new Map<number, AssemblyPart>();
  /** Parts whose bytes went into the write, in order: 1, 2, … */
  private readonly fed: AssemblyPart[] = [];
  /** Set by the complete: feed up to this part number, then end. */
  private last: number | undefined;
  private abandoned = false;
  private wakeFeeder: (() => void) | undefined;
  private body: Readable | undefined;
  private idle: NodeJS.Timeout | undefined;
  decision: Decision | undefined;
  private readonly result: Promise<ObjectRecord | null>;

  constructor(
    open: (digest: Digest) => Promise<BlobCopy>,
    /** Starts the target's write with this body; it reads decision (set before the body ends) when it commits. */
    write: (body: BodySource, assembly: Assembly) => Promise<ObjectRecord>,
    private readonly idleMs: number,
    private readonly onAbandon: () => void,
  ) {
    const self = this;
    async function* parts(): AsyncIterable<ContentPart> {
      for (;;) {
        if (self.abandoned) throw new Abandoned('the assembly was abandoned');
        const next = self.fed.length + 1;
        const part = self.waiting.get(next);
        if (part && (self.last === undefined || next <= self.last)) {
          self.waiting.delete(next);
          self.fed.push(part);
          self.touch();
          yield { open: () => open(part.digest as Digest), size: part.size };
          continue;
        }
        if (self.last !== undefined && next > self.last) return;
        await new Promise<void>((resolve) => (self.wakeFeeder = resolve));
      }
    }
    // A write that fails (abandoned, a limit, the disk) answers null: the complete then copies as usual. A
    // refused write only unpipes its body: destroyed here, or it would hold a part open for good.
    this.result = write(() => (this.body = concatContent(parts())), this).catch(() => {
      this.abandon();
      return null;
    });
    this.touch();
  }

  private wake(): void {
    const w = this.wakeFeeder;
    this.wakeFeeder = undefined;
    w?.();
  }

  /** No progress for idleMs (a client that paused, parts going to another node): give the write up. */
  private touch(): void {
    clearTimeout(this.idle);
    // Once the complete decided, the rest is fed however long it takes.
    if (this.last === undefined) this.idle = setTimeout(() => this.abandon(), this.idleMs).unref();
  }

  /** A part was stored. A number already fed, stored again, makes the fed bytes wrong: give up. */
  partStored(part: AssemblyPart): void {
    if (this.abandoned || this.last !== undefined) return;
    if (part.partNumber <= this.fed.length) return this.abandon();
    this.waiting.set(part.partNumber, part);
    this.wake();
  }

  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    clearTimeout(this.idle);
    this.wake();
    this.body?.destroy(new Abandoned('the assembly was abandoned'));
    this.onAbandon();
  }

  /**
   * The complete's parts (checked: they exist with these digests): when they are 1..N and the bytes fed so far
   * are theirs, feed the rest, end the write and answer its object; null when the assembly cannot be used
   * (then it is abandoned and the caller copies the parts).
   */
  async finish(listed: readonly AssemblyPart[], decision: Decision): Promise<ObjectRecord | null> {
    const usable =
      !this.abandoned &&
      listed.every((p, i) => p.partNumber === i + 1) &&
      this.fed.length <= listed.length &&
      this.fed.every((f, i) => f.digest === listed[i]!.digest && f.size === listed[i]!.size);
    if (!usable) {
      this.abandon();
      return null;
    }
    clearTimeout(this.idle);
    // The complete's list is the truth for what is not fed yet (a part stored on another node, or again).
    this.waiting.clear();
    for (const p of listed.slice(this.fed.length)) this.waiting.set(p.partNumber, p);
    this.decision = decision;
    this.last = listed.length;
    this.wake();
    return this.result;
  }
}
