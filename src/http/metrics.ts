// GET /metrics in the Prometheus text format (prom-client, a registry of blobd's own): requests by route
// template and status class, bytes in and out, open sessions, blobs and stored bytes, dedup hits, GC passes,
// and Node's process metrics. Labels are route templates, never paths: no key, token or signature shows.
import type { Context } from 'hono';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StoreEvents } from '../core/metrics.ts';
import type { Stats } from '../core/stats.ts';

export class Metrics implements StoreEvents {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status_class'>;
  private readonly duration: Histogram<'method' | 'route' | 'status_class'>;
  private readonly uploadBytes: Counter;
  private readonly downloadBytes: Counter;
  private readonly sendTimeouts: Counter;
  private readonly dedupHits: Counter;
  private readonly gcRuns: Counter;
  private readonly gcRemovedBytes: Counter;

  /** `metadataQueries`: statements sent to the metadata store so far, when it counts them (PostgreSQL). */
  constructor(stats: () => Promise<Stats>, metadataQueries?: () => number) {
    const registers = [this.registry];
    const labelNames = ['method', 'route', 'status_class'] as const;
    this.requests = new Counter({ name: 'blobd_http_requests_total', help: 'HTTP requests answered, by route template and status class', labelNames, registers });
    this.duration = new Histogram({
      name: 'blobd_http_request_duration_seconds',
      help: 'Time from the request to the last byte of the answer, by route template and status class',
      labelNames,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers,
    });
    this.uploadBytes = new Counter({ name: 'blobd_upload_bytes_total', help: 'Blob bytes received and made durable', registers });
    this.downloadBytes = new Counter({ name: 'blobd_download_bytes_total', help: 'Blob bytes sent to clients', registers });
    this.sendTimeouts = new Counter({ name: 'blobd_download_send_timeouts_total', help: 'Downloads cut because their socket took no more bytes for --send-timeout', registers });
    this.dedupHits = new Counter({ name: 'blobd_dedup_hits_total', help: 'Uploads whose bytes were stored already', registers });
    this.gcRuns = new Counter({ name: 'blobd_gc_runs_total', help: 'Garbage collection passes (dry runs not counted)', registers });
    this.gcRemovedBytes = new Counter({ name: 'blobd_gc_removed_bytes_total', help: 'Bytes of blobs removed by garbage collection', registers });
    // Read from the store at scrape time, in one query for the three of them.
    let current: Promise<Stats> | undefined;
    const read = () => (current ??= stats().finally(() => setImmediate(() => (current = undefined))));
    const gauge = (name: string, help: string, pick: (s: Stats) => number) =>
      new Gauge({ name, help, registers, async collect() { this.set(pick(await read())); } });
    gauge('blobd_uploads_open', 'Upload sessions open', (s) => s.openSessions);
    gauge('blobd_blobs', 'Blobs stored', (s) => s.blobs);
    gauge('blobd_stored_bytes', 'Bytes of the stored blobs', (s) => s.storedBytes);
    gauge('blobd_inline_blobs', 'Blobs whose bytes are stored inside the metadata database (--inline-max)', (s) => s.inlineBlobs);
    gauge('blobd_inline_bytes', 'Bytes stored inside the metadata database for blobs (--inline-max)', (s) => s.inlineBytes);
    if (metadataQueries) {
      // Each statement is one round trip to the database: per request, the figure a scale-out setup pays.
      new Counter({
        name: 'blobd_metadata_queries_total',
        help: 'Statements sent to the metadata database (each one round trip)',
        registers,
        collect() {
          this.reset();
          this.inc(metadataQueries());
        },
      });
    }
    collectDefaultMetrics({ register: this.registry });
  }

  received(bytes: number): void {
    this.uploadBytes.inc(bytes);
  }

  sent(bytes: number): void {
    this.downloadBytes.inc(bytes);
  }

  sendTimedOut(): void {
    this.sendTimeouts.inc();
  }

  dedupHit(): void {
    this.dedupHits.inc();
  }

  gcPass(_removedBlobs: number, freedBytes: number): void {
    this.gcRuns.inc();
    this.gcRemovedBytes.inc(freedBytes);
  }

  /** One answered request; `route` is the matched route template (or `unmatched`). */
  answered(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status_class: `${Math.floor(status / 100)}xx` };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
  }

  async render(c: Context): Promise<Response> {
    return c.body(await this.registry.metrics(), 200, { 'Content-Type': this.registry.contentType });
  }
}
