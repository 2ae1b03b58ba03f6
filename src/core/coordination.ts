// How this process shares work with other blobd nodes on the same metadata store (PostgreSQL): leases in
// rows, never in-process state alone. A lease has an end (the TTL) and is renewed while its holder works, so
// a node that crashes or loses touch lets go by itself and another node goes on. Over a store that no other
// process shares (SQLite: one process per data directory) every call here is free: no lease is written,
// and in-process locks are enough, as they always were.
import type { MetadataStore, UploadRecord } from '../storage/metadata-store.ts';
import { BlobdError } from './errors.ts';

export const DEFAULT_LEASE_TTL_MS = 30_000;

/** A session held by this node's request: let it go when the request is done. */
export interface SessionHold {
  /** The row as of taking the lease (null on a store that is not shared: load it as before). */
  readonly row: UploadRecord | null;
  /** The previous holder's lease ran out without being let go (a crashed or cut-off node). */
  readonly takenOver: boolean;
  /** The fence for session writes (undefined when not shared: unfenced writes). */
  readonly holder: string | undefined;
  release(): Promise<void>;
}

export class NodeCoordination {
  private liveness: NodeJS.Timeout | undefined;

  constructor(
    private readonly meta: MetadataStore,
    /** Stable across restarts of this node (kept in its data directory): its previous life's leases are its own. */
    readonly nodeId: string,
    readonly leaseTtlMs = DEFAULT_LEASE_TTL_MS,
  ) {}

  get shared(): boolean {
    return this.meta.shared;
  }

  /** The holder to record on idempotency claims (undefined when not shared). */
  get holder(): string | undefined {
    return this.shared ? this.nodeId : undefined;
  }

  /** The liveness leases this node renews: 'node:<id>', and 'local-bytes:<id>' for a node whose bytes are its own. */
  private leases: string[] = [];
  /** Renewals in flight: stop() lets them land before it lets the leases go, so none outlives it. */
  private readonly renewing = new Set<Promise<unknown>>();
  /** Set by stop(): no renewal starts after it. */
  private stopped: Promise<void> | undefined;

  /**
   * Say this node is alive (a lease 'node:<id>' renewed every third of the TTL) until stop(). Other nodes
   * keep this node's pending idempotency claims while it is. `localBytes`: its bytes are in its own data
   * directory, which other nodes cannot see (they then refuse to start beside it: otherLocalNodes).
   * `onRenewed`: told after every renewal; `lapsed` when it ended after the previous lease had (the process
   * stalled, or could not reach the database, for longer than the TTL): meanwhile other nodes took this one
   * for gone, and one may have started that must not run beside it.
   */
  async start(opts: { localBytes?: boolean; onRenewed?: (lapsed: boolean) => void } = {}): Promise<void> {
    if (!this.shared) return;
    this.leases = [`node:${this.nodeId}`, ...(opts.localBytes ? [`local-bytes:${this.nodeId}`] : [])];
    let liveUntil = 0;
    const renew = async () => {
      if (this.stopped) return;
      const at = Date.now();
      const written = Promise.all(this.leases.map((name) => this.meta.acquireLease(name, this.nodeId, at, at + this.leaseTtlMs)));
      this.renewing.add(written);
      try {
        await written;
      } finally {
        this.renewing.delete(written);
      }
      // Judged once written: a renewal that ends after the last lease's end counts as a lapse, even if its
      // write landed just in time (a needless look costs a query; a missed one, two nodes serving).
      const lapsed = liveUntil !== 0 && Date.now() >= liveUntil;
      liveUntil = Math.max(liveUntil, at + this.leaseTtlMs);
      opts.onRenewed?.(lapsed);
    };
    await renew();
    this.liveness = setInterval(() => void renew().catch(() => {}), Math.max(50, this.leaseTtlMs / 3));
    this.liveness.unref();
  }

  /** Stops renewing and lets the leases go; a second call (a lapsed node's stop, then its close) waits for the first. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      clearInterval(this.liveness);
      await Promise.allSettled([...this.renewing]);
      if (this.shared) await Promise.all(this.leases.map((name) => this.meta.releaseLease(name, this.nodeId).catch(() => {})));
    })();
    return this.stopped;
  }

  /** Ids of the other nodes alive now (their liveness lease has not ended). */
  async otherLiveNodes(): Promise<string[]> {
    return this.otherHolders('node:');
  }

  /** Ids of the other live nodes whose bytes are in their own data directory (started with localBytes). */
  async otherLocalNodes(): Promise<string[]> {
    return this.otherHolders('local-bytes:');
  }

  private async otherHolders(prefix: string): Promise<string[]> {
    if (!this.shared) return [];
    const live = await this.meta.liveLeaseHolders(prefix, Date.now());
    return live.map((l) => l.holder).filter((h) => h !== this.nodeId);
  }

  /**
   * Take a session's lease for one request, renewed while it runs. 409 upload_locked when a request on
   * another node holds it; null when there is no such session.
   */
  async holdSession(id: string): Promise<SessionHold | null> {
    if (!this.shared) return { row: null, takenOver: false, holder: undefined, release: async () => {} };
    const until = () => Date.now() + this.leaseTtlMs;
    const got = await this.meta.acquireUploadLease(id, this.nodeId, Date.now(), until());
    if (!got) return null;
    if (got.outcome === 'busy') {
      throw new BlobdError('upload_locked', 'another request (on another node) is using this upload session; retry when it is done', { id });
    }
    const timer = setInterval(() => void this.meta.renewUploadLease(id, this.nodeId, until()).catch(() => {}), Math.max(50, this.leaseTtlMs / 3));
    timer.unref();
    return {
      row: got.row,
      takenOver: got.outcome === 'taken_over',
      holder: this.nodeId,
      release: async () => {
        clearInterval(timer);
        await this.meta.releaseUploadLease(id, this.nodeId).catch(() => {}); // it ends by itself anyway
      },
    };
  }

  /** True while this node holds the session's lease (and then moves its end out). */
  async stillHolds(id: string): Promise<boolean> {
    if (!this.shared) return true;
    return this.meta.renewUploadLease(id, this.nodeId, Date.now() + this.leaseTtlMs);
  }

  /**
   * Run `fn` while this node holds the named lease (GC, expiry, fsck: one node at a time), renewing it;
   * null without running when another node holds it.
   */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<{ value: T } | null> {
    if (!this.shared) return { value: await fn() };
    const until = () => Date.now() + this.leaseTtlMs;
    if (!(await this.meta.acquireLease(name, this.nodeId, Date.now(), until()))) return null;
    const timer = setInterval(() => void this.meta.acquireLease(name, this.nodeId, Date.now(), until()).catch(() => {}), Math.max(50, this.leaseTtlMs / 3));
    timer.unref();
    try {
      return { value: await fn() };
    } finally {
      clearInterval(timer);
      await this.meta.releaseLease(name, this.nodeId).catch(() => {});
    }
  }
}
